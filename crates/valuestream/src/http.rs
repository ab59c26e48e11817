//! HTTP: the webhook routes, the span and trace API, health checks. Errors map
//! to status codes in one place ([`ApiError`]).

use crate::body::{self, BodyError, InflightBudget};
use crate::config::ServeConfig;
use crate::ingest::{Ingest, IngestError};
use crate::metrics::{self, DoraFilter, SpanScope, Window};
use crate::store::{ApiSpan, SpanFilter, SpanOrder, Store, TraceFilter};
use crate::telemetry::Telemetry;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use valuestream_core::delivery::Delivery;
use valuestream_core::sources;
use valuestream_core::time::Timestamp;
use valuestream_core::verify::AuthError;
use valuestream_core::vocab;

/// Longest time one request may take before it is answered 408 (at least
/// this, and longer than `--body-timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// What a 503 for a full server (connections, in-flight bodies) tells the
/// sender to wait, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 5;

#[derive(Clone)]
pub struct AppState {
    store: Store,
    ingest: Ingest,
    secrets: Arc<BTreeMap<&'static str, Vec<String>>>,
    api_token: Option<Arc<str>>,
    max_body_bytes: usize,
    body_timeout: Duration,
    inflight: Arc<InflightBudget>,
    telemetry: Telemetry,
    production_environments: Arc<Vec<String>>,
    trace_url: Option<Arc<str>>,
}

impl axum::extract::FromRef<AppState> for crate::dashboard::SignIn {
    fn from_ref(state: &AppState) -> crate::dashboard::SignIn {
        crate::dashboard::SignIn { api_token: state.api_token.clone() }
    }
}

impl AppState {
    pub fn new(store: Store, ingest: Ingest, config: &ServeConfig, telemetry: Telemetry) -> AppState {
        AppState {
            store,
            ingest,
            telemetry,
            production_environments: Arc::new(config.production_environments.clone()),
            trace_url: config.trace_url.as_deref().map(Arc::from),
            secrets: Arc::new(config.secrets.clone()),
            api_token: config.api_token.as_deref().map(Arc::from),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.limits.body_timeout,
            inflight: InflightBudget::new(config.limits.max_inflight_bytes),
        }
    }
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let request_timeout = REQUEST_TIMEOUT.max(state.body_timeout + Duration::from_secs(10));
    let api = Router::new()
        .route("/api/v1/spans", get(list_spans))
        .route("/api/v1/traces", get(traces))
        .route("/api/v1/traces/{trace_id}", get(trace_by_id))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/dora", get(dora))
        .route("/api/v1/dora/items", get(dora_items))
        .route("/api/v1/meta", get(meta))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_token));
    Router::new()
        .route("/webhooks/{source}", post(webhook).fallback(webhook_other_method))
        .route("/{source}", post(webhook).fallback(webhook_other_method))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .merge(api)
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        // We enforce --max-body-bytes ourselves (413 with a reason); axum's own
        // 2 MB default would otherwise cut GitHub's 25 MB deliveries short.
        .layer(DefaultBodyLimit::max(max_body_bytes.saturating_add(1)))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .with_state(state)
}

/// Another method than POST on a webhook path: an unknown source's path is
/// no route at all (404); a source's path takes only POST (405).
async fn webhook_other_method(Path(source): Path<String>) -> Response {
    if sources::by_name(&source).is_none() {
        return ApiError::NotFound("no such route".into()).into_response();
    }
    let allow = [(axum::http::header::ALLOW, "POST")];
    (
        StatusCode::METHOD_NOT_ALLOWED,
        allow,
        Json(json!({"error": format!("/{source} takes POST (webhook deliveries)")})),
    )
        .into_response()
}

/// Every error the HTTP layer answers, with its status code.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized(String),
    NotFound(String),
    TooLarge(String),
    /// 408: the sender was too slow.
    Timeout(String),
    Unavailable(String),
    /// 503 with `Retry-After`: the server is full (connections, bodies in memory).
    Busy(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::Timeout(m) => (StatusCode::REQUEST_TIMEOUT, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::Busy(m) => {
                let retry_after = [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string())];
                return (StatusCode::SERVICE_UNAVAILABLE, retry_after, Json(json!({"error": m}))).into_response();
            }
        };
        let mut response = (status, Json(json!({"error": message}))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // docs/api.md: 503 means "the sender retries".
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        response
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        match error {
            IngestError::Unauthorized(e) => ApiError::Unauthorized(e.to_string()),
            IngestError::BadRequest(e) => ApiError::BadRequest(e.to_string()),
            IngestError::Unavailable(e) => ApiError::Unavailable(e),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> ApiError {
        tracing::error!(%error, "The store failed a query.");
        ApiError::Unavailable("the store is not available".into())
    }
}

async fn webhook(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let source =
        sources::by_name(&source_name).ok_or_else(|| ApiError::NotFound(format!("unknown source `{source_name}`")))?;
    let deadline = tokio::time::Instant::now() + state.body_timeout;
    let (parts, body) = request.into_parts();
    let limit = state.max_body_bytes;
    // Held until the delivery is answered: the body stays in memory until then.
    let (body, _reservation) =
        body::read(&parts.headers, body, limit, deadline, &state.inflight).await.map_err(|error| {
            let (kind, reason, answer) = match error {
                BodyError::TooLarge => (
                    "too large",
                    format!("body is larger than --max-body-bytes ({limit} bytes)"),
                    ApiError::TooLarge(format!("body is larger than {limit} bytes (--max-body-bytes)")),
                ),
                BodyError::TimedOut => {
                    let seconds = state.body_timeout.as_secs_f64();
                    (
                        "too slow",
                        format!("body did not arrive within --body-timeout ({seconds} s)"),
                        ApiError::Timeout(format!("the body did not arrive within {seconds} s (--body-timeout)")),
                    )
                }
                BodyError::OverBudget => (
                    "server full",
                    format!("request bodies in memory are at --max-inflight-bytes ({} bytes)", state.inflight.limit()),
                    ApiError::Busy(
                        "too many request bodies in memory at once (--max-inflight-bytes); retry later".into(),
                    ),
                ),
                BodyError::Broken(error) => (
                    "bad request",
                    "the body could not be read".to_string(),
                    ApiError::BadRequest(format!("the body could not be read: {error}")),
                ),
            };
            // Only the sender's id is known without the body.
            let unread = Delivery::new(source.name(), stored_headers(&parts.headers), Vec::new(), now());
            let delivery =
                source.delivery_id(&unread).map_or("unknown".to_string(), |id| format!("{}:{id}", source.name()));
            tracing::info!(source = source.name(), %delivery, kind, reason, "Delivery rejected.");
            answer
        })?;
    let headers = stored_headers(&parts.headers);
    let query = parts.uri.query().map(str::to_string);
    let delivery = Delivery::new(source.name(), headers, body, now()).with_query(query);
    let event = source.event_type(&delivery);
    let secrets = state.secrets.get(source.name()).cloned().unwrap_or_default();
    // Known before the delivery moves into the pipeline, for the rejection's log line.
    let delivery_id = crate::ingest::delivery_id(source, &delivery);
    match state.ingest.submit(source, delivery, &secrets).await {
        Ok(ack) => {
            state.telemetry.delivery(source.name(), &event, ack.status.as_str());
            tracing::info!(source = source.name(), event, delivery = %ack.delivery_id, status = ack.status.as_str(), spans = ack.spans, "Delivery stored.");
            Ok(Json(ack).into_response())
        }
        Err(error) => {
            state.telemetry.delivery(source.name(), &event, "rejected");
            // The full error can quote a payload value (serde names the bad
            // value), so it is logged at debug only; the sender gets it in the
            // answer. At info, a reason that quotes none.
            let kind = match &error {
                IngestError::Unauthorized(_) => "unauthorized",
                IngestError::BadRequest(_) => "bad request",
                IngestError::Unavailable(_) => "store unavailable",
            };
            let reason = rejection_reason(&error, secrets.len());
            tracing::info!(source = source.name(), event, delivery = %delivery_id, kind, reason, "Delivery rejected.");
            tracing::debug!(source = source.name(), event, delivery = %delivery_id, %error, "Why the delivery was rejected.");
            Err(error.into())
        }
    }
}

/// Why a delivery was rejected, quoting no payload value (for info logs).
fn rejection_reason(error: &IngestError, secrets: usize) -> String {
    let plural = if secrets == 1 { "" } else { "s" };
    match error {
        IngestError::Unauthorized(AuthError::Mismatch(header)) => {
            format!("{header} matches none of {secrets} configured secret{plural}")
        }
        IngestError::Unauthorized(other) => other.to_string(),
        IngestError::BadRequest(parse) => parse.reason(),
        IngestError::Unavailable(_) => "the store cannot take the delivery".to_string(),
    }
}

/// The request's headers (credentials included: sources authenticate with
/// them; `ingest::prepare` drops them before anything is stored).
fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// `GET /metrics`: Prometheus text, with gauges read from the store now.
async fn prometheus(State(state): State<AppState>) -> Result<Response, ApiError> {
    let open = state.store.open_span_counts().await?;
    let expired = state.store.expired_span_counts().await?;
    let queue = state.store.outbox_len().await?;
    let body = state.telemetry.render(&open, &expired, queue);
    Ok(([(axum::http::header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)], body).into_response())
}

/// `GET /readyz`: 200 only while the writer runs and can commit and the
/// store answers; else 503 with the reason.
async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = match state.ingest.readiness() {
        Ok(()) if state.store.ping().await => Ok(()),
        Ok(()) => Err("the store does not answer".to_string()),
        Err(reason) => Err(reason),
    };
    match readiness {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "reason": reason}))).into_response()
        }
    }
}

async fn require_api_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.api_token else {
        return next.run(request).await;
    };
    // The bearer token, or the dashboard's cookie (dashboard.rs).
    if crate::dashboard::token_of_request(request.headers(), expected) {
        next.run(request).await
    } else {
        ApiError::Unauthorized("missing or wrong API token (Authorization: Bearer …)".into()).into_response()
    }
}

/// Parses `since`/`until` (see [`metrics::parse_time`]); 400 naming the parameter.
pub fn parse_time(name: &str, value: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    metrics::parse_time(name, value, now).map_err(ApiError::BadRequest)
}

const SPAN_PARAMS: &[&str] = &[
    "source",
    "kind",
    "repo",
    "project",
    "environment",
    "outcome",
    "state",
    "key",
    "trace_id",
    "q",
    "min_duration",
    "max_duration",
    "since",
    "until",
    "order",
    "limit",
    "cursor",
    "format",
    "token",
];

/// A duration parameter in nanoseconds: seconds (`90`, `1.5`) or a number
/// with a unit (`30m`, `2d`); 400 naming the parameter.
fn duration_param(name: &str, value: &str) -> Result<i64, ApiError> {
    let bad =
        || ApiError::BadRequest(format!("`{name}` must be seconds or a duration like 30m, 12h, 2d; got {value:?}"));
    if let Ok(seconds) = value.trim().parse::<f64>() {
        return match seconds {
            s if (0.0..9.2e9).contains(&s) => Ok((s * 1e9).round() as i64),
            _ => Err(bad()),
        };
    }
    match crate::config::parse_age(value) {
        Ok(Some(age)) => i64::try_from(age.as_nanos()).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

async fn list_spans(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !SPAN_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!("unknown parameter `{unknown}`")));
    }
    let now = now();
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let limit = match params.get("limit") {
        None => 100,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be a whole number from 1 to 1000; got {value:?}"
                )));
            }
        },
    };
    let state_filter = text("state");
    if let Some(s) = &state_filter
        && ![vocab::state::OPEN, vocab::state::CLOSED, vocab::state::EXPIRED].contains(&s.as_str())
    {
        return Err(ApiError::BadRequest(format!("`state` must be open, closed or expired; got {s:?}")));
    }
    let order = match text("order") {
        None => SpanOrder::Start,
        Some(order) => SpanOrder::parse(&order).map_err(ApiError::BadRequest)?,
    };
    let cursor = text("cursor");
    if let Some(c) = &cursor {
        match crate::store::decode_cursor(c) {
            None => return Err(ApiError::BadRequest("`cursor` is not a cursor this API returned".into())),
            Some((of, _, _)) if of != order => {
                return Err(ApiError::BadRequest("`cursor` belongs to another `order`".into()));
            }
            Some(_) => {}
        }
    }
    let trace_id = text("trace_id").map(|t| t.to_ascii_lowercase());
    if let Some(t) = &trace_id
        && (t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::BadRequest(format!("`trace_id` must be 32 hex digits; got {t:?}")));
    }
    let csv = match params.get("format").map(String::as_str) {
        None | Some("" | "json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("`format` must be json or csv; got {other:?}"))),
    };
    let duration = |name: &str| text(name).map(|v| duration_param(name, &v)).transpose();
    let filter = SpanFilter {
        source: text("source"),
        kind: text("kind"),
        repo: text("repo"),
        project: text("project"),
        environment: text("environment"),
        outcome: text("outcome"),
        state: state_filter,
        key: text("key"),
        trace_id,
        q: text("q"),
        min_duration: duration("min_duration")?,
        max_duration: duration("max_duration")?,
        since: params.get("since").map(|v| parse_time("since", v, now)).transpose()?,
        until: params.get("until").map(|v| parse_time("until", v, now)).transpose()?,
        order,
        limit,
        cursor,
    };
    let (spans, next_cursor) = state.store.spans(&filter).await?;
    if csv {
        return Ok(csv_download("spans", &spans_csv(&spans), next_cursor.as_deref()));
    }
    Ok(Json(json!({"spans": spans, "next_cursor": next_cursor})).into_response())
}

/// The columns of `GET /api/v1/spans?format=csv`, one line per span.
const SPAN_CSV_COLUMNS: &[&str] = &[
    "key",
    "kind",
    "source",
    "name",
    "repo",
    "project",
    "environment",
    "state",
    "outcome",
    "start",
    "end",
    "duration_seconds",
    "trace_id",
    "span_id",
    "parent_key",
];

fn spans_csv(spans: &[ApiSpan]) -> String {
    let rows = spans.iter().map(|s| {
        let environment = s.attributes.get(valuestream_core::vocab::attr::ENVIRONMENT).cloned();
        vec![
            json!(s.key),
            json!(s.kind),
            json!(s.source),
            json!(s.name),
            json!(s.repo),
            json!(s.project),
            environment.unwrap_or(serde_json::Value::Null),
            json!(s.state),
            json!(s.outcome),
            json!(s.start),
            json!(s.end),
            json!(s.duration_seconds),
            json!(s.trace_id),
            json!(s.span_id),
            json!(s.parent_key),
        ]
    });
    crate::csv::table(SPAN_CSV_COLUMNS, rows)
}

/// A CSV answer offered as `valuestream-{name}.csv`; a further page's
/// cursor, if any, in the `Next-Cursor` header.
fn csv_download(name: &str, body: &str, next_cursor: Option<&str>) -> Response {
    let mut response = (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"valuestream-{name}.csv\"")),
        ],
        body.to_string(),
    )
        .into_response();
    if let Some(cursor) = next_cursor.and_then(|c| axum::http::HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert("next-cursor", cursor);
    }
    response
}

async fn trace_by_id(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let trace_id = trace_id.to_ascii_lowercase();
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest("trace id must be 32 hex digits".into()));
    }
    let spans = state.store.trace(&trace_id).await?;
    if spans.is_empty() {
        return Err(ApiError::NotFound(format!("no trace {trace_id}")));
    }
    Ok(Json(trace_json(&state, &trace_id, spans).await?))
}

const TRACES_PARAMS: &[&str] =
    &["ref", "since", "until", "repo", "kind", "has_error", "open", "q", "limit", "cursor", "token"];

/// `GET /api/v1/traces`: with `ref`, the trace it names; without, the list.
async fn traces(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    reject_unknown(&params, TRACES_PARAMS)?;
    if let Some(reference) = params.get("ref") {
        return trace_by_ref(&state, reference).await;
    }
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let flag = |name: &str| -> Result<Option<bool>, ApiError> {
        match text(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::BadRequest(format!("`{name}` must be true or false; got {other:?}"))),
        }
    };
    let limit = match params.get("limit") {
        None => 50,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be a whole number from 1 to 500; got {value:?}"
                )));
            }
        },
    };
    let cursor = text("cursor");
    if cursor.as_deref().is_some_and(|c| crate::store::decode_trace_cursor(c).is_none()) {
        return Err(ApiError::BadRequest("`cursor` is not a cursor this API returned".into()));
    }
    let window = window_of(&params, now())?;
    let filter = TraceFilter {
        since: window.since,
        until: window.until,
        repo: text("repo"),
        kind: text("kind"),
        has_error: flag("has_error")?,
        open: flag("open")?,
        q: text("q"),
        limit,
        cursor,
    };
    let (traces, next_cursor) = state.store.traces(&filter).await?;
    Ok(Json(json!({"traces": traces, "next_cursor": next_cursor})))
}

async fn trace_by_ref(state: &AppState, reference: &str) -> Result<Json<serde_json::Value>, ApiError> {
    if reference.is_empty() {
        return Err(ApiError::BadRequest("`ref` is empty; e.g. ?ref=vstrace-github-hello-world-27".into()));
    }
    let trace_id = state
        .store
        .trace_of_ref(reference)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no span answers to {reference:?}")))?;
    let spans = state.store.trace(&trace_id).await?;
    Ok(Json(trace_json(state, &trace_id, spans).await?))
}

/// Reads `since`/`until` (default: the last 30 days up to now); 400 naming a bad one.
fn window_of(params: &HashMap<String, String>, now: Timestamp) -> Result<Window, ApiError> {
    let value = |name: &str| params.get(name).map(String::as_str);
    Window::parse(value("since"), value("until"), ["since", "until"], now).map_err(ApiError::BadRequest)
}

fn reject_unknown(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::BadRequest(format!("unknown parameter `{unknown}`"))),
        None => Ok(()),
    }
}

const SUMMARY_PARAMS: &[&str] =
    &["group_by", "source", "kind", "repo", "project", "environment", "since", "until", "histogram", "bucket", "token"];

async fn summary(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    reject_unknown(&params, SUMMARY_PARAMS)?;
    let window = window_of(&params, now())?;
    let group_by = parse_group_by(params.get("group_by").map(String::as_str))?;
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let scope = SpanScope {
        source: text("source"),
        kind: text("kind"),
        repo: text("repo"),
        project: text("project"),
        environment: text("environment"),
    };
    let with_histogram = match params.get("histogram").map(String::as_str) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("`histogram` must be true or false; got {other:?}"))),
    };
    let store = &state.store;
    Ok(Json(match (buckets_of(&params, window)?, with_histogram) {
        (Some(buckets), _) => {
            metrics::summary_series(store, window, &group_by, &scope, with_histogram, &buckets).await?
        }
        (None, false) => metrics::summary(store, window, &group_by, &scope).await?,
        (None, true) => metrics::summary_with_histogram(store, window, &group_by, &scope).await?,
    }))
}

/// `group_by` (see [`metrics::parse_group_by`]); 400 naming the bad key.
pub fn parse_group_by(value: Option<&str>) -> Result<Vec<String>, ApiError> {
    metrics::parse_group_by(value).map_err(ApiError::BadRequest)
}

const DORA_PARAMS: &[&str] = &["repo", "project", "environment", "since", "until", "bucket", "token"];

/// The DORA filters of a request (`repo`, `project`, `environment`).
fn dora_filter(state: &AppState, params: &HashMap<String, String>) -> DoraFilter {
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    DoraFilter {
        repo: text("repo"),
        project: text("project"),
        environment: text("environment"),
        production: state.production_environments.to_vec(),
    }
}

/// The buckets `bucket=` asks for in `window`, if any; 400 naming a bad one.
fn buckets_of(params: &HashMap<String, String>, window: Window) -> Result<Option<Vec<Window>>, ApiError> {
    let Some(bucket) = params.get("bucket").filter(|b| !b.is_empty()) else { return Ok(None) };
    let bucket = metrics::Bucket::parse(bucket).map_err(ApiError::BadRequest)?;
    metrics::buckets(window, bucket).map(Some).map_err(ApiError::BadRequest)
}

async fn dora(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    reject_unknown(&params, DORA_PARAMS)?;
    let window = window_of(&params, now())?;
    let filter = dora_filter(&state, &params);
    match buckets_of(&params, window)? {
        None => Ok(Json(metrics::dora(&state.store, window, &filter).await?)),
        Some(buckets) => Ok(Json(metrics::dora_series(&state.store, window, &filter, &buckets).await?)),
    }
}

const DORA_ITEMS_PARAMS: &[&str] =
    &["key", "repo", "project", "environment", "since", "until", "bucket", "format", "limit", "token"];

/// `GET /api/v1/dora/items?key=…`: the rows behind one of `/api/v1/dora`'s
/// counts, as JSON or (`format=csv`) as a CSV download.
async fn dora_items(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    reject_unknown(&params, DORA_ITEMS_PARAMS)?;
    let key = params.get("key").filter(|k| !k.is_empty()).ok_or_else(|| {
        ApiError::BadRequest("`key` is required: deployments, changes, failed, incidents, failures or rework".into())
    })?;
    let key = metrics::ItemKey::parse(key).map_err(ApiError::BadRequest)?;
    let csv = match params.get("format").map(String::as_str) {
        None | Some("" | "json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("`format` must be json or csv; got {other:?}"))),
    };
    let window = window_of(&params, now())?;
    let filter = dora_filter(&state, &params);
    let buckets = buckets_of(&params, window)?;
    let limit = match params.get("limit") {
        None => None,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(ApiError::BadRequest(format!("`limit` must be a whole number above 0; got {value:?}"))),
        },
    };
    let (items, count) =
        metrics::dora_items_page(&state.store, window, &filter, key, buckets.as_deref(), limit).await?;
    if csv {
        return Ok(csv_download(key.name(), &metrics::items_csv(key, &items), None));
    }
    let body = json!({
        "key": key.name(),
        "since": window.since,
        "until": window.until,
        "count": count,
        "items": items,
    });
    Ok(Json(body).into_response())
}

/// `GET /api/v1/meta`: the names seen (for filter lists), each source's
/// latest delivery and the spans waiting for a parent (the coverage strip).
/// `/api/v1/meta`: what the store has seen, and the configuration's link
/// into the trace backend (for the trace page).
#[derive(serde::Serialize)]
struct MetaAnswer {
    #[serde(flatten)]
    seen: crate::store::Meta,
    trace_url: Option<String>,
}

async fn meta(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<MetaAnswer>, ApiError> {
    reject_unknown(&params, &["token"])?;
    let seen = state.store.meta().await?;
    Ok(Json(MetaAnswer { seen, trace_url: state.trace_url.as_deref().map(String::from) }))
}

/// A trace: its spans, and the references its root spans still wait for.
async fn trace_json(state: &AppState, trace_id: &str, spans: Vec<ApiSpan>) -> Result<serde_json::Value, ApiError> {
    let waiting: Vec<serde_json::Value> = state
        .store
        .waiting_refs(trace_id)
        .await?
        .into_iter()
        .map(|(span_key, reference)| json!({"span_key": span_key, "ref": reference}))
        .collect();
    Ok(json!({"trace_id": trace_id, "spans": spans, "waiting": waiting}))
}
