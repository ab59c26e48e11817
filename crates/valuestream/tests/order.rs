//! Order independence (docs/operations.md: the same deliveries in any
//! order give the same spans, links and ids; a redelivery changes nothing and
//! answers `duplicate`), through the real parser and the real SQLite store.
//!
//! One scenario of real GitHub payloads (the vendored @octokit examples in
//! valuestream-core/tests/data/github, with only the scenario's fields set) is
//! applied in payload-time order, one delivery per transaction, to a fresh
//! store; that result is checked by hand, then compared with the same
//! deliveries applied in shuffled orders, in random group-commit batches, with
//! some delivered twice, each into its own fresh store.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use valuestream::ingest::prepare;
use valuestream::store::{AckStatus, ApiSpan, Applicable, ExportSpan, SpanFilter, Store};
use valuestream_core::delivery::Delivery;
use valuestream_core::ids;
use valuestream_core::sources::{self, SourceOptions};
use valuestream_core::time::Timestamp;

const ISSUE_KEY: &str = "github:octo-org/hello-world:issue:27";
const PR42_KEY: &str = "github:octo-org/hello-world:pull_request:42";
const PR43_KEY: &str = "github:octo-org/hello-world:pull_request:43";
const PR42_BRANCH: &str = "feature/vstrace-github-hello-world-27/login";

// Payload times of the scenario (2026-03-02, UTC).
const ISSUE_CREATED: &str = "2026-03-02T09:00:00Z";
const PR42_CREATED: &str = "2026-03-02T10:00:00Z";
const PR43_CREATED: &str = "2026-03-02T10:30:00Z";
const REVIEW_COMMENTED: &str = "2026-03-02T11:00:00Z";
const PR43_CLOSED: &str = "2026-03-02T11:30:00Z";
const REVIEW_APPROVED: &str = "2026-03-02T12:00:00Z";
const PR42_LABELED: &str = "2026-03-02T12:30:00Z";
const PR42_MERGED: &str = "2026-03-02T13:00:00Z";
const PR42_MERGED_UPDATED: &str = "2026-03-02T13:00:01Z";
const ISSUE_CLOSED_FIRST: &str = "2026-03-02T13:00:02Z";
const ISSUE_REOPENED: &str = "2026-03-02T14:00:00Z";
const ISSUE_CLOSED_AGAIN: &str = "2026-03-02T15:00:00Z";

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("scenario times are RFC 3339")
}

// ---------------------------------------------------------------- payloads

fn fixture(name: &str) -> Value {
    let path = format!("{}/../valuestream-core/tests/data/github/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A real payload with the scenario's repository; everything not set here or
/// by the callers below is the real payload as recorded.
fn in_hello_world(mut body: Value, action: &str) -> Value {
    body["action"] = json!(action);
    body["repository"]["name"] = json!("hello-world");
    body["repository"]["full_name"] = json!("octo-org/hello-world");
    body
}

/// Issue #27 as an `issues` payload (real payload, scenario fields set).
fn issue(fixture_name: &str, action: &str, state: &str, updated: &str, closed: Option<&str>) -> Value {
    let mut body = in_hello_world(fixture(fixture_name), action);
    let issue = &mut body["issue"];
    issue["number"] = json!(27);
    issue["state"] = json!(state);
    issue["created_at"] = json!(ISSUE_CREATED);
    issue["updated_at"] = json!(updated);
    issue["closed_at"] = json!(closed);
    body
}

/// The scenario fields of a pull request object (in a `pull_request` or a
/// `pull_request_review` payload).
struct Pr {
    number: u64,
    created: &'static str,
    head: &'static str,
    body: Option<&'static str>,
}

const PR42: Pr = Pr { number: 42, created: PR42_CREATED, head: PR42_BRANCH, body: None };
const PR43: Pr = Pr { number: 43, created: PR43_CREATED, head: "x", body: Some("Fixes #27") };

fn set_pr(object: &mut Value, pr: &Pr, state: &str, updated: &str, closed: Option<&str>, merged: Option<&str>) {
    object["number"] = json!(pr.number);
    object["state"] = json!(state);
    object["created_at"] = json!(pr.created);
    object["updated_at"] = json!(updated);
    object["closed_at"] = json!(closed);
    object["merged_at"] = json!(merged);
    object["merged"] = json!(merged.is_some());
    object["head"]["ref"] = json!(pr.head);
    if let Some(text) = pr.body {
        object["body"] = json!(text);
    }
}

/// A `pull_request` payload (real payload, scenario fields set).
fn pull_request(
    fixture_name: &str,
    action: &str,
    pr: &Pr,
    state: &str,
    updated: &str,
    closed: Option<&str>,
    merged: Option<&str>,
) -> Value {
    let mut body = in_hello_world(fixture(fixture_name), action);
    set_pr(&mut body["pull_request"], pr, state, updated, closed, merged);
    body
}

/// A submitted review of PR #42 (real payload, scenario fields set).
fn review(state: &str, submitted: &str) -> Value {
    let mut body = in_hello_world(fixture("pull_request_review.submitted.org.installation"), "submitted");
    body["review"]["state"] = json!(state);
    body["review"]["submitted_at"] = json!(submitted);
    set_pr(&mut body["pull_request"], &PR42, "open", submitted, None, None);
    body
}

/// The scenario's deliveries in payload-time order: (event, delivery id, body).
fn scenario() -> Vec<(&'static str, String, Value)> {
    let deliveries: Vec<(&str, Value)> = vec![
        ("issues", issue("issues.opened.org", "opened", "open", ISSUE_CREATED, None)),
        (
            "pull_request",
            pull_request("pull_request.opened.org.installation", "opened", &PR42, "open", PR42_CREATED, None, None),
        ),
        (
            "pull_request",
            pull_request("pull_request.opened.org.installation", "opened", &PR43, "open", PR43_CREATED, None, None),
        ),
        ("pull_request_review", review("commented", REVIEW_COMMENTED)),
        (
            "pull_request",
            pull_request(
                "pull_request.closed.unmerged.org.installation",
                "closed",
                &PR43,
                "closed",
                PR43_CLOSED,
                Some(PR43_CLOSED),
                None,
            ),
        ),
        ("pull_request_review", review("approved", REVIEW_APPROVED)),
        (
            "pull_request",
            pull_request("pull_request.labeled.org.installation", "labeled", &PR42, "open", PR42_LABELED, None, None),
        ),
        (
            "pull_request",
            pull_request(
                "pull_request.closed.unmerged.org.installation",
                "closed",
                &PR42,
                "closed",
                PR42_MERGED_UPDATED,
                Some(PR42_MERGED),
                Some(PR42_MERGED),
            ),
        ),
        ("issues", issue("issues.opened.org", "closed", "closed", ISSUE_CLOSED_FIRST, Some(ISSUE_CLOSED_FIRST))),
        ("issues", issue("issues.reopened", "reopened", "open", ISSUE_REOPENED, None)),
        ("issues", issue("issues.opened.org", "closed", "closed", ISSUE_CLOSED_AGAIN, Some(ISSUE_CLOSED_AGAIN))),
    ];
    deliveries
        .into_iter()
        .enumerate()
        .map(|(i, (event, body))| (event, format!("0b5e1c00-4a1d-11f1-8e3a-{:012x}", 0x27_0000 + i), body))
        .collect()
}

/// Each scenario delivery as the store takes it, through the real parser.
fn applicables() -> Vec<Applicable> {
    let github = sources::by_name("github").expect("the github source");
    scenario()
        .into_iter()
        .map(|(event, id, body)| {
            let delivery = Delivery::new(
                "github",
                [
                    ("X-GitHub-Event".to_string(), event.to_string()),
                    ("X-GitHub-Delivery".to_string(), id.clone()),
                    ("Content-Type".to_string(), "application/json".to_string()),
                ],
                serde_json::to_vec(&body).unwrap(),
                at("2026-03-02T16:00:00Z"),
            );
            prepare(github, delivery, &SourceOptions::default()).unwrap_or_else(|e| panic!("{event} {id}: {e}"))
        })
        .collect()
}

// ---------------------------------------------------------------- stores

/// A fresh SQLite store in its own temporary directory, removed on drop.
struct TempStore {
    store: Store,
    dir: PathBuf,
}

impl TempStore {
    async fn new() -> TempStore {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "vs-order-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("store.db").display());
        let store = Store::open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        store.migrate().await.unwrap();
        TempStore { store, dir }
    }

    async fn spans(&self) -> Vec<ApiSpan> {
        let (spans, next) = self.store.spans(&SpanFilter { limit: 1000, ..Default::default() }).await.unwrap();
        assert!(next.is_none(), "more than one page of spans");
        spans
    }

    /// What waits in the outbox for export, by key: the trace backend must
    /// get the same spans and ids whatever the order, not only the API.
    async fn exports(&self) -> Vec<ExportSpan> {
        let due = self.store.outbox_due(Timestamp(i64::MAX), 1000).await.unwrap();
        let mut exports: Vec<ExportSpan> = due.into_iter().map(|due| due.span).collect();
        exports.sort_by(|a, b| a.key.cmp(&b.key));
        exports
    }

    async fn close(self) {
        self.store.close().await;
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Applies `batches` (each one transaction) and checks every answer is `accepted`.
async fn apply_batches(store: &TempStore, items: &[Applicable], batches: &[Vec<usize>]) {
    for batch in batches {
        let group: Vec<Applicable> = batch.iter().map(|&i| items[i].clone()).collect();
        let (acks, _) = store.store.apply_batch(&group, true).await.unwrap();
        assert_eq!(acks.len(), group.len());
        for (ack, item) in acks.iter().zip(&group) {
            assert_eq!(ack.status, AckStatus::Accepted, "{}", item.id);
            assert_eq!(ack.delivery_id, item.id);
        }
    }
}

/// The spans the in-order scenario gives, one delivery per transaction.
async fn in_order_spans(items: &[Applicable], batches: &[Vec<usize>]) -> Vec<ApiSpan> {
    in_order(items, batches).await.0
}

/// The spans and the outbox the in-order scenario gives.
async fn in_order(items: &[Applicable], batches: &[Vec<usize>]) -> (Vec<ApiSpan>, Vec<ExportSpan>) {
    let store = TempStore::new().await;
    apply_batches(&store, items, batches).await;
    let applied = (store.spans().await, store.exports().await);
    store.close().await;
    applied
}

fn one_at_a_time(n: usize) -> Vec<Vec<usize>> {
    (0..n).map(|i| vec![i]).collect()
}

fn span<'s>(spans: &'s [ApiSpan], key: &str) -> &'s ApiSpan {
    spans.iter().find(|s| s.key == key).unwrap_or_else(|| panic!("no span {key} in {spans:#?}"))
}

// ---------------------------------------------------------------- tests

#[test]
fn the_scenario_in_order_gives_the_expected_spans() {
    let items = applicables();
    let spans = runtime().block_on(in_order_spans(&items, &one_at_a_time(items.len())));
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let trace = ids::trace_id(ISSUE_KEY);

    let issue = span(&spans, ISSUE_KEY);
    assert_eq!(issue.kind, "issue");
    assert_eq!(issue.parent_key, None);
    assert_eq!(issue.parent_span_id, None);
    assert_eq!(issue.trace_id, trace);
    assert_eq!(issue.span_id, ids::span_id(ISSUE_KEY));
    assert_eq!(issue.state, "closed");
    assert_eq!(issue.outcome.as_deref(), Some("completed"));
    assert_eq!(issue.start, at(ISSUE_CREATED));
    assert_eq!(issue.end, Some(at(ISSUE_CLOSED_AGAIN)), "the final close wins");
    assert!(issue.trace_refs.contains(&"vstrace-github-hello-world-27".to_string()));

    let pr42 = span(&spans, PR42_KEY);
    assert_eq!(pr42.kind, "pull_request");
    assert_eq!(pr42.parent_key.as_deref(), Some(ISSUE_KEY), "head branch names the issue");
    assert_eq!(pr42.parent_span_id, Some(ids::span_id(ISSUE_KEY)));
    assert_eq!(pr42.trace_id, trace);
    assert_eq!(pr42.span_id, ids::span_id(PR42_KEY));
    assert_eq!(pr42.state, "closed");
    assert_eq!(pr42.outcome.as_deref(), Some("merged"));
    assert_eq!(pr42.start, at(PR42_CREATED));
    assert_eq!(pr42.end, Some(at(PR42_MERGED)), "a merged pull request ends at merged_at");
    assert_eq!(pr42.attributes["vcs.change.state"], json!("merged"));
    assert_eq!(pr42.attributes["vcs.ref.head.name"], json!(PR42_BRANCH));
    assert_eq!(pr42.attributes["valuestream.first_review_at"], json!(at(REVIEW_COMMENTED).to_rfc3339()));
    assert_eq!(pr42.attributes["valuestream.first_approval_at"], json!(at(REVIEW_APPROVED).to_rfc3339()));
    assert_eq!(pr42.attributes["valuestream.merged_at"], json!(at(PR42_MERGED).to_rfc3339()));

    let pr43 = span(&spans, PR43_KEY);
    assert_eq!(pr43.parent_key.as_deref(), Some(ISSUE_KEY), "`Fixes #27` names the issue");
    assert_eq!(pr43.parent_span_id, Some(ids::span_id(ISSUE_KEY)));
    assert_eq!(pr43.trace_id, trace);
    assert_eq!(pr43.state, "closed");
    assert_eq!(pr43.outcome.as_deref(), Some("closed"));
    assert_eq!(pr43.start, at(PR43_CREATED));
    assert_eq!(pr43.end, Some(at(PR43_CLOSED)));
    assert_eq!(pr43.attributes["vcs.change.state"], json!("closed"));
    assert!(!pr43.attributes.contains_key("valuestream.first_review_at"));
}

#[test]
fn the_scenario_in_order_in_groups_gives_the_same_spans() {
    let items = applicables();
    let n = items.len();
    let rt = runtime();
    let baseline = rt.block_on(in_order_spans(&items, &one_at_a_time(n)));
    for size in [2, 3, n] {
        let batches: Vec<Vec<usize>> = (0..n).collect::<Vec<_>>().chunks(size).map(<[usize]>::to_vec).collect();
        let grouped = rt.block_on(in_order_spans(&items, &batches));
        assert_eq!(grouped, baseline, "in order, {size} deliveries per transaction");
    }
}

/// One step of a shuffled run.
#[derive(Clone, Debug)]
enum Step {
    /// These deliveries (scenario indices) in one transaction.
    Batch(Vec<usize>),
    /// This delivery again, alone: must answer `duplicate` and change nothing.
    Redeliver(usize),
}

/// Cuts `order` into transactions of `sizes`, and puts each redelivery after
/// some transaction at or after the one that first delivered it.
fn schedule(order: &[usize], sizes: &[usize], again: &[Option<Index>]) -> Vec<Step> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut rest = order;
    for &size in sizes {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        batches.push(batch.to_vec());
        rest = tail;
    }
    assert!(rest.is_empty());
    let batch_of = |item: usize| batches.iter().position(|b| b.contains(&item)).unwrap();
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); batches.len()];
    for (item, again) in again.iter().enumerate() {
        if let Some(index) = again {
            let first = batch_of(item);
            after[first + index.index(batches.len() - first)].push(item);
        }
    }
    let mut steps = Vec::new();
    for (batch, redeliveries) in batches.into_iter().zip(after) {
        steps.push(Step::Batch(batch));
        steps.extend(redeliveries.into_iter().map(Step::Redeliver));
    }
    steps
}

async fn run_steps(items: &[Applicable], steps: &[Step]) -> (Vec<ApiSpan>, Vec<ExportSpan>) {
    let store = TempStore::new().await;
    for step in steps {
        match step {
            Step::Batch(batch) => apply_batches(&store, items, std::slice::from_ref(batch)).await,
            Step::Redeliver(i) => {
                let before = store.spans().await;
                let deliveries = store.store.delivery_count().await.unwrap();
                let (acks, queued) = store.store.apply_batch(std::slice::from_ref(&items[*i]), true).await.unwrap();
                assert_eq!(acks.len(), 1);
                assert_eq!(acks[0].status, AckStatus::Duplicate, "redelivery of {}", items[*i].id);
                assert_eq!(acks[0].spans, 0);
                assert_eq!(queued, 0, "a redelivery queues nothing for export");
                assert_eq!(store.store.delivery_count().await.unwrap(), deliveries);
                assert_eq!(store.spans().await, before, "a redelivery of {} changed the spans", items[*i].id);
            }
        }
    }
    assert_eq!(store.store.delivery_count().await.unwrap(), items.len() as i64);
    let applied = (store.spans().await, store.exports().await);
    store.close().await;
    applied
}

#[test]
fn shuffled_batched_and_redelivered_gives_the_same_spans() {
    let items = applicables();
    let n = items.len();
    let rt = runtime();
    let baseline = rt.block_on(in_order(&items, &one_at_a_time(n)));
    assert_eq!(baseline.0.len(), 3);
    assert_eq!(baseline.1.len(), 3, "the issue and both pull requests wait for export");

    let strategy = (
        Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
        prop::collection::vec(1usize..=4, n),
        prop::collection::vec(prop::option::weighted(0.3, any::<Index>()), n),
    )
        .prop_map(|(order, sizes, again)| {
            let steps = schedule(&order, &sizes, &again);
            (order, steps)
        });
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(24);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&strategy, |(order, steps)| {
        // A runtime per case, as the store would get in a fresh process.
        let (spans, exports) = runtime().block_on(run_steps(&items, &steps));
        prop_assert_eq!(&spans, &baseline.0, "order {:?}, steps {:?}", order, steps);
        prop_assert_eq!(&exports, &baseline.1, "outbox: order {:?}, steps {:?}", order, steps);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
