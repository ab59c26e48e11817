//! Shared by the integration tests: real-shaped GitHub payloads (vendored
//! @octokit examples with the scenario's fields set), an in-process OTLP/HTTP
//! receiver, and the real server started on port 0.
#![allow(dead_code)]

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
use valuestream::store::Store;
use valuestream_core::sources::SourceOptions;
use valuestream_core::time::Timestamp;
use valuestream_core::verify::hmac_sha256_hex;

pub const SECRET: &str = "s3cret";
pub const ISSUE_KEY: &str = "github:octo-org/hello-world:issue:27";
pub const PR_KEY: &str = "github:octo-org/hello-world:pull_request:42";

// ---------------------------------------------------------------- payloads

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/../valuestream-core/tests/data/github/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Moves a real payload to repository octo-org/hello-world (the rest stays as recorded).
pub fn in_hello_world(mut body: Value) -> Value {
    body["repository"]["name"] = json!("hello-world");
    body["repository"]["full_name"] = json!("octo-org/hello-world");
    body["repository"]["owner"]["login"] = json!("octo-org");
    body["repository"]["html_url"] = json!("https://github.com/octo-org/hello-world");
    body
}

/// A real `issues` payload for issue #27, in the given state at the given times.
pub fn issue(action: &str, state: &str, updated: &str, closed: Option<&str>) -> Value {
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
pub fn pull_request(action: &str, state: &str, updated: &str, merged_at: Option<&str>) -> Value {
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

pub fn review(state: &str, submitted: &str) -> Value {
    let mut body = in_hello_world(fixture("pull_request_review.submitted.installation"));
    body["review"]["state"] = json!(state);
    body["review"]["submitted_at"] = json!(submitted);
    body["pull_request"]["number"] = json!(42);
    body["pull_request"]["created_at"] = json!("2026-11-20T10:00:00Z");
    body["pull_request"]["head"]["ref"] = json!("feature/vstrace-github-hello-world-27/x");
    body
}

/// The scenario of the foundation issue, in the order it happens.
pub fn scenario() -> Vec<(&'static str, Value)> {
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
pub struct Received {
    pub spans: Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>,
    /// Each request's resources, as `key=value` of their string attributes.
    pub resources: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    pub arrived: Arc<Notify>,
}

impl Received {
    pub async fn wait_for(&self, count: usize) -> Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)> {
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

impl Received {
    /// Records the spans of one OTLP request, with their resource's `service.name`.
    fn record(&self, request: ExportTraceServiceRequest) {
        for resource_spans in request.resource_spans {
            let attributes = resource_spans.resource.iter().flat_map(|r| r.attributes.iter());
            let resource = attributes
                .filter_map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text)) => {
                        Some((kv.key.clone(), text.clone()))
                    }
                    _ => None,
                })
                .collect();
            self.resources.lock().unwrap().push(resource);
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
                    self.spans.lock().unwrap().push((service.clone(), span));
                }
            }
        }
        self.arrived.notify_waiters();
    }
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on `listener`.
pub async fn start_otlp_receiver(listener: TcpListener) -> Received {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.record(ExportTraceServiceRequest::decode(body).expect("a valid OTLP request"));
                ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    received
}

struct GrpcSink(Received);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.record(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on `listener` (bound already, so it accepts connections at once).
pub async fn start_grpc_receiver(listener: TcpListener) -> Received {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let received = Received::default();
    let service = TraceServiceServer::new(GrpcSink(received.clone()));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await.unwrap()
    });
    received
}

pub struct App {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub database: String,
    _dir: Option<TempDir>,
}

pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("vs-e2e-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The URL of a SQLite store in this folder.
    pub fn database(&self) -> String {
        format!("sqlite://{}", self.0.join("vs.db").display())
    }
}

/// The `valuestream` binary as a user runs it, with none of this
/// environment's VS_*/OTEL_* settings leaking in.
pub fn valuestream() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_valuestream"));
    for (name, _) in std::env::vars() {
        if name.starts_with("VS_") || name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until a `serve` child started on `addr` accepts connections (at most 20 s).
pub fn wait_until_listening(addr: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the server did not start on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 request to `addr` without a client library (the test
/// stays synchronous); returns the whole response, status line first.
pub fn http_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) * 1_000_000 + (chrono::Utc::now().timestamp_subsec_micros() as u64)
}

pub fn config(database: &str, tracer: TracerBackend, otlp_endpoint: Option<String>, secrets: &[&str]) -> ServeConfig {
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
        limits: valuestream::config::Limits::default(),
        secrets: all,
        source_options: SourceOptions::default(),
        otlp_protocol: Protocol::HttpProtobuf,
        production_environments: Vec::new(),
        trace_url: None,
        otlp_endpoint,
        // Tests that want the settle delay set their own.
        export_delay: Duration::ZERO,
        expire_open_after: None,
    }
}

/// Starts the server on a fresh SQLite database in a temporary folder.
pub async fn spawn_app(configure: impl FnOnce(&str) -> ServeConfig) -> App {
    let dir = TempDir::new();
    let database = format!("sqlite://{}", dir.0.join("vs.db").display());
    spawn_app_on(database, Some(dir), configure).await
}

/// Starts the server on `database`.
pub async fn spawn_app_on(database: String, dir: Option<TempDir>, configure: impl FnOnce(&str) -> ServeConfig) -> App {
    let config = configure(&database);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(valuestream::server::run(config, listener, async {
        let _ = stopped.await;
    }));
    App { base, client: reqwest::Client::new(), stop: Some(stop), task, database, _dir: dir }
}

/// Starts the server on a store the test opened (and may inject faults into).
pub async fn spawn_app_with_store(store: Store, database: String, dir: Option<TempDir>, config: ServeConfig) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(valuestream::server::serve(config, store, listener, async {
        let _ = stopped.await;
    }));
    App { base, client: reqwest::Client::new(), stop: Some(stop), task, database, _dir: dir }
}

impl App {
    pub async fn post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
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
    pub async fn github(&self, event: &str, delivery: &str, body: &Value) -> (u16, Value) {
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

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

pub fn nanos(text: &str) -> u64 {
    Timestamp::parse_rfc3339(text).unwrap().nanos() as u64
}

/// A fresh, uniquely named PostgreSQL database, dropped afterwards. The server
/// is `VS_TEST_POSTGRES_URL` (default: the local one, trust auth).
pub struct PostgresDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PostgresDb {
    pub async fn create() -> PostgresDb {
        let admin_url = std::env::var("VS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("vs_test_{}_{}", std::process::id(), rand_suffix());
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin_url} ({e}); start it (CONTRIBUTING.md says how) or set VS_TEST_POSTGRES_URL")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        PostgresDb { admin_url, name, url }
    }

    pub async fn drop_database(self) {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin_url).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
}

// ---------------------------------------------------------------- builds and deploys

pub const MERGE_SHA: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
pub const HEAD_SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
pub const PR_BRANCH: &str = "feature/vstrace-github-hello-world-27/x";

/// A real `workflow_run` payload for run `id` of the "CI" workflow on the PR's branch.
/// `for_pr` fills `pull_requests` (else the run finds its pull request by branch).
pub fn workflow_run(
    id: u64,
    status: &str,
    conclusion: Option<&str>,
    started: &str,
    updated: &str,
    for_pr: bool,
) -> Value {
    let mut body = in_hello_world(fixture("workflow_run.completed.success.with-pr.org"));
    body["action"] = json!(if status == "completed" { "completed" } else { "in_progress" });
    // GitHub names the workflow in both places; the workflow's name is the pipeline's.
    body["workflow"]["name"] = json!("CI");
    let run = &mut body["workflow_run"];
    run["id"] = json!(id);
    run["name"] = json!("CI");
    run["run_attempt"] = json!(1);
    run["head_branch"] = json!(PR_BRANCH);
    run["head_sha"] = json!(HEAD_SHA);
    run["status"] = json!(status);
    run["conclusion"] = json!(conclusion);
    run["created_at"] = json!(started);
    run["run_started_at"] = json!(started);
    run["updated_at"] = json!(updated);
    if !for_pr {
        run["pull_requests"] = json!([]);
    } else {
        run["pull_requests"][0]["number"] = json!(42);
    }
    body
}

/// A real `workflow_job` payload: job `id` of run `run_id`.
pub fn workflow_job(id: u64, run_id: u64, conclusion: &str, created: &str, started: &str, completed: &str) -> Value {
    let mut body = in_hello_world(fixture("workflow_job.completed.failure.org"));
    let job = &mut body["workflow_job"];
    job["id"] = json!(id);
    job["run_id"] = json!(run_id);
    job["run_attempt"] = json!(1);
    job["name"] = json!("test");
    job["status"] = json!("completed");
    job["conclusion"] = json!(conclusion);
    job["created_at"] = json!(created);
    job["started_at"] = json!(started);
    job["completed_at"] = json!(completed);
    job["head_branch"] = json!(PR_BRANCH);
    body
}

/// A real `push` payload: the merge commit of PR #42 reaching `main`.
pub fn push_merge(at: &str) -> Value {
    let mut body = in_hello_world(fixture("push.ref-created.installation-1"));
    body["ref"] = json!("refs/heads/main");
    body["repository"]["default_branch"] = json!("main");
    body["before"] = json!("1111111111111111111111111111111111111111");
    body["after"] = json!(MERGE_SHA);
    body["created"] = json!(false);
    body["commits"] =
        json!([{"id": MERGE_SHA, "message": "Merge pull request #42 from octo-org/feature", "timestamp": at}]);
    body["head_commit"] = body["commits"][0].clone();
    body
}

/// A real `deployment` payload (id 991, production) of `sha`.
pub fn deployment(sha: &str, created: &str) -> Value {
    let mut body = in_hello_world(fixture("deployment.created.plain"));
    body["deployment"]["id"] = json!(991);
    body["deployment"]["sha"] = json!(sha);
    body["deployment"]["ref"] = json!("main");
    body["deployment"]["environment"] = json!("production");
    body["deployment"]["created_at"] = json!(created);
    body["deployment"]["updated_at"] = json!(created);
    body
}

/// A real `deployment_status` payload for deployment 991.
pub fn deployment_status(sha: &str, deployed: &str, state: &str, at: &str) -> Value {
    let mut body = in_hello_world(fixture("deployment_status.created.success"));
    body["deployment"] = deployment(sha, deployed)["deployment"].clone();
    body["deployment_status"]["state"] = json!(state);
    body["deployment_status"]["created_at"] = json!(at);
    body["deployment_status"]["updated_at"] = json!(at);
    body
}

/// The builds and deploys scenario, in the order it happens: issue #27 →
/// pull request #42 → run 501 fails (found by its branch) with job 601 → run
/// 502 passes (names the pull request) with job 602 → an approval → merge →
/// the merge commit pushed → deploy 991 in progress, then successful → the
/// issue closed. Seven spans, all in the issue's trace.
pub fn builds_and_deploys() -> Vec<(&'static str, Value)> {
    vec![
        ("issues", issue("opened", "open", "2026-11-20T09:00:00Z", None)),
        ("pull_request", pull_request("opened", "open", "2026-11-20T10:00:00Z", None)),
        ("workflow_run", workflow_run(501, "in_progress", None, "2026-11-20T10:05:00Z", "2026-11-20T10:05:00Z", false)),
        (
            "workflow_job",
            workflow_job(601, 501, "failure", "2026-11-20T10:05:00Z", "2026-11-20T10:06:00Z", "2026-11-20T10:09:00Z"),
        ),
        (
            "workflow_run",
            workflow_run(501, "completed", Some("failure"), "2026-11-20T10:05:00Z", "2026-11-20T10:10:00Z", false),
        ),
        (
            "workflow_run",
            workflow_run(502, "completed", Some("success"), "2026-11-20T11:00:00Z", "2026-11-20T11:08:00Z", true),
        ),
        (
            "workflow_job",
            workflow_job(602, 502, "success", "2026-11-20T11:00:00Z", "2026-11-20T11:00:30Z", "2026-11-20T11:07:00Z"),
        ),
        ("pull_request_review", review("approved", "2026-11-20T12:00:00Z")),
        ("pull_request", pull_request("closed", "closed", "2026-11-21T16:30:00Z", Some("2026-11-21T16:30:00Z"))),
        ("push", push_merge("2026-11-21T16:30:00Z")),
        ("deployment", deployment(MERGE_SHA, "2026-11-21T17:00:00Z")),
        (
            "deployment_status",
            deployment_status(MERGE_SHA, "2026-11-21T17:00:00Z", "in_progress", "2026-11-21T17:01:00Z"),
        ),
        ("deployment_status", deployment_status(MERGE_SHA, "2026-11-21T17:00:00Z", "success", "2026-11-21T17:12:00Z")),
        ("issues", issue("closed", "closed", "2026-11-21T18:00:00Z", Some("2026-11-21T18:00:00Z"))),
    ]
}

// ---------------------------------------------------------------- a delivery's whole trace

/// Deployment `id` of the merge commit: its start and its final status.
pub fn deploy(id: u64, created: &str, state: &str, ended: &str) -> Vec<(&'static str, Value)> {
    let mut start = deployment(MERGE_SHA, created);
    start["deployment"]["id"] = json!(id);
    let mut end = deployment_status(MERGE_SHA, created, state, ended);
    end["deployment"]["id"] = json!(id);
    vec![("deployment", start), ("deployment_status", end)]
}

/// Issue `n`, opened (and closed) at the given times with `labels`.
pub fn numbered_issue(n: u64, opened: &str, closed: Option<&str>, labels: Value) -> Vec<(&'static str, Value)> {
    let make = |action: &str, state: &str, updated: &str, closed_at: Option<&str>| {
        let mut body = issue(action, state, updated, closed_at);
        body["issue"]["number"] = json!(n);
        body["issue"]["created_at"] = json!(opened);
        body["issue"]["title"] = json!(format!("Issue {n}"));
        body["issue"]["labels"] = labels.clone();
        body
    };
    let mut list = vec![("issues", make("opened", "open", opened, None))];
    if let Some(closed) = closed {
        list.push(("issues", make("closed", "closed", closed, Some(closed))));
    }
    list
}

/// Issue #27 → pull request #42 → a CI run with a failed job → deploy 991 (success);
/// deploy 992 fails, 993 recovers, incident #90 follows it; issue #28 stays open.
pub fn delivery_scenario() -> Vec<(&'static str, Value)> {
    let mut list: Vec<(&'static str, Value)> = vec![
        ("issues", issue("opened", "open", "2026-11-20T09:00:00Z", None)),
        ("pull_request", pull_request("opened", "open", "2026-11-20T10:00:00Z", None)),
        ("pull_request_review", review("approved", "2026-11-20T12:00:00Z")),
        (
            "workflow_run",
            workflow_run(701, "completed", Some("failure"), "2026-11-20T10:05:00Z", "2026-11-20T10:15:00Z", true),
        ),
        (
            "workflow_job",
            workflow_job(7011, 701, "failure", "2026-11-20T10:05:00Z", "2026-11-20T10:06:00Z", "2026-11-20T10:12:00Z"),
        ),
        ("pull_request", pull_request("closed", "closed", "2026-11-21T16:30:00Z", Some("2026-11-21T16:30:00Z"))),
        ("push", push_merge("2026-11-21T16:30:00Z")),
        ("issues", issue("closed", "closed", "2026-11-21T17:30:00Z", Some("2026-11-21T17:30:00Z"))),
    ];
    list.extend(deploy(991, "2026-11-21T17:00:00Z", "success", "2026-11-21T17:20:00Z"));
    list.extend(deploy(992, "2026-11-22T09:00:00Z", "failure", "2026-11-22T09:10:00Z"));
    list.extend(deploy(993, "2026-11-22T10:00:00Z", "success", "2026-11-22T10:15:00Z"));
    list.extend(numbered_issue(
        90,
        "2026-11-22T11:00:00Z",
        Some("2026-11-22T12:30:00Z"),
        json!([{"name": "incident"}]),
    ));
    list.extend(numbered_issue(28, "2026-11-25T08:00:00Z", None, json!([])));
    list
}
