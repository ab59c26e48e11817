//! Applying deliveries: record the delivery, record its span events, refold the
//! touched spans, resolve parents and trace ids, and queue finished spans for
//! export — all inside the caller's transaction, so nothing is half-applied.

use super::db::{Arg, Db, IntoArg, args};
use super::query::{ApiSpan, load_span};
use super::{Backend, Store, StoreError};
use crate::export::{ExportLink, ExportSpan};
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
    /// everything is committed or nothing is.
    pub async fn apply_batch(&self, items: &[Applicable], export: bool) -> Result<(Vec<Ack>, usize), StoreError> {
        if let Some(writer) = &self.writer {
            let (writer, items) = (writer.clone(), items.to_vec());
            return tokio::task::spawn_blocking(move || {
                let mut db = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                apply_batch_direct(&mut db, &items, export)
            })
            .await
            .map_err(|e| StoreError::Sqlite(format!("the writer thread failed: {e}")))?;
        }
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Replicas sharing one PostgreSQL apply one group at a time, as the
            // single writer does within a process: a span's refold then always
            // sees every committed event, and parent resolution sees settled rows.
            tx.execute("SELECT pg_advisory_xact_lock($1)", args![WRITER_LOCK]).await?;
        }
        let mut acks = Vec::with_capacity(items.len());
        let mut exported = 0;
        for item in items {
            let (ack, queued) = apply_one(&mut *tx, item, export).await?;
            acks.push(ack);
            exported += queued;
        }
        tx.commit().await?;
        Ok((acks, exported))
    }
}

/// SQLite's group commit on the writer's own connection. The store's async
/// write path runs unchanged: on this connection no statement ever waits, so
/// each future completes on its first poll.
fn apply_batch_direct(
    db: &mut super::db::DirectSqlite,
    items: &[Applicable],
    export: bool,
) -> Result<(Vec<Ack>, usize), StoreError> {
    use futures_util::FutureExt;
    db.0.execute_batch("BEGIN IMMEDIATE").map_err(|e| StoreError::Sqlite(e.to_string()))?;
    let applied = async {
        let mut acks = Vec::with_capacity(items.len());
        let mut exported = 0;
        for item in items {
            let (ack, queued) = apply_one(&mut *db, item, export).await?;
            acks.push(ack);
            exported += queued;
        }
        Ok::<_, StoreError>((acks, exported))
    }
    .now_or_never()
    .expect("the direct SQLite writer never waits");
    let end = if applied.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = db.0.execute_batch(end).map_err(|e| StoreError::Sqlite(e.to_string()));
    let applied = applied?;
    ended?;
    Ok(applied)
}

async fn apply_one(conn: &mut impl Db, item: &Applicable, export: bool) -> Result<(Ack, usize), StoreError> {
    let (status, reason) = match &item.parsed {
        Parsed::Pong => (AckStatus::Pong, None),
        Parsed::Ignored { reason } => (AckStatus::Ignored, Some(reason.clone())),
        Parsed::Spans(_) | Parsed::Push(_) => (AckStatus::Accepted, None),
    };
    let headers = serde_json::to_string(&item.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>())
        .expect("headers serialize");
    let inserted = conn
        .execute(
            "INSERT INTO deliveries (id, source, event_type, received_at, status, headers, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            args![
                &item.id,
                &item.source,
                &item.event_type,
                item.received_at.nanos(),
                status.as_str(),
                headers,
                item.body.as_slice()
            ],
        )
        .await?;
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
}

/// Records `events` and brings every affected span up to date. Returns the
/// number of spans touched and the number queued for export.
///
/// Most deliveries update a span whose references did not change; they cost
/// a handful of statements. Parents are re-resolved only for new spans, spans
/// whose references changed, and spans that were waiting for a new one.
async fn apply_events(
    conn: &mut impl Db,
    delivery_id: &str,
    events: &[SpanEvent],
    export: bool,
) -> Result<(usize, usize, Vec<Transition>), StoreError> {
    for (seq, event) in events.iter().enumerate() {
        let mut event = event.clone();
        event.delivery_id = delivery_id.to_string();
        conn.execute(
            "INSERT INTO span_events (span_key, delivery_id, seq, event) VALUES ($1, $2, $3, $4)
             ON CONFLICT (span_key, delivery_id, seq) DO NOTHING",
            args![&event.key, delivery_id, seq as i64, serde_json::to_string(&event).expect("span events serialize")],
        )
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
    for key in &touched {
        let before = load_previous(conn, key).await?;
        let refolded = refold(conn, key, before.as_ref()).await?;
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

async fn load_previous(conn: &mut impl Db, key: &str) -> Result<Option<Previous>, StoreError> {
    let row = conn
        .fetch_all(
            "SELECT state, end_ns, outcome, trace_refs, parent_refs, link_refs FROM spans WHERE key = $1",
            args![key],
        )
        .await?
        .into_iter()
        .next();
    Ok(match row {
        Some(row) => Some(Previous {
            state: row.get(0)?,
            end_ns: row.get(1)?,
            outcome: row.get(2)?,
            trace_refs: row.get(3)?,
            parent_refs: row.get(4)?,
            link_refs: row.get(5)?,
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

/// `$1, $2, …` style placeholders for a multi-row VALUES list of `rows` × `columns`.
fn values_list(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Folds all events of `key` into its row and refreshes what it answers to
/// and where it looks for its parent, when those changed.
async fn refold(conn: &mut impl Db, key: &str, before: Option<&Previous>) -> Result<Refolded, StoreError> {
    let rows = conn.fetch_all("SELECT event FROM span_events WHERE span_key = $1", args![key]).await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let text: String = row.get(0)?;
        events.push(
            serde_json::from_str::<SpanEvent>(&text)
                .map_err(|e| StoreError::Corrupt(format!("span event of {key}: {e}")))?,
        );
    }
    let span = fold(&events).ok_or_else(|| StoreError::Corrupt(format!("span {key} has no events")))?;
    let name = format!("{} {}", span.kind, span.name);
    let trace_refs = serde_json::to_string(&span.trace_refs).expect("refs serialize");
    let parent_refs = serde_json::to_string(&span.parent_refs).expect("refs serialize");
    let link_refs = serde_json::to_string(&span.link_refs).expect("refs serialize");
    conn.execute(
        "INSERT INTO spans (key, source, kind, name, repo, project, start_ns, end_ns, state, outcome,
                            trace_id, span_id, parent_key, parent_span_id, attributes, links, trace_refs, parent_refs,
                            link_refs, environment)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL, $13, '[]', $14, $15, $16, $17)
         ON CONFLICT (key) DO UPDATE SET
            source = excluded.source, kind = excluded.kind, name = excluded.name, repo = excluded.repo,
            project = excluded.project, start_ns = excluded.start_ns, end_ns = excluded.end_ns,
            state = excluded.state, outcome = excluded.outcome, attributes = excluded.attributes,
            trace_refs = excluded.trace_refs, parent_refs = excluded.parent_refs, link_refs = excluded.link_refs,
            environment = excluded.environment",
        args![
            key,
            &span.source,
            &span.kind,
            name,
            span.repo.clone(),
            span.project.clone(),
            span.start.nanos(),
            span.end.map(|e| e.nanos()),
            span.state.as_str(),
            span.outcome.clone(),
            ids::trace_id(key),
            ids::span_id(key),
            serde_json::to_string(&span.attributes).expect("attributes serialize"),
            &trace_refs,
            &parent_refs,
            &link_refs,
            span.attributes.get("deployment.environment.name").and_then(|v| v.as_str()).map(str::to_string)
        ],
    )
    .await?;
    debug_assert!(span.state == SpanState::Open || span.end.is_some());

    let mut waiting = Vec::new();
    let mut waiting_links = Vec::new();
    if before.is_none_or(|b| b.trace_refs != trace_refs) {
        let own: Vec<String> =
            std::iter::once(key.to_ascii_lowercase()).chain(span.trace_refs.iter().cloned()).collect();
        if before.is_some() {
            conn.execute("DELETE FROM span_refs WHERE span_key = $1", args![key]).await?;
        }
        let sql = format!(
            "INSERT INTO span_refs (ref, span_key) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
            values_list(own.len(), 2)
        );
        let pairs: Vec<Arg> = own.iter().flat_map(|reference| [reference.arg(), key.arg()]).collect();
        conn.execute(&sql, &pairs).await?;

        let placeholders: Vec<String> = (1..=own.len()).map(|i| format!("${i}")).collect();
        let refs: Vec<Arg> = own.iter().map(|reference| reference.arg()).collect();
        let sql = format!("SELECT DISTINCT span_key FROM span_parent_refs WHERE ref IN ({})", placeholders.join(", "));
        for row in conn.fetch_all(&sql, &refs).await? {
            waiting.push(row.get::<String>(0)?);
        }
        let sql = format!("SELECT DISTINCT span_key FROM span_link_refs WHERE ref IN ({})", placeholders.join(", "));
        for row in conn.fetch_all(&sql, &refs).await? {
            waiting_links.push(row.get::<String>(0)?);
        }
    }

    // `relink` rebuilds span_link_refs from these and the change set.
    let link_refs_changed = before.is_none_or(|b| b.link_refs != link_refs);

    let parent_refs_changed = before.is_none_or(|b| b.parent_refs != parent_refs);
    if parent_refs_changed {
        if before.is_some() {
            conn.execute("DELETE FROM span_parent_refs WHERE span_key = $1", args![key]).await?;
        }
        if !span.parent_refs.is_empty() {
            let sql = format!(
                "INSERT INTO span_parent_refs (ref, span_key, position) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
                values_list(span.parent_refs.len(), 3)
            );
            let triples: Vec<Arg> = span
                .parent_refs
                .iter()
                .enumerate()
                .flat_map(|(position, reference)| [reference.arg(), key.arg(), (position as i64).arg()])
                .collect();
            conn.execute(&sql, &triples).await?;
        }
    }
    Ok(Refolded { parent_refs_changed, link_refs_changed, is_deploy: span.kind == "deploy", waiting, waiting_links })
}

async fn insert_link_refs(conn: &mut impl Db, key: &str, refs: &[String]) -> Result<(), StoreError> {
    if refs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO span_link_refs (ref, span_key) VALUES {} ON CONFLICT (ref, span_key) DO NOTHING",
        values_list(refs.len(), 2)
    );
    let pairs: Vec<Arg> = refs.iter().flat_map(|reference| [reference.arg(), key.arg()]).collect();
    conn.execute(&sql, &pairs).await?;
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
async fn relink(conn: &mut impl Db, key: &str) -> Result<(), StoreError> {
    if let Some(next) = relink_one(conn, key).await? {
        relink_one(conn, &next).await?;
    }
    Ok(())
}

/// Relinks one span; returns the next deploy whose change set may have changed.
async fn relink_one(conn: &mut impl Db, key: &str) -> Result<Option<String>, StoreError> {
    let Some(span) = load_span(conn, key).await? else { return Ok(None) };
    let row = conn
        .fetch_all("SELECT link_refs FROM spans WHERE key = $1", args![key])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("expected a row".into()))?;
    let own: Vec<String> = serde_json::from_str(&row.get::<String>(0)?)
        .map_err(|e| StoreError::Corrupt(format!("link_refs of {key}: {e}")))?;
    let mut refs: BTreeSet<String> = own.into_iter().collect();
    let mut next_deploy = None;
    if span.kind == "deploy" {
        refs.extend(crate::store::changes::change_set_refs(conn, &span).await?);
        next_deploy = crate::store::changes::next_deploy(conn, &span).await?;
    }
    conn.execute("DELETE FROM span_link_refs WHERE span_key = $1", args![key]).await?;
    let refs: Vec<String> = refs.into_iter().collect();
    insert_link_refs(conn, key, &refs).await?;

    let mut links: BTreeSet<String> = BTreeSet::new();
    for reference in &refs {
        for row in conn.fetch_all("SELECT span_key FROM span_refs WHERE ref = $1", args![reference]).await? {
            let linked: String = row.get(0)?;
            if linked != key {
                links.insert(linked);
            }
        }
    }
    let links: Vec<String> = links.into_iter().collect();
    conn.execute(
        "UPDATE spans SET links = $1 WHERE key = $2",
        args![serde_json::to_string(&links).expect("links serialize"), key],
    )
    .await?;
    Ok(next_deploy)
}

/// Records a push's commits (idempotent) and returns the deploys whose
/// change set it may change: those of the same repository that deployed one
/// of its commits.
async fn record_push(
    conn: &mut impl Db,
    source: &str,
    delivery_id: &str,
    push: &valuestream_core::sources::Push,
) -> Result<Vec<String>, StoreError> {
    conn.execute(
        "INSERT INTO pushes (source, repo, after_sha, before_sha, branch, pushed_at, delivery_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, repo, after_sha) DO NOTHING",
        args![source, &push.repo, &push.after, &push.before, &push.branch, push.pushed_at.nanos(), delivery_id],
    )
    .await?;
    let mut deploys = BTreeSet::new();
    for (position, commit) in push.commits.iter().enumerate() {
        conn.execute(
            "INSERT INTO commits (source, repo, sha, push_after, position, committed_at, message, pull_request)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, repo, sha) DO NOTHING",
            args![
                source,
                &push.repo,
                &commit.sha,
                &push.after,
                position as i64,
                commit.timestamp.nanos(),
                &commit.message,
                commit.pull_request.map(|n| n.to_string())
            ],
        )
        .await?;
        let deployed = crate::store::changes::deployed_alias(source, &push.repo, &commit.sha);
        for row in conn.fetch_all("SELECT span_key FROM span_refs WHERE ref = $1", args![deployed]).await? {
            deploys.insert(row.get::<String>(0)?);
        }
    }
    Ok(deploys.into_iter().collect())
}

/// Sets `key`'s parent to the first of its references that names a known span
/// (linking.md: first match wins), skipping any that would close a cycle.
/// Returns whether the parent changed.
async fn resolve_parent(conn: &mut impl Db, key: &str) -> Result<bool, StoreError> {
    let current = parent_of(conn, key).await?;
    let rows = conn
        .fetch_all(
            "SELECT p.ref, r.span_key FROM span_parent_refs p JOIN span_refs r ON r.ref = p.ref
         WHERE p.span_key = $1 ORDER BY p.position, r.span_key",
            args![key],
        )
        .await?;
    // Candidates grouped by reference, best reference first.
    let mut by_ref: Vec<(String, Vec<String>)> = Vec::new();
    for row in rows {
        let (reference, candidate): (String, String) = (row.get(0)?, row.get(1)?);
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
    conn.execute("UPDATE spans SET parent_key = $1 WHERE key = $2", args![parent, key]).await?;
    Ok(true)
}

/// Whether `key` appears on the parent chain of `start` (or is `start`).
async fn is_ancestor_or_self(conn: &mut impl Db, key: &str, start: &str) -> Result<bool, StoreError> {
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

async fn parent_of(conn: &mut impl Db, key: &str) -> Result<Option<String>, StoreError> {
    let row = conn.fetch_all("SELECT parent_key FROM spans WHERE key = $1", args![key]).await?.into_iter().next();
    Ok(match row {
        Some(row) => row.get(0)?,
        None => None,
    })
}

/// The owner part of a key such as `github:octo-org/hello-world:issue:27`.
fn owner_of(key: &str) -> String {
    key.split(':').nth(1).and_then(|repo| repo.split('/').next()).unwrap_or("").to_ascii_lowercase()
}

/// Recomputes the trace id and parent span id of `key` and of every span below it.
async fn retrace(conn: &mut impl Db, key: &str) -> Result<(), StoreError> {
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
        conn.execute(
            "UPDATE spans SET trace_id = $1, parent_span_id = $2 WHERE key = $3",
            args![&trace_id, parent_span_id, &current],
        )
        .await?;
        for row in conn.fetch_all("SELECT key FROM spans WHERE parent_key = $1", args![&current]).await? {
            queue.push(row.get(0)?);
        }
    }
    Ok(())
}

/// Queues a finished span for the exporter, with the ids known now.
async fn enqueue_export(conn: &mut impl Db, span: &ApiSpan) -> Result<(), StoreError> {
    let mut links = Vec::new();
    for link in &span.links {
        if let Some(linked) = load_span(conn, link).await? {
            links.push(ExportLink { trace_id: linked.trace_id, span_id: linked.span_id });
        }
    }
    let export = ExportSpan::from_api(span, links);
    conn.execute(
        "INSERT INTO outbox (span_key, payload, enqueued_at, attempts) VALUES ($1, $2, $3, 0)",
        args![
            &span.key,
            serde_json::to_string(&export).expect("export spans serialize"),
            span.end.map_or(0, |e| e.nanos())
        ],
    )
    .await?;
    Ok(())
}
