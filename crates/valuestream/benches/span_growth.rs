//! What one more event costs a span that already has many (issue 11: "a
//! span receiving its 5,000th event costs about what its 5th did").
//!
//! One GitHub issue receives `VS_SPAN_EVENTS` (default 5,000) `issues.edited`
//! deliveries, each a little later than the one before, applied one per
//! transaction through the real parser and store (SQLite in a temporary
//! folder, no HTTP, no export). Printed: the median time per delivery around
//! the 5th, 50th, 500th and 5,000th event, and the store's size.
//!
//! Run: `cargo bench -p valuestream --bench span_growth`.

use std::time::Duration;
use valuestream_core::time::Timestamp;

mod support;
use support::{BenchStore, apply_timed, fresh_store};

const PAYLOAD: &str = include_str!("../../valuestream-core/tests/data/github/issues.edited.org.json");

fn main() {
    let events: usize = std::env::var("VS_SPAN_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(run(events));
}

async fn run(events: usize) {
    let BenchStore { store, dir, path } = fresh_store("span-growth").await;
    let mut body: serde_json::Value = serde_json::from_str(PAYLOAD).expect("the payload is JSON");
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("a time").nanos() / 1_000_000_000;
    let marks = [5usize, 50, 500, 5_000, 50_000].into_iter().filter(|&m| m <= events).collect::<Vec<_>>();
    let mut times: Vec<Duration> = Vec::with_capacity(events);
    for n in 1..=events {
        let at = Timestamp::from_unix_seconds(start + n as i64).expect("a time").to_rfc3339();
        body["issue"]["updated_at"] = at.into();
        body["issue"]["title"] = format!("Edited {n} times").into();
        times.push(apply_timed(&store, "issues", format!("growth-{n}"), &body).await);
    }
    println!("one span, {events} deliveries of {} bytes each, one per transaction", PAYLOAD.len());
    for mark in marks {
        // The median of the deliveries around the mark (up to 21 of them).
        let from = mark.saturating_sub(11);
        let to = (mark + 10).min(events);
        let mut around: Vec<Duration> = times[from..to].to_vec();
        around.sort();
        let median = around[around.len() / 2];
        println!("  event {mark:>6}: median {:>8.3} ms per delivery", median.as_secs_f64() * 1e3);
    }
    // Closing the last connection checkpoints the WAL into the file.
    store.close().await;
    drop(store);
    let size = std::fs::metadata(&path).expect("the database file").len();
    println!("  store: {:.1} MB ({} bytes per delivery)", size as f64 / 1e6, size / events as u64);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("the database opens");
    for table in ["deliveries", "span_events", "spans"] {
        let sql = format!("SELECT SUM(pgsize) FROM dbstat WHERE name = '{table}'");
        let bytes: Option<i64> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut conn).await.unwrap_or(None);
        if let Some(bytes) = bytes {
            println!("    {table:<12} {:>8} bytes per delivery", bytes / events as i64);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
