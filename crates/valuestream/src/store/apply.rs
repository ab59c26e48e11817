//! Applying deliveries: record the delivery, record its span events, refold the
//! touched spans, resolve parents and trace ids, and queue finished spans for
//! export — all inside the caller's transaction, so nothing is half-applied.

use super::changes;
use super::columns::{PullRequestTimes, ensure_group, store_links, store_rework, update_pull_request_times};
use super::db::{Db, query};
use super::expiry::ExpiryRule;
use super::outbox::{self, ExportLink, ExportSpan};
use super::query::{ApiSpan, load_span};
use super::{Backend, Store, StoreError, values_list};
use sqlx::{Connection, Row};
use std::collections::{BTreeSet, HashSet};
use valuestream_core::ids;
use valuestream_core::settle::{Settled, Step, Stored, pull_request_times, settle, step};
use valuestream_core::sources::Parsed;
use valuestream_core::span::{Folding, SpanEvent, SpanState};
use valuestream_core::time::Timestamp;
use valuestream_core::vocab::{attr, kind, outcome, state};

/// The PostgreSQL advisory lock that serializes writers across replicas ("VSWRITER").
pub(super) const WRITER_LOCK: i64 = 0x5653_5752_4954_4552;

/// How far up a parent chain we walk before calling it a cycle.
const MAX_DEPTH: usize = 64;

/// A delivery that passed authentication and parsing, ready to be stored.
#[derive(Clone, Debug)]
pub struct Applicable {
    /// The store's id: `{source}:{sender's id or content hash}`.
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub received_at: Timestamp,
    pub headers: Vec<(String, String)>,
    /// The body as stored: compressed ([`compress_body`]).
    pub body: Vec<u8>,
    pub parsed: Parsed,
}

/// How stored bodies are encoded (`deliveries.body_encoding`): zstd.
pub const BODY_ENCODING: &str = "zstd";
/// zstd's level for bodies: its default, about 5 times smaller for webhook JSON.
const BODY_LEVEL: i32 = 3;

/// A raw body as the store keeps it ([`BODY_ENCODING`]). Done where the
/// delivery is parsed, not in the single writer, so it runs in parallel.
/// Each thread keeps one compression context: a new one per body costs
/// more than the compression (its tables are freshly mapped and zeroed).
pub fn compress_body(body: &[u8]) -> Vec<u8> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with_borrow_mut(|compressor| {
        let compressor = match compressor {
            Some(compressor) => compressor,
            None => compressor.insert(zstd::bulk::Compressor::new(BODY_LEVEL).expect("a zstd context")),
        };
        compressor.compress(body).expect("compressing into memory does not fail")
    })
}

/// A stored body as it came, given its `body_encoding`.
pub fn decode_body(encoding: &str, stored: &[u8]) -> std::io::Result<Vec<u8>> {
    match encoding {
        "identity" => Ok(stored.to_vec()),
        BODY_ENCODING => zstd::stream::decode_all(stored),
        other => Err(std::io::Error::other(format!("unknown body encoding {other:?}"))),
    }
}

/// What happened to a delivery (the webhook's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Accepted,
    Duplicate,
    Ignored,
    Pong,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Accepted => "accepted",
            AckStatus::Duplicate => "duplicate",
            AckStatus::Ignored => "ignored",
            AckStatus::Pong => "pong",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Ack {
    pub status: AckStatus,
    pub delivery_id: String,
    pub spans: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Spans this delivery started or ended (for the Prometheus counters).
    #[serde(skip)]
    pub transitions: Vec<Transition>,
}

/// A span that started (first seen open, or reopened) or ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub source: String,
    pub kind: String,
    /// `None` for a start; the outcome and duration in seconds for an end.
    pub ended: Option<(String, f64)>,
}

impl Store {
    /// Applies `items` in order in one transaction (group commit) and returns
    /// one answer per item plus how many spans were queued for export. Either
    /// everything is committed or nothing is; after a failure the connection
    /// is closed, never reused (`WriteConnection`).
    pub async fn apply_batch(&self, items: &[Applicable], export: bool) -> Result<(Vec<Ack>, usize), StoreError> {
        self.apply_group(items, export, Record::New).await
    }

    /// [`Store::apply_batch`] for deliveries the store already keeps
    /// (`valuestream rebuild`): their rows stay as they are (only their
    /// status follows the new parse), everything derived from them is
    /// written again.
    pub async fn rederive_batch(&self, items: &[Applicable], export: bool) -> Result<(Vec<Ack>, usize), StoreError> {
        self.apply_group(items, export, Record::Kept).await
    }

    async fn apply_group(
        &self,
        items: &[Applicable],
        export: bool,
        record: Record,
    ) -> Result<(Vec<Ack>, usize), StoreError> {
        if let Some(direct) = &self.direct {
            // The whole group on one thread, against SQLite directly (db.rs).
            // The runtime's other tasks must go on meanwhile (one of them may
            // hold a pooled transaction the writer waits for): told first,
            // a multi-threaded runtime moves them to its other threads; a
            // single-threaded one (tests) gets the group off its thread.
            if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                return tokio::task::block_in_place(|| {
                    direct.transaction(&self.faults, |conn| self.apply_direct(conn, items, export, record))
                });
            }
            let (store, direct, items) = (self.clone(), direct.clone(), items.to_vec());
            let joined = tokio::task::spawn_blocking(move || {
                direct.transaction(&store.faults, |conn| store.apply_direct(conn, &items, export, record))
            })
            .await;
            return match joined {
                Ok(applied) => applied,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => Err(StoreError::Sqlite(format!("the writer's thread stopped: {error}"))),
            };
        }
        let mut conn = self.write_connection().await?;
        let mut tx = conn.begin().await?;
        if self.backend == Backend::Postgres {
            // Replicas sharing one PostgreSQL apply one group at a time, as the
            // single writer does within a process: a span's refold then always
            // sees every committed event, and parent resolution sees settled rows.
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *tx).await?;
        }
        let applied = self.apply_items(&mut Db::Any(&mut tx), items, export, record).await?;
        self.faults.before_commit(&mut tx).await?;
        tx.commit().await?;
        conn.release();
        Ok(applied)
    }

    /// [`Store::apply_group`]'s work on the SQLite writer's own connection.
    /// Its statements never wait, so the future completes at its first poll.
    fn apply_direct(
        &self,
        conn: &mut rusqlite::Connection,
        items: &[Applicable],
        export: bool,
        record: Record,
    ) -> Result<(Vec<Ack>, usize), StoreError> {
        use futures::FutureExt;
        self.apply_items(&mut Db::Direct(conn), items, export, record)
            .now_or_never()
            .expect("statements on the SQLite writer's own connection never wait")
    }

    /// Applies `items` in order inside the caller's transaction.
    async fn apply_items(
        &self,
        conn: &mut Db<'_>,
        items: &[Applicable],
        export: bool,
        record: Record,
    ) -> Result<(Vec<Ack>, usize), StoreError> {
        self.faults.maybe_panic();
        let mut acks = Vec::with_capacity(items.len());
        let mut exported = 0;
        for item in items {
            let expiry = ExpiryRule { age: self.expire_open_after, now: item.received_at };
            let (ack, queued) = apply_one(conn, item, record, export, &self.production, expiry).await?;
            acks.push(ack);
            exported += queued;
        }
        // A `serve` left running during a rebuild (here or on a replica)
        // must not write into what the rebuild is re-deriving: the group is
        // rolled back. Asked after the writes, under the write lock (a first
        // read would make SQLite's later upgrade to a writer fail when
        // another connection wrote meanwhile, instead of waiting).
        if record == Record::New && super::rebuild::under_way(conn).await? {
            return Err(StoreError::RebuildUnderway);
        }
        Ok((acks, exported))
    }

    /// Whether a write of a delivery's size commits now: a probe row is
    /// inserted and deleted in one transaction under the writer lock. The
    /// writer runs it after a failed commit to learn when the store takes
    /// writes again (a full disk made room, a lock released).
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        /// A typical delivery's body, in bytes.
        const PROBE_BYTES: usize = 16 * 1024;
        let mut conn = self.write_connection().await?;
        let mut tx = conn.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO deliveries (id, source, event_type, received_at, status, headers, body)
             VALUES ('valuestream:write-probe', 'valuestream', 'probe', 0, 'probe', '{}', $1)",
        )
        .bind(vec![0u8; PROBE_BYTES])
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deliveries WHERE id = 'valuestream:write-probe'").execute(&mut *tx).await?;
        tx.commit().await?;
        conn.release();
        Ok(())
    }

    /// Runs the one-time tasks later migrations left in `pending_tasks`, in
    /// one transaction under the writer lock, so a replica starting at the
    /// same time waits and then finds nothing left to do.
    pub(super) async fn run_pending_tasks(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *tx).await?;
        }
        let mut tasks = Vec::new();
        for row in sqlx::query("SELECT name FROM pending_tasks ORDER BY name").fetch_all(&mut *tx).await? {
            tasks.push(row.try_get::<String, _>(0)?);
        }
        for task in &tasks {
            match task.as_str() {
                // Not a migration's: `valuestream rebuild` ends it (serve refuses to start meanwhile).
                super::rebuild::REBUILD_TASK => continue,
                // The derivation below fills the columns too.
                "backfill_metrics_columns" if tasks.iter().any(|t| t == DERIVE_TASK) => {}
                "backfill_metrics_columns" | DERIVE_TASK => {
                    let stored: i64 =
                        sqlx::query("SELECT COUNT(*) FROM spans").fetch_one(&mut *tx).await?.try_get(0)?;
                    if stored > 0 {
                        tracing::info!(
                            spans = stored,
                            "Filling the metrics columns and change sets of stored spans, once after an upgrade \
                             (about 4,000 spans a second)."
                        );
                    }
                    let spans = super::columns::backfill(&mut Db::Any(&mut tx)).await?;
                    let repos = derive_all(&mut Db::Any(&mut tx), &self.production).await?;
                    if spans > 0 {
                        tracing::info!(
                            spans,
                            repos,
                            "Filled the metrics columns, change sets and incident causes of stored spans."
                        );
                    }
                }
                other => return Err(StoreError::Corrupt(format!("unknown pending task {other:?}"))),
            }
            sqlx::query("DELETE FROM pending_tasks WHERE name = $1").bind(task).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The one-time task that derives change sets, incident causes and the
/// `after_incident` flags for what is already stored (migration 0005).
const DERIVE_TASK: &str = "derive_change_sets";

/// Repositories between progress lines when deriving everything.
const DERIVE_PROGRESS: usize = 100;

/// Derives the change sets and incident causes of every repository, then
/// every span's `after_incident` flag. Returns the number of repositories.
async fn derive_all(conn: &mut Db<'_>, production: &[String]) -> Result<usize, StoreError> {
    let repos = changes::repositories(conn).await?;
    for (done, repo) in repos.iter().enumerate() {
        let derived = changes::recompute(conn, repo, production).await?;
        // Rows still settling in the outbox survive a restart: what this
        // moved is refreshed, as a delivery's moves are.
        let moved = follow_up(conn, &derived).await?;
        let now = Timestamp::now();
        refresh_waiting(conn, &moved, now).await?;
        if (done + 1) % DERIVE_PROGRESS == 0 {
            tracing::info!(repos = done + 1, of = repos.len(), "Derived change sets and incident causes so far.");
        }
    }
    query("UPDATE spans SET after_incident = 0 WHERE after_incident <> 0").execute(&mut *conn).await?;
    let sql = format!("SELECT key FROM spans WHERE kind = '{}'", kind::INCIDENT);
    let mut queue: Vec<String> = Vec::new();
    for row in query(sql).fetch_all(&mut *conn).await? {
        queue.push(row.try_get(0)?);
    }
    let mut visited = HashSet::new();
    while let Some(parent) = queue.pop() {
        if !visited.insert(parent.clone()) {
            continue;
        }
        for row in query("SELECT key FROM spans WHERE parent_key = $1").bind(&parent).fetch_all(&mut *conn).await? {
            let child: String = row.try_get(0)?;
            query("UPDATE spans SET after_incident = 1 WHERE key = $1").bind(&child).execute(&mut *conn).await?;
            queue.push(child);
        }
    }
    changes::refresh_pr_rework(conn, None).await?;
    Ok(repos.len())
}

/// Whether a delivery is new to the store or already kept in it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Record {
    /// Insert its row; an id already stored is a duplicate, applied no further.
    New,
    /// Its row is stored (a rebuild): update its status, derive again.
    Kept,
}

async fn apply_one(
    conn: &mut Db<'_>,
    item: &Applicable,
    record: Record,
    export: bool,
    production: &[String],
    expiry: ExpiryRule,
) -> Result<(Ack, usize), StoreError> {
    let (status, reason) = match &item.parsed {
        Parsed::Pong => (AckStatus::Pong, None),
        Parsed::Ignored { reason } => (AckStatus::Ignored, Some(reason.clone())),
        Parsed::Spans(_) | Parsed::Push(_) => (AckStatus::Accepted, None),
    };
    if record == Record::Kept {
        // Written only when it changed: rewriting a row rewrites its body too.
        query("UPDATE deliveries SET status = $1 WHERE id = $2 AND status <> $1")
            .bind(status.as_str())
            .bind(&item.id)
            .execute(&mut *conn)
            .await?;
    } else if !insert_delivery(conn, item, status).await? {
        let ack = Ack {
            status: AckStatus::Duplicate,
            delivery_id: item.id.clone(),
            spans: 0,
            reason: None,
            transitions: Vec::new(),
        };
        return Ok((ack, 0));
    }
    let (spans, queued, transitions) = match &item.parsed {
        Parsed::Spans(events) => {
            apply_events(conn, &item.id, item.received_at, events, export, production, expiry).await?
        }
        Parsed::Push(push) if !push.default_branch => {
            record_branch_push(conn, &item.source, push).await?;
            (0, 0, Vec::new())
        }
        Parsed::Push(push) => {
            record_push(conn, &item.source, &item.id, push).await?;
            let derived = changes::recompute(conn, &push.repo, production).await?;
            let moved = follow_up(conn, &derived).await?;
            let queued = if export { refresh_waiting(conn, &moved, item.received_at).await? } else { 0 };
            (0, queued, Vec::new())
        }
        Parsed::Pong | Parsed::Ignored { .. } => (0, 0, Vec::new()),
    };
    Ok((Ack { status, delivery_id: item.id.clone(), spans, reason, transitions }, queued))
}

/// Inserts `item`'s row; false when a delivery of its id is already stored.
async fn insert_delivery(conn: &mut Db<'_>, item: &Applicable, status: AckStatus) -> Result<bool, StoreError> {
    let headers = serde_json::to_string(&item.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>())
        .expect("headers serialize");
    let inserted = query(
        "INSERT INTO deliveries (id, source, event_type, received_at, status, headers, body, body_encoding)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&item.id)
    .bind(&item.source)
    .bind(&item.event_type)
    .bind(item.received_at.nanos())
    .bind(status.as_str())
    .bind(headers)
    .bind(item.body.as_slice())
    .bind(BODY_ENCODING)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Records `events` and brings every affected span up to date. Returns the
/// number of spans touched and the number queued for export. `received_at`
/// stamps the outbox rows it writes: the settle delay runs from it.
///
/// Most deliveries update a span whose references did not change; they cost
/// a handful of statements. Parents are re-resolved only for new spans, spans
/// whose references changed, and spans that were waiting for a new one.
async fn apply_events(
    conn: &mut Db<'_>,
    delivery_id: &str,
    received_at: Timestamp,
    events: &[SpanEvent],
    export: bool,
    production: &[String],
    expiry: ExpiryRule,
) -> Result<(usize, usize, Vec<Transition>), StoreError> {
    // Each event as stored: stamped with its delivery.
    let events: Vec<SpanEvent> =
        events.iter().map(|event| SpanEvent { delivery_id: delivery_id.to_string(), ..event.clone() }).collect();
    for (seq, event) in events.iter().enumerate() {
        query(
            "INSERT INTO span_events (span_key, delivery_id, seq, event) VALUES ($1, $2, $3, $4)
             ON CONFLICT (span_key, delivery_id, seq) DO NOTHING",
        )
        .bind(&event.key)
        .bind(delivery_id)
        .bind(seq as i64)
        .bind(serde_json::to_string(&event).expect("span events serialize"))
        .execute(&mut *conn)
        .await?;
    }

    let mut touched: Vec<String> = Vec::new();
    for event in &events {
        if !touched.contains(&event.key) {
            touched.push(event.key.clone());
        }
    }
    let mut to_resolve: BTreeSet<String> = BTreeSet::new();
    let mut to_relink: BTreeSet<String> = BTreeSet::new();
    let mut to_retrace: BTreeSet<String> = BTreeSet::new();
    let mut to_derive: BTreeSet<String> = BTreeSet::new();
    let mut steps = Vec::with_capacity(touched.len());
    let mut materialized = Vec::with_capacity(touched.len());
    for key in &touched {
        let (before, folding) = match load_previous(conn, key).await? {
            Some((before, folding)) => (Some(before), folding),
            None => (None, None),
        };
        let new: Vec<&SpanEvent> = events.iter().filter(|event| &event.key == key).collect();
        // A key whose events are all tentative has no span (yet): leave it out.
        let Some(refolded) = refold(conn, key, before.as_ref(), folding, &new, expiry).await? else { continue };
        let settled = &refolded.settled;
        materialized.push(key.clone());
        if settled.parent_refs_changed {
            to_resolve.insert(key.clone());
        }
        if settled.link_refs_changed {
            to_relink.insert(key.clone());
        }
        if settled.kind_changed {
            // An incident among a span's ancestors makes it rework: its
            // descendants' flags follow its kind.
            to_retrace.insert(key.clone());
        }
        if settled.no_longer_incident {
            query("DELETE FROM incident_causes WHERE incident_key = $1").bind(key).execute(&mut *conn).await?;
            to_resolve.insert(key.clone());
        }
        to_derive.extend(settled.derive_for.iter().cloned());
        to_resolve.extend(refolded.waiting);
        to_relink.extend(refolded.waiting_links);
        steps.push(refolded.step);
    }
    for key in &to_resolve {
        if resolve_parent(conn, key).await? {
            to_retrace.insert(key.clone());
        }
    }
    // Spans whose trace, parent or links changed: what waits in the outbox
    // for them is refreshed below.
    let mut moved: BTreeSet<String> = BTreeSet::new();
    for key in &to_retrace {
        moved.extend(retrace(conn, key).await?);
    }
    for key in &to_relink {
        relink(conn, key).await?;
        moved.insert(key.clone());
    }
    // Change sets and incident causes of the repositories this delivery's
    // deploys, merged pull requests and incidents belong to.
    for repo in &to_derive {
        let derived = changes::recompute(conn, repo, production).await?;
        moved.extend(follow_up(conn, &derived).await?);
    }

    let mut queued = 0;
    let mut transitions = Vec::new();
    let touched = materialized;
    for (key, step) in touched.iter().zip(steps) {
        if step == Step::StillOpen {
            continue;
        }
        let span = load_span(conn, key).await?.ok_or_else(|| StoreError::Corrupt(format!("span {key} vanished")))?;
        if step.starts() {
            transitions.push(Transition { source: span.source.clone(), kind: span.kind.clone(), ended: None });
        }
        if step.ends() {
            let outcome = span.outcome.clone().unwrap_or_default();
            let ended = Some((outcome, span.duration_seconds.unwrap_or(0.0)));
            transitions.push(Transition { source: span.source.clone(), kind: span.kind.clone(), ended });
        }
        if !export {
            continue;
        }
        if step.withdraws() {
            outbox::withdraw(conn, key).await?;
        }
        if let Some(ended_now) = step.export()
            && enqueue_export(conn, &span, ended_now, received_at).await?
        {
            queued += 1;
        }
    }
    if export {
        // The spans above were loaded after every change; the others moved
        // by this delivery (a child whose parent arrived, a deploy whose
        // change set grew) may have an older version waiting.
        moved.retain(|key| !touched.contains(key));
        queued += refresh_waiting(conn, &moved, received_at).await?;
    }
    Ok((touched.len(), queued, transitions))
}

/// What `key`'s row says, and its fold in progress when it has one.
async fn load_previous(conn: &mut Db<'_>, key: &str) -> Result<Option<(Stored, Option<String>)>, StoreError> {
    let row = query(
        "SELECT state, end_ns, outcome, trace_refs, parent_refs, link_refs, group_id, start_ns, reviewed_ns,
                CASE WHEN EXISTS (SELECT 1 FROM rework_spans WHERE span_key = $1) THEN 1 ELSE 0 END AS rework,
                kind, repo, environment, revision, first_commit_ns, expired_ns, folding
         FROM spans WHERE key = $1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    // By name: seventeen positions are too many to keep in step by hand.
    Ok(match row {
        Some(row) => Some((
            Stored {
                state: row.try_get("state")?,
                end_ns: row.try_get("end_ns")?,
                outcome: row.try_get("outcome")?,
                trace_refs: row.try_get("trace_refs")?,
                parent_refs: row.try_get("parent_refs")?,
                link_refs: row.try_get("link_refs")?,
                group_id: row.try_get("group_id")?,
                start_ns: row.try_get("start_ns")?,
                reviewed_ns: row.try_get("reviewed_ns")?,
                rework: row.try_get::<i64, _>("rework")? == 1,
                kind: row.try_get("kind")?,
                repo: row.try_get("repo")?,
                environment: row.try_get("environment")?,
                revision: row.try_get("revision")?,
                first_commit_ns: row.try_get("first_commit_ns")?,
                expired_ns: row.try_get("expired_ns")?,
            },
            row.try_get("folding")?,
        )),
        None => None,
    })
}

/// What refolding a span changed beyond its own row.
struct Refolded {
    /// The core's decisions about its new state.
    settled: Settled,
    /// How it moved through its life.
    step: Step,
    /// Spans that look for a parent among this span's (new) references.
    waiting: Vec<String>,
    /// Spans that link to this span's (new) references.
    waiting_links: Vec<String>,
}

/// Folds `key`'s events into its row and refreshes what it answers to and
/// where it looks for its parent, when those changed. `new` are this
/// delivery's events of `key`: when they all sort after the events already
/// in its stored fold (`folding`), they are added to it; else every stored
/// event of the span is read and folded again. An open span older than the
/// age is stored expired ([`ExpiryRule`]).
async fn refold(
    conn: &mut Db<'_>,
    key: &str,
    before: Option<&Stored>,
    folding: Option<String>,
    new: &[&SpanEvent],
    expiry: ExpiryRule,
) -> Result<Option<Refolded>, StoreError> {
    // A stored fold is trusted only while it says what the row says (a
    // writer that predates the column updates the row, not the fold).
    let grown = folding
        .and_then(|text| serde_json::from_str::<Folding>(&text).ok())
        .filter(|f| before.is_some_and(|b| agrees(f, b)))
        .and_then(|f| added(f, new));
    let folding = match grown {
        Some(folding) => folding,
        None => refold_all(conn, key).await?,
    };
    if !folding.is_firm() {
        return Ok(None);
    }
    let span = folding.span();
    let name = valuestream_core::export::name(&span.kind, &span.name, &span.attributes);
    let settled = settle(before, &span);
    let columns = &settled.columns;
    let expired_at = expiry.expired_at(&span, before.and_then(|b| b.expired_ns));
    let stored_state = if expired_at.is_some() { state::EXPIRED } else { span.state.as_str() };
    if settled.new_group {
        ensure_group(conn, &columns.group).await?;
    }
    query(
        "INSERT INTO spans (key, source, kind, name, repo, project, start_ns, end_ns, state, outcome,
                            trace_id, span_id, parent_key, parent_span_id, attributes, links, trace_refs, parent_refs,
                            link_refs, environment, group_id, revision, reviewed_ns, expired_ns, folding)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL, $13, '[]', $14, $15, $16, $17,
                 $18, $19, $20, $21, $22)
         ON CONFLICT (key) DO UPDATE SET
            source = excluded.source, kind = excluded.kind, name = excluded.name, repo = excluded.repo,
            project = excluded.project, start_ns = excluded.start_ns, end_ns = excluded.end_ns,
            state = excluded.state, outcome = excluded.outcome, attributes = excluded.attributes,
            trace_refs = excluded.trace_refs, parent_refs = excluded.parent_refs, link_refs = excluded.link_refs,
            environment = excluded.environment, group_id = excluded.group_id, revision = excluded.revision,
            reviewed_ns = excluded.reviewed_ns, expired_ns = excluded.expired_ns, folding = excluded.folding",
    )
    .bind(key)
    .bind(&span.source)
    .bind(&span.kind)
    .bind(name)
    .bind(span.repo.clone())
    .bind(span.project.clone())
    .bind(span.start.nanos())
    .bind(span.end.map(|e| e.nanos()))
    .bind(stored_state)
    .bind(span.outcome.clone())
    .bind(ids::trace_id(key))
    .bind(ids::span_id(key))
    .bind(serde_json::to_string(&span.attributes).expect("attributes serialize"))
    .bind(&settled.trace_refs)
    .bind(&settled.parent_refs)
    .bind(&settled.link_refs)
    .bind(columns.group.environment.clone())
    .bind(settled.group_id)
    .bind(columns.revision.clone())
    .bind(columns.reviewed_ns)
    .bind(expired_at.map(|e| e.nanos()))
    .bind(serde_json::to_string(&folding).expect("a fold serializes"))
    .execute(&mut *conn)
    .await?;
    if span.kind == kind::PULL_REQUEST {
        // Change sets may already name this pull request (its deploy and
        // push can arrive first): copy its times whenever they are new.
        let head = span.attributes.get(attr::HEAD_BRANCH).and_then(|v| v.as_str());
        let first_commit = match (&span.repo, head) {
            (Some(repo), Some(head)) => first_commit(conn, &span.source, repo, head, span.start.nanos()).await?,
            _ => None,
        };
        let (times, times_changed) = pull_request_times(before, &span, columns, first_commit);
        if times_changed {
            query("UPDATE spans SET first_commit_ns = $1 WHERE key = $2")
                .bind(first_commit)
                .bind(key)
                .execute(&mut *conn)
                .await?;
            update_pull_request_times(conn, key, times).await?;
        }
        if settled.rework_changed {
            store_rework(conn, key, columns.rework).await?;
            changes::refresh_pr_rework(conn, Some(key)).await?;
        }
    }
    debug_assert!(span.state == SpanState::Open || span.end.is_some());

    let mut waiting = Vec::new();
    let mut waiting_links = Vec::new();
    if settled.trace_refs_changed {
        let own: Vec<String> =
            std::iter::once(key.to_ascii_lowercase()).chain(span.trace_refs.iter().cloned()).collect();
        if before.is_some() {
            query("DELETE FROM span_refs WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
        }
        let sql = format!(
            "INSERT INTO span_refs (ref, span_key) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
            values_list(own.len(), 2)
        );
        let mut insert = query(sql);
        for reference in &own {
            insert = insert.bind(reference.clone()).bind(key.to_string());
        }
        insert.execute(&mut *conn).await?;

        // Who waits for these references, as a parent ('p') or a link ('l'): one statement.
        let placeholders: Vec<String> = (1..=own.len()).map(|i| format!("${i}")).collect();
        let placeholders = placeholders.join(", ");
        let sql = format!(
            "SELECT 'p' AS waits, span_key FROM span_parent_refs WHERE ref IN ({placeholders})
             UNION SELECT 'l' AS waits, span_key FROM span_link_refs WHERE ref IN ({placeholders})"
        );
        let mut select = query(sql);
        for reference in &own {
            select = select.bind(reference.clone());
        }
        for row in select.fetch_all(&mut *conn).await? {
            let span_key: String = row.try_get("span_key")?;
            match row.try_get::<String, _>("waits")?.as_str() {
                "p" => waiting.push(span_key),
                _ => waiting_links.push(span_key),
            }
        }
    }

    // `relink` rebuilds span_link_refs from the link references and the change set.
    if settled.parent_refs_changed {
        if before.is_some() {
            query("DELETE FROM span_parent_refs WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
        }
        if !span.parent_refs.is_empty() {
            let sql = format!(
                "INSERT INTO span_parent_refs (ref, span_key, position) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
                values_list(span.parent_refs.len(), 3)
            );
            let mut insert = query(sql);
            for (position, reference) in span.parent_refs.iter().enumerate() {
                insert = insert.bind(reference.clone()).bind(key.to_string()).bind(position as i64);
            }
            insert.execute(&mut *conn).await?;
        }
    }
    let step = step(before, &span, expired_at.map(|e| e.nanos()));
    Ok(Some(Refolded { settled, step, waiting, waiting_links }))
}

/// `folding` with `new` added in order; `None` when one of them sorts before
/// an event already in it.
fn added(mut folding: Folding, new: &[&SpanEvent]) -> Option<Folding> {
    let mut new = new.to_vec();
    new.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    new.iter().all(|event| folding.push(event)).then_some(folding)
}

/// Whether the fold `folding` gives the start, end and outcome row `row` holds.
fn agrees(folding: &Folding, row: &Stored) -> bool {
    let (start, end, outcome) = folding.bounds();
    start.nanos() == row.start_ns && end.map(|e| e.nanos()) == row.end_ns && outcome == row.outcome.as_deref()
}

/// Reads and folds every stored event of `key`, in one order whatever the
/// database's plan: events tied in time fold by delivery, then position.
async fn refold_all(conn: &mut Db<'_>, key: &str) -> Result<Folding, StoreError> {
    let rows = query("SELECT event FROM span_events WHERE span_key = $1 ORDER BY delivery_id, seq")
        .bind(key)
        .fetch_all(&mut *conn)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let text: String = row.try_get(0)?;
        events.push(
            serde_json::from_str::<SpanEvent>(&text)
                .map_err(|e| StoreError::Corrupt(format!("span event of {key}: {e}")))?,
        );
    }
    Folding::of(&events).ok_or_else(|| StoreError::Corrupt(format!("span {key} has no events")))
}

async fn insert_link_refs(conn: &mut Db<'_>, key: &str, refs: &[String]) -> Result<(), StoreError> {
    if refs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO span_link_refs (ref, span_key) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
        values_list(refs.len(), 2)
    );
    let mut insert = query(sql);
    for reference in refs {
        insert = insert.bind(reference.clone()).bind(key.to_string());
    }
    insert.execute(&mut *conn).await?;
    Ok(())
}

/// Recomputes `key`'s links: every span that answers to one of its link
/// references, plus — for a deploy — the pull requests and commits of its
/// stored change set (metrics.md). A deploy links to every pull request it
/// ships, its parent included. All references are kept in `span_link_refs`,
/// so a span arriving later finds the spans that link to it.
async fn relink(conn: &mut Db<'_>, key: &str) -> Result<(), StoreError> {
    let Some(span) = load_span(conn, key).await? else { return Ok(()) };
    let row = query("SELECT link_refs FROM spans WHERE key = $1").bind(key).fetch_one(&mut *conn).await?;
    let own: Vec<String> = serde_json::from_str(&row.try_get::<String, _>(0)?)
        .map_err(|e| StoreError::Corrupt(format!("link_refs of {key}: {e}")))?;
    let mut refs: BTreeSet<String> = own.into_iter().collect();
    if span.kind == kind::DEPLOY
        && let Some(repo) = &span.repo
    {
        refs.extend(changes::change_set_refs(conn, &span.source, repo, key).await?);
    }
    query("DELETE FROM span_link_refs WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
    let refs: Vec<String> = refs.into_iter().collect();
    insert_link_refs(conn, key, &refs).await?;

    let mut links: BTreeSet<String> = BTreeSet::new();
    for reference in &refs {
        for row in query("SELECT span_key FROM span_refs WHERE ref = $1").bind(reference).fetch_all(&mut *conn).await? {
            let linked: String = row.try_get(0)?;
            if linked != key {
                links.insert(linked);
            }
        }
    }
    let links: Vec<String> = links.into_iter().collect();
    store_links(conn, key, &links).await?;
    query("UPDATE spans SET links = $1 WHERE key = $2")
        .bind(serde_json::to_string(&links).expect("links serialize"))
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Follows up a recomputation: deploys whose change set changed are
/// relinked, incidents whose cause changed get their parent again. Returns
/// the spans whose links, parent or trace changed.
async fn follow_up(conn: &mut Db<'_>, derived: &changes::Recomputed) -> Result<BTreeSet<String>, StoreError> {
    let mut moved: BTreeSet<String> = derived.deploys.iter().cloned().collect();
    for deploy in &derived.deploys {
        relink(conn, deploy).await?;
    }
    for incident in &derived.incidents {
        if resolve_parent(conn, incident).await? {
            moved.extend(retrace(conn, incident).await?);
        }
    }
    Ok(moved)
}

/// Re-queues, with what the store says now, the spans of `keys` that wait
/// in the outbox, and the spans waiting there that link to one of them (a
/// link carries the linked span's trace id): the trace backend gets a span's
/// final parent, trace and links whatever order its deliveries came in (a
/// job that ended before its run was known waits with no parent until the
/// run arrives). Returns how many rows were rewritten.
async fn refresh_waiting(
    conn: &mut Db<'_>,
    keys: &BTreeSet<String>,
    changed_at: Timestamp,
) -> Result<usize, StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let keys: Vec<&String> = keys.iter().collect();
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    // At most this many keys per statement (SQLite's limit on parameters is far above).
    for chunk in keys.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let placeholders = placeholders.join(", ");
        let sql = format!(
            "SELECT o.span_key FROM outbox o WHERE o.span_key IN ({placeholders})
             UNION SELECT o.span_key FROM outbox o JOIN span_links l ON l.span_key = o.span_key
             WHERE l.linked_key IN ({placeholders})"
        );
        let mut select = query(sql);
        for key in chunk {
            select = select.bind(key.to_string());
        }
        for row in select.fetch_all(&mut *conn).await? {
            waiting.insert(row.try_get("span_key")?);
        }
    }
    let mut queued = 0;
    for key in &waiting {
        // A span that reopened has nothing to export (its row, if an earlier
        // run left one, goes when it ends again).
        // `ended_now`: it is known to wait, no need to ask again.
        if let Some(span) = load_span(conn, key).await?
            && span.state != state::OPEN
            && enqueue_export(conn, &span, true, changed_at).await?
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// The first commit of a pull request opened at `opened` from `branch`: the
/// earliest commit pushed to that branch by then (metrics.md, coding time).
async fn first_commit(
    conn: &mut Db<'_>,
    source: &str,
    repo: &str,
    branch: &str,
    opened: i64,
) -> Result<Option<i64>, StoreError> {
    let row = query(
        "SELECT MIN(committed_at) FROM branch_commits
         WHERE source = $1 AND repo = $2 AND branch = $3 AND committed_at <= $4",
    )
    .bind(source)
    .bind(repo)
    .bind(branch)
    .bind(opened)
    .fetch_one(&mut *conn)
    .await?;
    row.try_get(0)
}

/// Records the commits of a push to a branch other than the default one
/// (idempotent) and refreshes the first commit of the pull requests from
/// that branch.
async fn record_branch_push(
    conn: &mut Db<'_>,
    source: &str,
    push: &valuestream_core::sources::Push,
) -> Result<(), StoreError> {
    for commit in &push.commits {
        query(
            "INSERT INTO branch_commits (source, repo, branch, sha, committed_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source, repo, branch, sha) DO NOTHING",
        )
        .bind(source)
        .bind(&push.repo)
        .bind(&push.branch)
        .bind(&commit.sha)
        .bind(commit.timestamp.nanos())
        .execute(&mut *conn)
        .await?;
    }
    // Pull requests answer to their head branch's alias.
    let alias = valuestream_core::link::branch_alias(source, &push.repo, &push.branch);
    let sql = format!(
        "SELECT s.key, s.start_ns, s.first_commit_ns, s.reviewed_ns, s.outcome, s.end_ns FROM span_refs r
         JOIN spans s ON s.key = r.span_key WHERE r.ref = $1 AND s.kind = '{}'",
        kind::PULL_REQUEST
    );
    let mut pulls = Vec::new();
    for row in query(sql).bind(alias).fetch_all(&mut *conn).await? {
        let outcome_: Option<String> = row.try_get("outcome")?;
        let merged = row.try_get::<Option<i64>, _>("end_ns")?.filter(|_| outcome_.as_deref() == Some(outcome::MERGED));
        let times = PullRequestTimes {
            opened: row.try_get("start_ns")?,
            first_commit: row.try_get("first_commit_ns")?,
            reviewed: row.try_get("reviewed_ns")?,
            merged,
        };
        pulls.push((row.try_get::<String, _>("key")?, times));
    }
    for (key, mut times) in pulls {
        let first = first_commit(conn, source, &push.repo, &push.branch, times.opened).await?;
        if first != times.first_commit {
            times.first_commit = first;
            query("UPDATE spans SET first_commit_ns = $1 WHERE key = $2")
                .bind(first)
                .bind(&key)
                .execute(&mut *conn)
                .await?;
            update_pull_request_times(conn, &key, times).await?;
        }
    }
    Ok(())
}

/// Records a push's commits (idempotent).
async fn record_push(
    conn: &mut Db<'_>,
    source: &str,
    delivery_id: &str,
    push: &valuestream_core::sources::Push,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO pushes (source, repo, after_sha, before_sha, branch, pushed_at, delivery_id, forced)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, repo, before_sha, after_sha) DO NOTHING",
    )
    .bind(source)
    .bind(&push.repo)
    .bind(&push.after)
    .bind(&push.before)
    .bind(&push.branch)
    .bind(push.pushed_at.nanos())
    .bind(delivery_id)
    .bind(i64::from(push.forced))
    .execute(&mut *conn)
    .await?;
    for (position, commit) in push.commits.iter().enumerate() {
        query(
            "INSERT INTO push_commits (source, repo, sha, push_before, push_after, position, committed_at, message,
                                       pull_request)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (source, repo, push_before, push_after, position) DO NOTHING",
        )
        .bind(source)
        .bind(&push.repo)
        .bind(&commit.sha)
        .bind(&push.before)
        .bind(&push.after)
        .bind(position as i64)
        .bind(commit.timestamp.nanos())
        .bind(&commit.message)
        .bind(commit.pull_request.map(|n| n.to_string()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Sets `key`'s parent to the first of its references that names a known span
/// (linking.md: first match wins), skipping any that would close a cycle. An
/// incident's cause (the deploy it is attributed to) comes before any
/// reference. Returns whether the parent changed.
async fn resolve_parent(conn: &mut Db<'_>, key: &str) -> Result<bool, StoreError> {
    let current = parent_of(conn, key).await?;
    let cause: Option<String> = match query("SELECT deploy_key FROM incident_causes WHERE incident_key = $1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    };
    let rows = query(
        "SELECT p.ref, r.span_key FROM span_parent_refs p JOIN span_refs r ON r.ref = p.ref
         WHERE p.span_key = $1 ORDER BY p.position, r.span_key",
    )
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    // Candidates grouped by reference, best reference first.
    let mut by_ref: Vec<(String, Vec<String>)> = cause.map(|cause| (String::new(), vec![cause])).into_iter().collect();
    for row in rows {
        let (reference, candidate): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        match by_ref.last_mut() {
            Some((last, candidates)) if *last == reference => candidates.push(candidate),
            _ => by_ref.push((reference, vec![candidate])),
        }
    }
    let owner = owner_of(key);
    let mut parent: Option<String> = None;
    'refs: for (_, mut candidates) in by_ref {
        // A reference without an owner resolves to the child's own owner first.
        candidates.sort_by_key(|candidate| (owner_of(candidate) != owner, candidate.clone()));
        for candidate in candidates {
            if candidate != key && !is_ancestor_or_self(conn, key, &candidate).await? {
                parent = Some(candidate);
                break 'refs;
            }
        }
    }
    if parent == current {
        return Ok(false);
    }
    query("UPDATE spans SET parent_key = $1 WHERE key = $2").bind(parent).bind(key).execute(&mut *conn).await?;
    Ok(true)
}

/// Whether `key` appears on the parent chain of `start` (or is `start`).
async fn is_ancestor_or_self(conn: &mut Db<'_>, key: &str, start: &str) -> Result<bool, StoreError> {
    let mut current = Some(start.to_string());
    for _ in 0..MAX_DEPTH {
        let Some(at) = current else { return Ok(false) };
        if at == key {
            return Ok(true);
        }
        current = parent_of(conn, &at).await?;
    }
    Ok(true)
}

async fn parent_of(conn: &mut Db<'_>, key: &str) -> Result<Option<String>, StoreError> {
    let row = query("SELECT parent_key FROM spans WHERE key = $1").bind(key).fetch_optional(&mut *conn).await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => None,
    })
}

/// The owner part of a key such as `github:octo-org/hello-world:issue:27`.
fn owner_of(key: &str) -> String {
    key.split(':').nth(1).and_then(|repo| repo.split('/').next()).unwrap_or("").to_ascii_lowercase()
}

/// Recomputes the trace id, parent span id and `after_incident` flag (an
/// incident among its ancestors: metrics.md, rework) of `key` and of every
/// span below it. One statement per ancestor and one per span below: each
/// row read gives its parent and its kind together.
/// Returns the spans it updated.
async fn retrace(conn: &mut Db<'_>, key: &str) -> Result<Vec<String>, StoreError> {
    let Some((parent, kind_here)) = parent_and_kind(conn, key).await? else { return Ok(Vec::new()) };
    let mut root = key.to_string();
    let mut above = parent.clone();
    let mut seen = HashSet::new();
    let mut after_incident = false;
    while let Some(at) = above {
        if !seen.insert(at.clone()) || seen.len() > MAX_DEPTH {
            break;
        }
        let Some((next, kind_at)) = parent_and_kind(conn, &at).await? else { break };
        after_incident |= kind_at == kind::INCIDENT;
        root = at;
        above = next;
    }
    let trace_id = ids::trace_id(&root);
    // (span, its parent, its kind, whether an incident is above it)
    let mut queue = vec![(key.to_string(), parent, kind_here, after_incident)];
    let mut visited = HashSet::new();
    while let Some((current, parent, kind_here, after_incident)) = queue.pop() {
        if !visited.insert(current.clone()) {
            continue;
        }
        let parent_span_id = parent.map(|p| ids::span_id(&p));
        query("UPDATE spans SET trace_id = $1, parent_span_id = $2, after_incident = $3 WHERE key = $4")
            .bind(&trace_id)
            .bind(parent_span_id)
            .bind(i64::from(after_incident))
            .bind(&current)
            .execute(&mut *conn)
            .await?;
        if kind_here == kind::PULL_REQUEST {
            // Deploys shipping it read the flag from their change sets.
            changes::refresh_pr_rework(conn, Some(&current)).await?;
        }
        let below = after_incident || kind_here == kind::INCIDENT;
        for row in
            query("SELECT key, kind FROM spans WHERE parent_key = $1").bind(&current).fetch_all(&mut *conn).await?
        {
            queue.push((row.try_get("key")?, Some(current.clone()), row.try_get("kind")?, below));
        }
    }
    Ok(visited.into_iter().collect())
}

/// `key`'s parent and kind, `None` when there is no such span.
async fn parent_and_kind(conn: &mut Db<'_>, key: &str) -> Result<Option<(Option<String>, String)>, StoreError> {
    let row = query("SELECT parent_key, kind FROM spans WHERE key = $1").bind(key).fetch_optional(&mut *conn).await?;
    Ok(match row {
        Some(row) => Some((row.try_get("parent_key")?, row.try_get("kind")?)),
        None => None,
    })
}

/// Queues a finished span for the exporter, with the ids known now, when it
/// just ended (or its end or outcome moved) or when an earlier version of it
/// still waits in the outbox; returns whether a row was written.
/// [`outbox::queue`] decides between a new row, a refreshed one and none.
pub(super) async fn enqueue_export(
    conn: &mut Db<'_>,
    span: &ApiSpan,
    ended_now: bool,
    changed_at: Timestamp,
) -> Result<bool, StoreError> {
    if !ended_now && !outbox::waiting(conn, &span.key).await? {
        return Ok(false);
    }
    let mut links = Vec::new();
    for link in &span.links {
        if let Some(linked) = load_span(conn, link).await? {
            links.push(ExportLink { trace_id: linked.trace_id, span_id: linked.span_id });
        }
    }
    outbox::queue(conn, &ExportSpan::from_api(span, links), changed_at).await
}
