//! What Prometheus scrapes from `GET /metrics` (metrics.md, "Prometheus"):
//! every series of the bounded label spaces is there from start-up at 0, so
//! `rate()` and `increase()` see each series' first event; gauges stay at 0
//! instead of vanishing; the text passes `promtool check metrics`.

mod support;

use support::*;
use valuestream::config::TracerBackend;

async fn scrape(app: &App) -> String {
    let response = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

const DEPLOY_ENDED: &str = r#"webhooks_event_end_total{event_source="github",event_type="deploy",error="false"}"#;
const DEPLOY_FAILED: &str = r#"webhooks_event_end_total{event_source="github",event_type="deploy",error="true"}"#;
const DEPLOY_STARTED: &str = r#"webhooks_event_start_total{event_source="github",event_type="deploy"}"#;
const DEPLOYS_OPEN: &str = r#"valuestream_open_spans{source="github",kind="deploy"}"#;
const DEPLOYS_EXPIRED: &str = r#"valuestream_expired_spans{source="github",kind="deploy"}"#;
const DEPLOY_SECONDS: &str =
    r#"valuestream_span_duration_seconds_count{source="github",kind="deploy",outcome="success"}"#;
const STATUSES_ACCEPTED: &str =
    r#"valuestream_deliveries_total{source="github",event="deployment_status",result="accepted"}"#;
const STATUSES_REJECTED: &str =
    r#"valuestream_deliveries_total{source="github",event="deployment_status",result="rejected"}"#;

#[tokio::test]
async fn the_first_deploy_steps_its_series_from_zero_to_one() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    let before = scrape(&app).await;
    for series in
        [DEPLOY_ENDED, DEPLOY_FAILED, DEPLOY_STARTED, DEPLOYS_OPEN, DEPLOYS_EXPIRED, DEPLOY_SECONDS, STATUSES_ACCEPTED]
    {
        assert_eq!(sample(&before, series), Some(0.0), "{series} is published at 0 from start-up:\n{before}");
    }
    assert_eq!(
        sample(&before, r#"webhooks_event_duration_count{event_source="jenkins",event_type="deploy"}"#),
        Some(0.0)
    );

    assert_eq!(app.github("deployment", "p-1", &deployment(MERGE_SHA, "2026-11-21T17:00:00Z")).await.0, 200);
    let running = scrape(&app).await;
    assert_eq!(sample(&running, DEPLOY_STARTED), Some(1.0));
    assert_eq!(sample(&running, DEPLOYS_OPEN), Some(1.0));
    assert_eq!(sample(&running, DEPLOY_ENDED), Some(0.0));

    let status = deployment_status(MERGE_SHA, "2026-11-21T17:00:00Z", "success", "2026-11-21T17:12:00Z");
    assert_eq!(app.github("deployment_status", "p-2", &status).await.0, 200);
    let after = scrape(&app).await;
    assert_eq!(sample(&after, DEPLOY_ENDED), Some(1.0), "0 → 1: rate() sees the first deploy");
    assert_eq!(sample(&after, DEPLOY_FAILED), Some(0.0));
    assert_eq!(sample(&after, DEPLOY_SECONDS), Some(1.0));
    assert_eq!(sample(&after, STATUSES_ACCEPTED), Some(1.0));
    assert_eq!(sample(&after, DEPLOYS_OPEN), Some(0.0), "a gauge at 0 stays, it does not vanish");
    app.stop().await;
}

#[tokio::test]
async fn a_first_rejected_delivery_steps_from_zero() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    assert_eq!(sample(&scrape(&app).await, STATUSES_REJECTED), Some(0.0));
    let headers = [("x-github-event", "deployment_status".to_string())];
    assert_eq!(app.post("/webhooks/github", &headers, b"{}".to_vec()).await.0, 401);
    assert_eq!(sample(&scrape(&app).await, STATUSES_REJECTED), Some(1.0));
    app.stop().await;
}

// ---------------------------------------------------------------- with promtool (Debian's `prometheus`)

/// Runs `promtool` with `args`, `input` on stdin; returns (success, stdout + stderr).
fn promtool(args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (apt-get install prometheus; .ci/run does it)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Deploy `n` of the history below: created, then ended in success or failure.
async fn deploy(app: &App, n: u64, failed: bool) {
    let mut created = deployment(MERGE_SHA, "2026-11-21T17:00:00Z");
    created["deployment"]["id"] = serde_json::json!(1000 + n);
    let state = if failed { "failure" } else { "success" };
    let mut status = deployment_status(MERGE_SHA, "2026-11-21T17:00:00Z", state, "2026-11-21T17:12:00Z");
    status["deployment"]["id"] = serde_json::json!(1000 + n);
    assert_eq!(app.github("deployment", &format!("h-{n}-a"), &created).await.0, 200);
    assert_eq!(app.github("deployment_status", &format!("h-{n}-b"), &status).await.0, 200);
}

#[tokio::test]
#[ignore = "needs promtool (Debian's prometheus): run by .ci/run"]
async fn promtool_finds_nothing_to_lint() {
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::None, None, &[SECRET]);
        c.expire_open_after = Some(std::time::Duration::from_secs(86_400));
        c
    })
    .await;
    let (ok, text) = promtool(&["check", "metrics"], &scrape(&app).await);
    assert!(ok && text.trim().is_empty(), "a fresh server:\n{text}");
    for (i, (event, body)) in scenario().iter().enumerate() {
        assert_eq!(app.github(event, &format!("l-{i}"), body).await.0, 200);
    }
    deploy(&app, 1, true).await;
    // A deploy whose status never came, older than a day: expired.
    let mut lost = deployment(MERGE_SHA, "2026-11-21T17:00:00Z");
    lost["deployment"]["id"] = serde_json::json!(2000);
    assert_eq!(app.github("deployment", "l-lost", &lost).await.0, 200);
    let text = scrape(&app).await;
    assert_eq!(sample(&text, DEPLOYS_EXPIRED), Some(1.0), "{text}");
    assert_eq!(sample(&text, DEPLOYS_OPEN), Some(0.0), "{text}");
    let (ok, lint) = promtool(&["check", "metrics"], &text);
    assert!(ok && lint.trim().is_empty(), "after deliveries:\n{lint}");
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs promtool (Debian's prometheus): run by .ci/run"]
async fn the_dashboards_deploy_panels_count_the_deploys_sent() {
    // A scripted history: ten deploys, four of them failed, scraped once a
    // minute (twice per deploy) from a fresh start. promtool then evaluates
    // the shipped dashboard's own queries over those scrapes.
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    let mut scrapes = vec![scrape(&app).await];
    for n in 0..10 {
        deploy(&app, n, [1, 3, 6, 8].contains(&n)).await;
        scrapes.push(scrape(&app).await);
        scrapes.push(scrape(&app).await);
    }
    app.stop().await;

    let mut series: std::collections::BTreeMap<String, Vec<Option<String>>> = Default::default();
    for (minute, text) in scrapes.iter().enumerate() {
        for line in text.lines().filter(|l| l.starts_with("webhooks_event_end_total{")) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            series.entry(name.to_string()).or_insert_with(|| vec![None; scrapes.len()])[minute] =
                Some(value.to_string());
        }
    }
    let input: Vec<String> = series
        .iter()
        .map(|(name, values)| {
            let values: Vec<&str> = values.iter().map(|v| v.as_deref().unwrap_or("_")).collect();
            format!("      - series: '{name}'\n        values: '{}'", values.join(" "))
        })
        .collect();

    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{}/../../docs/grafana/valuestream.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let total_of = |title: &str| -> String {
        let panel = dashboard["panels"].as_array().unwrap().iter().find(|p| p["title"] == title).unwrap();
        let mut exprs = panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap());
        exprs.find(|e| !e.contains(" by (")).unwrap().replace("$window", "1d")
    };
    let last = scrapes.len() - 1;
    let checks = [(total_of("Deploy rate"), 10.0), (total_of("Change failure rate"), 0.4)];
    let tests: Vec<String> = checks
        .iter()
        .map(|(expr, value)| {
            format!(
                "      - expr: '{expr}'\n        eval_time: {last}m\n        exp_samples:\n          - labels: '{{}}'\n            value: {value}"
            )
        })
        .collect();
    let file = format!(
        "evaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}\n    promql_expr_test:\n{}\n",
        input.join("\n"),
        tests.join("\n")
    );
    let dir = TempDir::new();
    let path = dir.0.join("dashboard_test.yml");
    std::fs::write(&path, &file).unwrap();
    let (ok, text) = promtool(&["test", "rules", path.to_str().unwrap()], "");
    assert!(ok, "promtool test rules:\n{text}\n{file}");
}
