//! What the growth benchmarks share: a fresh SQLite store in a temporary
//! folder, and one GitHub delivery applied in a transaction of its own,
//! timed (parsing is outside the time; the store's work is inside).

use std::path::PathBuf;
use std::time::{Duration, Instant};
use valuestream::ingest::prepare;
use valuestream::store::Store;
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{SourceOptions, by_name};
use valuestream_core::time::Timestamp;

/// A migrated store at `{dir}/vs.db`, `dir` a new folder named after `name`.
pub struct BenchStore {
    pub store: Store,
    pub dir: PathBuf,
    pub path: PathBuf,
}

pub async fn fresh_store(name: &str) -> BenchStore {
    let dir = std::env::temp_dir().join(format!("valuestream-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join("vs.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await.expect("the store opens");
    store.migrate().await.expect("migrations run");
    BenchStore { store, dir, path }
}

/// Applies one GitHub delivery (`event`, `delivery_id`, `body`) and returns
/// how long the store took.
pub async fn apply_timed(store: &Store, event: &str, delivery_id: String, body: &serde_json::Value) -> Duration {
    let github = by_name("github").expect("the github source");
    let headers = [("X-GitHub-Event".to_string(), event.to_string()), ("X-GitHub-Delivery".to_string(), delivery_id)];
    let delivery = Delivery::new("github", headers, serde_json::to_vec(body).expect("JSON"), Timestamp(0));
    let item = prepare(github, delivery, &SourceOptions::default()).expect("the delivery parses");
    let began = Instant::now();
    store.apply_batch(std::slice::from_ref(&item), false).await.expect("the delivery applies");
    began.elapsed()
}
