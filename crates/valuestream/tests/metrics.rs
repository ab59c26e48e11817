//! The metrics of metrics.md on a scenario whose answers were computed by hand
//! (the comments show the arithmetic), in order and shuffled.
//!
//! Scenario (repository octo-org/hello-world, window 2026-11-01 → 2026-11-08, 7 days):
//!
//! | PR | opened | first review | merged | merge commit | reaches main in |
//! |----|--------|--------------|--------|--------------|-----------------|
//! | #1 (hotfix) | 11-02 10:00 | 11-02 12:00 | 11-03 10:00 | A ("Merge pull request #1") | push 1 |
//! | #2 | 11-04 09:00 | – | 11-04 11:00 | B | push 2 |
//! | #3 | 11-04 10:00 | – | 11-04 12:00 | C | push 2 |
//! | #5 | 11-04 08:00 | – | 11-04 12:30 | E | push 2 (after C) |
//! | #4 | 11-05 08:00 | – | 11-05 09:00 | D ("Add feature (#4)", a squash merge) | push 3 |
//!
//! Deploys: 80 staging of E 11-04 12:30→12:40 (success; must not count), 81 of A
//! 11-03 11:00→11:30 success (the repository's first deploy), 82 of E
//! 13:00→13:10 failure, 83 of E 14:00→14:20 success (ships #2, #3 and #5), 84 of
//! D 11-05 10:00→10:30 success (the squash merge).
//! Incidents: #90 11-04 15:00→16:30 with `root cause: <E>` (→ deploy 83);
//! #91 11-05 11:00→11:30 without one (→ the last successful deploy, 84).
//! Builds: run 701 cancelled (60 s), run 702 success (600 s).

mod support;

use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;
use valuestream::ingest::prepare;
use valuestream::metrics::{
    Bucket, DoraFilter, ItemKey, MAX_BUCKETS, SpanScope, Window, buckets, dora, dora_items, dora_series, summary,
};
use valuestream::store::{SpanFilter, Store};
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{SourceOptions, by_name};
use valuestream_core::time::Timestamp;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
const D: &str = "dddddddddddddddddddddddddddddddddddddddd";
const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn t(day: u32, time: &str) -> String {
    format!("2026-11-{day:02}T{time}:00Z")
}

fn merged_pr(n: u64, opened: &str, merged: &str, sha: &str) -> Value {
    let mut body = pull_request("closed", "closed", merged, Some(merged));
    let pr = &mut body["pull_request"];
    pr["number"] = json!(n);
    pr["created_at"] = json!(opened);
    pr["head"]["ref"] = json!(format!("feature-{n}"));
    pr["head"]["sha"] = json!(format!("{n:040}"));
    pr["merge_commit_sha"] = json!(sha);
    pr["labels"] = json!([]);
    pr["title"] = json!(format!("Change {n}"));
    body
}

/// Labels a pull request `hotfix` (metrics.md: rework).
fn hotfix(mut body: Value) -> Value {
    body["pull_request"]["labels"] = json!([{"name": "hotfix"}]);
    body
}

fn reviewed(n: u64, opened: &str, at: &str) -> Value {
    let mut body = review("approved", at);
    body["pull_request"]["number"] = json!(n);
    body["pull_request"]["created_at"] = json!(opened);
    body["pull_request"]["head"]["ref"] = json!(format!("feature-{n}"));
    body
}

fn push(before: &str, commits: &[(&str, &str, &str)]) -> Value {
    let mut body = push_merge(commits[0].2);
    body["before"] = json!(before);
    body["after"] = json!(commits.last().unwrap().0);
    body["commits"] = json!(
        commits
            .iter()
            .map(|(sha, message, at)| json!({"id": sha, "message": message, "timestamp": at}))
            .collect::<Vec<_>>()
    );
    body["head_commit"] = body["commits"].as_array().unwrap().last().unwrap().clone();
    body
}

fn deploy(
    id: u64,
    sha: &str,
    environment: &str,
    created: &str,
    state: &str,
    ended: &str,
) -> Vec<(&'static str, Value)> {
    let mut start = deployment(sha, created);
    start["deployment"]["id"] = json!(id);
    start["deployment"]["environment"] = json!(environment);
    let mut end = deployment_status(sha, created, state, ended);
    end["deployment"]["id"] = json!(id);
    end["deployment"]["environment"] = json!(environment);
    vec![("deployment", start), ("deployment_status", end)]
}

fn incident(n: u64, opened: &str, closed: &str, body_text: &str) -> Vec<(&'static str, Value)> {
    let make = |action: &str, state: &str, updated: &str, closed_at: Option<&str>| {
        let mut body = issue(action, state, updated, closed_at);
        body["issue"]["number"] = json!(n);
        body["issue"]["created_at"] = json!(opened);
        body["issue"]["body"] = json!(body_text);
        body["issue"]["labels"] = json!([{"name": "incident"}]);
        body
    };
    vec![("issues", make("opened", "open", opened, None)), ("issues", make("closed", "closed", closed, Some(closed)))]
}

fn run(id: u64, conclusion: &str, started: &str, ended: &str) -> Value {
    let mut body = workflow_run(id, "completed", Some(conclusion), started, ended, false);
    body["workflow_run"]["head_branch"] = json!("main");
    body
}

fn scenario() -> Vec<(&'static str, Value)> {
    let mut list: Vec<(&'static str, Value)> = vec![
        ("pull_request", hotfix(merged_pr(1, &t(2, "10:00"), &t(3, "10:00"), A))),
        ("pull_request_review", reviewed(1, &t(2, "10:00"), &t(2, "12:00"))),
        ("pull_request", merged_pr(2, &t(4, "09:00"), &t(4, "11:00"), B)),
        ("pull_request", merged_pr(3, &t(4, "10:00"), &t(4, "12:00"), C)),
        ("pull_request", merged_pr(5, &t(4, "08:00"), &t(4, "12:30"), E)),
        ("pull_request", merged_pr(4, &t(5, "08:00"), &t(5, "09:00"), D)),
        ("push", push(&"0".repeat(40), &[(A, "Merge pull request #1 from octo-org/feature-1", &t(3, "10:00"))])),
        (
            "push",
            push(
                A,
                &[
                    (B, "Merge pull request #2 from octo-org/feature-2", &t(4, "11:00")),
                    (C, "Merge pull request #3 from octo-org/feature-3", &t(4, "12:00")),
                    (E, "Merge pull request #5 from octo-org/feature-5", &t(4, "12:30")),
                ],
            ),
        ),
        ("push", push(E, &[(D, "Add feature (#4)", &t(5, "09:00"))])),
        ("workflow_run", run(701, "cancelled", &t(2, "10:05"), &t(2, "10:06"))),
        ("workflow_run", run(702, "success", &t(2, "10:10"), &t(2, "10:20"))),
    ];
    list.extend(deploy(80, E, "staging", &t(4, "12:30"), "success", &t(4, "12:40")));
    list.extend(deploy(81, A, "production", &t(3, "11:00"), "success", &t(3, "11:30")));
    list.extend(deploy(82, E, "production", &t(4, "13:00"), "failure", &t(4, "13:10")));
    list.extend(deploy(83, E, "production", &t(4, "14:00"), "success", &t(4, "14:20")));
    list.extend(deploy(84, D, "production", &t(5, "10:00"), "success", &t(5, "10:30")));
    list.extend(incident(90, &t(4, "15:00"), &t(4, "16:30"), &format!("Checkout is down.\nroot cause: {}", &E[..12])));
    list.extend(incident(91, &t(5, "11:00"), &t(5, "11:30"), "Search is slow."));
    list
}

fn window() -> Window {
    Window {
        since: Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").unwrap(),
        until: Timestamp::parse_rfc3339("2026-11-08T00:00:00Z").unwrap(),
    }
}

/// A store holding the scenario's deliveries, applied in `order`.
async fn scenario_store(order: &[usize]) -> (TempDir, Store) {
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.0.join("m.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    let list = scenario();
    for &i in order {
        let (event, body) = &list[i];
        let headers =
            [("X-GitHub-Event".to_string(), event.to_string()), ("X-GitHub-Delivery".to_string(), format!("m-{i}"))];
        let delivery = Delivery::new("github", headers, serde_json::to_vec(body).unwrap(), Timestamp(0));
        let item = prepare(by_name("github").unwrap(), delivery, &SourceOptions::default()).unwrap();
        store.apply_batch(&[item], false).await.unwrap();
    }
    (dir, store)
}

async fn metrics_after(order: &[usize]) -> (Value, Value, Value, Value) {
    let (_dir, store) = scenario_store(order).await;
    let metrics = measure(&store).await;
    store.close().await;
    metrics
}

/// The summary by kind, DORA, DORA of an empty window and the summary at 11-04 noon.
async fn measure(store: &Store) -> (Value, Value, Value, Value) {
    let by_kind = summary(store, window(), &["kind".to_string()], &SpanScope::default()).await.unwrap();
    let noon = Window { since: window().since, until: Timestamp::parse_rfc3339("2026-11-04T12:00:00Z").unwrap() };
    let at_noon = summary(store, noon, &["kind".to_string()], &SpanScope::default()).await.unwrap();
    let keys = dora(store, window(), &DoraFilter::default()).await.unwrap();
    // Configured production names replace the defaults: only the staging deploy 80 counts.
    let staging_as_production = DoraFilter { production: vec!["staging".into()], ..DoraFilter::default() };
    let staging = dora(store, window(), &staging_as_production).await.unwrap();
    assert_eq!(staging["deployment_frequency"]["deployments"], 1, "{staging}");
    let empty = dora(
        store,
        Window {
            since: Timestamp::parse_rfc3339("2025-01-01T00:00:00Z").unwrap(),
            until: Timestamp::parse_rfc3339("2025-02-01T00:00:00Z").unwrap(),
        },
        &DoraFilter::default(),
    )
    .await
    .unwrap();
    (by_kind, keys, empty, at_noon)
}

fn group<'a>(summary: &'a Value, kind: &str) -> &'a Value {
    summary["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} group: {summary}"))
}

fn close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap_or_else(|| panic!("expected a number near {expected}, got {actual}"));
    assert!((actual - expected).abs() < 1e-6, "expected {expected}, got {actual}");
}

#[test]
fn the_scenario_gives_the_hand_computed_numbers() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (by_kind, keys, empty, at_noon) = runtime.block_on(metrics_after(&(0..scenario().len()).collect::<Vec<_>>()));

    // Open at 11-04 12:00: #3 (opened 10:00, merged at 12:00, so not ended *by* noon… it
    // ends exactly at `until`, which counts as open) and #5 (opened 08:00): ages 2 h and
    // 4 h → mean 10800, p50 10800, max 14400. #2 merged at 11:00 is closed; #4 not opened.
    let open_prs = group(&at_noon, "pull_request");
    assert_eq!(open_prs["open"], 2, "{at_noon}");
    close(&open_prs["open_age_seconds"]["mean"], 10800.0);
    close(&open_prs["open_age_seconds"]["p50"], 10800.0);
    close(&open_prs["open_age_seconds"]["max"], 14400.0);

    // Deploys closed in the window: 80 (600 s), 81 (1800), 82 (600), 83 (1200), 84 (1800).
    // Sorted 600, 600, 1200, 1800, 1800: mean 1200, p50 1200, p90 at rank 3.6 = 1800.
    // Success ratio 4 / (4 + 1) = 0.8 (staging counts in the summary, not in DORA).
    let deploys = group(&by_kind, "deploy");
    assert_eq!(deploys["closed"], 5);
    close(&deploys["duration_seconds"]["mean"], 1200.0);
    close(&deploys["duration_seconds"]["p50"], 1200.0);
    close(&deploys["duration_seconds"]["p90"], 1800.0);
    close(&deploys["success_ratio"], 0.8);
    close(&deploys["per_day"], 5.0 / 7.0);
    assert_eq!(deploys["merge_ratio"], Value::Null);
    assert!(deploys.get("source").is_none(), "grouping keys not asked for are absent");

    // Pull requests: 86400, 7200, 7200, 3600, 16200 s. Sorted 3600, 7200, 7200, 16200, 86400:
    // mean 24120; p50 7200; p90 = 16200 + 0.6 × 70200 = 58320; p95 = 16200 + 0.8 × 70200 = 72360;
    // p99 = 16200 + 0.96 × 70200 = 83592; all merged.
    let prs = group(&by_kind, "pull_request");
    assert_eq!(prs["closed"], 5);
    close(&prs["duration_seconds"]["mean"], 24120.0);
    close(&prs["duration_seconds"]["p50"], 7200.0);
    close(&prs["duration_seconds"]["p90"], 58320.0);
    close(&prs["duration_seconds"]["p95"], 72360.0);
    close(&prs["duration_seconds"]["p99"], 83592.0);
    close(&prs["duration_seconds"]["max"], 86400.0);
    close(&prs["merge_ratio"], 1.0);
    assert_eq!(prs["open"], 0);
    assert_eq!(prs["open_age_seconds"]["p50"], Value::Null);

    // Builds: the cancelled run is left out of the success ratio: 1 / (1 + 0).
    let builds = group(&by_kind, "build");
    assert_eq!(builds["closed"], 2);
    close(&builds["success_ratio"], 1.0);

    // Incidents: 5400 and 1800 s: two values, p50 halfway = 3600.
    let incidents = group(&by_kind, "incident");
    close(&incidents["duration_seconds"]["p50"], 3600.0);

    // Deployment frequency: 3 successful production deploys (81, 83, 84) in 7 days:
    // 3/7 per day (high: ≥ 1 per week); 3 distinct days / (7/7 weeks) = 3 days per week.
    let f = &keys["deployment_frequency"];
    assert_eq!(f["deployments"], 3);
    close(&f["per_day"], 3.0 / 7.0);
    close(&f["deployment_days_per_week"], 3.0);
    assert_eq!(f["level"], "high");

    // Lead time: 81 ships #1 (first deploy: only what was recorded); 83 ships #2, #3, #5
    // (82 failed, so 81 is the previous success); 84 ships the squash merge #4.
    // Each change is timed by its pull request's creation:
    // #1 25.5 h = 91800; #2 5h20 = 19200; #3 4h20 = 15600; #5 6h20 = 22800; #4 2.5 h = 9000.
    // Sorted 9000, 15600, 19200, 22800, 91800: median 19200 (elite: < 1 day);
    // p90 = 22800 + 0.6 × 69000 = 64200.
    let l = &keys["lead_time_for_changes"];
    assert_eq!(l["changes"], 5);
    close(&l["median_seconds"], 19200.0);
    close(&l["p90_seconds"], 64200.0);
    assert_eq!(l["unmatched_deploys"], 0);
    assert_eq!(l["level"], "elite");
    // Breakdown: pickup only #1 (12:00 − 10:00 = 7200); review #1 (22 h = 79200);
    // deploy: 5400, 12000, 8400, 6600, 5400 → median 6600.
    close(&l["breakdown"]["pickup"], 7200.0);
    close(&l["breakdown"]["review"], 79200.0);
    close(&l["breakdown"]["deploy"], 6600.0);

    // Change failure rate: of 81, 82, 83, 84, failed are 82 (failure), 83 (caused #90 by
    // its root-cause line) and 84 (the last success before #91): 3/4 = 0.75, low.
    let c = &keys["change_failure_rate"];
    assert_eq!(c["deployments"], 4);
    assert_eq!(c["failed"], 3);
    close(&c["ratio"], 0.75);
    assert_eq!(c["level"], "low");

    // Time to restore: 5400 and 1800 → median 3600: not under an hour, so high.
    let r = &keys["time_to_restore"];
    assert_eq!(r["incidents"], 2);
    close(&r["median_seconds"], 3600.0);
    assert_eq!(r["level"], "high");

    // Failed deployment recovery: 82 ended 13:10, next success 83 at 14:20: 4200 s.
    let fr = &keys["failed_deployment_recovery_time"];
    assert_eq!(fr["failures"], 1);
    close(&fr["median_seconds"], 4200.0);
    assert_eq!(fr["level"], "high");

    // Rework: 81 ships #1, labelled hotfix. 83 and 84 caused incidents #90 and #91: a
    // cause is a change failure, not rework (no incident is among their ancestors): 1/4.
    let w = &keys["deployment_rework_rate"];
    assert_eq!(w["rework"], 1);
    close(&w["ratio"], 0.25);

    // An empty window: nulls and `none`, no error.
    assert_eq!(empty["deployment_frequency"]["deployments"], 0);
    assert_eq!(empty["deployment_frequency"]["level"], "none");
    assert_eq!(empty["lead_time_for_changes"]["median_seconds"], Value::Null);
    assert_eq!(empty["lead_time_for_changes"]["level"], "none");
    assert_eq!(empty["change_failure_rate"]["ratio"], Value::Null);
    assert_eq!(empty["time_to_restore"]["level"], "none");
    assert_eq!(empty["deployment_rework_rate"]["ratio"], Value::Null);
}

/// Each item of `key` in the scenario's window as (span key, reason, the
/// key's reference: the change's deploy, the failure's incident, the
/// incident's deploy, the failure's recovering deploy, rework's cause).
async fn rows(store: &Store, key: ItemKey) -> Vec<(String, String, Value)> {
    let reference = match key {
        ItemKey::Deployments => "sha",
        ItemKey::Changes | ItemKey::Incidents => "deploy_key",
        ItemKey::Failed => "incident_key",
        ItemKey::Failures => "recovered_by",
        ItemKey::Rework => "made_by",
    };
    let items = dora_items(store, window(), &DoraFilter::default(), key, None).await.unwrap();
    items
        .into_iter()
        .map(|item| {
            let span = item["span_key"].as_str().unwrap().to_string();
            (span, item["reason"].as_str().unwrap().to_string(), item[reference].clone())
        })
        .collect()
}

#[test]
fn the_rows_behind_each_key_are_the_hand_computed_ones_with_their_reasons() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (_dir, store) = scenario_store(&(0..scenario().len()).collect::<Vec<_>>()).await;
        let deploy = |n: u32| format!("github:octo-org/hello-world:deploy:{n}");
        let pr = |n: u32| format!("github:octo-org/hello-world:pull_request:{n}");
        let issue = |n: u32| format!("github:octo-org/hello-world:issue:{n}");
        // Newest first. The staging deploy 80 is not among them.
        let deployments = rows(&store, ItemKey::Deployments).await;
        assert_eq!(
            deployments,
            [
                (deploy(84), "shipped".into(), json!(D)),
                (deploy(83), "shipped".into(), json!(E)),
                (deploy(81), "shipped".into(), json!(A)),
            ]
        );
        // Each change opens its pull request, timed from its creation (no branch pushes).
        let changes = dora_items(&store, window(), &DoraFilter::default(), ItemKey::Changes, None).await.unwrap();
        let lead: Vec<(String, String, f64)> = changes
            .iter()
            .map(|c| {
                (
                    c["span_key"].as_str().unwrap().into(),
                    c["deploy_key"].as_str().unwrap().into(),
                    c["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            lead,
            [
                (pr(4), deploy(84), 9000.0),
                (pr(2), deploy(83), 19200.0),
                (pr(3), deploy(83), 15600.0),
                (pr(5), deploy(83), 22800.0),
                (pr(1), deploy(81), 91800.0),
            ]
        );
        assert!(changes.iter().all(|c| c["reason"] == "pull_request_opened"), "{changes:?}");
        // #1's stages: pickup 2 h, review 22 h, deploy 11-03 10:00 → 11:30.
        assert_eq!(changes[4]["pickup_seconds"], json!(7200.0));
        assert_eq!(changes[4]["review_seconds"], json!(79200.0));
        assert_eq!(changes[4]["deploy_seconds"], json!(5400.0));
        // 82 failed; 83 caused #90 by its root-cause line; 84 is the last deploy before #91.
        assert_eq!(
            rows(&store, ItemKey::Failed).await,
            [
                (deploy(84), "incident_last_deploy_before".into(), json!(issue(91))),
                (deploy(83), "incident_root_cause".into(), json!(issue(90))),
                (deploy(82), "failed".into(), Value::Null),
            ]
        );
        assert_eq!(
            rows(&store, ItemKey::Incidents).await,
            [
                (issue(91), "last_deploy_before".into(), json!(deploy(84))),
                (issue(90), "root_cause".into(), json!(deploy(83))),
            ]
        );
        let failures = dora_items(&store, window(), &DoraFilter::default(), ItemKey::Failures, None).await.unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0]["recovered_by"].clone(), failures[0]["value"].clone()),
            (json!(deploy(83)), json!(4200.0))
        );
        assert_eq!(rows(&store, ItemKey::Rework).await, [(deploy(81), "hotfix".into(), json!(pr(1)))]);

        // Every row opens its own span's trace.
        for key in ItemKey::ALL {
            for item in dora_items(&store, window(), &DoraFilter::default(), key, None).await.unwrap() {
                let span = store.span(item["span_key"].as_str().unwrap()).await.unwrap().expect("the row's span");
                assert_eq!(json!(span.trace_id), item["trace_id"], "{key:?}");
                assert_eq!(json!(span.span_id), item["span_id"], "{key:?}");
            }
        }
        // By day, each row names its bucket.
        let days = buckets(window(), Bucket::Day).unwrap();
        let bucketed =
            dora_items(&store, window(), &DoraFilter::default(), ItemKey::Failed, Some(&days)).await.unwrap();
        let starts: Vec<&Value> = bucketed.iter().map(|i| &i["bucket"]).collect();
        assert_eq!(
            starts,
            [&json!("2026-11-05T00:00:00Z"), &json!("2026-11-04T00:00:00Z"), &json!("2026-11-04T00:00:00Z")]
        );
        store.close().await;
    });
}

/// `bucket=`: the series is the DORA object of each bucket, the same as
/// asking for that bucket's window alone, and the total is the window's,
/// from the one bucketed statement per aggregate.
#[test]
fn a_series_is_the_dora_of_each_bucket_and_its_total_the_window() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (_dir, store) = scenario_store(&(0..scenario().len()).collect::<Vec<_>>()).await;
        let whole = dora(&store, window(), &DoraFilter::default()).await.unwrap();
        // Calendar buckets, and hours across the busy days (a boundary between any two events).
        let hours: Vec<Window> = (0..72)
            .map(|h| {
                let start = Timestamp::parse_rfc3339("2026-11-03T00:00:00Z").unwrap().nanos() + h * 3_600_000_000_000;
                Window { since: Timestamp(start), until: Timestamp(start + 3_600_000_000_000) }
            })
            .collect();
        let partitions = [Bucket::Day, Bucket::Week, Bucket::Month]
            .map(|b| (format!("{b:?}"), buckets(window(), b).unwrap()))
            .into_iter()
            .chain([("hours".to_string(), hours)]);
        for (bucket, windows) in partitions {
            assert_series_is_each_bucket_alone(&store, window(), &windows, &bucket, &whole).await;
        }

        // By hand, by day: 81 succeeded on 11-03; 82 failed and 83 succeeded on 11-04
        // (82 recovered by 83 70 minutes later; 83 caused #90); 84 on 11-05 (caused #91).
        let by_day = dora_series(&store, window(), &DoraFilter::default(), &buckets(window(), Bucket::Day).unwrap())
            .await
            .unwrap();
        let days = by_day["series"].as_array().unwrap();
        assert_eq!(days.len(), 7);
        assert_eq!(days[0]["start"], "2026-11-01T00:00:00Z");
        assert_eq!(days[6]["end"], "2026-11-08T00:00:00Z");
        let per_day: Vec<u64> =
            days.iter().map(|d| d["deployment_frequency"]["deployments"].as_u64().unwrap()).collect();
        assert_eq!(per_day, [0, 0, 1, 1, 1, 0, 0]);
        close(&days[2]["deployment_frequency"]["per_day"], 1.0);
        assert_eq!(days[3]["change_failure_rate"]["deployments"], 2);
        assert_eq!(days[3]["change_failure_rate"]["failed"], 2);
        close(&days[3]["failed_deployment_recovery_time"]["median_seconds"], 4200.0);
        // Lead times by the deploy's day: 11-04 ships #2, #3, #5 (19200, 15600, 22800 s).
        assert_eq!(days[3]["lead_time_for_changes"]["changes"], 3);
        close(&days[3]["lead_time_for_changes"]["median_seconds"], 19200.0);
        // Incidents by their close: #90 on 11-04 (5400 s), #91 on 11-05 (1800 s).
        close(&days[3]["time_to_restore"]["median_seconds"], 5400.0);
        close(&days[4]["time_to_restore"]["median_seconds"], 1800.0);
        assert_eq!(days[0]["time_to_restore"]["median_seconds"], Value::Null);
        assert_eq!(days[0]["deployment_frequency"]["level"], "none");
        store.close().await;
    });
}

/// `dora_series` of `window` over `windows`: its total is `whole` (the
/// unbucketed DORA of the window) and each entry is the unbucketed DORA of
/// its bucket's window alone, exactly.
async fn assert_series_is_each_bucket_alone(
    store: &Store,
    window: Window,
    windows: &[Window],
    label: &str,
    whole: &Value,
) {
    let series = dora_series(store, window, &DoraFilter::default(), windows).await.unwrap();
    let mut total = series.clone();
    total.as_object_mut().unwrap().remove("series");
    assert_eq!(&total, whole, "{label}: the total is the window's");
    let list = series["series"].as_array().unwrap();
    assert_eq!(list.len(), windows.len(), "{label}: one entry per bucket, empty ones too");
    for (entry, w) in list.iter().zip(windows) {
        let mut alone = dora(store, *w, &DoraFilter::default()).await.unwrap();
        let alone = alone.as_object_mut().unwrap();
        for key in ["since", "until", "environment", "repo"] {
            alone.remove(key);
        }
        let mut entry = entry.clone();
        let entry = entry.as_object_mut().unwrap();
        assert_eq!(entry.remove("start"), Some(json!(w.since)));
        assert_eq!(entry.remove("end"), Some(json!(w.until)));
        assert_eq!(entry, alone, "{label} bucket {} → {}", w.since, w.until);
    }
}

/// The window of the edge history: mid-afternoon of a Wednesday in January to
/// a Wednesday morning in May, so the first and last buckets of each kind are
/// cut, and February and March start on a Sunday (a week edge the day after
/// a month edge).
fn edge_window() -> Window {
    Window {
        since: Timestamp::parse_rfc3339("2026-01-14T15:00:00Z").unwrap(),
        until: Timestamp::parse_rfc3339("2026-05-20T09:30:00Z").unwrap(),
    }
}

/// The bucket edges of `window` by a naive walk of the UTC calendar, one day
/// at a time: a day bucket starts at every midnight, a week bucket at
/// Monday's, a month bucket at the first's; the first and last are cut.
fn naive_edges(window: Window, bucket: Bucket) -> Vec<i64> {
    use chrono::{DateTime, Datelike, Utc, Weekday};
    let mut edges = vec![window.since.nanos()];
    let mut day = DateTime::<Utc>::from_timestamp_nanos(window.since.nanos()).date_naive();
    loop {
        day = day.succ_opt().unwrap();
        let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_nanos_opt().unwrap();
        if midnight >= window.until.nanos() {
            break;
        }
        let starts = match bucket {
            Bucket::Day => true,
            Bucket::Week => day.weekday() == Weekday::Mon,
            Bucket::Month => day.day() == 1,
        };
        if starts {
            edges.push(midnight);
        }
    }
    edges.push(window.until.nanos());
    edges
}

/// A generated history whose times sit on the bucket edges of
/// [`edge_window`]: at every week and month edge (and the window's own), a
/// deploy fails a second before it and the next succeeds exactly on it (a
/// recovery across the edge); an incident closes on the edge and one a
/// second before. Between the edges, deploys (every third failing) and
/// incidents at times drawn from a fixed seed. Each deploy ships a change
/// merged two hours before it ends, pushed in time order. A bucket that took
/// an edge as `<=` instead of `<`, or put an edge a day off, moves one of
/// these across buckets.
fn edge_history() -> Vec<(&'static str, Value)> {
    const SECOND: i64 = 1_000_000_000;
    const HOUR: i64 = 3_600 * SECOND;
    let window = edge_window();
    // (end of a deploy, its outcome, the end of an incident's)
    let mut plan: Vec<(i64, &str, Option<i64>)> = Vec::new();
    let mut edges: Vec<i64> = [Bucket::Week, Bucket::Month].iter().flat_map(|&b| naive_edges(window, b)).collect();
    edges.sort();
    edges.dedup();
    // The window's own edges too: the failure before `since` and the success
    // on `until` count nowhere.
    for &edge in &edges {
        plan.push((edge - SECOND, "failure", Some(edge - SECOND)));
        plan.push((edge, "success", Some(edge)));
    }
    let mut seed: u64 = 0x5eed_b0c4;
    let mut draw = move |below: i64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as i64).rem_euclid(below)
    };
    let seconds = (window.until.nanos() - window.since.nanos()) / SECOND;
    for k in 0..40 {
        let end = window.since.nanos() + draw(seconds) * SECOND;
        let closed = (k % 4 == 0).then(|| end + draw(3 * 86_400) * SECOND);
        plan.push((end, if k % 3 == 2 { "failure" } else { "success" }, closed));
    }
    plan.sort();

    let at = |nanos: i64| Timestamp(nanos).to_rfc3339();
    let mut list = Vec::new();
    let mut before = "0".repeat(40);
    for (n, &(end, state, closed)) in (1..).zip(&plan) {
        let sha = format!("{:040x}", 0xc0de_0000 + n);
        let merged = end - 2 * HOUR;
        list.push(("pull_request", merged_pr(n, &at(merged - 3 * HOUR), &at(merged), &sha)));
        let message = format!("Merge pull request #{n} from octo-org/feature-{n}");
        list.push(("push", push(&before, &[(&sha, &message, &at(merged))])));
        list.extend(deploy(10_000 + n, &sha, "production", &at(end - 600 * SECOND), state, &at(end)));
        if let Some(closed) = closed {
            list.extend(incident(20_000 + n, &at(closed - HOUR - draw(20_000) * SECOND), &at(closed), "Slow."));
        }
        before = sha;
    }
    list
}

/// The buckets' edges follow the UTC calendar (checked against a naive walk
/// of it), and each bucket's DORA object in the series is the unbucketed
/// DORA of that bucket's window, on a history with events on every edge.
async fn check_edge_history(store: &Store) {
    let window = edge_window();
    let whole = dora(store, window, &DoraFilter::default()).await.unwrap();
    assert!(whole["deployment_frequency"]["deployments"].as_u64().unwrap() > 40, "{whole}");
    assert!(whole["time_to_restore"]["incidents"].as_u64().unwrap() > 40, "{whole}");
    for bucket in [Bucket::Day, Bucket::Week, Bucket::Month] {
        let windows = buckets(window, bucket).unwrap();
        let mut edges: Vec<i64> = windows.iter().map(|w| w.since.nanos()).collect();
        edges.push(windows.last().unwrap().until.nanos());
        assert_eq!(edges, naive_edges(window, bucket), "{bucket:?}: the calendar's edges");
        assert_series_is_each_bucket_alone(store, window, &windows, &format!("{bucket:?}"), &whole).await;
    }
    // The most buckets a call takes: the bucket search grows with them (an
    // expression nested about log2(buckets) deep), and the database takes it.
    let day = 86_400_000_000_000;
    let until = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
    let days = Window { since: Timestamp(until.nanos() - MAX_BUCKETS as i64 * day), until };
    let windows = buckets(days, Bucket::Day).unwrap();
    assert_eq!(windows.len(), MAX_BUCKETS);
    let mut series = dora_series(store, days, &DoraFilter::default(), &windows).await.unwrap();
    let list = series.as_object_mut().unwrap().remove("series").unwrap();
    assert_eq!(list.as_array().unwrap().len(), MAX_BUCKETS);
    assert_eq!(series, dora(store, days, &DoraFilter::default()).await.unwrap());
}

#[test]
fn each_bucket_of_a_series_is_its_window_alone_with_events_on_every_edge() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let list = edge_history();
        let (_dir, store) = store_of(&list, &(0..list.len()).collect::<Vec<_>>()).await;
        check_edge_history(&store).await;
        store.close().await;
    });
}

/// The same on PostgreSQL (`VS_TEST_POSTGRES_URL`, default the local server).
#[test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
fn each_bucket_of_a_series_is_its_window_alone_with_events_on_every_edge_on_postgres() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let db = PostgresDb::create().await;
        let store = Store::open(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        for (i, (event, body)) in edge_history().iter().enumerate() {
            let headers = [
                ("X-GitHub-Event".to_string(), event.to_string()),
                ("X-GitHub-Delivery".to_string(), format!("e-{i}")),
            ];
            let delivery = Delivery::new("github", headers, serde_json::to_vec(body).unwrap(), Timestamp(0));
            let item = prepare(by_name("github").unwrap(), delivery, &SourceOptions::default()).unwrap();
            store.apply_batch(&[item], false).await.unwrap();
        }
        check_edge_history(&store).await;
        store.close().await;
        db.drop_database().await;
    });
}

/// A revert pushed straight to the default branch (no pull request) makes
/// the deploy that ships it rework (metrics.md: a `Revert "…"` commit); the
/// next deploy, shipping an ordinary commit, is not.
#[test]
fn a_deploy_shipping_a_revert_commit_is_rework() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = TempDir::new();
        let store = Store::open(&format!("sqlite://{}", dir.0.join("r.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        let mut list = vec![
            ("push", push(&"0".repeat(40), &[(A, "Add search", &t(2, "09:00"))])),
            ("push", push(A, &[(B, "Revert \"Add search\"\n\nThis reverts commit aaaa.", &t(3, "09:00"))])),
            ("push", push(B, &[(C, "Add search again, fixed", &t(4, "09:00"))])),
        ];
        list.extend(deploy(1, A, "production", &t(2, "10:00"), "success", &t(2, "10:10")));
        list.extend(deploy(2, B, "production", &t(3, "10:00"), "success", &t(3, "10:10")));
        list.extend(deploy(3, C, "production", &t(4, "10:00"), "success", &t(4, "10:10")));
        for (i, (event, body)) in list.iter().enumerate() {
            let headers = [
                ("X-GitHub-Event".to_string(), event.to_string()),
                ("X-GitHub-Delivery".to_string(), format!("r-{i}")),
            ];
            let delivery = Delivery::new("github", headers, serde_json::to_vec(body).unwrap(), Timestamp(0));
            let item = prepare(by_name("github").unwrap(), delivery, &SourceOptions::default()).unwrap();
            store.apply_batch(&[item], false).await.unwrap();
        }
        let keys = dora(&store, window(), &DoraFilter::default()).await.unwrap();
        assert_eq!(keys["deployment_frequency"]["deployments"], 3, "{keys}");
        // Each deploy ships its one commit and ends 70 minutes after it (09:00 → 10:10): 4,200 s.
        assert_eq!(keys["lead_time_for_changes"]["changes"], 3, "{keys}");
        close(&keys["lead_time_for_changes"]["median_seconds"], 4200.0);
        assert_eq!(keys["deployment_rework_rate"]["rework"], 1, "{keys}");
        close(&keys["deployment_rework_rate"]["ratio"], 1.0 / 3.0);
        // The drawer's row: deploy 2, made rework by the revert commit B (pushed
        // straight to main: no pull request to name).
        let rework = rows(&store, ItemKey::Rework).await;
        assert_eq!(rework, [("github:octo-org/hello-world:deploy:2".into(), "revert".into(), json!(B))]);
        store.close().await;
    });
}

/// A store written before the metrics columns and change sets existed (0004)
/// gets them filled once when it is migrated, and gives the same numbers.
#[test]
fn stores_written_before_the_metrics_columns_are_filled_on_migration() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (dir, store) = scenario_store(&(0..scenario().len()).collect::<Vec<_>>()).await;
        let expected = measure(&store).await;
        store.close().await;

        // What the store looked like after migration 0003, plus the task 0004 leaves.
        let url = format!("sqlite://{}", dir.0.join("m.db").display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        for statement in [
            "UPDATE spans SET group_id = NULL, revision = NULL, reviewed_ns = NULL, environment = NULL",
            "DELETE FROM span_groups",
            "DELETE FROM rework_spans",
            "DELETE FROM span_links",
            "DELETE FROM change_sets",
            "DELETE FROM change_set_commits",
            "INSERT INTO pending_tasks (name) VALUES ('backfill_metrics_columns')",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        sqlx::Connection::close(conn).await.unwrap();
        let store = Store::open(&url).await.unwrap();
        let emptied = summary(&store, window(), &["kind".to_string()], &SpanScope::default()).await.unwrap();
        assert_eq!(emptied["groups"], json!([]), "the columns were emptied: {emptied}");

        store.migrate().await.unwrap();
        assert_eq!(measure(&store).await, expected);
        store.close().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_same_numbers_in_any_order(order in Just((0..scenario().len()).collect::<Vec<usize>>()).prop_shuffle()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let expected = runtime.block_on(metrics_after(&(0..scenario().len()).collect::<Vec<_>>()));
        let shuffled = runtime.block_on(metrics_after(&order));
        prop_assert_eq!(shuffled, expected);
    }
}

/// Applies `list` to a fresh store in `order`, one delivery per transaction.
async fn store_of(list: &[(&'static str, Value)], order: &[usize]) -> (TempDir, Store) {
    let dir = TempDir::new();
    let store = Store::open(&format!("sqlite://{}", dir.0.join("h.db").display())).await.unwrap();
    store.migrate().await.unwrap();
    for &i in order {
        let (event, body) = &list[i];
        let headers =
            [("X-GitHub-Event".to_string(), event.to_string()), ("X-GitHub-Delivery".to_string(), format!("h-{i}"))];
        let delivery = Delivery::new("github", headers, serde_json::to_vec(body).unwrap(), Timestamp(0));
        let item = prepare(by_name("github").unwrap(), delivery, &SourceOptions::default()).unwrap();
        store.apply_batch(&[item], false).await.unwrap();
    }
    (dir, store)
}

/// Every order of `list` a few shuffles give (plus forwards and backwards).
fn orders(len: usize) -> Vec<Vec<usize>> {
    let forwards: Vec<usize> = (0..len).collect();
    let mut all = vec![forwards.clone(), forwards.iter().rev().copied().collect()];
    let mut seed = 0x9e37_79b9_u64;
    for _ in 0..6 {
        let mut order = forwards.clone();
        for i in (1..len).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        all.push(order);
    }
    all
}

/// A push to a feature branch (its commits date the pull request's first commit).
fn branch_push(branch: &str, commits: &[(&str, &str)]) -> Value {
    let list: Vec<(&str, &str, &str)> = commits.iter().map(|(sha, at)| (*sha, "Work in progress", *at)).collect();
    let mut body = push(&"0".repeat(40), &list);
    body["ref"] = json!(format!("refs/heads/{branch}"));
    body
}

/// With only `pull_request` and `deployment` webhooks (no pushes to the
/// default branch), a merged pull request's merge commit is a change; a push
/// to its branch gives its first commit, which times the change and the
/// coding part of the breakdown.
#[test]
fn a_merged_pull_request_is_a_change_without_a_push_and_its_branch_push_dates_its_first_commit() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut list = vec![
        ("pull_request", merged_pr(7, &t(2, "10:00"), &t(2, "12:00"), A)),
        ("push", branch_push("feature-7", &[(B, &t(2, "08:00")), (C, &t(2, "09:00"))])),
    ];
    list.extend(deploy(1, A, "production", &t(2, "13:00"), "success", &t(2, "13:30")));
    for order in orders(list.len()) {
        let keys = runtime.block_on(async {
            let (_dir, store) = store_of(&list, &order).await;
            let keys = dora(&store, window(), &DoraFilter::default()).await.unwrap();
            store.close().await;
            keys
        });
        let l = &keys["lead_time_for_changes"];
        assert_eq!((l["changes"].clone(), l["unmatched_deploys"].clone()), (json!(1), json!(0)), "{order:?}: {keys}");
        // First commit 08:00 → deploy end 13:30: 5.5 h. Coding 08:00 → opened 10:00.
        close(&l["median_seconds"], 19800.0);
        close(&l["breakdown"]["coding"], 7200.0);
        close(&l["breakdown"]["deploy"], 5400.0);
    }
}

/// Rollbacks and redeploys ship nothing again; an incident whose root cause
/// names a commit that was shipped but never deployed on its own is the
/// cause of the deploy that shipped it, and its parent; a pull request that
/// fixes an incident makes the deploy shipping it rework, while the cause is
/// not; an `Incident` label counts whatever its case.
#[test]
fn rollbacks_redeploys_root_causes_and_incident_fixes() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut fix = merged_pr(9, &t(4, "10:00"), &t(4, "11:00"), E);
    fix["pull_request"]["body"] = json!("Fixes #95");
    let mut list = vec![
        ("push", push(&"0".repeat(40), &[(A, "Add search", &t(2, "08:00")), (B, "Tune search", &t(2, "09:00"))])),
        ("push", push(B, &[(C, "Add cache", &t(3, "08:00")), (D, "Add metrics", &t(3, "09:00"))])),
        ("pull_request", fix),
    ];
    list.extend(deploy(1, B, "production", &t(2, "10:00"), "success", &t(2, "10:10"))); // ships A, B
    list.extend(deploy(2, D, "production", &t(3, "10:00"), "success", &t(3, "10:10"))); // ships C, D
    list.extend(deploy(3, B, "production", &t(3, "11:00"), "success", &t(3, "11:10"))); // rollback: nothing
    list.extend(deploy(4, D, "production", &t(3, "12:00"), "success", &t(3, "12:10"))); // redeploy: nothing
    list.extend(deploy(5, E, "production", &t(4, "12:00"), "success", &t(4, "12:10"))); // ships the fix E
    // Root cause C: shipped by deploy 2 (D was deployed, C never on its own).
    let mut incident95 =
        incident(95, &t(3, "13:00"), &t(4, "12:30"), &format!("Cache broke.\nroot cause: {}", &C[..10]));
    for (_, body) in &mut incident95 {
        body["issue"]["labels"] = json!([{"name": "Incident"}]);
    }
    list.extend(incident95);
    for order in orders(list.len()) {
        let (keys, parent) = runtime.block_on(async {
            let (_dir, store) = store_of(&list, &order).await;
            let keys = dora(&store, window(), &DoraFilter::default()).await.unwrap();
            let incident = store.span("github:octo-org/hello-world:issue:95").await.unwrap().expect("the incident");
            // The drawer's rows say why: 5 ships #9, which fixes incident #95; 2 is
            // #95's cause by its root-cause line, C being among what 2 shipped.
            let deploy = |n: u32| format!("github:octo-org/hello-world:deploy:{n}");
            let issue95 = json!("github:octo-org/hello-world:issue:95");
            assert_eq!(rows(&store, ItemKey::Rework).await, [(deploy(5), "incident".into(), issue95.clone())]);
            assert_eq!(rows(&store, ItemKey::Failed).await, [(deploy(2), "incident_root_cause".into(), issue95)]);
            let restored = rows(&store, ItemKey::Incidents).await;
            assert_eq!(
                restored,
                [("github:octo-org/hello-world:issue:95".into(), "root_cause".into(), json!(deploy(2)))]
            );
            store.close().await;
            (keys, incident.parent_key)
        });
        assert_eq!(parent.as_deref(), Some("github:octo-org/hello-world:deploy:2"), "{order:?}");
        let l = &keys["lead_time_for_changes"];
        // A, B by 1 (2h10, 1h10); C, D by 2 (2h10, 1h10); E by 5, timed by #9's creation (2h10).
        assert_eq!(l["changes"], 5, "{order:?}: {keys}");
        close(&l["median_seconds"], 7800.0);
        let c = &keys["change_failure_rate"];
        assert_eq!((c["deployments"].clone(), c["failed"].clone()), (json!(5), json!(1)), "{order:?}: {keys}");
        assert_eq!(keys["deployment_rework_rate"]["rework"], 1, "only 5, which ships the fix: {order:?}: {keys}");
    }
}

/// A store written before migration 0005 — change sets as the old writer cut
/// them, no incident causes or parents, no ancestor flags — gets them derived
/// once by `migrate`, and gives the numbers of a store written from scratch.
#[test]
fn stores_written_before_derived_change_sets_are_rederived_on_migration() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (dir, store) = scenario_store(&(0..scenario().len()).collect::<Vec<_>>()).await;
        let expected = measure(&store).await;
        let parent_of_90 = store.span("github:octo-org/hello-world:issue:90").await.unwrap().unwrap().parent_key;
        assert_eq!(parent_of_90.as_deref(), Some("github:octo-org/hello-world:deploy:83"));
        store.close().await;

        let url = format!("sqlite://{}", dir.0.join("m.db").display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        for statement in [
            // The old writer shipped A again with deploy 83 (its previous deploy's sha was E's).
            "INSERT INTO change_set_commits (deploy_key, sha, committed_at, revert)
             VALUES ('github:octo-org/hello-world:deploy:83', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 0, 0)
             ON CONFLICT DO NOTHING",
            "DELETE FROM incident_causes",
            "UPDATE spans SET parent_key = NULL, after_incident = 0 WHERE kind = 'incident'",
            "INSERT INTO pending_tasks (name) VALUES ('derive_change_sets')",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        sqlx::Connection::close(conn).await.unwrap();
        let store = Store::open(&url).await.unwrap();
        assert_ne!(measure(&store).await, expected, "the old store's numbers differ");

        store.migrate().await.unwrap();
        assert_eq!(measure(&store).await, expected);
        let parent_of_90 = store.span("github:octo-org/hello-world:issue:90").await.unwrap().unwrap().parent_key;
        assert_eq!(parent_of_90.as_deref(), Some("github:octo-org/hello-world:deploy:83"));
        store.close().await;
    });
}

/// Name filters match as GitHub treats names, whatever their case: the
/// summary, DORA and the span list (and so the API and `report`, which call
/// them) give for `Octo-Org/Hello-World` what they give for `octo-org/hello-world`.
#[test]
fn repo_and_project_filters_match_whatever_the_case() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (_dir, store) = scenario_store(&(0..scenario().len()).collect::<Vec<_>>()).await;
        let by_kind = ["kind".to_string()];
        let scope = |repo: Option<&str>, project: Option<&str>| SpanScope {
            repo: repo.map(String::from),
            project: project.map(String::from),
            ..SpanScope::default()
        };
        let filter = |repo: Option<&str>, project: Option<&str>| DoraFilter {
            repo: repo.map(String::from),
            project: project.map(String::from),
            ..DoraFilter::default()
        };
        let page = |repo: Option<&str>, project: Option<&str>| SpanFilter {
            repo: repo.map(String::from),
            project: project.map(String::from),
            limit: 1000,
            ..SpanFilter::default()
        };
        let (exact, project) = (Some("octo-org/hello-world"), Some("hello-world"));
        let exact_summary = summary(&store, window(), &by_kind, &scope(exact, project)).await.unwrap();
        let exact_dora = dora(&store, window(), &filter(exact, project)).await.unwrap();
        assert_eq!(exact_dora["deployment_frequency"]["deployments"], 3, "{exact_dora}");
        let (exact_spans, _) = store.spans(&page(exact, project)).await.unwrap();
        assert!(exact_spans.len() > 10, "{}", exact_spans.len());
        for (repo, project) in [
            (Some("Octo-Org/Hello-World"), Some("hello-world")),
            (Some("OCTO-ORG/HELLO-WORLD"), Some("Hello-World")),
            (Some("octo-org/HELLO-world"), Some("HELLO-WORLD")),
        ] {
            let summary = summary(&store, window(), &by_kind, &scope(repo, project)).await.unwrap();
            assert_eq!(summary, exact_summary, "{repo:?} {project:?}");
            let mut keys = dora(&store, window(), &filter(repo, project)).await.unwrap();
            keys["repo"] = exact_dora["repo"].clone();
            assert_eq!(keys, exact_dora, "{repo:?} {project:?}");
            let (spans, _) = store.spans(&page(repo, project)).await.unwrap();
            assert_eq!(spans, exact_spans, "{repo:?} {project:?}");
        }
        let other = dora(&store, window(), &filter(Some("octo-org/hello-world-2"), None)).await.unwrap();
        assert_eq!(other["deployment_frequency"]["deployments"], 0, "{other}");
        let (spans, _) = store
            .spans(&SpanFilter { repo: Some("octo-org/hello".into()), limit: 10, ..SpanFilter::default() })
            .await
            .unwrap();
        assert!(spans.is_empty(), "a filter is the whole name, not a prefix");
        store.close().await;
    });
}
