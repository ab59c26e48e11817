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

use std::time::{Duration, Instant};
use valuestream::ingest::prepare;
use valuestream::store::Store;
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{SourceOptions, by_name};
use valuestream_core::time::Timestamp;

const PAYLOAD: &str = include_str!("../../valuestream-core/tests/data/github/issues.edited.org.json");

fn main() {
    let events: usize = std::env::var("VS_SPAN_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(run(events));
}

async fn run(events: usize) {
    let dir = std::env::temp_dir().join(format!("valuestream-span-growth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join("vs.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await.expect("the store opens");
    store.migrate().await.expect("migrations run");

    let github = by_name("github").expect("the github source");
    let options = SourceOptions::default();
    let mut body: serde_json::Value = serde_json::from_str(PAYLOAD).expect("the payload is JSON");
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("a time").nanos() / 1_000_000_000;
    let marks = [5usize, 50, 500, 5_000, 50_000].into_iter().filter(|&m| m <= events).collect::<Vec<_>>();
    let mut times: Vec<Duration> = Vec::with_capacity(events);
    for n in 1..=events {
        let at = Timestamp::from_unix_seconds(start + n as i64).expect("a time").to_rfc3339();
        body["issue"]["updated_at"] = at.into();
        body["issue"]["title"] = format!("Edited {n} times").into();
        let headers = [
            ("X-GitHub-Event".to_string(), "issues".to_string()),
            ("X-GitHub-Delivery".to_string(), format!("growth-{n}")),
        ];
        let delivery = Delivery::new("github", headers, serde_json::to_vec(&body).expect("JSON"), Timestamp(0));
        let item = prepare(github, delivery, &options).expect("the delivery parses");
        let began = Instant::now();
        store.apply_batch(std::slice::from_ref(&item), false).await.expect("the delivery applies");
        times.push(began.elapsed());
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
    let size: u64 = std::fs::read_dir(&dir)
        .expect("the folder")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    println!("  store: {:.1} MB ({} bytes per delivery)", size as f64 / 1e6, size / events as u64);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
