//! Full-stack tests: the real server on port 0, signed real-shaped GitHub
//! deliveries over HTTP, the API read back, and an in-process OTLP/HTTP
//! receiver that checks what was exported.

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use valuestream::config::{LogFormat, ServeConfig, TracerBackend};
use valuestream::export::Protocol;
use valuestream_core::ids;
use valuestream_core::sources::SourceOptions;
use valuestream_core::time::Timestamp;
use valuestream_core::verify::hmac_sha256_hex;

const SECRET: &str = "s3cret";
const ISSUE_KEY: &str = "github:octo-org/hello-world:issue:27";
const PR_KEY: &str = "github:octo-org/hello-world:pull_request:42";

// ---------------------------------------------------------------- payloads

fn fixture(name: &str) -> Value {
    let path = format!("{}/../valuestream-core/tests/data/github/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Moves a real payload to repository octo-org/hello-world (the rest stays as recorded).
fn in_hello_world(mut body: Value) -> Value {
    body["repository"]["name"] = json!("hello-world");
    body["repository"]["full_name"] = json!("octo-org/hello-world");
    body["repository"]["owner"]["login"] = json!("octo-org");
    body["repository"]["html_url"] = json!("https://github.com/octo-org/hello-world");
    body
}

/// A real `issues` payload for issue #27, in the given state at the given times.
fn issue(action: &str, state: &str, updated: &str, closed: Option<&str>) -> Value {
    let mut body = in_hello_world(fixture("issues.opened.plain"));
    body["action"] = json!(action);
    let issue = &mut body["issue"];
    issue["number"] = json!(27);
    issue["state"] = json!(state);
    issue["created_at"] = json!("2026-11-20T09:00:00Z");
    issue["updated_at"] = json!(updated);
    issue["closed_at"] = json!(closed);
    issue["labels"] = json!([]);
    body
}

/// A real `pull_request` payload for PR #42 on a branch that names issue #27.
fn pull_request(action: &str, state: &str, updated: &str, merged_at: Option<&str>) -> Value {
    let mut body = in_hello_world(fixture("pull_request.opened.installation"));
    body["action"] = json!(action);
    let pr = &mut body["pull_request"];
    pr["number"] = json!(42);
    pr["state"] = json!(state);
    pr["created_at"] = json!("2026-11-20T10:00:00Z");
    pr["updated_at"] = json!(updated);
    pr["closed_at"] = json!(merged_at);
    pr["merged_at"] = json!(merged_at);
    pr["merged"] = json!(merged_at.is_some());
    pr["merge_commit_sha"] = json!(merged_at.map(|_| "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"));
    pr["head"]["ref"] = json!("feature/vstrace-github-hello-world-27/x");
    body
}

fn review(state: &str, submitted: &str) -> Value {
    let mut body = in_hello_world(fixture("pull_request_review.submitted.installation"));
    body["review"]["state"] = json!(state);
    body["review"]["submitted_at"] = json!(submitted);
    body["pull_request"]["number"] = json!(42);
    body["pull_request"]["created_at"] = json!("2026-11-20T10:00:00Z");
    body["pull_request"]["head"]["ref"] = json!("feature/vstrace-github-hello-world-27/x");
    body
}

/// The scenario of the foundation issue, in the order it happens.
fn scenario() -> Vec<(&'static str, Value)> {
    vec![
        ("issues", issue("opened", "open", "2026-11-20T09:00:00Z", None)),
        ("pull_request", pull_request("opened", "open", "2026-11-20T10:00:00Z", None)),
        ("pull_request_review", review("approved", "2026-11-20T12:00:00Z")),
        ("pull_request", pull_request("closed", "closed", "2026-11-21T16:30:00Z", Some("2026-11-21T16:30:00Z"))),
        ("issues", issue("closed", "closed", "2026-11-21T17:00:00Z", Some("2026-11-21T17:00:00Z"))),
    ]
}

// ---------------------------------------------------------------- harness

/// Spans received by the in-process OTLP/HTTP receiver.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>,
    arrived: Arc<Notify>,
}

impl Received {
    async fn wait_for(&self, count: usize) -> Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.arrived.notified();
            {
                let spans = self.spans.lock().unwrap();
                if spans.len() >= count {
                    return spans.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {count} exported spans, got {}", self.spans.lock().unwrap().len());
            }
        }
    }
}

async fn start_otlp_receiver(listener: TcpListener) -> Received {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("a valid OTLP request");
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        for span in scope.spans {
                            sink.spans.lock().unwrap().push((service.clone(), span));
                        }
                    }
                }
                sink.arrived.notify_waiters();
                ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    received
}

struct App {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    database: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("vs-e2e-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) * 1_000_000 + (chrono::Utc::now().timestamp_subsec_micros() as u64)
}

fn config(database: &str, tracer: TracerBackend, otlp_endpoint: Option<String>, secrets: &[&str]) -> ServeConfig {
    let mut all = BTreeMap::new();
    all.insert("github", secrets.iter().map(|s| s.to_string()).collect());
    ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        database: database.to_string(),
        tracer,
        tracer_access_token: None,
        log_format: LogFormat::Text,
        log_level: "warn".into(),
        api_token: None,
        allow_unsigned: false,
        max_body_bytes: 1_000_000,
        secrets: all,
        source_options: SourceOptions::default(),
        otlp_protocol: Protocol::HttpProtobuf,
        otlp_endpoint,
    }
}

async fn spawn_app(configure: impl FnOnce(&str) -> ServeConfig) -> App {
    let dir = TempDir::new();
    let database = format!("sqlite://{}", dir.0.join("vs.db").display());
    let config = configure(&database);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(valuestream::server::run(config, listener, async {
        let _ = stopped.await;
    }));
    App { base, client: reqwest::Client::new(), stop: Some(stop), task, database, _dir: dir }
}

impl App {
    async fn post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts a GitHub delivery signed with `SECRET`.
    async fn github(&self, event: &str, delivery: &str, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let signature = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &body));
        let headers = [
            ("content-type", "application/json".to_string()),
            ("x-github-event", event.to_string()),
            ("x-github-delivery", delivery.to_string()),
            ("x-hub-signature-256", signature),
        ];
        self.post("/webhooks/github", &headers, body).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn nanos(text: &str) -> u64 {
    Timestamp::parse_rfc3339(text).unwrap().nanos() as u64
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn scenario_gives_one_trace_in_the_api_and_in_otlp() {
    let otlp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", otlp.local_addr().unwrap());
    let received = start_otlp_receiver(otlp).await;
    let app = spawn_app(|db| config(db, TracerBackend::Otlp, Some(endpoint), &[SECRET])).await;

    for (i, (event, body)) in scenario().iter().enumerate() {
        let (status, answer) = app.github(event, &format!("delivery-{i}"), body).await;
        assert_eq!(status, 200, "{event}: {answer}");
        assert_eq!(answer["status"], "accepted", "{event}: {answer}");
        assert_eq!(answer["spans"], 1);
    }

    let (status, trace) = app.get("/api/v1/traces?ref=vstrace-github-hello-world-27").await;
    assert_eq!(status, 200, "{trace}");
    let trace_id = ids::trace_id(ISSUE_KEY);
    assert_eq!(trace["trace_id"], trace_id);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{trace}");
    let (issue, pr) = (&spans[0], &spans[1]);
    assert_eq!(issue["key"], ISSUE_KEY);
    assert_eq!(issue["span_id"], ids::span_id(ISSUE_KEY));
    assert_eq!(issue["parent_key"], Value::Null);
    assert_eq!(issue["start"], "2026-11-20T09:00:00Z");
    assert_eq!(issue["end"], "2026-11-21T17:00:00Z");
    assert_eq!(issue["outcome"], "completed");
    assert_eq!(pr["key"], PR_KEY);
    assert_eq!(pr["name"], "pull_request hello-world#42");
    assert_eq!(pr["trace_id"], trace_id);
    assert_eq!(pr["parent_key"], ISSUE_KEY);
    assert_eq!(pr["parent_span_id"], ids::span_id(ISSUE_KEY));
    assert_eq!(pr["start"], "2026-11-20T10:00:00Z");
    assert_eq!(pr["end"], "2026-11-21T16:30:00Z");
    assert_eq!(pr["duration_seconds"], 109800.0);
    assert_eq!(pr["outcome"], "merged");
    assert_eq!(pr["attributes"]["valuestream.first_review_at"], "2026-11-20T12:00:00Z");
    assert_eq!(pr["attributes"]["valuestream.first_approval_at"], "2026-11-20T12:00:00Z");
    assert_eq!(pr["attributes"]["vcs.ref.head.name"], "feature/vstrace-github-hello-world-27/x");

    // The same trace by id, and the spans list filtered by kind.
    let (status, by_id) = app.get(&format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id, trace);
    let (_, prs) = app.get("/api/v1/spans?kind=pull_request&state=closed").await;
    assert_eq!(prs["spans"].as_array().unwrap().len(), 1);

    // The OTLP receiver got both spans with the same ids and payload times.
    let exported = received.wait_for(2).await;
    let find = |key: &str| {
        exported
            .iter()
            .find(|(_, s)| s.span_id == hex::decode(ids::span_id(key)).unwrap())
            .unwrap_or_else(|| panic!("{key} was not exported"))
            .clone()
    };
    let (service, issue_span) = find(ISSUE_KEY);
    assert!(service.contains("github"), "service.name is the source: {service}");
    assert_eq!(hex::encode(&issue_span.trace_id), trace_id);
    assert!(issue_span.parent_span_id.is_empty());
    assert_eq!(issue_span.start_time_unix_nano, nanos("2026-11-20T09:00:00Z"));
    assert_eq!(issue_span.end_time_unix_nano, nanos("2026-11-21T17:00:00Z"));
    let (_, pr_span) = find(PR_KEY);
    assert_eq!(pr_span.name, "pull_request hello-world#42");
    assert_eq!(hex::encode(&pr_span.trace_id), trace_id);
    assert_eq!(hex::encode(&pr_span.parent_span_id), ids::span_id(ISSUE_KEY));
    assert_eq!(pr_span.start_time_unix_nano, nanos("2026-11-20T10:00:00Z"));
    assert_eq!(pr_span.end_time_unix_nano, nanos("2026-11-21T16:30:00Z"));
    assert_eq!(exported.len(), 2, "each finished span is exported once");
    app.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_down_delays_spans_but_loses_none() {
    // Reserve a port, then free it: nothing listens there until we start the receiver.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/traces");
    let app = spawn_app(|db| config(db, TracerBackend::Otlp, Some(endpoint), &[SECRET])).await;
    for (i, (event, body)) in scenario().iter().enumerate() {
        assert_eq!(app.github(event, &format!("d-{i}"), body).await.0, 200);
    }
    let store = valuestream::store::Store::open(&app.database).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 2, "both finished spans wait in the outbox");

    let received = start_otlp_receiver(TcpListener::bind(("127.0.0.1", port)).await.unwrap()).await;
    let exported = received.wait_for(2).await;
    assert_eq!(exported.len(), 2);
    // Once acknowledged, the outbox is emptied (the removal follows the ack).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.outbox_len().await.unwrap() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox was not emptied after export");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
    assert_eq!(received.spans.lock().unwrap().len(), 2, "nothing is sent twice");
}

#[tokio::test]
async fn signatures_are_checked_and_rotation_works() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &["old-secret", SECRET])).await;
    let body = serde_json::to_vec(&issue("opened", "open", "2026-11-20T09:00:00Z", None)).unwrap();
    let headers = |signature: Option<String>, id: &str| {
        let mut h = vec![("x-github-event", "issues".to_string()), ("x-github-delivery", id.to_string())];
        if let Some(s) = signature {
            h.push(("x-hub-signature-256", s));
        }
        h
    };
    let good = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &body));
    let old = format!("sha256={}", hmac_sha256_hex(b"old-secret", &body));
    let wrong = format!("sha256={}", hmac_sha256_hex(b"guess", &body));

    let (status, answer) = app.post("/webhooks/github", &headers(None, "a"), body.clone()).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (401, "missing X-Hub-Signature-256 header"));
    let (status, _) = app.post("/webhooks/github", &headers(Some(wrong), "a"), body.clone()).await;
    assert_eq!(status, 401);
    let (status, answer) =
        app.post("/webhooks/github", &headers(Some(good[..30].to_string()), "a"), body.clone()).await;
    assert_eq!(status, 401, "truncated: {answer}");
    let (_, spans) = app.get("/api/v1/spans").await;
    assert_eq!(spans["spans"].as_array().unwrap().len(), 0, "rejected deliveries change nothing");

    let (status, answer) = app.post("/webhooks/github", &headers(Some(good.clone()), "a"), body.clone()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "accepted"));
    let (status, answer) = app.post("/github", &headers(Some(old), "b"), body.clone()).await;
    assert_eq!(
        (status, answer["status"].as_str().unwrap()),
        (200, "accepted"),
        "the original's path and the old secret"
    );
    let (status, answer) = app.post("/webhooks/github", &headers(Some(good), "a"), body).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "duplicate"));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_answered_with_the_reason() {
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::None, None, &[]);
        c.max_body_bytes = 64 * 1024;
        c
    })
    .await;
    let h = |event: &str| vec![("x-github-event", event.to_string()), ("content-type", "application/json".to_string())];

    let (status, answer) = app.post("/webhooks/github", &h("issues"), b"{\"action\": ".to_vec()).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("body is not valid JSON"), "{answer}");

    let (status, answer) = app.post("/webhooks/github", &h("issues"), br#"{"action":"opened"}"#.to_vec()).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (400, "invalid payload at `.`: missing field `issue`"));

    let mut wrong_type = issue("opened", "open", "2026-11-20T09:00:00Z", None);
    wrong_type["issue"]["number"] = json!("twenty-seven");
    let (status, answer) = app.post("/webhooks/github", &h("issues"), serde_json::to_vec(&wrong_type).unwrap()).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("issue.number"), "{answer}");

    // Over the limit: 413 (axum's own 2 MB default does not apply; ours is 64 KiB here).
    let (status, answer) = app.post("/webhooks/github", &h("issues"), vec![b' '; 70 * 1024]).await;
    assert_eq!(status, 413, "{answer}");

    let (status, answer) = app.post("/webhooks/github", &h("star"), b"{}".to_vec()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "ignored"));
    assert!(answer["reason"].as_str().unwrap().contains("star"));

    let (status, answer) =
        app.post("/webhooks/github", &h("ping"), serde_json::to_vec(&fixture("ping.repository-hook")).unwrap()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "pong"));

    let (status, _) = app.post("/webhooks/nosuchsource", &h("issues"), b"{}".to_vec()).await;
    assert_eq!(status, 404);

    // GitHub's form-encoded option: payload=<url-encoded JSON>.
    let json_body = serde_json::to_string(&issue("opened", "open", "2026-11-20T09:00:00Z", None)).unwrap();
    let form: String = form_urlencoded_encode(&json_body);
    let headers = vec![
        ("x-github-event", "issues".to_string()),
        ("content-type", "application/x-www-form-urlencoded".to_string()),
    ];
    let (status, answer) = app.post("/webhooks/github", &headers, format!("payload={form}").into_bytes()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "accepted"), "{answer}");

    for (query, name) in
        [("limit=0", "limit"), ("since=yesterday", "since"), ("state=done", "state"), ("colour=red", "colour")]
    {
        let (status, answer) = app.get(&format!("/api/v1/spans?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(answer["error"].as_str().unwrap().contains(name), "{query}: {answer}");
    }
    assert_eq!(app.get("/api/v1/traces/nothex").await.0, 400);
    assert_eq!(app.get(&format!("/api/v1/traces/{}", "0".repeat(32))).await.0, 404);
    assert_eq!(app.get("/api/v1/traces?ref=vstrace-github-nothing-1").await.0, 404);
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    app.stop().await;
}

fn form_urlencoded_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[tokio::test]
async fn spans_page_with_a_cursor() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    for n in 1..=5 {
        let mut body = issue("opened", "open", "2026-11-20T09:00:00Z", None);
        body["issue"]["number"] = json!(n);
        body["issue"]["created_at"] = json!(format!("2026-11-2{n}T09:00:00Z"));
        body["issue"]["updated_at"] = json!(format!("2026-11-2{n}T09:00:00Z"));
        assert_eq!(app.github("issues", &format!("p-{n}"), &body).await.0, 200);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/spans?limit=2".to_string();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for span in page["spans"].as_array().unwrap() {
            seen.push(span["key"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/spans?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=5).map(|n| format!("github:octo-org/hello-world:issue:{n}")).collect();
    assert_eq!(seen, expected);
    let (_, since) = app.get("/api/v1/spans?since=2026-11-24T00:00:00Z").await;
    assert_eq!(since["spans"].as_array().unwrap().len(), 2);
    app.stop().await;
}
