//! Reading the store: spans for the API (filters and keyset paging), traces
//! and trace references.

use super::db::{Db, Row, query};
use super::sql::Sql;
use super::{Store, StoreError};
use base64::Engine;
use serde::Serialize;
use sqlx::Row as _;
use std::collections::{BTreeMap, BTreeSet};
use valuestream_core::span::Attributes;
use valuestream_core::time::Timestamp;
use valuestream_core::vocab;

/// A span as the API shows it (docs/api.md, "GET /api/v1/spans").
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ApiSpan {
    pub key: String,
    pub source: String,
    pub kind: String,
    pub name: String,
    pub repo: Option<String>,
    pub project: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    pub parent_key: Option<String>,
    pub parent_span_id: Option<String>,
    pub links: Vec<String>,
    pub trace_refs: Vec<String>,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub duration_seconds: Option<f64>,
    pub state: String,
    pub outcome: Option<String>,
    pub attributes: Attributes,
}

const SPAN_COLUMNS: &str = "key, source, kind, name, repo, project, trace_id, span_id, parent_key, parent_span_id,
    links, trace_refs, start_ns, end_ns, state, outcome, attributes, expired_ns";

fn span_from_row(row: &Row) -> Result<ApiSpan, StoreError> {
    let json = |name: &str| -> Result<String, StoreError> { row.try_get::<String, _>(name) };
    let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt(format!("{what}: {e}"));
    let start = Timestamp(row.try_get("start_ns")?);
    let state: String = row.try_get("state")?;
    // An expired span shows the end it was given (its start plus the age)
    // but no duration: as far as any payload says, it never finished.
    let (end, duration_seconds) = if state == vocab::state::EXPIRED {
        (row.try_get::<Option<i64>, _>("expired_ns")?.map(Timestamp), None)
    } else {
        let end = row.try_get::<Option<i64>, _>("end_ns")?.map(Timestamp);
        (end, end.map(|end| start.seconds_until(end)))
    };
    Ok(ApiSpan {
        key: row.try_get("key")?,
        source: row.try_get("source")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        repo: row.try_get("repo")?,
        project: row.try_get("project")?,
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        parent_key: row.try_get("parent_key")?,
        parent_span_id: row.try_get("parent_span_id")?,
        links: serde_json::from_str(&json("links")?).map_err(|e| corrupt("links", e))?,
        // References with `:` are internal aliases (commit shas, branches), not
        // the public trace references people write.
        trace_refs: serde_json::from_str::<Vec<String>>(&json("trace_refs")?)
            .map_err(|e| corrupt("trace_refs", e))?
            .into_iter()
            .filter(|r| !r.contains(':'))
            .collect(),
        start,
        end,
        duration_seconds,
        state,
        outcome: row.try_get("outcome")?,
        attributes: serde_json::from_str(&json("attributes")?).map_err(|e| corrupt("attributes", e))?,
    })
}

pub(super) async fn load_span(conn: &mut Db<'_>, key: &str) -> Result<Option<ApiSpan>, StoreError> {
    let sql = format!("SELECT {SPAN_COLUMNS} FROM spans WHERE key = $1");
    let row = query(sql).bind(key).fetch_optional(&mut *conn).await?;
    row.as_ref().map(span_from_row).transpose()
}

/// Filters of `GET /api/v1/spans`. `since`/`until` bound the span's start;
/// source, kind, repo, project and key match whatever the case.
#[derive(Clone, Debug, Default)]
pub struct SpanFilter {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub repo: Option<String>,
    pub project: Option<String>,
    /// A deploy's environment (`spans.environment`).
    pub environment: Option<String>,
    pub outcome: Option<String>,
    pub state: Option<String>,
    pub key: Option<String>,
    /// 32 lowercase hex digits (checked by the API).
    pub trace_id: Option<String>,
    /// Text in the span's name or key, whatever the case.
    pub q: Option<String>,
    /// Ended spans that took longer than this (nanoseconds)…
    pub min_duration: Option<i64>,
    /// …and at most this: a Prometheus bucket's `(lower, le]`.
    pub max_duration: Option<i64>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub order: SpanOrder,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// The order of `GET /api/v1/spans` (`order=`); ties go by key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpanOrder {
    /// Oldest first (the default).
    #[default]
    Start,
    /// Newest first.
    StartDesc,
    /// Shortest first; only ended spans have a duration.
    Duration,
    /// Longest first.
    DurationDesc,
}

impl SpanOrder {
    /// Parses `order=`; the error names the accepted values.
    pub fn parse(value: &str) -> Result<SpanOrder, String> {
        match value {
            "start" => Ok(SpanOrder::Start),
            "-start" => Ok(SpanOrder::StartDesc),
            "duration" => Ok(SpanOrder::Duration),
            "-duration" => Ok(SpanOrder::DurationDesc),
            _ => Err(format!("`order` must be start, -start, duration or -duration; got {value:?}")),
        }
    }

    /// What a cursor of this order starts with (none for the default, so
    /// cursors from before orders existed still read).
    fn tag(self) -> &'static str {
        match self {
            SpanOrder::Start => "",
            SpanOrder::StartDesc => "-s:",
            SpanOrder::Duration => "d:",
            SpanOrder::DurationDesc => "-d:",
        }
    }

    fn by_duration(self) -> bool {
        matches!(self, SpanOrder::Duration | SpanOrder::DurationDesc)
    }

    fn descending(self) -> bool {
        matches!(self, SpanOrder::StartDesc | SpanOrder::DurationDesc)
    }
}

/// `GET /api/v1/meta`: what the store has seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Meta {
    pub repos: Vec<String>,
    pub projects: Vec<String>,
    pub environments: Vec<String>,
    pub kinds: Vec<String>,
    pub sources: Vec<String>,
    /// When each source's latest delivery arrived; a source never heard from is absent.
    pub last_delivery: BTreeMap<String, Timestamp>,
    /// Spans that name a parent ValueStream has not seen (yet).
    pub waiting_references: i64,
}

/// Filters of `GET /api/v1/traces` (without `ref`): a trace is in the
/// window when its first span started in it.
#[derive(Clone, Debug)]
pub struct TraceFilter {
    pub since: Timestamp,
    pub until: Timestamp,
    /// Traces with a span of this repository / kind (whatever the case).
    pub repo: Option<String>,
    pub kind: Option<String>,
    /// Traces with (`true`) or without (`false`) a span that ended in failure.
    pub has_error: Option<bool>,
    /// Traces with (`true`) or without (`false`) a span still open.
    pub open: Option<bool>,
    /// Text in some span's name or key.
    pub q: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// A trace as `GET /api/v1/traces` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root: TraceRoot,
    pub start: Timestamp,
    /// The last end of its spans; `null` while one is open.
    pub end: Option<Timestamp>,
    pub duration_seconds: Option<f64>,
    pub spans: i64,
    pub sources: Vec<String>,
    /// Spans that ended in failure.
    pub errors: i64,
    /// Spans still open.
    pub open: i64,
    /// Spans that name a parent not received yet.
    pub pending_refs: i64,
}

/// The span a trace starts from: the earliest without a parent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceRoot {
    pub key: String,
    pub name: String,
    pub kind: String,
}

/// The cursor of the trace list after `(start, trace_id)`.
pub fn encode_trace_cursor(start: i64, trace_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("t:{start}:{trace_id}"))
}

/// Reads a trace-list cursor back; `None` when it is not one of ours.
pub fn decode_trace_cursor(cursor: &str) -> Option<(i64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (start, trace_id) = text.strip_prefix("t:")?.split_once(':')?;
    Some((start.parse().ok()?, trace_id.to_string()))
}

/// An opaque paging cursor: the page after the one ending with `value` (a start or a
/// duration, in nanoseconds) and `key`, in `order`.
pub fn encode_cursor(order: SpanOrder, value: i64, key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}{value}:{key}", order.tag()))
}

/// Reads a cursor back: its order, value and key; `None` when it is not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<(SpanOrder, i64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (order, rest) = [SpanOrder::StartDesc, SpanOrder::Duration, SpanOrder::DurationDesc]
        .into_iter()
        .find_map(|order| text.strip_prefix(order.tag()).map(|rest| (order, rest)))
        .unwrap_or((SpanOrder::Start, text.as_str()));
    let (value, key) = rest.split_once(':')?;
    Some((order, value.parse().ok()?, key.to_string()))
}

/// `%text%` for LIKE, its own `%`, `_` and `\` taken literally (`ESCAPE '\'`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// One page of spans in `filter.order` (ties by key), and the cursor of
    /// the next page.
    pub async fn spans(&self, filter: &SpanFilter) -> Result<(Vec<ApiSpan>, Option<String>), StoreError> {
        let mut sql = Sql::new(&format!("SELECT {SPAN_COLUMNS} FROM spans WHERE 1 = 1"));
        // Names match whatever their case, as GitHub treats them: lower() on
        // both sides (these columns are filtered while reading spans in start
        // order, so no index is lost).
        // Each may name several, comma-separated (`repo=a/b,c/d`).
        for (column, value) in [
            ("source", &filter.source),
            ("kind", &filter.kind),
            ("repo", &filter.repo),
            ("project", &filter.project),
            ("environment", &filter.environment),
            ("outcome", &filter.outcome),
        ] {
            if let Some(value) = value {
                let condition = sql.any_name(column, value);
                sql.push(&format!(" AND {condition}"));
            }
        }
        // The state is one of ours (checked by the API): compared as stored.
        if let Some(state) = &filter.state {
            let p = sql.text(state.clone());
            sql.push(&format!(" AND state = {p}"));
        }
        // A key through span_refs, which holds every span's key in lowercase
        // (its primary key finds it), and only a key, not a trace reference.
        if let Some(key) = &filter.key {
            let (a, b) = (sql.text(key.to_ascii_lowercase()), sql.text(key.to_ascii_lowercase()));
            sql.push(&format!(" AND key IN (SELECT span_key FROM span_refs WHERE ref = {a}) AND lower(key) = {b}"));
        }
        if let Some(trace_id) = &filter.trace_id {
            let p = sql.text(trace_id.clone());
            sql.push(&format!(" AND trace_id = {p}"));
        }
        if let Some(q) = &filter.q {
            let (a, b) = (sql.text(contains_pattern(q)), sql.text(contains_pattern(q)));
            sql.push(&format!(" AND (lower(name) LIKE {a} ESCAPE '\\' OR lower(key) LIKE {b} ESCAPE '\\')"));
        }
        // Only an ended span has a duration (an expired one never finished).
        const DURATION: &str = "(end_ns - start_ns)";
        if filter.order.by_duration() || filter.min_duration.is_some() || filter.max_duration.is_some() {
            sql.push(&format!(" AND state = '{}' AND end_ns IS NOT NULL", vocab::state::CLOSED));
        }
        if let Some(min) = filter.min_duration {
            let p = sql.int(min);
            sql.push(&format!(" AND {DURATION} > {p}"));
        }
        if let Some(max) = filter.max_duration {
            let p = sql.int(max);
            sql.push(&format!(" AND {DURATION} <= {p}"));
        }
        if let Some(since) = filter.since {
            let p = sql.int(since.nanos());
            sql.push(&format!(" AND start_ns >= {p}"));
        }
        if let Some(until) = filter.until {
            let p = sql.int(until.nanos());
            sql.push(&format!(" AND start_ns < {p}"));
        }
        let order = filter.order;
        let value = if order.by_duration() { DURATION } else { "start_ns" };
        let (after, direction) = if order.descending() { ("<", "DESC") } else { (">", "ASC") };
        // A cursor of another order was checked away by the API.
        if let Some((_, at, key)) = filter.cursor.as_deref().and_then(decode_cursor) {
            let (a, b, c) = (sql.int(at), sql.int(at), sql.text(key));
            sql.push(&format!(" AND ({value} {after} {a} OR ({value} = {b} AND key {after} {c}))"));
        }
        sql.push(&format!(" ORDER BY {value} {direction}, key {direction} LIMIT {}", filter.limit + 1));

        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut spans = rows.into_iter().map(|row| span_from_row(&Row::Any(row))).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if spans.len() > filter.limit {
            spans.truncate(filter.limit);
            spans.last().map(|last| {
                let at = match (order.by_duration(), last.end) {
                    (true, Some(end)) => end.nanos() - last.start.nanos(),
                    _ => last.start.nanos(),
                };
                encode_cursor(order, at, &last.key)
            })
        } else {
            None
        };
        Ok((spans, next_cursor))
    }

    /// One span by key.
    pub async fn span(&self, key: &str) -> Result<Option<ApiSpan>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_span(&mut Db::Any(&mut conn), key).await
    }

    /// Every span of a trace, ordered by start.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<ApiSpan>, StoreError> {
        let sql = format!("SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id = $1 ORDER BY start_ns, key");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trace_id).fetch_all(&self.pool).await?;
        rows.into_iter().map(|row| span_from_row(&Row::Any(row))).collect()
    }

    /// The references the spans of a trace still wait for: `(span key,
    /// reference)` of each root span that names a parent not received yet
    /// (best reference first), as the trace list's `pending_refs` counts them.
    pub async fn waiting_refs(&self, trace_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.span_key, p.ref FROM span_parent_refs p JOIN spans s ON s.key = p.span_key
             WHERE s.trace_id = $1 AND s.parent_key IS NULL ORDER BY p.span_key, p.position",
        )
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// One page of traces whose first span started in the window, newest
    /// first (ties by trace id), and the cursor of the next page.
    pub async fn traces(&self, filter: &TraceFilter) -> Result<(Vec<TraceSummary>, Option<String>), StoreError> {
        let mut sql = Sql::new("");
        let (failure, open) = (vocab::outcome::FAILURE, vocab::state::OPEN);
        // Candidates: traces with a span starting in the window; the HAVING
        // keeps those whose first span does. Conditions on "some span" are
        // counted over all of a trace's spans. (Each placeholder is bound
        // once, where it is written.)
        let (since, until) = (sql.int(filter.since.nanos()), sql.int(filter.until.nanos()));
        let candidates = format!("SELECT c.trace_id FROM spans c WHERE c.start_ns >= {since} AND c.start_ns < {until}");
        let (since, until) = (sql.int(filter.since.nanos()), sql.int(filter.until.nanos()));
        let mut having = format!("MIN(s.start_ns) >= {since} AND MIN(s.start_ns) < {until}");
        for (column, value) in [("repo", &filter.repo), ("kind", &filter.kind)] {
            if let Some(value) = value {
                let any = sql.any_name(&format!("s.{column}"), value);
                having.push_str(&format!(" AND SUM(CASE WHEN {any} THEN 1 ELSE 0 END) > 0"));
            }
        }
        if let Some(q) = &filter.q {
            let (a, b) = (sql.text(contains_pattern(q)), sql.text(contains_pattern(q)));
            having.push_str(&format!(
                " AND SUM(CASE WHEN lower(s.name) LIKE {a} ESCAPE '\\' OR lower(s.key) LIKE {b} ESCAPE '\\' THEN 1 ELSE 0 END) > 0"
            ));
        }
        let mut outer = String::from("WHERE 1 = 1");
        for (column, wanted) in [("errors", filter.has_error), ("open_spans", filter.open)] {
            match wanted {
                Some(true) => outer.push_str(&format!(" AND {column} > 0")),
                Some(false) => outer.push_str(&format!(" AND {column} = 0")),
                None => {}
            }
        }
        if let Some((start, trace_id)) = filter.cursor.as_deref().and_then(decode_trace_cursor) {
            let (a, b, c) = (sql.int(start), sql.int(start), sql.text(trace_id));
            outer.push_str(&format!(" AND (start_ns < {a} OR (start_ns = {b} AND trace_id < {c}))"));
        }
        sql.push(&format!(
            "WITH t AS (
               SELECT s.trace_id, MIN(s.start_ns) AS start_ns, MAX(s.end_ns) AS end_ns, COUNT(*) AS spans,
                 CAST(SUM(CASE WHEN s.outcome = '{failure}' THEN 1 ELSE 0 END) AS BIGINT) AS errors,
                 CAST(SUM(CASE WHEN s.state = '{open}' THEN 1 ELSE 0 END) AS BIGINT) AS open_spans,
                 CAST(SUM(CASE WHEN s.parent_key IS NULL
                                AND EXISTS (SELECT 1 FROM span_parent_refs p WHERE p.span_key = s.key)
                               THEN 1 ELSE 0 END) AS BIGINT) AS pending
               FROM spans s
               WHERE s.trace_id IN ({candidates})
               GROUP BY s.trace_id
               HAVING {having})
             SELECT trace_id, start_ns, end_ns, spans, errors, open_spans, pending FROM t {outer}
             ORDER BY start_ns DESC, trace_id DESC LIMIT {}",
            filter.limit + 1
        ));
        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut traces = Vec::with_capacity(rows.len());
        for row in rows.iter().take(filter.limit) {
            let start = Timestamp(row.try_get("start_ns")?);
            let open: i64 = row.try_get("open_spans")?;
            let end = if open > 0 { None } else { row.try_get::<Option<i64>, _>("end_ns")?.map(Timestamp) };
            traces.push(TraceSummary {
                trace_id: row.try_get("trace_id")?,
                root: TraceRoot { key: String::new(), name: String::new(), kind: String::new() },
                start,
                end,
                duration_seconds: end.map(|end| start.seconds_until(end)),
                spans: row.try_get("spans")?,
                sources: Vec::new(),
                errors: row.try_get("errors")?,
                open,
                pending_refs: row.try_get("pending")?,
            });
        }
        let next_cursor = match traces.last() {
            Some(last) if rows.len() > filter.limit => Some(encode_trace_cursor(last.start.nanos(), &last.trace_id)),
            _ => None,
        };
        self.fill_roots_and_sources(&mut traces).await?;
        Ok((traces, next_cursor))
    }

    /// Each trace's root (its earliest span without a parent, else its
    /// earliest span) and its sources, in two statements for the page.
    async fn fill_roots_and_sources(&self, traces: &mut [TraceSummary]) -> Result<(), StoreError> {
        if traces.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new("SELECT trace_id, key, name, kind, source, parent_key FROM spans WHERE trace_id IN (");
        let ids: Vec<String> = traces.iter().map(|t| t.trace_id.clone()).collect();
        let list: Vec<String> = ids.iter().map(|id| sql.text(id.clone())).collect();
        sql.push(&list.join(", "));
        sql.push(") ORDER BY trace_id, start_ns, key");
        let mut roots: BTreeMap<String, (bool, TraceRoot)> = BTreeMap::new();
        let mut sources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in sql.query().fetch_all(&self.pool).await? {
            let trace_id: String = row.try_get("trace_id")?;
            let without_parent = row.try_get::<Option<String>, _>("parent_key")?.is_none();
            sources.entry(trace_id.clone()).or_default().insert(row.try_get("source")?);
            let root = TraceRoot { key: row.try_get("key")?, name: row.try_get("name")?, kind: row.try_get("kind")? };
            match roots.get(&trace_id) {
                // The first span seen is the earliest; a later one replaces it
                // only as the first without a parent.
                Some((true, _)) => {}
                Some((false, _)) if !without_parent => {}
                _ => {
                    roots.insert(trace_id, (without_parent, root));
                }
            }
        }
        for trace in traces {
            if let Some((_, root)) = roots.remove(&trace.trace_id) {
                trace.root = root;
            }
            trace.sources = sources.remove(&trace.trace_id).unwrap_or_default().into_iter().collect();
        }
        Ok(())
    }

    /// The trace of the span a trace reference (or span key) names, if any.
    /// A commit sha (7 to 40 hex digits) that no reference names exactly
    /// finds the spans that built, merged or deployed a commit it begins.
    pub async fn trace_of_ref(&self, reference: &str) -> Result<Option<String>, StoreError> {
        let reference = reference.trim().to_ascii_lowercase();
        let row = sqlx::query(
            "SELECT spans.trace_id FROM span_refs JOIN spans ON spans.key = span_refs.span_key
             WHERE span_refs.ref = $1 ORDER BY spans.key LIMIT 1",
        )
        .bind(&reference)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Some(row.try_get(0)?));
        }
        if !(7..=40).contains(&reference.len()) || !reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        // Commit aliases are `{source}:{repo}:sha:{sha}` and `…:deployed:{sha}`
        // (core::link); this scans them, which a search box can afford.
        let row = sqlx::query(
            "SELECT spans.trace_id FROM span_refs JOIN spans ON spans.key = span_refs.span_key
             WHERE span_refs.ref LIKE $1 OR span_refs.ref LIKE $2
             ORDER BY spans.start_ns, spans.key LIMIT 1",
        )
        .bind(format!("%:sha:{reference}%"))
        .bind(format!("%:deployed:{reference}%"))
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    /// Open spans by (source, kind), for the `valuestream_open_spans` gauge.
    pub async fn open_span_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.span_counts("SELECT source, kind, COUNT(*) AS spans FROM spans WHERE state = 'open' GROUP BY source, kind")
            .await
    }

    /// Expired spans by (source, kind), for the `valuestream_expired_spans` gauge.
    pub async fn expired_span_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.span_counts(
            "SELECT source, kind, COUNT(*) AS spans FROM spans WHERE state = 'expired' GROUP BY source, kind",
        )
        .await
    }

    /// Both read a partial index of their state alone (migration 0009), so
    /// the literal state in the statement matters: a bound one would not use it.
    async fn span_counts(&self, sql: &'static str) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get("source")?, row.try_get("kind")?, row.try_get("spans")?))).collect()
    }

    /// What the store has seen, for the dashboard's filter lists and its
    /// coverage strip (`GET /api/v1/meta`). Names come from the metrics
    /// groups that still have spans (a small table), the last delivery per
    /// source from an index of deliveries by source.
    pub async fn meta(&self) -> Result<Meta, StoreError> {
        let mut meta = Meta::default();
        let groups = sqlx::query(
            "SELECT DISTINCT source, kind, repo, project, environment FROM span_groups g
             WHERE EXISTS (SELECT 1 FROM spans s WHERE s.group_id = g.id)",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut names: [BTreeSet<String>; 5] = Default::default();
        for row in &groups {
            for (column, set) in names.iter_mut().enumerate() {
                if let Some(name) = row.try_get::<Option<String>, _>(column)? {
                    set.insert(name);
                }
            }
        }
        let [sources, kinds, repos, projects, environments] = names;
        (meta.sources, meta.kinds, meta.repos, meta.projects, meta.environments) = (
            sources.into_iter().collect(),
            kinds.into_iter().collect(),
            repos.into_iter().collect(),
            projects.into_iter().collect(),
            environments.into_iter().collect(),
        );
        for source in valuestream_core::sources::SOURCES {
            let row = sqlx::query("SELECT MAX(received_at) FROM deliveries WHERE source = $1")
                .bind(source.name())
                .fetch_one(&self.pool)
                .await?;
            if let Some(nanos) = row.try_get::<Option<i64>, _>(0)? {
                meta.last_delivery.insert(source.name().to_string(), Timestamp(nanos));
            }
        }
        // From the references' side: only spans that name a parent have rows
        // there, where most spans of a large store are roots (the other way
        // round read every root: 0.64 s of a million spans). CROSS JOIN keeps
        // SQLite's planner to that order; PostgreSQL plans it as any join.
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT p.span_key) FROM span_parent_refs p CROSS JOIN spans s
             WHERE s.key = p.span_key AND s.parent_key IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        meta.waiting_references = row.try_get(0)?;
        Ok(meta)
    }

    /// How many deliveries the store holds, by status (for replay's summary and tests).
    pub async fn delivery_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM deliveries").fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }
}
