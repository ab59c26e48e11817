//! Query bench (docs/benchmarks.md: summary and DORA over 1,000,000 closed
//! spans in ≤ 500 ms): `metrics::summary` and `metrics::dora` over a generated
//! year of a 200-repository GitHub organisation, about a million spans.
//!
//! ```sh
//! cargo bench -p valuestream --bench metrics            # every case
//! cargo bench -p valuestream --bench metrics -- 30d     # criterion's name filter
//! ```
//!
//! Each case runs 11 times (a warm-up run and 10 samples, criterion's minimum),
//! so the whole bench takes as long as 11 runs of every case; figures and
//! findings are in `docs/benchmarks.md`.
//!
//! The SQLite database (1.3 GB) is generated once (about a minute) as
//! `<target dir>/tmp/valuestream-metrics-bench-v6.db` and reused by later
//! runs; delete it to regenerate. It is filled
//! with direct multi-row INSERTs, not through the webhook pipeline, with the
//! columns and attributes the pipeline writes (`store/apply.rs`,
//! `sources/github.rs`): rows in the order their spans started, as webhooks
//! would have created them. The generator is deterministic (fixed seed and
//! history end), so every run measures the same data.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};
use valuestream::metrics::{self, DoraFilter, SpanScope, Window};
use valuestream::store::Store;
use valuestream_core::ids;
use valuestream_core::time::Timestamp;

/// Bump when the generator changes: the file name is the cache key.
const DB_NAME: &str = "valuestream-metrics-bench-v6.db";
const SEED: u64 = 0x5eed_0005;
const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;
/// The history is the 365 days before this instant (UTC).
const HISTORY_END: &str = "2026-11-01T00:00:00Z";
const REPOS: usize = 200;
// Per repository, per year: 5,000 spans, so 1,000,000 in all.
const ISSUES: u32 = 750;
const PULL_REQUESTS: u32 = 1_000;
const BUILDS: u32 = 2_000;
const JOBS: u32 = 1_040;
const DEPLOYS: u32 = 200;
const INCIDENTS: u32 = 10;
/// Rows per INSERT statement (20 columns: 10,000 bound values, under SQLite's 32,766).
const CHUNK: usize = 500;
/// Rows per transaction.
const TRANSACTION: usize = 100_000;

fn history_end() -> i64 {
    Timestamp::parse_rfc3339(HISTORY_END).expect("valid time").nanos()
}

fn history_start() -> i64 {
    history_end() - 365 * DAY
}

/// SplitMix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A time uniformly within the history.
    fn time(&mut self) -> i64 {
        history_start() + self.below((365 * DAY) as u64) as i64
    }

    /// A log-normal duration in nanoseconds (median `median_seconds`), at least a second.
    fn duration(&mut self, median_seconds: f64, sigma: f64) -> i64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        ((median_seconds * (sigma * z).exp()).max(1.0) * 1e9) as i64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 40-hex-digit commit sha, a function of what it names.
fn sha(repo: usize, what: u64, number: u32) -> String {
    let seed = mix(SEED ^ ((repo as u64) << 40) ^ (what << 32) ^ u64::from(number));
    format!("{:016x}{:016x}{:08x}", mix(seed ^ 1), mix(seed ^ 2), mix(seed ^ 3) as u32)
}

const MERGE_SHA: u64 = 1;
const HEAD_SHA: u64 = 2;
const BUILD_SHA: u64 = 3;
const UNKNOWN_SHA: u64 = 4;

fn repo_name(repo: usize) -> String {
    format!("org/repo-{repo}")
}

/// What a generated span needs beyond its common columns; attributes are
/// rendered from it at insert time, so the whole history stays small in memory.
enum Detail {
    Issue,
    Incident { root_cause: Option<String> },
    PullRequest { first_review: Option<i64>, title: u8, hotfix: bool },
    Build,
    Job { build: u32, build_start: i64 },
    Deploy { id: u32, production: bool, sha: String, shipped: Vec<u32> },
}

struct Span {
    repo: usize,
    number: u32,
    start: i64,
    /// `None`: still open at the end of the history.
    end: Option<i64>,
    outcome: &'static str,
    detail: Detail,
}

impl Span {
    fn kind(&self) -> &'static str {
        match self.detail {
            Detail::Issue => "issue",
            Detail::Incident { .. } => "incident",
            Detail::PullRequest { .. } => "pull_request",
            Detail::Build => "build",
            Detail::Job { .. } => "job",
            Detail::Deploy { .. } => "deploy",
        }
    }

    fn key(&self) -> String {
        let repo = repo_name(self.repo);
        match &self.detail {
            Detail::Issue | Detail::Incident { .. } => format!("github:{repo}:issue:{}", self.number),
            Detail::PullRequest { .. } => format!("github:{repo}:pull_request:{}", self.number),
            Detail::Build => format!("github:{repo}:build:{}:1", run_id(self.repo, self.number)),
            Detail::Job { .. } => format!("github:{repo}:job:{}:1", run_id(self.repo, self.number) + 50_000_000),
            Detail::Deploy { id, .. } => format!("github:{repo}:deploy:{id}"),
        }
    }
}

fn run_id(repo: usize, number: u32) -> u64 {
    9_000_000_000 + (repo as u64) * 100_000 + u64::from(number)
}

const TITLES: &[&str] = &[
    "Fix flaky integration test in the payment service",
    "Add pagination to the orders endpoint",
    "Bump serde from 1.0.210 to 1.0.215",
    "Refactor configuration loading",
    "Improve error message when the token is missing",
    "Update the deployment runbook",
    "Cache dependency downloads in CI",
];

/// Ends at or after the end of the history are not seen yet: the span is open.
fn close(start: i64, duration: i64, open_share: f64, rng: &mut Rng) -> Option<i64> {
    let end = start + duration;
    (end < history_end() && !rng.chance(open_share)).then_some(end)
}

/// One repository's year: issues, pull requests (with the pushes and commits
/// of their merges), builds and jobs, deploys and incidents.
fn generate_repo(repo: usize, rng: &mut Rng, spans: &mut Vec<Span>, pushes: &mut Vec<Push>) {
    for number in 1..=ISSUES {
        let start = rng.time();
        let end = close(start, rng.duration(4.0 * 86_400.0, 1.5), 0.05, rng);
        let outcome = if rng.chance(0.85) { "completed" } else { "not_planned" };
        spans.push(Span { repo, number, start, end, outcome, detail: Detail::Issue });
    }

    // Pull requests: mostly merged; the merges reach `main` one push each.
    let mut merges: Vec<(i64, u32)> = Vec::new();
    for number in 1_001..1_001 + PULL_REQUESTS {
        let start = rng.time();
        let end = close(start, rng.duration(20.0 * 3_600.0, 1.2), 0.02, rng);
        let merged = rng.chance(0.88);
        let review = rng.duration(3.0 * 3_600.0, 1.0);
        let first_review = (rng.chance(0.85) && end.is_none_or(|e| start + review < e)).then_some(start + review);
        let title = if rng.chance(0.01) { u8::MAX } else { rng.below(TITLES.len() as u64) as u8 };
        let hotfix = rng.chance(0.02);
        if let (true, Some(end)) = (merged, end) {
            merges.push((end, number));
        }
        let outcome = if merged { "merged" } else { "closed" };
        spans.push(Span {
            repo,
            number,
            start,
            end,
            outcome,
            detail: Detail::PullRequest { first_review, title, hotfix },
        });
    }
    merges.sort();
    let mut before = "0".repeat(40);
    for (at, number) in &merges {
        let after = sha(repo, MERGE_SHA, *number);
        pushes.push(Push { repo, before: std::mem::replace(&mut before, after.clone()), after, at: *at, pr: *number });
    }

    let mut builds = Vec::new();
    for number in 1..=BUILDS {
        let start = rng.time();
        let end = close(start, rng.duration(6.0 * 60.0, 0.6), 0.003, rng);
        builds.push((number, start));
        spans.push(Span { repo, number, start, end, outcome: ci_outcome(rng), detail: Detail::Build });
    }
    for number in 1..=JOBS {
        let (build, build_start) = builds[rng.below(builds.len() as u64) as usize];
        let start = build_start + rng.duration(20.0, 1.0);
        let end = close(start, rng.duration(3.0 * 60.0, 0.8), 0.003, rng);
        let outcome = ci_outcome(rng);
        spans.push(Span { repo, number, start, end, outcome, detail: Detail::Job { build, build_start } });
    }

    // Deploys of the latest merge: mostly production, some staging. A
    // successful deploy links the pull requests merged since the previous
    // successful deploy to the same environment (its change set).
    let mut starts: Vec<i64> = (0..DEPLOYS).map(|_| rng.time()).collect();
    starts.sort();
    let mut shipped_upto = [0usize, 0usize]; // per environment: merges already shipped
    let mut production_successes: Vec<(i64, String)> = Vec::new();
    for (i, start) in starts.into_iter().enumerate() {
        let id = repo as u32 * 1_000 + i as u32;
        let production = rng.chance(0.85);
        let end = close(start, rng.duration(4.0 * 60.0, 0.7), 0.002, rng);
        let success = rng.chance(0.88);
        let merged_before = merges.partition_point(|(at, _)| *at < start);
        let sha = match merged_before {
            0 => sha(repo, UNKNOWN_SHA, id),
            n => sha(repo, MERGE_SHA, merges[n - 1].1),
        };
        let env = usize::from(!production);
        let mut shipped = Vec::new();
        if success && end.is_some() && merged_before > shipped_upto[env] {
            shipped = merges[shipped_upto[env]..merged_before].iter().map(|(_, n)| *n).collect();
            shipped_upto[env] = merged_before;
        }
        if let (true, true, Some(end)) = (production, success, end) {
            production_successes.push((end, sha.clone()));
        }
        let outcome = if success { "success" } else { "failure" };
        spans.push(Span {
            repo,
            number: 0,
            start,
            end,
            outcome,
            detail: Detail::Deploy { id, production, sha, shipped },
        });
    }

    for number in 1..=INCIDENTS {
        let start = rng.time();
        let end = close(start, rng.duration(2.0 * 3_600.0, 1.0), 0.01, rng);
        let root_cause = rng
            .chance(0.4)
            .then(|| production_successes.iter().rev().find(|(at, _)| *at < start))
            .flatten()
            .map(|(_, sha)| sha[..12].to_string());
        spans.push(Span {
            repo,
            number: 5_000 + number,
            start,
            end,
            outcome: "completed",
            detail: Detail::Incident { root_cause },
        });
    }
}

fn ci_outcome(rng: &mut Rng) -> &'static str {
    match rng.below(100) {
        0..82 => "success",
        82..95 => "failure",
        _ => "cancelled",
    }
}

struct Push {
    repo: usize,
    before: String,
    after: String,
    at: i64,
    pr: u32,
}

fn rfc3339(nanos: i64) -> String {
    Timestamp(nanos).to_rfc3339()
}

/// The attributes, links and trace references the GitHub source gives such a span.
fn render(span: &Span) -> (String, String, String) {
    let repo = repo_name(span.repo);
    let name = format!("repo-{}", span.repo);
    let mut attributes = json!({
        "vcs.provider.name": "github",
        "vcs.repository.name": name,
        "valuestream.repo": repo,
        "vcs.repository.url.full": format!("https://github.com/{repo}"),
    });
    let object = attributes.as_object_mut().expect("object");
    let mut put = |name: &str, value: Value| {
        object.insert(name.to_string(), value);
    };
    let lower = repo.to_ascii_lowercase();
    let mut links = Vec::new();
    let mut trace_refs = vec![format!("github:{lower}:{}", span.kind())];
    match &span.detail {
        Detail::Issue | Detail::Incident { .. } => {
            let incident = matches!(span.detail, Detail::Incident { .. });
            put("valuestream.issue.number", json!(span.number));
            put("valuestream.title", json!(if incident { "Checkout returns 502 for some users" } else { TITLES[0] }));
            put("valuestream.author", json!(format!("dev-{}", span.number % 40)));
            put("valuestream.url", json!(format!("https://github.com/{repo}/issues/{}", span.number)));
            put("valuestream.labels", json!(if incident { vec!["incident"] } else { vec!["bug"] }));
            put("valuestream.github.action", json!(if span.end.is_some() { "closed" } else { "opened" }));
            if span.end.is_some() {
                put("valuestream.state_reason", json!(span.outcome));
            }
            if let Detail::Incident { root_cause: Some(root) } = &span.detail {
                put("valuestream.root_cause", json!(root));
            }
            trace_refs = vec![format!("github:{lower}:issue:{}", span.number), format!("#{}", span.number)];
        }
        Detail::PullRequest { first_review, title, hotfix } => {
            let merged = span.end.is_some() && span.outcome == "merged";
            let head = sha(span.repo, HEAD_SHA, span.number);
            let title = match *title {
                u8::MAX => format!("Revert \"{}\"", TITLES[1]),
                i => TITLES[i as usize].to_string(),
            };
            let branch = format!("feature/{}-change", span.number);
            put("vcs.change.id", json!(span.number.to_string()));
            put(
                "vcs.change.state",
                json!(if merged {
                    "merged"
                } else if span.end.is_some() {
                    "closed"
                } else {
                    "open"
                }),
            );
            put("vcs.change.title", json!(title));
            put("vcs.ref.head.name", json!(branch));
            put("vcs.ref.head.revision", json!(head));
            put("vcs.ref.base.name", json!("main"));
            put("vcs.ref.base.revision", json!(sha(span.repo, BUILD_SHA, span.number)));
            put("valuestream.author", json!(format!("dev-{}", span.number % 40)));
            put("valuestream.url", json!(format!("https://github.com/{repo}/pull/{}", span.number)));
            put("valuestream.labels", json!(if *hotfix { vec!["hotfix"] } else { vec!["enhancement"] }));
            put("valuestream.github.action", json!(if span.end.is_some() { "closed" } else { "opened" }));
            put("valuestream.additions", json!(span.number % 300));
            put("valuestream.deletions", json!(span.number % 120));
            put("valuestream.changed_files", json!(span.number % 12));
            if let Some(at) = first_review {
                put("valuestream.first_review_at", json!(rfc3339(*at)));
            }
            trace_refs.push(format!("github:{lower}:pull_request:{}", span.number));
            trace_refs.push(format!("github:{lower}:branch:{branch}"));
            trace_refs.push(format!("github:{lower}:sha:{head}"));
            if let (true, Some(end)) = (merged, span.end) {
                let merge = sha(span.repo, MERGE_SHA, span.number);
                put("valuestream.merge_commit_sha", json!(merge));
                put("valuestream.merged_at", json!(rfc3339(end)));
                trace_refs.push(format!("github:{lower}:sha:{merge}"));
            }
        }
        Detail::Build | Detail::Job { .. } => {
            let build = match span.detail {
                Detail::Job { build, .. } => build,
                _ => span.number,
            };
            let run = run_id(span.repo, build);
            put("cicd.pipeline.name", json!("CI"));
            put("cicd.pipeline.run.id", json!(run.to_string()));
            put("vcs.ref.head.name", json!("main"));
            put("vcs.ref.head.revision", json!(sha(span.repo, BUILD_SHA, build)));
            put("valuestream.run_attempt", json!(1));
            put("valuestream.url", json!(format!("https://github.com/{repo}/actions/runs/{run}")));
            if let Detail::Job { .. } = span.detail {
                put("cicd.pipeline.task.name", json!(["test", "lint", "build"][span.number as usize % 3]));
                put("cicd.pipeline.task.run.id", json!((run + 50_000_000).to_string()));
                put("valuestream.runner", json!("GitHub Actions 2"));
            } else {
                put("valuestream.run_number", json!(build));
                put("valuestream.trigger", json!("push"));
            }
            if span.end.is_some() {
                put("cicd.pipeline.result", json!(span.outcome));
            }
        }
        Detail::Deploy { id, production, sha, shipped } => {
            let environment = if *production { "production" } else { "staging" };
            put("deployment.environment.name", json!(environment));
            put("deployment.id", json!(id.to_string()));
            put("vcs.ref.head.revision", json!(sha));
            put("vcs.ref.head.name", json!("main"));
            put("valuestream.task", json!("deploy"));
            if span.end.is_some() {
                put("valuestream.deployment.state", json!(span.outcome));
            }
            put("valuestream.url", json!(format!("https://github.com/{repo}/deployments/{id}")));
            trace_refs.push(format!("github:{lower}:deployed:{sha}"));
            links = shipped.iter().map(|n| format!("github:{repo}:pull_request:{n}")).collect();
        }
    }
    (
        attributes.to_string(),
        serde_json::to_string(&links).expect("links"),
        serde_json::to_string(&trace_refs).expect("refs"),
    )
}

/// Generates the database at `path` (through `path.partial`, renamed when complete).
async fn generate(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let partial = path.with_extension("partial");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    let url = format!("sqlite://{}", partial.display());
    let store = Store::open(&url).await?;
    store.migrate().await?;
    store.close().await;

    let started = Instant::now();
    let mut rng = Rng(SEED);
    let mut spans = Vec::with_capacity(REPOS * 5_000);
    let mut pushes = Vec::new();
    for repo in 0..REPOS {
        generate_repo(repo, &mut rng, &mut spans, &mut pushes);
    }
    // Rows in the order webhooks would have created them.
    spans.sort_by_key(|s| (s.start, s.repo, s.number));
    pushes.sort_by_key(|p| (p.at, p.repo));
    println!("generated {} spans and {} pushes in memory in {:.1?}", spans.len(), pushes.len(), started.elapsed());

    let mut conn = SqliteConnectOptions::from_str(&url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .pragma("cache_size", "-524288")
        .connect()
        .await?;
    let mut done = 0;
    for batch in spans.chunks(TRANSACTION) {
        let mut tx = conn.begin().await?;
        for chunk in batch.chunks(CHUNK) {
            insert_spans(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        done += batch.len();
        println!("  {done} spans in {:.1?}", started.elapsed());
    }
    let mut tx = conn.begin().await?;
    for chunk in pushes.chunks(CHUNK) {
        insert_pushes(&mut tx, chunk).await?;
    }
    // The metrics columns and change sets are derived by the store's own
    // one-time backfill, as for a store written before they existed.
    sqlx::query("INSERT INTO pending_tasks (name) VALUES ('backfill_metrics_columns')").execute(&mut *tx).await?;
    tx.commit().await?;
    conn.close().await?;
    let store = Store::open(&url).await?;
    store.migrate().await?;
    store.close().await;
    println!("  metrics columns and change sets in {:.1?}", started.elapsed());
    let mut conn = SqliteConnectOptions::from_str(&url)?.connect().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    conn.close().await?;
    std::fs::rename(&partial, path)?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    println!("generated {} in {:.1?}", path.display(), started.elapsed());
    Ok(())
}

async fn insert_spans(conn: &mut SqliteConnection, chunk: &[Span]) -> Result<(), sqlx::Error> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO spans (key, source, kind, name, repo, project, start_ns, end_ns, state, outcome, trace_id, \
         span_id, parent_key, parent_span_id, attributes, links, trace_refs, parent_refs, link_refs, environment) ",
    );
    query.push_values(chunk, |mut row, span| {
        let key = span.key();
        let (attributes, links, trace_refs) = render(span);
        let (parent_key, trace_root) = match span.detail {
            Detail::Job { build, build_start } => {
                let parent = Span {
                    repo: span.repo,
                    number: build,
                    start: build_start,
                    end: None,
                    outcome: "",
                    detail: Detail::Build,
                };
                let parent_key = parent.key();
                (Some(parent_key.clone()), parent_key)
            }
            _ => (None, key.clone()),
        };
        let name = match &span.detail {
            Detail::Issue | Detail::Incident { .. } | Detail::PullRequest { .. } => {
                format!("{} repo-{}#{}", span.kind(), span.repo, span.number)
            }
            Detail::Build => "RUN CI".to_string(),
            Detail::Job { .. } => "test".to_string(),
            Detail::Deploy { production: true, .. } => "deploy production".to_string(),
            Detail::Deploy { .. } => "deploy staging".to_string(),
        };
        let environment = match span.detail {
            Detail::Deploy { production, .. } => Some(if production { "production" } else { "staging" }),
            _ => None,
        };
        row.push_bind(key.clone())
            .push_bind("github")
            .push_bind(span.kind())
            .push_bind(name)
            .push_bind(repo_name(span.repo))
            .push_bind(format!("repo-{}", span.repo))
            .push_bind(span.start)
            .push_bind(span.end)
            .push_bind(if span.end.is_some() { "closed" } else { "open" })
            .push_bind(span.end.map(|_| span.outcome))
            .push_bind(ids::trace_id(&trace_root))
            .push_bind(ids::span_id(&key))
            .push_bind(parent_key.as_deref().map(ids::span_id))
            .push_bind(parent_key)
            .push_bind(attributes)
            .push_bind(links)
            .push_bind(trace_refs)
            .push_bind("[]")
            .push_bind("[]")
            .push_bind(environment);
    });
    query.build().execute(&mut *conn).await?;
    Ok(())
}

async fn insert_pushes(conn: &mut SqliteConnection, chunk: &[Push]) -> Result<(), sqlx::Error> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO pushes (source, repo, after_sha, before_sha, branch, pushed_at, delivery_id) ",
    );
    query.push_values(chunk, |mut row, push| {
        row.push_bind("github")
            .push_bind(repo_name(push.repo))
            .push_bind(push.after.clone())
            .push_bind(push.before.clone())
            .push_bind("main")
            .push_bind(push.at)
            .push_bind(format!("github:{:032x}", mix(push.at as u64 ^ push.repo as u64)));
    });
    query.build().execute(&mut *conn).await?;
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO push_commits (source, repo, sha, push_before, push_after, position, committed_at, message, \
         pull_request) ",
    );
    query.push_values(chunk, |mut row, push| {
        row.push_bind("github")
            .push_bind(repo_name(push.repo))
            .push_bind(push.after.clone())
            .push_bind(push.before.clone())
            .push_bind(push.after.clone())
            .push_bind(0i64)
            .push_bind(push.at)
            .push_bind(format!("Merge pull request #{} from org/feature/{}-change", push.pr, push.pr))
            .push_bind(push.pr.to_string());
    });
    query.build().execute(&mut *conn).await?;
    Ok(())
}

/// Row counts of the generated database, printed with every run.
async fn describe(store_url: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = SqliteConnectOptions::from_str(store_url)?.read_only(true).connect().await?;
    let rows = sqlx::query("SELECT kind, COUNT(*), SUM(end_ns IS NULL) FROM spans GROUP BY kind ORDER BY kind")
        .fetch_all(&mut conn)
        .await?;
    let mut total = (0i64, 0i64);
    for row in &rows {
        let (kind, count, open): (String, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        println!("  {kind:<13} {count:>9} spans, {open:>6} open");
        total = (total.0 + count, total.1 + open);
    }
    for table in ["pushes", "push_commits"] {
        let count: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await?
            .try_get(0)?;
        println!("  {table:<13} {count:>9} rows");
    }
    conn.close().await?;
    let size = std::fs::metadata(path)?.len();
    println!(
        "  total         {:>9} spans ({} closed, {} open); database {:.0} MB",
        total.0,
        total.0 - total.1,
        total.1,
        size as f64 / 1e6
    );
    Ok(())
}

fn database() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(DB_NAME);
    if !path.exists() {
        println!("generating {} (once; later runs reuse it)", path.display());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(generate(&path)).expect("generate the bench database");
    }
    path
}

fn bench(c: &mut Criterion) {
    let path = database();
    let url = format!("sqlite://{}", path.display());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(describe(&url, &path)).expect("describe the bench database");
    let store = rt.block_on(Store::open(&url)).expect("open the bench database");

    let until = Timestamp(history_end());
    let windows = [
        ("30d", Window { since: Timestamp(history_end() - 30 * DAY), until }),
        ("365d", Window { since: Timestamp(history_start()), until }),
    ];
    let group_bys: [&[&str]; 2] = [&["source", "kind"], &["repo", "kind"]];
    let scope = SpanScope::default();

    // Flat sampling: every sample runs the case the same number of times (once
    // while a case takes seconds); 10 samples is criterion's minimum.
    let mut group = c.benchmark_group("metrics");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(5));
    for (label, window) in windows {
        for group_by in group_bys {
            let group_by: Vec<String> = group_by.iter().map(|s| s.to_string()).collect();
            let mut last = Value::Null;
            group.bench_function(format!("summary/{}/{label}", group_by.join(",")), |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let value = metrics::summary(&store, black_box(window), &group_by, &scope);
                        last = rt.block_on(value).expect("summary");
                    }
                    started.elapsed()
                })
            });
            if let Some(groups) = last["groups"].as_array() {
                let closed: u64 = groups.iter().filter_map(|g| g["closed"].as_u64()).sum();
                let open: u64 = groups.iter().filter_map(|g| g["open"].as_u64()).sum();
                println!("  {} groups, {closed} closed, {open} open", groups.len());
            }
        }
        let mut last = Value::Null;
        group.bench_function(format!("dora/{label}"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    last = rt.block_on(metrics::dora(&store, black_box(window), &DoraFilter::default())).expect("dora");
                }
                started.elapsed()
            })
        });
        if !last.is_null() {
            println!(
                "  {} deployments, {} changes ({} deploys unmatched), {} failed, {} rework, {} incidents closed",
                last["deployment_frequency"]["deployments"],
                last["lead_time_for_changes"]["changes"],
                last["lead_time_for_changes"]["unmatched_deploys"],
                last["change_failure_rate"]["failed"],
                last["deployment_rework_rate"]["rework"],
                last["time_to_restore"]["incidents"],
            );
        }
        // The dashboard's trend charts: the same DORA object per calendar
        // bucket, in one call (its statements do not multiply with buckets).
        for (name, bucket) in [("week", metrics::Bucket::Week), ("month", metrics::Bucket::Month)] {
            let cuts = metrics::buckets(window, bucket).expect("buckets");
            let all = DoraFilter::default();
            let mut series = 0;
            group.bench_function(format!("dora/{label}/bucket={name}"), |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let call = metrics::dora_series(&store, black_box(window), &all, &cuts);
                        let value = rt.block_on(call).expect("dora series");
                        series = value["series"].as_array().map_or(0, Vec::len);
                    }
                    started.elapsed()
                })
            });
            println!("  {series} buckets");
        }
        // The Distributions page's percentile trend: the summary per kind,
        // per calendar bucket, in one call (one statement whatever the buckets).
        for (name, bucket) in [("day", metrics::Bucket::Day), ("week", metrics::Bucket::Week)] {
            let cuts = metrics::buckets(window, bucket).expect("buckets");
            let by_kind = vec!["kind".to_string()];
            let mut series = 0;
            group.bench_function(format!("summary/kind/{label}/bucket={name}"), |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let call = metrics::summary_series(&store, black_box(window), &by_kind, &scope, false, &cuts);
                        let value = rt.block_on(call).expect("summary series");
                        series = value["series"].as_array().map_or(0, Vec::len);
                    }
                    started.elapsed()
                })
            });
            println!("  {series} buckets");
        }
        // The drill-down drawer: the rows behind each count.
        for key in metrics::ItemKey::ALL {
            let all = DoraFilter::default();
            let mut rows = 0;
            group.bench_function(format!("dora/items/{}/{label}", key.name()), |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let call = metrics::dora_items(&store, black_box(window), &all, key, None);
                        rows = rt.block_on(call).expect("dora items").len();
                    }
                    started.elapsed()
                })
            });
            println!("  {rows} rows");
        }
        // What the Delivery page asks when it opens, one call after the
        // other (the browser sends them at once): the window by week or
        // month, the previous period, and meta.
        let bucket = if label == "30d" { metrics::Bucket::Week } else { metrics::Bucket::Month };
        let cuts = metrics::buckets(window, bucket).expect("buckets");
        let length = window.until.nanos() - window.since.nanos();
        let previous = Window { since: Timestamp(window.since.nanos() - length), until: window.since };
        group.bench_function(format!("delivery-page/{label}"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    let all = DoraFilter::default();
                    rt.block_on(async {
                        metrics::dora_series(&store, black_box(window), &all, &cuts).await.expect("series");
                        metrics::dora(&store, previous, &all).await.expect("previous");
                        store.meta().await.expect("meta");
                        // Recent production deploys: the newest rows of two keys.
                        for key in [metrics::ItemKey::Deployments, metrics::ItemKey::Failures] {
                            metrics::dora_items_page(&store, window, &all, key, None, Some(10)).await.expect("recent");
                        }
                    });
                }
                started.elapsed()
            })
        });
    }
    // The dashboard's filter lists and coverage strip, asked on every page.
    let mut meta = None;
    group.bench_function("meta", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                meta = Some(rt.block_on(store.meta()).expect("meta"));
            }
            started.elapsed()
        })
    });
    if let Some(meta) = meta {
        println!("  {} repos, {} spans waiting for a parent", meta.repos.len(), meta.waiting_references);
    }
    group.finish();
    rt.block_on(store.close());
}

criterion_group!(benches, bench);
criterion_main!(benches);
