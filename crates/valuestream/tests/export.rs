//! What a trace backend receives: the real server on port 0 exporting to an
//! in-process OTLP/HTTP receiver. One export per span (docs/sources.md): a span goes out once it has ended and stayed unchanged for the
//! settle delay, and again only when its end or outcome changes later.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;
use tokio::net::TcpListener;
use valuestream::config::TracerBackend;
use valuestream::export::{Drained, Exporter, OtlpExporter, OtlpSettings, Protocol, Settle, export_once};
use valuestream::ingest::prepare;
use valuestream::store::Store;
use valuestream_core::delivery::Delivery;
use valuestream_core::ids;
use valuestream_core::sources::{self, SourceOptions};
use valuestream_core::time::Timestamp;

type Exported = Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>;

/// A server exporting over OTLP/HTTP to a fresh receiver, settling spans for `delay`.
async fn exporting_app(delay: Duration) -> (App, Received) {
    let otlp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", otlp.local_addr().unwrap());
    let received = start_otlp_receiver(otlp).await;
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::Otlp, Some(endpoint), &[SECRET]);
        c.export_delay = delay;
        c
    })
    .await;
    (app, received)
}

/// Waits until the backend has `count` spans and the outbox is empty: the
/// export task sends only what the outbox holds, so nothing more can arrive.
async fn settled(app: &App, received: &Received, count: usize) -> Exported {
    received.wait_for(count).await;
    let store = valuestream::store::Store::open(&app.database).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.outbox_len().await.unwrap() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the outbox was not emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    received.spans.lock().unwrap().clone()
}

fn jenkins_fixture(name: &str) -> Value {
    let path =
        format!("{}/../valuestream-core/tests/data/jenkins/notification/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    value["payload"].clone()
}

async fn post_jenkins(app: &App, body: &Value) {
    let headers = [("content-type", "application/json".to_string())];
    let (status, answer) = app.post("/webhooks/jenkins", &headers, serde_json::to_vec(body).unwrap()).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
}

async fn metric(app: &App, series: &str) -> Option<f64> {
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_jenkins_builds_phases_in_quick_succession_are_one_export() {
    let (app, received) = exporting_app(Duration::from_secs(2)).await;
    // STARTED, COMPLETED (end = start + duration), then FINALIZED 1.2 s later:
    // the end moves, but the backend must see the build once, as finalized.
    for phase in ["started", "completed", "finalized"] {
        post_jenkins(&app, &jenkins_fixture(phase)).await;
    }
    let exported = settled(&app, &received, 1).await;
    assert_eq!(exported.len(), 1, "one export per span: {exported:#?}");
    let (_, build) = &exported[0];
    assert_eq!(build.span_id, hex::decode(ids::span_id("jenkins:team-a/service:build:7")).unwrap());
    assert_eq!(build.end_time_unix_nano, 1_795_168_896_200 * 1_000_000, "the finalized end");
    assert_eq!(metric(&app, "valuestream_export_reexported_spans_total").await, Some(0.0));
    app.stop().await;
}

#[tokio::test]
async fn a_reopened_and_closed_issue_is_exported_exactly_twice() {
    let (app, received) = exporting_app(Duration::ZERO).await;
    let opened = issue("opened", "open", "2026-11-20T09:00:00Z", None);
    let closed = issue("closed", "closed", "2026-11-21T17:00:00Z", Some("2026-11-21T17:00:00Z"));
    assert_eq!(app.github("issues", "r-1", &opened).await.0, 200);
    assert_eq!(app.github("issues", "r-2", &closed).await.0, 200);
    let first = settled(&app, &received, 1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1.end_time_unix_nano, nanos("2026-11-21T17:00:00Z"));

    // A later edit of the closed issue (its title) changes neither its end nor
    // its outcome: the backend keeps the span it has.
    let mut edited = issue("edited", "closed", "2026-11-22T08:00:00Z", Some("2026-11-21T17:00:00Z"));
    edited["issue"]["title"] = json!("A better title");
    assert_eq!(app.github("issues", "r-3", &edited).await.0, 200);
    assert_eq!(settled(&app, &received, 1).await.len(), 1, "an edit is not a re-export");

    // Reopened, then closed again later: the end moved, so it goes out again.
    let reopened = issue("reopened", "open", "2026-11-23T09:00:00Z", None);
    let closed_again = issue("closed", "closed", "2026-11-24T12:00:00Z", Some("2026-11-24T12:00:00Z"));
    assert_eq!(app.github("issues", "r-4", &reopened).await.0, 200);
    assert_eq!(app.github("issues", "r-5", &closed_again).await.0, 200);
    let both = settled(&app, &received, 2).await;
    assert_eq!(both.len(), 2, "{both:#?}");
    assert_eq!(both[0].1.span_id, both[1].1.span_id);
    assert_eq!(both[1].1.end_time_unix_nano, nanos("2026-11-24T12:00:00Z"));
    assert_eq!(metric(&app, "valuestream_export_reexported_spans_total").await, Some(1.0));
    app.stop().await;
}

// ---------------------------------------------------------------- the settle delay, clock in hand

/// The settle delay of these tests.
const DELAY: Duration = Duration::from_secs(10);

/// A fresh store and an exporter to a fresh in-process receiver.
async fn store_and_exporter() -> (Store, Exporter, Received, TempDir) {
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.0.join("vs.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    let otlp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", otlp.local_addr().unwrap());
    let received = start_otlp_receiver(otlp).await;
    let settings = OtlpSettings { protocol: Protocol::HttpProtobuf, endpoint, headers: Default::default() };
    let exporter = Exporter::Otlp(Box::new(OtlpExporter::new(&settings).unwrap()));
    (store, exporter, received, dir)
}

/// Applies a Jenkins Notification message as received at `received_at`.
async fn apply_jenkins(store: &Store, body: &Value, received_at: Timestamp) {
    let source = sources::by_name("jenkins").unwrap();
    let delivery = Delivery::new("jenkins", Vec::new(), serde_json::to_vec(body).unwrap(), received_at);
    let item = prepare(source, delivery, &SourceOptions::default()).unwrap();
    store.apply_batch(&[item], true).await.unwrap();
}

/// Exports what is due at `now`.
async fn drain_at(store: &Store, exporter: &mut Exporter, now: Timestamp) -> Drained {
    export_once(store, exporter, Settle { delay: DELAY }.changed_before(now)).await.unwrap()
}

fn seconds(n: i64) -> Timestamp {
    Timestamp(1_800_000_000_000_000_000 + n * 1_000_000_000)
}

#[tokio::test]
async fn a_span_is_sent_once_it_stayed_unchanged_for_the_delay() {
    let (store, mut exporter, received, _dir) = store_and_exporter().await;
    apply_jenkins(&store, &jenkins_fixture("started"), seconds(0)).await;
    apply_jenkins(&store, &jenkins_fixture("completed"), seconds(1)).await;
    assert_eq!(store.outbox_len().await.unwrap(), 1, "acknowledged ends are in the outbox at once");
    assert_eq!(drain_at(&store, &mut exporter, seconds(9)).await, Drained::default(), "still settling");
    // FINALIZED moves the end: the row is replaced and its delay starts again.
    apply_jenkins(&store, &jenkins_fixture("finalized"), seconds(8)).await;
    assert_eq!(store.outbox_len().await.unwrap(), 1, "one row per span");
    assert_eq!(drain_at(&store, &mut exporter, seconds(12)).await, Drained::default(), "changed at 8 s");
    assert_eq!(drain_at(&store, &mut exporter, seconds(18)).await, Drained { sent: 1, resent: 0, dropped: 0 });
    let exported = received.wait_for(1).await;
    assert_eq!(exported[0].1.end_time_unix_nano, 1_795_168_896_200 * 1_000_000, "the finalized end");
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    assert_eq!(drain_at(&store, &mut exporter, seconds(100)).await, Drained::default());
    assert_eq!(received.spans.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_reopen_while_settling_withdraws_the_end_and_an_unchanged_end_is_not_resent() {
    let (store, mut exporter, received, _dir) = store_and_exporter().await;
    let mut aborted = jenkins_fixture("completed");
    aborted["build"]["status"] = json!("ABORTED");
    apply_jenkins(&store, &aborted, seconds(0)).await;
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    // A later STARTED message (Jenkins restarted the build) reopens it before it settled.
    let mut restarted = jenkins_fixture("started");
    restarted["build"]["timestamp"] = json!(1_795_168_990_000_i64);
    apply_jenkins(&store, &restarted, seconds(2)).await;
    assert_eq!(store.outbox_len().await.unwrap(), 0, "an open span has no end to export");
    let mut finished = jenkins_fixture("completed");
    finished["build"]["status"] = json!("SUCCESS");
    finished["build"]["timestamp"] = json!(1_795_169_050_000_i64);
    apply_jenkins(&store, &finished, seconds(3)).await;
    assert_eq!(drain_at(&store, &mut exporter, seconds(13)).await.sent, 1);
    let exported = received.wait_for(1).await;
    let result = exported[0].1.attributes.iter().find(|kv| kv.key == "cicd.pipeline.result").unwrap();
    assert_eq!(format!("{:?}", result.value), r#"Some(AnyValue { value: Some(StringValue("success")) })"#);

    // A duplicate-looking late message with the same end and outcome: nothing to send.
    let mut late = finished.clone();
    late["build"]["parameters"] = json!({"GREETING": "hello again"});
    apply_jenkins(&store, &late, seconds(30)).await;
    assert_eq!(store.outbox_len().await.unwrap(), 0, "the backend has this end and outcome");
    assert_eq!(drain_at(&store, &mut exporter, seconds(100)).await, Drained::default());
    assert_eq!(received.spans.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_gitlab_job_goes_out_with_an_error_status_naming_gitlabs_reason() {
    let (app, received) = exporting_app(Duration::ZERO).await;
    let path = format!("{}/../valuestream-core/tests/data/gitlab/docs/job.json", env!("CARGO_MANIFEST_DIR"));
    let mut job: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    job["build_status"] = json!("failed");
    job["build_started_at"] = json!("2021-02-23T02:41:37.886Z");
    job["build_finished_at"] = json!("2021-02-23T02:43:37.886Z");
    let headers = [("content-type", "application/json".to_string()), ("x-gitlab-event", "Job Hook".to_string())];
    let (status, answer) = app.post("/webhooks/gitlab", &headers, serde_json::to_vec(&job).unwrap()).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
    let exported = settled(&app, &received, 1).await;
    let span = &exported[0].1;
    let status = span.status.as_ref().expect("a status");
    assert_eq!((status.code, status.message.as_str()), (2, "script_failure"), "ERROR, with GitLab's reason");
    let error_type = span.attributes.iter().find(|kv| kv.key == "error.type").expect("error.type");
    assert_eq!(format!("{:?}", error_type.value), r#"Some(AnyValue { value: Some(StringValue("script_failure")) })"#);
    app.stop().await;
}

#[tokio::test]
async fn the_resource_names_the_source_valuestream_and_the_sdk() {
    let (app, received) = exporting_app(Duration::ZERO).await;
    let closed = issue("closed", "closed", "2026-11-21T17:00:00Z", Some("2026-11-21T17:00:00Z"));
    assert_eq!(app.github("issues", "res-1", &closed).await.0, 200);
    settled(&app, &received, 1).await;
    let resource = received.resources.lock().unwrap()[0].clone();
    for (key, value) in [
        ("service.name", "github"),
        ("service.namespace", "valuestream"),
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.language", "rust"),
    ] {
        assert_eq!(resource.get(key).map(String::as_str), Some(value), "{key}: {resource:?}");
    }
    assert!(resource.contains_key("telemetry.sdk.version") && resource.contains_key("service.version"));
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn the_outbox_settles_and_remembers_what_was_sent_on_postgres_too() {
    let db = PostgresDb::create().await;
    let store = Store::open(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let otlp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", otlp.local_addr().unwrap());
    let received = start_otlp_receiver(otlp).await;
    let settings = OtlpSettings { protocol: Protocol::HttpProtobuf, endpoint, headers: Default::default() };
    let mut exporter = Exporter::Otlp(Box::new(OtlpExporter::new(&settings).unwrap()));

    apply_jenkins(&store, &jenkins_fixture("completed"), seconds(0)).await;
    apply_jenkins(&store, &jenkins_fixture("finalized"), seconds(2)).await;
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    assert_eq!(drain_at(&store, &mut exporter, seconds(11)).await, Drained::default());
    assert_eq!(drain_at(&store, &mut exporter, seconds(12)).await.sent, 1);
    received.wait_for(1).await;
    // The end moves again later: one re-export, counted as such.
    let mut later = jenkins_fixture("finalized");
    later["build"]["timestamp"] = json!(1_795_168_999_000_i64);
    apply_jenkins(&store, &later, seconds(60)).await;
    assert_eq!(drain_at(&store, &mut exporter, seconds(70)).await, Drained { sent: 1, resent: 1, dropped: 0 });
    received.wait_for(2).await;
    store.close().await;
    db.drop_database().await;
}
