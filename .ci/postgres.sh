# Sourced by .ci/run: makes sure a PostgreSQL server answers and exports
# VS_TEST_POSTGRES_URL for the tests. Order of preference:
#   1. VS_TEST_POSTGRES_URL already set by the caller;
#   2. the machine's server on 127.0.0.1:5432 (started if installed but stopped);
#   3. a throwaway cluster on port 55432, installing PostgreSQL from Debian if needed.

pg_answers() {
  psql "$1" -Atc 'SELECT 1' >/dev/null 2>&1
}

ensure_postgres() {
  if [ -n "${VS_TEST_POSTGRES_URL:-}" ]; then
    return 0
  fi
  local local_url="postgres://postgres@127.0.0.1:5432/postgres"
  if command -v psql >/dev/null 2>&1 && pg_answers "$local_url"; then
    export VS_TEST_POSTGRES_URL="$local_url"
    return 0
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
      if pg_answers "$local_url"; then
        export VS_TEST_POSTGRES_URL="$local_url"
        return 0
      fi
      sleep 0.2
    done
  fi
  # Nothing usable: a throwaway cluster of our own.
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "   installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) || {
      echo "cannot install PostgreSQL" >&2
      return 1
    }
  fi
  local bin
  bin="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")"
  local data
  data="$(mktemp -d /tmp/vs-ci-pg.XXXXXX)"
  chown postgres "$data"
  runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$data/log" -o "-p 55432 -c listen_addresses=127.0.0.1 -k /tmp" -w start >/dev/null
  trap 'runuser -u postgres -- "'"$bin"'/pg_ctl" -D "'"$data"'" -m fast stop >/dev/null 2>&1 || true' EXIT
  export VS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:55432/postgres"
}
