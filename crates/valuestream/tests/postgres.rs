//! The store on a real PostgreSQL: the same scenario gives the same spans as on
//! SQLite, and two replicas sharing one database, fed the same span's
//! deliveries concurrently, end where one process ends.
//!
//! These need a PostgreSQL server, so they are ignored by a plain `cargo test`;
//! `.ci/run` starts PostgreSQL and runs them (`cargo test -- --ignored`).

mod support;

use serde_json::Value;
use support::*;
use valuestream::config::TracerBackend;

/// All spans of an app, as the API lists them.
async fn all_spans(app: &App) -> Value {
    let (status, page) = app.get("/api/v1/spans?limit=1000").await;
    assert_eq!(status, 200);
    page["spans"].clone()
}

/// The scenario plus extra deliveries on the same spans: reopen and re-close
/// the issue, a second review, a label.
fn busy_scenario() -> Vec<(&'static str, Value)> {
    let mut deliveries = scenario();
    deliveries.push(("issues", issue("reopened", "open", "2026-11-22T08:00:00Z", None)));
    deliveries.push(("issues", issue("closed", "closed", "2026-11-23T08:00:00Z", Some("2026-11-23T08:00:00Z"))));
    deliveries.push(("pull_request_review", review("commented", "2026-11-20T11:00:00Z")));
    deliveries.push(("issues", issue("labeled", "closed", "2026-11-23T09:00:00Z", Some("2026-11-23T08:00:00Z"))));
    deliveries
}

async fn reference_spans() -> Value {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    for (i, (event, body)) in busy_scenario().iter().enumerate() {
        assert_eq!(app.github(event, &format!("d-{i}"), body).await.0, 200);
    }
    let spans = all_spans(&app).await;
    app.stop().await;
    spans
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn postgres_gives_the_same_spans_as_sqlite() {
    let expected = reference_spans().await;
    let db = PostgresDb::create().await;
    let app = spawn_app_on(db.url.clone(), None, |url| config(url, TracerBackend::None, None, &[SECRET])).await;
    for (i, (event, body)) in busy_scenario().iter().enumerate() {
        let (status, answer) = app.github(event, &format!("d-{i}"), body).await;
        assert_eq!((status, answer["status"].as_str().unwrap()), (200, "accepted"), "{answer}");
    }
    assert_eq!(app.github("issues", "d-0", &busy_scenario()[0].1).await.1["status"], "duplicate");
    assert_eq!(all_spans(&app).await, expected);
    app.stop().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn two_replicas_on_one_postgres_agree_with_one_process() {
    let expected = reference_spans().await;
    for round in 0..3 {
        let db = PostgresDb::create().await;
        let a = spawn_app_on(db.url.clone(), None, |url| config(url, TracerBackend::None, None, &[SECRET])).await;
        let b = spawn_app_on(db.url.clone(), None, |url| config(url, TracerBackend::None, None, &[SECRET])).await;
        // Every delivery goes to one replica, concurrently with all the others;
        // every third is also sent to the other replica (a redelivery).
        let deliveries = busy_scenario();
        let ids: Vec<String> = (0..deliveries.len()).map(|i| format!("d-{i}")).collect();
        let mut sends = Vec::new();
        for (i, (event, body)) in deliveries.iter().enumerate() {
            let (first, second) = if (i + round) % 2 == 0 { (&a, &b) } else { (&b, &a) };
            sends.push(first.github(event, &ids[i], body));
            if i % 3 == 0 {
                sends.push(second.github(event, &ids[i], body));
            }
        }
        let answers = futures::future::join_all(sends).await;
        let accepted = answers.iter().filter(|(s, a)| *s == 200 && a["status"] == "accepted").count();
        let duplicates = answers.iter().filter(|(s, a)| *s == 200 && a["status"] == "duplicate").count();
        assert_eq!(accepted, deliveries.len(), "each delivery is accepted once: {answers:?}");
        assert_eq!(accepted + duplicates, answers.len(), "{answers:?}");
        assert_eq!(all_spans(&a).await, expected, "round {round}");
        assert_eq!(all_spans(&b).await, expected, "round {round}");
        a.stop().await;
        b.stop().await;
        db.drop_database().await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn summary_and_dora_are_the_same_on_postgres() {
    // The builds and deploys scenario through both databases, then the metrics APIs.
    let deliveries = builds_and_deploys();
    let sqlite = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    let db = PostgresDb::create().await;
    let postgres = spawn_app_on(db.url.clone(), None, |url| config(url, TracerBackend::None, None, &[SECRET])).await;
    for app in [&sqlite, &postgres] {
        for (i, (event, body)) in deliveries.iter().enumerate() {
            assert_eq!(app.github(event, &format!("p-{i}"), body).await.0, 200);
        }
    }
    let window = "since=2026-11-01T00:00:00Z&until=2026-12-01T00:00:00Z";
    for path in [
        format!("/api/v1/summary?{window}&group_by=source,kind,outcome"),
        format!("/api/v1/summary?{window}&group_by=repo,environment"),
        format!("/api/v1/dora?{window}"),
        // Names match whatever their case on both databases.
        format!("/api/v1/summary?{window}&repo=Octo-Org/Hello-World&project=HELLO-WORLD"),
        format!("/api/v1/dora?{window}&repo=OCTO-ORG/hello-world"),
        "/api/v1/spans?repo=Octo-Org/Hello-World&kind=Deploy&source=GitHub".to_string(),
        format!("/api/v1/spans?key={}", PR_KEY.to_uppercase()),
        format!("/api/v1/dora?{window}&bucket=day"),
        format!("/api/v1/dora?{window}&bucket=week"),
        format!("/api/v1/dora?{window}&bucket=month"),
        format!("/api/v1/dora/items?{window}&key=deployments"),
        format!("/api/v1/dora/items?{window}&key=changes&bucket=week"),
        format!("/api/v1/dora/items?{window}&key=failed"),
        format!("/api/v1/dora/items?{window}&key=incidents"),
        format!("/api/v1/dora/items?{window}&key=failures&limit=1"),
        format!("/api/v1/dora/items?{window}&key=rework"),
        format!("/api/v1/traces?{window}"),
        format!("/api/v1/traces?{window}&kind=DEPLOY&has_error=false"),
        "/api/v1/spans?order=-duration&q=HELLO".to_string(),
        "/api/v1/spans?min_duration=60&max_duration=1d&order=duration".to_string(),
    ] {
        let (a, b) = (sqlite.get(&path).await, postgres.get(&path).await);
        assert_eq!(a.0, 200, "{path}: {}", a.1);
        assert_eq!(a, b, "{path}");
    }
    // Meta's delivery times differ between the two runs; its counts do not.
    let (a, b) = (sqlite.get("/api/v1/meta").await.1, postgres.get("/api/v1/meta").await.1);
    assert_eq!(a["waiting_references"], b["waiting_references"]);
    assert_eq!(a["repos"], b["repos"]);
    let (_, dora) = postgres.get(&format!("/api/v1/dora?{window}")).await;
    assert_eq!(dora["deployment_frequency"]["deployments"], 1, "{dora}");
    assert_eq!(dora["lead_time_for_changes"]["changes"], 1, "{dora}");
    let (_, dora) = postgres.get(&format!("/api/v1/dora?{window}&repo=OCTO-ORG/hello-world")).await;
    assert_eq!(dora["deployment_frequency"]["deployments"], 1, "{dora}");
    let (_, spans) = postgres.get(&format!("/api/v1/spans?key={}", PR_KEY.to_uppercase())).await;
    assert_eq!(spans["spans"][0]["key"], PR_KEY, "{spans}");
    let (_, weekly) = postgres.get(&format!("/api/v1/dora?{window}&bucket=week")).await;
    let weeks = weekly["series"].as_array().unwrap();
    assert_eq!(weeks.len(), 6, "11-01 (a Sunday), four weeks from Monday 11-02, then Monday 11-30: {weekly}");
    let deploys: u64 = weeks.iter().map(|w| w["deployment_frequency"]["deployments"].as_u64().unwrap()).sum();
    assert_eq!(deploys, 1, "{weekly}");
    sqlite.stop().await;
    postgres.stop().await;
    db.drop_database().await;
}
