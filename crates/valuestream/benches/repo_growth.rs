//! What one more delivery costs a repository that already has a long
//! delivery history (issue 11: "a delivery's cost does not grow with that
//! count").
//!
//! One GitHub repository receives `VS_REPO_STEPS` (default 5,000) steps in
//! time order, each three deliveries an hour apart from the last step's: a
//! merged pull request, the push of its merge commit to the default branch,
//! and a successful production deploy of that commit; every 50th step also
//! opens an incident. Each delivery is applied in a transaction of its own
//! through the real parser and store (SQLite in a temporary folder, no HTTP,
//! no export). Printed: the median time per delivery, per kind, over the
//! last 100 steps before each mark (100, 1,000, 5,000 steps), and a check
//! that every deploy got its change set.
//!
//! Run: `cargo bench -p valuestream --bench repo_growth`
//! (`VS_REPO_STEPS=1000` for a shorter run; `VS_REPO_KEEP=1` keeps the store).

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use valuestream_core::time::Timestamp;

mod support;
use support::{BenchStore, apply_timed, fresh_store};

const PULL_REQUEST: &str =
    include_str!("../../valuestream-core/tests/data/github/pull_request.opened.installation.json");
const PUSH: &str = include_str!("../../valuestream-core/tests/data/github/push.ref-created.installation-1.json");
const DEPLOY: &str = include_str!("../../valuestream-core/tests/data/github/deployment_status.created.success.json");
const ISSUE: &str = include_str!("../../valuestream-core/tests/data/github/issues.opened.plain.json");

/// Steps per mark window: the medians are taken over this many steps.
const WINDOW: usize = 100;
/// One step in every this many also opens an incident.
const INCIDENT_EVERY: usize = 50;
const KINDS: [&str; 4] = ["pull_request", "push", "deployment_status", "issues"];

fn main() {
    let steps: usize = std::env::var("VS_REPO_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(run(steps));
}

fn in_repo(mut body: Value) -> Value {
    body["repository"]["name"] = json!("hello-world");
    body["repository"]["full_name"] = json!("octo-org/hello-world");
    body["repository"]["owner"]["login"] = json!("octo-org");
    body["repository"]["default_branch"] = json!("main");
    body
}

fn sha(step: usize) -> String {
    format!("{step:040x}")
}

fn at(seconds: i64) -> String {
    Timestamp::from_unix_seconds(seconds).expect("a time").to_rfc3339()
}

/// Step `k`'s deliveries (event name, payload), at `t` seconds.
fn step(k: usize, t: i64) -> Vec<(&'static str, Value)> {
    let mut pr = in_repo(serde_json::from_str(PULL_REQUEST).expect("JSON"));
    pr["action"] = json!("closed");
    let p = &mut pr["pull_request"];
    p["number"] = json!(k);
    p["id"] = json!(k);
    p["state"] = json!("closed");
    p["title"] = json!(format!("Change {k}"));
    p["body"] = json!("");
    p["created_at"] = json!(at(t - 1_800));
    p["updated_at"] = json!(at(t));
    p["closed_at"] = json!(at(t));
    p["merged_at"] = json!(at(t));
    p["merged"] = json!(true);
    p["merge_commit_sha"] = json!(sha(k));
    p["head"]["ref"] = json!(format!("feature-{k}"));
    p["base"]["ref"] = json!("main");

    let mut push = in_repo(serde_json::from_str(PUSH).expect("JSON"));
    push["ref"] = json!("refs/heads/main");
    push["before"] = json!(sha(k - 1));
    push["after"] = json!(sha(k));
    push["created"] = json!(false);
    push["forced"] = json!(false);
    let commit = json!({"id": sha(k), "message": format!("Merge pull request #{k} from octo-org/feature-{k}"), "timestamp": at(t)});
    push["commits"] = json!([commit.clone()]);
    push["head_commit"] = commit;

    let mut deploy = in_repo(serde_json::from_str(DEPLOY).expect("JSON"));
    deploy["deployment"]["id"] = json!(k);
    deploy["deployment"]["sha"] = json!(sha(k));
    deploy["deployment"]["ref"] = json!("main");
    deploy["deployment"]["environment"] = json!("production");
    deploy["deployment"]["created_at"] = json!(at(t + 300));
    deploy["deployment"]["updated_at"] = json!(at(t + 300));
    deploy["deployment_status"]["state"] = json!("success");
    deploy["deployment_status"]["environment"] = json!("production");
    deploy["deployment_status"]["created_at"] = json!(at(t + 600));
    deploy["deployment_status"]["updated_at"] = json!(at(t + 600));

    let mut list = vec![("pull_request", pr), ("push", push), ("deployment_status", deploy)];
    if k.is_multiple_of(INCIDENT_EVERY) {
        let mut issue = in_repo(serde_json::from_str(ISSUE).expect("JSON"));
        let i = &mut issue["issue"];
        i["number"] = json!(1_000_000 + k);
        i["id"] = json!(1_000_000 + k);
        i["title"] = json!(format!("Outage {k}"));
        i["body"] = json!("");
        i["created_at"] = json!(at(t + 1_200));
        i["updated_at"] = json!(at(t + 1_200));
        i["labels"] = json!([{"name": "incident"}]);
        list.push(("issues", issue));
    }
    list
}

async fn run(steps: usize) {
    let BenchStore { store, dir, path } = fresh_store("repo-growth").await;
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("a time").nanos() / 1_000_000_000;
    let marks = [100usize, 1_000, 2_000, 5_000, 10_000].into_iter().filter(|&m| m <= steps).collect::<Vec<_>>();
    // Per step, per kind: the time its delivery took.
    let mut times: Vec<Vec<(&'static str, Duration)>> = Vec::with_capacity(steps);
    let mut n = 0;
    let began_all = Instant::now();
    for k in 1..=steps {
        let mut timed = Vec::new();
        for (event, body) in step(k, start + 3_600 * k as i64) {
            n += 1;
            timed.push((event, apply_timed(&store, event, format!("growth-{n}"), &body).await));
        }
        times.push(timed);
    }
    let total = began_all.elapsed();
    println!("one repository, {steps} steps ({n} deliveries, one per transaction) in {:.1} s", total.as_secs_f64());
    println!("  median ms per delivery over the last {WINDOW} steps before each mark");
    println!(
        "  {:>6}  {:>12} {:>8} {:>17} {:>8} {:>8}",
        "step", "pull_request", "push", "deployment_status", "issues", "all"
    );
    for mark in marks {
        let window = &times[mark.saturating_sub(WINDOW)..mark];
        let median = |kind: Option<&str>| {
            let mut all: Vec<Duration> =
                window.iter().flatten().filter(|(e, _)| kind.is_none_or(|k| *e == k)).map(|(_, d)| *d).collect();
            all.sort();
            all.get(all.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        let [pr, push, deploy, issue] = KINDS.map(|k| median(Some(k)));
        println!("  {mark:>6}  {pr:>12.3} {push:>8.3} {deploy:>17.3} {issue:>8.3} {:>8.3}", median(None));
    }
    store.close().await;
    drop(store);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("the database opens");
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let sets = count("SELECT COUNT(*) FROM change_sets").fetch_one(&mut conn).await.expect("a count");
    let shipped =
        count("SELECT COALESCE(SUM(changes), 0) FROM change_sets").fetch_one(&mut conn).await.expect("a count");
    let causes = count("SELECT COUNT(*) FROM incident_causes").fetch_one(&mut conn).await.expect("a count");
    println!("  check: {sets} change sets shipping {shipped} changes, {causes} incident causes");
    if std::env::var_os("VS_REPO_KEEP").is_some() {
        println!("  kept: {}", path.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
