//! Order independence for builds and deploys (docs/operations.md): the
//! issue → pull request → runs and jobs → merge → push → deploy scenario gives
//! the same spans, parents, links and ids in any order and with redeliveries.

mod support;

use proptest::prelude::*;
use serde_json::Value;
use support::*;
use valuestream::ingest::prepare;
use valuestream::store::{AckStatus, ApiSpan, ExportSpan, SpanFilter, Store};
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{SourceOptions, by_name};
use valuestream_core::time::Timestamp;

/// The shared scenario, each delivery with its id.
fn deliveries() -> Vec<(String, &'static str, Value)> {
    builds_and_deploys().into_iter().enumerate().map(|(i, (event, body))| (format!("o-{i}"), event, body)).collect()
}

fn applicable(id: &str, event: &str, body: &Value) -> valuestream::store::Applicable {
    let headers =
        [("X-GitHub-Event".to_string(), event.to_string()), ("X-GitHub-Delivery".to_string(), id.to_string())];
    let delivery = Delivery::new("github", headers, serde_json::to_vec(body).unwrap(), Timestamp(0));
    prepare(by_name("github").unwrap(), delivery, &SourceOptions::default()).unwrap()
}

/// The spans after applying the deliveries in `order`, and what waits in the
/// outbox for export (by key): the trace backend must get the same spans and
/// ids whatever the order, not only the API.
async fn spans_after(order: &[usize], redeliver: &[bool]) -> (Vec<ApiSpan>, Vec<ExportSpan>) {
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.0.join("o.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    let all = deliveries();
    for &i in order {
        let (id, event, body) = &all[i];
        let item = applicable(id, event, body);
        let (acks, _) = store.apply_batch(std::slice::from_ref(&item), true).await.unwrap();
        assert_eq!(acks[0].status, AckStatus::Accepted);
        if redeliver[i] {
            let (acks, queued) = store.apply_batch(&[item], true).await.unwrap();
            assert_eq!((acks[0].status, queued), (AckStatus::Duplicate, 0));
        }
    }
    let (spans, _) = store.spans(&SpanFilter { limit: 1000, ..Default::default() }).await.unwrap();
    let mut exports: Vec<ExportSpan> =
        store.outbox_due(Timestamp(i64::MAX), 1000).await.unwrap().into_iter().map(|due| due.span).collect();
    exports.sort_by(|a, b| a.key.cmp(&b.key));
    store.close().await;
    (spans, exports)
}

#[test]
fn in_order_the_scenario_links_deploy_to_pull_request() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let n = deliveries().len();
    let (spans, exports) = runtime.block_on(spans_after(&(0..n).collect::<Vec<_>>(), &vec![false; n]));
    let ended = spans.iter().filter(|s| s.state != "open").count();
    assert_eq!(exports.len(), ended, "every finished span waits for export");
    let deploy = spans.iter().find(|s| s.kind == "deploy").unwrap();
    assert_eq!(deploy.parent_key.as_deref(), Some(PR_KEY));
    assert_eq!(deploy.links, vec![PR_KEY.to_string()]);
    assert_eq!(spans.len(), 7);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_order_gives_the_same_spans(
        order in Just((0..deliveries().len()).collect::<Vec<usize>>()).prop_shuffle(),
        redeliver in proptest::collection::vec(proptest::bool::weighted(0.3), deliveries().len()),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let n = deliveries().len();
        let expected = runtime.block_on(spans_after(&(0..n).collect::<Vec<_>>(), &vec![false; n]));
        let shuffled = runtime.block_on(spans_after(&order, &redeliver));
        prop_assert_eq!(&shuffled.0, &expected.0, "spans");
        prop_assert_eq!(&shuffled.1, &expected.1, "spans waiting for export");
    }
}

/// A pull request #n merged with merge commit `sha` (built from the real payloads).
fn merged_pr(n: u64, sha: &str, merged: &str) -> Value {
    let mut body = pull_request("closed", "closed", merged, Some(merged));
    body["pull_request"]["number"] = serde_json::json!(n);
    body["pull_request"]["head"]["ref"] = serde_json::json!(format!("feature-{n}"));
    body["pull_request"]["head"]["sha"] = serde_json::json!(format!("{n:040}"));
    body["pull_request"]["merge_commit_sha"] = serde_json::json!(sha);
    body
}

fn push_of(before: &str, commits: &[(&str, &str)]) -> Value {
    let mut body = push_merge("2026-11-21T16:30:00Z");
    body["before"] = serde_json::json!(before);
    body["after"] = serde_json::json!(commits.last().unwrap().0);
    body["commits"] = serde_json::json!(
        commits
            .iter()
            .map(
                |(sha, message)| serde_json::json!({"id": sha, "message": message, "timestamp": "2026-11-21T16:30:00Z"})
            )
            .collect::<Vec<_>>()
    );
    body
}

fn deploy_of(id: u64, sha: &str, at: &str) -> Vec<(&'static str, Value)> {
    let mut created = deployment(sha, at);
    created["deployment"]["id"] = serde_json::json!(id);
    let mut done = deployment_status(sha, at, "success", at);
    done["deployment"]["id"] = serde_json::json!(id);
    vec![("deployment", created), ("deployment_status", done)]
}

#[test]
fn a_deploy_links_every_pull_request_of_its_change_set_once() {
    let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
    // #1 fixes issue #40, whose delivery comes last: #1 then moves into the
    // issue's trace after the deploy shipping it ended, and the deploy (a
    // child of #2, whose merge it deploys) must link to #1 in that trace, as
    // in any other order.
    let mut first = merged_pr(1, &a, "2026-11-21T10:00:00Z");
    first["pull_request"]["body"] = serde_json::json!("Fixes #40");
    let mut list: Vec<(&'static str, Value)> = vec![
        ("pull_request", first),
        ("pull_request", merged_pr(2, &b, "2026-11-21T11:00:00Z")),
        ("pull_request", merged_pr(3, &c, "2026-11-21T12:00:00Z")),
        // Two pushes: #1 and #2 reach main together, then #3.
        (
            "push",
            push_of(&"0".repeat(40), &[(&a, "Merge pull request #1 from x/y"), (&b, "Merge pull request #2 from x/z")]),
        ),
        ("push", push_of(&b, &[(&c, "Merge pull request #3 from x/w")])),
    ];
    list.extend(deploy_of(71, &b, "2026-11-21T13:00:00Z"));
    list.extend(deploy_of(72, &c, "2026-11-21T14:00:00Z"));
    list.extend(numbered_issue(40, "2026-11-20T09:00:00Z", None, serde_json::json!([])));
    let mut exported = Vec::new();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for reversed in [false, true] {
        let mut items: Vec<_> =
            list.iter().enumerate().map(|(i, (e, b))| applicable(&format!("cs-{i}"), e, b)).collect();
        if reversed {
            items.reverse();
        }
        let links = runtime.block_on(async {
            let dir = TempDir::new();
            let store = Store::open(&format!("sqlite://{}", dir.0.join("cs.db").display())).await.unwrap();
            store.migrate().await.unwrap();
            for item in &items {
                store.apply_batch(std::slice::from_ref(item), true).await.unwrap();
            }
            let first = store.span("github:octo-org/hello-world:deploy:71").await.unwrap().unwrap();
            let second = store.span("github:octo-org/hello-world:deploy:72").await.unwrap().unwrap();
            let pr1 = store.span("github:octo-org/hello-world:pull_request:1").await.unwrap().unwrap();
            assert_eq!(pr1.parent_key.as_deref(), Some("github:octo-org/hello-world:issue:40"), "{reversed}");
            let mut waiting: Vec<ExportSpan> =
                store.outbox_due(Timestamp(i64::MAX), 100).await.unwrap().into_iter().map(|due| due.span).collect();
            waiting.sort_by(|x, y| x.key.cmp(&y.key));
            exported.push(waiting);
            (first.links, second.links)
        });
        let pr = |n: u64| format!("github:octo-org/hello-world:pull_request:{n}");
        assert_eq!(links.0, vec![pr(1), pr(2)], "the first deploy ships #1 and #2 (reversed: {reversed})");
        assert_eq!(links.1, vec![pr(3)], "the second ships only #3 (reversed: {reversed})");
    }
    assert_eq!(exported[0], exported[1], "the same spans wait for export in either order");
}
