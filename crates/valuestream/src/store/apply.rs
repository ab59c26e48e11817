//! Applying deliveries: record the delivery, record its span events, refold the
//! touched spans, resolve parents and trace ids, and queue finished spans for
//! export — all inside the caller's transaction, so nothing is half-applied.

use super::changes;
use super::columns::{MetricColumns, ensure_group, store_links, store_rework, update_pull_request_times};
use super::query::{ApiSpan, load_span};
use super::{Backend, Store, StoreError, values_list};
use crate::export::{ExportLink, ExportSpan};
use sqlx::{AnyConnection, Connection, Row};
use std::collections::{BTreeSet, HashSet};
use valuestream_core::ids;
use valuestream_core::sources::Parsed;
use valuestream_core::span::{SpanEvent, SpanState, fold};
use valuestream_core::time::Timestamp;

/// The PostgreSQL advisory lock that serializes writers across replicas ("VSWRITER").
const WRITER_LOCK: i64 = 0x5653_5752_4954_4552;

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
    pub body: Vec<u8>,
    pub parsed: Parsed,
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
        let mut conn = self.write_connection().await?;
        let mut tx = conn.begin().await?;
        if self.backend == Backend::Postgres {
            // Replicas sharing one PostgreSQL apply one group at a time, as the
            // single writer does within a process: a span's refold then always
            // sees every committed event, and parent resolution sees settled rows.
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *tx).await?;
        }
        self.faults.maybe_panic();
        let mut acks = Vec::with_capacity(items.len());
        let mut exported = 0;
        for item in items {
            let (ack, queued) = apply_one(&mut tx, item, export).await?;
            acks.push(ack);
            exported += queued;
        }
        self.faults.before_commit(&mut tx).await?;
        tx.commit().await?;
        conn.release();
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
                "backfill_metrics_columns" => {
                    let stored: i64 =
                        sqlx::query("SELECT COUNT(*) FROM spans").fetch_one(&mut *tx).await?.try_get(0)?;
                    if stored > 0 {
                        tracing::info!(
                            spans = stored,
                            "Filling the metrics columns and change sets of stored spans, once after an upgrade \
                             (about 4,000 spans a second)."
                        );
                    }
                    let spans = super::columns::backfill(&mut tx).await?;
                    let deploys = changes::rebuild_change_sets(&mut tx).await?;
                    if spans > 0 {
                        tracing::info!(spans, deploys, "Filled the metrics columns and change sets of stored spans.");
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

async fn apply_one(conn: &mut AnyConnection, item: &Applicable, export: bool) -> Result<(Ack, usize), StoreError> {
    let (status, reason) = match &item.parsed {
        Parsed::Pong => (AckStatus::Pong, None),
        Parsed::Ignored { reason } => (AckStatus::Ignored, Some(reason.clone())),
        Parsed::Spans(_) | Parsed::Push(_) => (AckStatus::Accepted, None),
    };
    let headers = serde_json::to_string(&item.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>())
        .expect("headers serialize");
    let inserted = sqlx::query(
        "INSERT INTO deliveries (id, source, event_type, received_at, status, headers, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&item.id)
    .bind(&item.source)
    .bind(&item.event_type)
    .bind(item.received_at.nanos())
    .bind(status.as_str())
    .bind(headers)
    .bind(item.body.as_slice())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
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
        Parsed::Spans(events) => apply_events(conn, &item.id, events, export).await?,
        Parsed::Push(push) => {
            let deploys = record_push(conn, &item.source, &item.id, push).await?;
            for deploy in &deploys {
                relink(conn, deploy).await?;
            }
            (0, 0, Vec::new())
        }
        Parsed::Pong | Parsed::Ignored { .. } => (0, 0, Vec::new()),
    };
    Ok((Ack { status, delivery_id: item.id.clone(), spans, reason, transitions }, queued))
}

/// What a span's row said before this delivery.
struct Previous {
    state: String,
    end_ns: Option<i64>,
    outcome: Option<String>,
    trace_refs: String,
    parent_refs: String,
    link_refs: String,
    group_id: Option<i64>,
    start_ns: i64,
    reviewed_ns: Option<i64>,
    rework: bool,
}

/// Records `events` and brings every affected span up to date. Returns the
/// number of spans touched and the number queued for export.
///
/// Most deliveries update a span whose references did not change; they cost
/// a handful of statements. Parents are re-resolved only for new spans, spans
/// whose references changed, and spans that were waiting for a new one.
async fn apply_events(
    conn: &mut AnyConnection,
    delivery_id: &str,
    events: &[SpanEvent],
    export: bool,
) -> Result<(usize, usize, Vec<Transition>), StoreError> {
    for (seq, event) in events.iter().enumerate() {
        let mut event = event.clone();
        event.delivery_id = delivery_id.to_string();
        sqlx::query(
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
    for event in events {
        if !touched.contains(&event.key) {
            touched.push(event.key.clone());
        }
    }
    let mut to_resolve: BTreeSet<String> = BTreeSet::new();
    let mut to_relink: BTreeSet<String> = BTreeSet::new();
    let mut previous = Vec::with_capacity(touched.len());
    let mut materialized = Vec::with_capacity(touched.len());
    for key in &touched {
        let before = load_previous(conn, key).await?;
        // A key whose events are all tentative has no span (yet): leave it out.
        let Some(refolded) = refold(conn, key, before.as_ref()).await? else { continue };
        materialized.push(key.clone());
        if before.is_none() || refolded.parent_refs_changed {
            to_resolve.insert(key.clone());
        }
        if refolded.is_deploy || refolded.link_refs_changed {
            to_relink.insert(key.clone());
        }
        to_resolve.extend(refolded.waiting);
        to_relink.extend(refolded.waiting_links);
        previous.push(before);
    }
    for key in &to_resolve {
        if resolve_parent(conn, key).await? {
            retrace(conn, key).await?;
        }
    }
    for key in &to_relink {
        relink(conn, key).await?;
    }

    let mut queued = 0;
    let mut transitions = Vec::new();
    let touched = materialized;
    for (key, previous) in touched.iter().zip(previous) {
        let span = load_span(conn, key).await?.ok_or_else(|| StoreError::Corrupt(format!("span {key} vanished")))?;
        let was_closed = previous.as_ref().is_some_and(|p| p.state == "closed");
        if span.state != "closed" {
            if previous.is_none() || was_closed {
                transitions.push(Transition { source: span.source.clone(), kind: span.kind.clone(), ended: None });
            }
            continue;
        }
        let end_ns = span.end.map(|e| e.nanos());
        let unchanged =
            previous.as_ref().is_some_and(|p| was_closed && p.end_ns == end_ns && p.outcome == span.outcome);
        if unchanged {
            continue;
        }
        let outcome = span.outcome.clone().unwrap_or_default();
        transitions.push(Transition {
            source: span.source.clone(),
            kind: span.kind.clone(),
            ended: Some((outcome, span.duration_seconds.unwrap_or(0.0))),
        });
        if export {
            enqueue_export(conn, &span).await?;
            queued += 1;
        }
    }
    Ok((touched.len(), queued, transitions))
}

async fn load_previous(conn: &mut AnyConnection, key: &str) -> Result<Option<Previous>, StoreError> {
    let row = sqlx::query(
        "SELECT state, end_ns, outcome, trace_refs, parent_refs, link_refs, group_id, start_ns, reviewed_ns,
                CASE WHEN EXISTS (SELECT 1 FROM rework_spans WHERE span_key = $1) THEN 1 ELSE 0 END
         FROM spans WHERE key = $1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some(Previous {
            state: row.try_get(0)?,
            end_ns: row.try_get(1)?,
            outcome: row.try_get(2)?,
            trace_refs: row.try_get(3)?,
            parent_refs: row.try_get(4)?,
            link_refs: row.try_get(5)?,
            group_id: row.try_get(6)?,
            start_ns: row.try_get(7)?,
            reviewed_ns: row.try_get(8)?,
            rework: row.try_get::<i64, _>(9)? == 1,
        }),
        None => None,
    })
}

/// What refolding a span changed beyond its own row.
struct Refolded {
    parent_refs_changed: bool,
    link_refs_changed: bool,
    /// Deploys' links also depend on recorded commits (their change set).
    is_deploy: bool,
    /// Spans that look for a parent among this span's (new) references.
    waiting: Vec<String>,
    /// Spans that link to this span's (new) references.
    waiting_links: Vec<String>,
}

/// Folds all events of `key` into its row and refreshes what it answers to
/// and where it looks for its parent, when those changed.
async fn refold(
    conn: &mut AnyConnection,
    key: &str,
    before: Option<&Previous>,
) -> Result<Option<Refolded>, StoreError> {
    let rows = sqlx::query("SELECT event FROM span_events WHERE span_key = $1").bind(key).fetch_all(&mut *conn).await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let text: String = row.try_get(0)?;
        events.push(
            serde_json::from_str::<SpanEvent>(&text)
                .map_err(|e| StoreError::Corrupt(format!("span event of {key}: {e}")))?,
        );
    }
    if events.iter().all(|event| event.tentative) {
        return Ok(None);
    }
    let span = fold(&events).ok_or_else(|| StoreError::Corrupt(format!("span {key} has no events")))?;
    let name = format!("{} {}", span.kind, span.name);
    let trace_refs = serde_json::to_string(&span.trace_refs).expect("refs serialize");
    let parent_refs = serde_json::to_string(&span.parent_refs).expect("refs serialize");
    let link_refs = serde_json::to_string(&span.link_refs).expect("refs serialize");
    let columns = MetricColumns::of(
        &span.source,
        &span.kind,
        span.repo.as_deref(),
        span.project.as_deref(),
        span.outcome.as_deref(),
        &span.attributes,
    );
    let group_id = columns.group.id();
    if before.is_none_or(|b| b.group_id != Some(group_id)) {
        ensure_group(conn, &columns.group).await?;
    }
    sqlx::query(
        "INSERT INTO spans (key, source, kind, name, repo, project, start_ns, end_ns, state, outcome,
                            trace_id, span_id, parent_key, parent_span_id, attributes, links, trace_refs, parent_refs,
                            link_refs, environment, group_id, revision, reviewed_ns)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL, $13, '[]', $14, $15, $16, $17,
                 $18, $19, $20)
         ON CONFLICT (key) DO UPDATE SET
            source = excluded.source, kind = excluded.kind, name = excluded.name, repo = excluded.repo,
            project = excluded.project, start_ns = excluded.start_ns, end_ns = excluded.end_ns,
            state = excluded.state, outcome = excluded.outcome, attributes = excluded.attributes,
            trace_refs = excluded.trace_refs, parent_refs = excluded.parent_refs, link_refs = excluded.link_refs,
            environment = excluded.environment, group_id = excluded.group_id, revision = excluded.revision,
            reviewed_ns = excluded.reviewed_ns",
    )
    .bind(key)
    .bind(&span.source)
    .bind(&span.kind)
    .bind(name)
    .bind(span.repo.clone())
    .bind(span.project.clone())
    .bind(span.start.nanos())
    .bind(span.end.map(|e| e.nanos()))
    .bind(span.state.as_str())
    .bind(span.outcome.clone())
    .bind(ids::trace_id(key))
    .bind(ids::span_id(key))
    .bind(serde_json::to_string(&span.attributes).expect("attributes serialize"))
    .bind(&trace_refs)
    .bind(&parent_refs)
    .bind(&link_refs)
    .bind(columns.group.environment.clone())
    .bind(group_id)
    .bind(columns.revision.clone())
    .bind(columns.reviewed_ns)
    .execute(&mut *conn)
    .await?;
    if span.kind == "pull_request" {
        // Change sets may already name this pull request (its deploy and
        // push can arrive first): copy its times whenever they are new.
        let merged = span.end.filter(|_| span.outcome.as_deref() == Some("merged")).map(|e| e.nanos());
        let times_changed = before.is_none_or(|b| {
            let was_merged = b.end_ns.filter(|_| b.outcome.as_deref() == Some("merged"));
            (b.start_ns, b.reviewed_ns, was_merged) != (span.start.nanos(), columns.reviewed_ns, merged)
        });
        if times_changed {
            update_pull_request_times(conn, key, span.start.nanos(), columns.reviewed_ns, merged).await?;
        }
        if before.is_some_and(|b| b.rework) != columns.rework {
            store_rework(conn, key, columns.rework).await?;
        }
    }
    debug_assert!(span.state == SpanState::Open || span.end.is_some());

    let mut waiting = Vec::new();
    let mut waiting_links = Vec::new();
    if before.is_none_or(|b| b.trace_refs != trace_refs) {
        let own: Vec<String> =
            std::iter::once(key.to_ascii_lowercase()).chain(span.trace_refs.iter().cloned()).collect();
        if before.is_some() {
            sqlx::query("DELETE FROM span_refs WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
        }
        let sql = format!(
            "INSERT INTO span_refs (ref, span_key) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
            values_list(own.len(), 2)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for reference in &own {
            insert = insert.bind(reference.clone()).bind(key.to_string());
        }
        insert.execute(&mut *conn).await?;

        let placeholders: Vec<String> = (1..=own.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT DISTINCT span_key FROM span_parent_refs WHERE ref IN ({})", placeholders.join(", "));
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for reference in &own {
            select = select.bind(reference.clone());
        }
        for row in select.fetch_all(&mut *conn).await? {
            waiting.push(row.try_get::<String, _>(0)?);
        }
        let sql = format!("SELECT DISTINCT span_key FROM span_link_refs WHERE ref IN ({})", placeholders.join(", "));
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for reference in &own {
            select = select.bind(reference.clone());
        }
        for row in select.fetch_all(&mut *conn).await? {
            waiting_links.push(row.try_get::<String, _>(0)?);
        }
    }

    // `relink` rebuilds span_link_refs from these and the change set. A new
    // span without link references has nothing to relink (most spans).
    let link_refs_changed = before.map_or(!span.link_refs.is_empty(), |b| b.link_refs != link_refs);

    let parent_refs_changed = before.is_none_or(|b| b.parent_refs != parent_refs);
    if parent_refs_changed {
        if before.is_some() {
            sqlx::query("DELETE FROM span_parent_refs WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
        }
        if !span.parent_refs.is_empty() {
            let sql = format!(
                "INSERT INTO span_parent_refs (ref, span_key, position) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
                values_list(span.parent_refs.len(), 3)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (position, reference) in span.parent_refs.iter().enumerate() {
                insert = insert.bind(reference.clone()).bind(key.to_string()).bind(position as i64);
            }
            insert.execute(&mut *conn).await?;
        }
    }
    Ok(Some(Refolded {
        parent_refs_changed,
        link_refs_changed,
        is_deploy: span.kind == "deploy",
        waiting,
        waiting_links,
    }))
}

async fn insert_link_refs(conn: &mut AnyConnection, key: &str, refs: &[String]) -> Result<(), StoreError> {
    if refs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO span_link_refs (ref, span_key) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
        values_list(refs.len(), 2)
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for reference in refs {
        insert = insert.bind(reference.clone()).bind(key.to_string());
    }
    insert.execute(&mut *conn).await?;
    Ok(())
}

/// Recomputes `key`'s links: every span that answers to one of its link
/// references, plus — for a successful deploy — the pull requests of its
/// change set (metrics.md). A deploy links to every pull request it ships,
/// its parent included. All references are kept in `span_link_refs`, so a
/// span arriving later finds the spans that link to it.
///
/// A deploy's change set ends where the previous deploy's began, so relinking
/// a deploy also relinks the next successful deploy of its repository (whose
/// own successor is not affected).
async fn relink(conn: &mut AnyConnection, key: &str) -> Result<(), StoreError> {
    if let Some(next) = relink_one(conn, key).await? {
        relink_one(conn, &next).await?;
    }
    Ok(())
}

/// Relinks one span; returns the next deploy whose change set may have changed.
async fn relink_one(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, StoreError> {
    let Some(span) = load_span(conn, key).await? else { return Ok(None) };
    let row = sqlx::query("SELECT link_refs FROM spans WHERE key = $1").bind(key).fetch_one(&mut *conn).await?;
    let own: Vec<String> = serde_json::from_str(&row.try_get::<String, _>(0)?)
        .map_err(|e| StoreError::Corrupt(format!("link_refs of {key}: {e}")))?;
    let mut refs: BTreeSet<String> = own.into_iter().collect();
    let mut next_deploy = None;
    if span.kind == "deploy" {
        let changes = changes::change_set(conn, &span).await?;
        if let Some(repo) = &span.repo {
            changes::store_change_set(conn, key, &span.source, repo, changes.as_deref()).await?;
        }
        refs.extend(changes::change_set_refs(&span, changes.as_deref().unwrap_or_default()));
        next_deploy = changes::next_deploy(conn, &span).await?;
    }
    sqlx::query("DELETE FROM span_link_refs WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
    let refs: Vec<String> = refs.into_iter().collect();
    insert_link_refs(conn, key, &refs).await?;

    let mut links: BTreeSet<String> = BTreeSet::new();
    for reference in &refs {
        for row in
            sqlx::query("SELECT span_key FROM span_refs WHERE ref = $1").bind(reference).fetch_all(&mut *conn).await?
        {
            let linked: String = row.try_get(0)?;
            if linked != key {
                links.insert(linked);
            }
        }
    }
    let links: Vec<String> = links.into_iter().collect();
    store_links(conn, key, &links).await?;
    sqlx::query("UPDATE spans SET links = $1 WHERE key = $2")
        .bind(serde_json::to_string(&links).expect("links serialize"))
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(next_deploy)
}

/// Records a push's commits (idempotent) and returns the deploys whose
/// change set it may change: those of the same repository that deployed one
/// of its commits.
async fn record_push(
    conn: &mut AnyConnection,
    source: &str,
    delivery_id: &str,
    push: &valuestream_core::sources::Push,
) -> Result<Vec<String>, StoreError> {
    sqlx::query(
        "INSERT INTO pushes (source, repo, after_sha, before_sha, branch, pushed_at, delivery_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, repo, after_sha) DO NOTHING",
    )
    .bind(source)
    .bind(&push.repo)
    .bind(&push.after)
    .bind(&push.before)
    .bind(&push.branch)
    .bind(push.pushed_at.nanos())
    .bind(delivery_id)
    .execute(&mut *conn)
    .await?;
    let mut deploys = BTreeSet::new();
    for (position, commit) in push.commits.iter().enumerate() {
        sqlx::query(
            "INSERT INTO commits (source, repo, sha, push_after, position, committed_at, message, pull_request)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, repo, sha) DO NOTHING",
        )
        .bind(source)
        .bind(&push.repo)
        .bind(&commit.sha)
        .bind(&push.after)
        .bind(position as i64)
        .bind(commit.timestamp.nanos())
        .bind(&commit.message)
        .bind(commit.pull_request.map(|n| n.to_string()))
        .execute(&mut *conn)
        .await?;
        let deployed = crate::store::changes::deployed_alias(source, &push.repo, &commit.sha);
        for row in
            sqlx::query("SELECT span_key FROM span_refs WHERE ref = $1").bind(deployed).fetch_all(&mut *conn).await?
        {
            deploys.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(deploys.into_iter().collect())
}

/// Sets `key`'s parent to the first of its references that names a known span
/// (linking.md: first match wins), skipping any that would close a cycle.
/// Returns whether the parent changed.
async fn resolve_parent(conn: &mut AnyConnection, key: &str) -> Result<bool, StoreError> {
    let current = parent_of(conn, key).await?;
    let rows = sqlx::query(
        "SELECT p.ref, r.span_key FROM span_parent_refs p JOIN span_refs r ON r.ref = p.ref
         WHERE p.span_key = $1 ORDER BY p.position, r.span_key",
    )
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    // Candidates grouped by reference, best reference first.
    let mut by_ref: Vec<(String, Vec<String>)> = Vec::new();
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
    sqlx::query("UPDATE spans SET parent_key = $1 WHERE key = $2").bind(parent).bind(key).execute(&mut *conn).await?;
    Ok(true)
}

/// Whether `key` appears on the parent chain of `start` (or is `start`).
async fn is_ancestor_or_self(conn: &mut AnyConnection, key: &str, start: &str) -> Result<bool, StoreError> {
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

async fn parent_of(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT parent_key FROM spans WHERE key = $1").bind(key).fetch_optional(&mut *conn).await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => None,
    })
}

/// The owner part of a key such as `github:octo-org/hello-world:issue:27`.
fn owner_of(key: &str) -> String {
    key.split(':').nth(1).and_then(|repo| repo.split('/').next()).unwrap_or("").to_ascii_lowercase()
}

/// Recomputes the trace id and parent span id of `key` and of every span below it.
async fn retrace(conn: &mut AnyConnection, key: &str) -> Result<(), StoreError> {
    let mut root = key.to_string();
    let mut seen = HashSet::new();
    while let Some(parent) = parent_of(conn, &root).await? {
        if !seen.insert(parent.clone()) || seen.len() > MAX_DEPTH {
            break;
        }
        root = parent;
    }
    let trace_id = ids::trace_id(&root);
    let mut queue = vec![key.to_string()];
    let mut visited = HashSet::new();
    while let Some(current) = queue.pop() {
        if !visited.insert(current.clone()) {
            continue;
        }
        let parent_span_id = parent_of(conn, &current).await?.map(|p| ids::span_id(&p));
        sqlx::query("UPDATE spans SET trace_id = $1, parent_span_id = $2 WHERE key = $3")
            .bind(&trace_id)
            .bind(parent_span_id)
            .bind(&current)
            .execute(&mut *conn)
            .await?;
        for row in
            sqlx::query("SELECT key FROM spans WHERE parent_key = $1").bind(&current).fetch_all(&mut *conn).await?
        {
            queue.push(row.try_get(0)?);
        }
    }
    Ok(())
}

/// Queues a finished span for the exporter, with the ids known now.
async fn enqueue_export(conn: &mut AnyConnection, span: &ApiSpan) -> Result<(), StoreError> {
    let mut links = Vec::new();
    for link in &span.links {
        if let Some(linked) = load_span(conn, link).await? {
            links.push(ExportLink { trace_id: linked.trace_id, span_id: linked.span_id });
        }
    }
    let export = ExportSpan::from_api(span, links);
    sqlx::query("INSERT INTO outbox (span_key, payload, enqueued_at, attempts) VALUES ($1, $2, $3, 0)")
        .bind(&span.key)
        .bind(serde_json::to_string(&export).expect("export spans serialize"))
        .bind(span.end.map_or(0, |e| e.nanos()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
