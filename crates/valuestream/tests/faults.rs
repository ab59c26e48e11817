//! Nothing acknowledged is ever lost (issue 10): the real server on a store
//! that fails — a disk that fills up, a COMMIT that fails — answers 503 and
//! never a 2xx it cannot keep, and recovers by itself once the cause goes away.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use support::*;
use valuestream::config::TracerBackend;
use valuestream::store::Store;

/// A real `issues` payload for issue `number`, its description `padding` bytes long.
fn issue_numbered(number: u64, padding: usize) -> Value {
    let mut body = issue("opened", "open", "2026-11-20T09:00:00Z", None);
    body["issue"]["number"] = json!(number);
    body["issue"]["body"] = json!("x".repeat(padding));
    body
}

/// Bodies of three sizes, so a full disk strikes different statements.
fn padding_of(number: u64) -> usize {
    [200, 3_000, 12_000][(number % 3) as usize]
}

/// A fresh store in `dir`, migrated, as `serve` would open it.
async fn fresh_store(dir: &TempDir) -> (Store, String) {
    let database = format!("sqlite://{}", dir.0.join("vs.db").display());
    let store = Store::open(&database).await.unwrap();
    store.migrate().await.unwrap();
    (store, database)
}

async fn start(store: &Store, database: &str) -> App {
    spawn_app_with_store(
        store.clone(),
        database.to_string(),
        None,
        config(database, TracerBackend::None, None, &[SECRET]),
    )
    .await
}

/// The delivery ids in the database file, read by a new connection after the server stopped.
async fn stored_ids(database: &str) -> HashSet<String> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(database).await.unwrap();
    let rows = sqlx::query("SELECT id FROM deliveries").fetch_all(&mut conn).await.unwrap();
    rows.iter().map(|row| sqlx::Row::get::<String, _>(row, 0)).collect()
}

/// Sends issue `number` and returns the status.
async fn send(app: &App, number: u64) -> u16 {
    let (status, answer) =
        app.github("issues", &format!("fd-{number}"), &issue_numbered(number, padding_of(number))).await;
    assert!(status == 200 || status == 503, "delivery {number}: {status} {answer}");
    if status == 200 {
        assert_eq!(answer["status"], "accepted", "{answer}");
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filling_up_under_a_stream_answers_503_keeps_every_2xx_and_recovers_when_room_is_made() {
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let app = start(&store, &database).await;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for number in 1..=10 {
        assert_eq!(send(&app, number).await, 200);
        acknowledged.push(number);
    }
    // The disk fills up: a few dozen pages left, then "database or disk is full".
    store.limit_growth(Some(40)).await.unwrap();
    for number in 11..=150 {
        match send(&app, number).await {
            200 => acknowledged.push(number),
            _ => refused += 1,
        }
    }
    assert!(refused >= 50, "the full disk refused only {refused} of 140 deliveries");
    // Room again: deliveries succeed without a restart.
    store.limit_growth(None).await.unwrap();
    for number in 151..=180 {
        assert_eq!(send(&app, number).await, 200, "delivery {number} after room was made");
        acknowledged.push(number);
    }
    app.stop().await;
    store.close().await;

    let stored = stored_ids(&database).await;
    let lost: Vec<u64> = acknowledged.iter().copied().filter(|n| !stored.contains(&format!("github:fd-{n}"))).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries are not in the store: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_commit_answers_503_and_no_later_2xx_is_lost() {
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let app = start(&store, &database).await;
    let mut acknowledged = Vec::new();
    for number in 1..=5 {
        assert_eq!(send(&app, number).await, 200);
        acknowledged.push(number);
    }
    // COMMIT fails, the transaction already rolled back by the database (and
    // again if the writer retries the delivery on its own).
    store.fail_commits(2);
    assert_eq!(send(&app, 6).await, 503, "a failed COMMIT is a 503");
    // Later writes go on, through every pooled connection, and one more
    // failure (a full disk) strikes while they do.
    for number in 7..=30 {
        if send(&app, number).await == 200 {
            acknowledged.push(number);
        }
    }
    store.limit_growth(Some(40)).await.unwrap();
    for number in 31..=60 {
        if send(&app, number).await == 200 {
            acknowledged.push(number);
        }
    }
    store.limit_growth(None).await.unwrap();
    for number in 61..=90 {
        assert_eq!(send(&app, number).await, 200, "delivery {number} after the faults");
        acknowledged.push(number);
    }
    app.stop().await;
    store.close().await;

    let stored = stored_ids(&database).await;
    assert!(!stored.contains("github:fd-6"), "the delivery whose COMMIT failed is not stored");
    let lost: Vec<u64> = acknowledged.iter().copied().filter(|n| !stored.contains(&format!("github:fd-{n}"))).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries are not in the store: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}
