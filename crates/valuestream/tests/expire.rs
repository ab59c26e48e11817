//! Spans that never end (docs/operations.md): a span whose close webhook
//! was missed stays open until `--expire-open-after` has passed since its
//! start, then is `expired`, with its start plus the age as its end. Expired
//! spans count in no duration and no open count, show as such in the API and
//! in `/metrics`, are exported once, and a close webhook that arrives after
//! all closes them as usual.
//!
//! The real server on port 0 with an age of a few seconds, fed real GitHub
//! payloads timed now; on SQLite here, on PostgreSQL under `--ignored`.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;
use tokio::net::TcpListener;
use valuestream::config::TracerBackend;
use valuestream_core::ids;
use valuestream_core::time::Timestamp;

/// The age the tests expire open spans at.
const AGE: Duration = Duration::from_secs(3);
const SECOND: i64 = 1_000_000_000;
const DEPLOY_KEY: &str = "github:octo-org/hello-world:deploy:991";
const OLD_ISSUE_KEY: &str = "github:octo-org/hello-world:issue:28";
const EXPIRED_ATTRIBUTE: &str = "valuestream.span.expired";

type Exported = Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>;

/// Now, to the second (payload times have whole seconds).
fn this_second() -> Timestamp {
    Timestamp(chrono::Utc::now().timestamp() * SECOND)
}

fn at(time: Timestamp, seconds: i64) -> String {
    Timestamp(time.nanos() + seconds * SECOND).to_rfc3339()
}

/// A server on `database` (a fresh SQLite file when `None`) that expires open
/// spans after `age` and exports at once to an in-process OTLP receiver.
async fn expiring_app(database: Option<String>, age: Option<Duration>) -> (App, Received) {
    let otlp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", otlp.local_addr().unwrap());
    let received = start_otlp_receiver(otlp).await;
    let configure = |db: &str| {
        let mut c = config(db, TracerBackend::Otlp, Some(endpoint), &[SECRET]);
        c.expire_open_after = age;
        c
    };
    let app = match database {
        Some(url) => spawn_app_on(url, None, configure).await,
        None => spawn_app(configure).await,
    };
    (app, received)
}

async fn accepted(app: &App, event: &str, delivery: &str, body: &Value) {
    let (status, answer) = app.github(event, delivery, body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{event} {delivery}: {answer}");
}

async fn span(app: &App, key: &str) -> Value {
    let (status, page) = app.get(&format!("/api/v1/spans?key={key}")).await;
    assert_eq!(status, 200, "{page}");
    page["spans"][0].clone()
}

async fn keys_in_state(app: &App, state: &str) -> Vec<String> {
    let (status, page) = app.get(&format!("/api/v1/spans?state={state}&limit=1000")).await;
    assert_eq!(status, 200, "state={state}: {page}");
    page["spans"].as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap().to_string()).collect()
}

/// Waits (up to 20 s) until the spans in `state` are exactly `keys`.
async fn until_in_state(app: &App, state: &str, keys: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut now = keys_in_state(app, state).await;
        now.sort();
        let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        expected.sort();
        if now == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "spans {state}: {now:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(app: &App) -> String {
    let response = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn group<'a>(summary: &'a Value, kind: &str) -> Option<&'a Value> {
    summary["groups"].as_array().unwrap().iter().find(|g| g["kind"] == kind)
}

/// The exported versions of `key`, in the order the backend received them.
fn exports_of(exported: &Exported, key: &str) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    let id = hex::decode(ids::span_id(key)).unwrap();
    exported.iter().filter(|(_, s)| s.span_id == id).map(|(_, s)| s.clone()).collect()
}

fn flagged_expired(span: &opentelemetry_proto::tonic::trace::v1::Span) -> bool {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    span.attributes.iter().any(|kv| {
        kv.key == EXPIRED_ATTRIBUTE
            && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(Any::BoolValue(true)))
    })
}

fn deployment_opened(created: &str) -> Value {
    deployment(MERGE_SHA, created)
}

fn old_issue() -> Value {
    let mut body = issue("opened", "open", "2026-11-20T09:00:00Z", None);
    body["issue"]["number"] = json!(28);
    body
}

/// The whole story on one database: spans open, expire, stay out of the
/// numbers, are exported once, and a late close closes one as usual.
async fn spans_whose_close_was_missed_expire_and_a_late_close_still_closes(database: Option<String>) {
    let (app, received) = expiring_app(database, Some(AGE)).await;
    let opened = this_second();

    // A pull request that ended long ago: its 109,800 s must not move.
    let merged = pull_request("closed", "closed", "2026-11-21T16:30:00Z", Some("2026-11-21T16:30:00Z"));
    accepted(&app, "pull_request", "x-pr", &merged).await;
    // Opened now; their close webhooks will be missed.
    let mut issue_opened = issue("opened", "open", &opened.to_rfc3339(), None);
    issue_opened["issue"]["created_at"] = json!(opened.to_rfc3339());
    accepted(&app, "issues", "x-issue-opened", &issue_opened).await;
    accepted(&app, "deployment", "x-deploy", &deployment_opened(&opened.to_rfc3339())).await;
    assert_eq!(span(&app, ISSUE_KEY).await["state"], "open", "younger than the age: open");
    assert_eq!(span(&app, DEPLOY_KEY).await["state"], "open");
    // A span that arrives older than the age expires in its delivery's own commit.
    accepted(&app, "issues", "x-old-issue", &old_issue()).await;
    let old = span(&app, OLD_ISSUE_KEY).await;
    assert_eq!((old["state"].as_str(), old["end"].as_str()), (Some("expired"), Some("2026-11-20T09:00:03Z")), "{old}");

    // The sweep expires the others once the age has passed since their start.
    until_in_state(&app, "expired", &[ISSUE_KEY, DEPLOY_KEY, OLD_ISSUE_KEY]).await;
    for key in [ISSUE_KEY, DEPLOY_KEY] {
        let expired = span(&app, key).await;
        assert_eq!(expired["state"], "expired", "{expired}");
        assert_eq!(expired["start"], opened.to_rfc3339(), "{expired}");
        assert_eq!(expired["end"], at(opened, 3), "the end is the start plus the age: {expired}");
        assert_eq!(expired["duration_seconds"], Value::Null, "an expired span has no duration: {expired}");
        assert_eq!(expired["outcome"], Value::Null, "{expired}");
    }
    assert_eq!(keys_in_state(&app, "open").await, Vec::<String>::new(), "state=open leaves expired spans out");
    assert_eq!(keys_in_state(&app, "closed").await, vec![PR_KEY.to_string()]);
    let (status, answer) = app.get("/api/v1/spans?state=lost").await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("expired"), "{answer}");

    // No open count, no duration, no DORA key counts them.
    let window = format!("since=2026-11-01T00:00:00Z&until={}", at(opened, 86_400));
    let (status, summary) = app.get(&format!("/api/v1/summary?{window}")).await;
    assert_eq!(status, 200, "{summary}");
    let prs = group(&summary, "pull_request").unwrap();
    assert_eq!((prs["closed"].as_u64(), prs["open"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_eq!(prs["duration_seconds"]["mean"], 109800.0, "{summary}");
    for kind in ["issue", "deploy"] {
        if let Some(group) = group(&summary, kind) {
            assert_eq!((group["closed"].as_u64(), group["open"].as_u64()), (Some(0), Some(0)), "{kind}: {summary}");
        }
    }
    // Before they expired they were open: a window ending then counts them.
    let before = format!("since=2026-11-01T00:00:00Z&until={}", at(opened, 1));
    let (_, summary) = app.get(&format!("/api/v1/summary?{before}")).await;
    assert_eq!(group(&summary, "issue").unwrap()["open"], 1, "the issue was open a second after it opened: {summary}");
    // Per day, each bucket is the summary of its own window: open at the end
    // of a bucket before they expired, in no bucket after, never closed.
    for until in [at(opened, 1), at(opened, 86_400), "2026-11-20T09:00:02Z".to_string()] {
        let (status, bucketed) =
            app.get(&format!("/api/v1/summary?since=2026-11-19T00:00:00Z&until={until}&bucket=day")).await;
        assert_eq!(status, 200, "{bucketed}");
        let series = bucketed["series"].as_array().unwrap();
        assert!(!series.is_empty());
        for element in series {
            let (start, end) = (element["start"].as_str().unwrap(), element["end"].as_str().unwrap());
            let (_, alone) = app.get(&format!("/api/v1/summary?since={start}&until={end}")).await;
            assert_eq!(element["groups"], alone["groups"], "until {until}: bucket {start}");
        }
        let last = &series.last().unwrap()["groups"];
        let (_, alone) = app.get(&format!("/api/v1/summary?since=2026-11-19T00:00:00Z&until={until}")).await;
        assert_eq!(bucketed["groups"], alone["groups"], "until {until}: the whole window");
        let open_issues =
            last.as_array().unwrap().iter().find(|g| g["kind"] == "issue").map_or(0, |g| g["open"].as_u64().unwrap());
        let expected = if until == at(opened, 86_400) { 0 } else { 1 };
        assert_eq!(open_issues, expected, "until {until}: {last}");
    }
    let (_, dora) = app.get(&format!("/api/v1/dora?{window}")).await;
    assert_eq!(dora["deployment_frequency"]["deployments"], 0, "{dora}");
    assert_eq!(dora["change_failure_rate"]["deployments"], 0, "{dora}");

    // /metrics: expired by source and kind, not open, no end and no duration observed.
    let text = metrics(&app).await;
    for (series, value) in [
        (r#"valuestream_expired_spans{source="github",kind="issue"}"#, 2.0),
        (r#"valuestream_expired_spans{source="github",kind="deploy"}"#, 1.0),
        (r#"valuestream_expired_spans{source="github",kind="pull_request"}"#, 0.0),
        (r#"valuestream_open_spans{source="github",kind="issue"}"#, 0.0),
        (r#"valuestream_open_spans{source="github",kind="deploy"}"#, 0.0),
        (r#"webhooks_event_start_total{event_source="github",event_type="issue"}"#, 2.0),
        (r#"webhooks_event_end_total{event_source="github",event_type="issue",error="false"}"#, 0.0),
        (r#"webhooks_event_end_total{event_source="github",event_type="deploy",error="false"}"#, 0.0),
        (r#"webhooks_event_duration_count{event_source="github",event_type="issue"}"#, 0.0),
        (r#"webhooks_event_duration_count{event_source="github",event_type="deploy"}"#, 0.0),
        (r#"valuestream_span_duration_seconds_count{source="github",kind="issue",outcome="completed"}"#, 0.0),
        (r#"valuestream_span_duration_seconds_count{source="github",kind="deploy",outcome="success"}"#, 0.0),
        (r#"webhooks_event_duration_count{event_source="github",event_type="pull_request"}"#, 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
    }

    // Exported once each, ended at the start plus the age and flagged as expired.
    let exported = received.wait_for(4).await;
    for key in [ISSUE_KEY, DEPLOY_KEY] {
        let versions = exports_of(&exported, key);
        assert_eq!(versions.len(), 1, "{key} is exported once");
        let sent = &versions[0];
        assert_eq!(sent.start_time_unix_nano, opened.nanos() as u64, "{key}");
        assert_eq!(sent.end_time_unix_nano, (opened.nanos() + 3 * SECOND) as u64, "{key}");
        assert!(flagged_expired(sent), "{key} carries {EXPIRED_ATTRIBUTE}: {sent:?}");
    }
    assert!(!flagged_expired(&exports_of(&exported, PR_KEY)[0]), "a span that ended is not flagged");

    // Still open as far as its payloads go: an update leaves it expired, with its end.
    let labeled = issue("labeled", "open", &at(opened, 5), None);
    let mut labeled = labeled;
    labeled["issue"]["created_at"] = json!(opened.to_rfc3339());
    accepted(&app, "issues", "x-issue-labeled", &labeled).await;
    let still = span(&app, ISSUE_KEY).await;
    assert_eq!((still["state"].as_str(), still["end"].as_str()), (Some("expired"), Some(at(opened, 3).as_str())));

    // The missed close arrives after all: the issue closes as usual.
    let mut closed = issue("closed", "closed", &at(opened, 60), Some(&at(opened, 60)));
    closed["issue"]["created_at"] = json!(opened.to_rfc3339());
    accepted(&app, "issues", "x-issue-closed", &closed).await;
    let issue = span(&app, ISSUE_KEY).await;
    assert_eq!(issue["state"], "closed", "{issue}");
    assert_eq!(issue["end"], at(opened, 60), "{issue}");
    assert_eq!(issue["duration_seconds"], 60.0, "{issue}");
    assert_eq!(issue["outcome"], "completed", "{issue}");
    until_in_state(&app, "expired", &[DEPLOY_KEY, OLD_ISSUE_KEY]).await;

    let (_, summary) = app.get(&format!("/api/v1/summary?{window}")).await;
    let issues = group(&summary, "issue").unwrap();
    assert_eq!((issues["closed"].as_u64(), issues["open"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_eq!(issues["duration_seconds"]["mean"], 60.0, "only the real duration: {summary}");
    let text = metrics(&app).await;
    for (series, value) in [
        (r#"valuestream_expired_spans{source="github",kind="issue"}"#, 1.0),
        (r#"valuestream_expired_spans{source="github",kind="deploy"}"#, 1.0),
        (r#"webhooks_event_end_total{event_source="github",event_type="issue",error="false"}"#, 1.0),
        (r#"valuestream_span_duration_seconds_count{source="github",kind="issue",outcome="completed"}"#, 1.0),
        (r#"valuestream_span_duration_seconds_sum{source="github",kind="issue",outcome="completed"}"#, 60.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
    }
    // The backend gets the real end too, without the flag.
    let exported = received.wait_for(5).await;
    let versions = exports_of(&exported, ISSUE_KEY);
    assert_eq!(versions.len(), 2, "the expired issue, then the closed one");
    assert_eq!(versions[1].end_time_unix_nano, (opened.nanos() + 60 * SECOND) as u64);
    assert!(!flagged_expired(&versions[1]));
    app.stop().await;
}

#[tokio::test]
async fn spans_whose_close_was_missed_expire_on_sqlite() {
    spans_whose_close_was_missed_expire_and_a_late_close_still_closes(None).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn spans_whose_close_was_missed_expire_on_postgres_too() {
    let db = PostgresDb::create().await;
    spans_whose_close_was_missed_expire_and_a_late_close_still_closes(Some(db.url.clone())).await;
    db.drop_database().await;
}

#[tokio::test]
async fn nothing_expires_unless_configured() {
    let (app, _received) = expiring_app(None, None).await;
    accepted(&app, "issues", "o-old-issue", &old_issue()).await;
    let old = span(&app, OLD_ISSUE_KEY).await;
    assert_eq!((old["state"].as_str(), &old["end"]), (Some("open"), &Value::Null), "{old}");
    assert_eq!(keys_in_state(&app, "expired").await, Vec::<String>::new());
    assert_eq!(sample(&metrics(&app).await, r#"valuestream_open_spans{source="github",kind="issue"}"#), Some(1.0));
    app.stop().await;
}

/// Expiry follows the setting the store is served with: after a restart
/// without it the span is open again, after one with another age it ends at
/// its start plus that age. Nothing is lost either way.
#[tokio::test]
async fn a_restart_with_another_age_or_none_moves_the_expiry_with_it() {
    let dir = TempDir::new();
    let database = format!("sqlite://{}", dir.0.join("vs.db").display());
    let (app, _received) = expiring_app(Some(database.clone()), Some(AGE)).await;
    accepted(&app, "issues", "r-old-issue", &old_issue()).await;
    assert_eq!(span(&app, OLD_ISSUE_KEY).await["end"], "2026-11-20T09:00:03Z");
    app.stop().await;

    let (app, _received) = expiring_app(Some(database.clone()), None).await;
    until_in_state(&app, "open", &[OLD_ISSUE_KEY]).await;
    assert_eq!(span(&app, OLD_ISSUE_KEY).await["end"], Value::Null);
    app.stop().await;

    let (app, _received) = expiring_app(Some(database.clone()), Some(Duration::from_secs(3_600))).await;
    until_in_state(&app, "expired", &[OLD_ISSUE_KEY]).await;
    assert_eq!(span(&app, OLD_ISSUE_KEY).await["end"], "2026-11-20T10:00:00Z");
    app.stop().await;

    // From one age straight to another: the end moves with it.
    let (app, _received) = expiring_app(Some(database), Some(AGE)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while span(&app, OLD_ISSUE_KEY).await["end"] != "2026-11-20T09:00:03Z" {
        assert!(tokio::time::Instant::now() < deadline, "{}", span(&app, OLD_ISSUE_KEY).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(span(&app, OLD_ISSUE_KEY).await["state"], "expired");
    app.stop().await;
}

/// A backlog (expiry switched on over a history of lost spans) is swept 200
/// spans per transaction, so deliveries commit between the steps; each step
/// changes whole spans, their outbox rows with them.
#[tokio::test]
async fn a_backlog_is_swept_in_steps_of_whole_spans() {
    use valuestream::ingest::prepare;
    use valuestream::store::{Store, Swept};
    use valuestream_core::delivery::Delivery;
    use valuestream_core::sources::{self, SourceOptions};

    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.0.join("vs.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    let github = sources::by_name("github").unwrap();
    let lost: Vec<_> = (0..450u64)
        .map(|n| {
            let mut body = old_issue();
            body["issue"]["number"] = json!(1_000 + n);
            let headers = vec![
                ("x-github-event".to_string(), "issues".to_string()),
                ("x-github-delivery".to_string(), format!("b-{n}")),
            ];
            let delivery = Delivery::new("github", headers, serde_json::to_vec(&body).unwrap(), this_second());
            prepare(github, delivery, &SourceOptions::default()).unwrap()
        })
        .collect();
    for group in lost.chunks(256) {
        store.apply_batch(group, true).await.unwrap();
    }
    assert_eq!(store.open_span_counts().await.unwrap(), vec![("github".into(), "issue".into(), 450)]);

    let expiring = store.clone().with_expire_open_after(Some(AGE));
    let now = this_second();
    let step = |expired, more| Swept { expired, queued: expired, more, ..Swept::default() };
    assert_eq!(expiring.sweep_expired(now, false, true).await.unwrap(), step(200, true));
    assert_eq!(expiring.outbox_len().await.unwrap(), 200, "each expired span is queued with it");
    assert_eq!(expiring.sweep_expired(now, false, true).await.unwrap(), step(200, true));
    assert_eq!(expiring.sweep_expired(now, false, true).await.unwrap(), step(50, false));
    assert_eq!(expiring.sweep_expired(now, false, true).await.unwrap(), step(0, false), "nothing left");
    assert_eq!(store.expired_span_counts().await.unwrap(), vec![("github".into(), "issue".into(), 450)]);
    assert_eq!(store.open_span_counts().await.unwrap(), vec![]);

    // Served without an age, the first sweep opens them again, as many steps as it takes.
    let reopen = |reopened, more| Swept { reopened, more, ..Swept::default() };
    assert_eq!(store.sweep_expired(now, true, true).await.unwrap(), reopen(200, true));
    assert_eq!(store.sweep_expired(now, true, true).await.unwrap(), reopen(200, true));
    assert_eq!(store.sweep_expired(now, true, true).await.unwrap(), reopen(50, false));
    assert_eq!(store.outbox_len().await.unwrap(), 0, "no expired end waits for export any more");
    assert_eq!(store.open_span_counts().await.unwrap(), vec![("github".into(), "issue".into(), 450)]);
    store.close().await;
}
