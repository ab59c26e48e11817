//! `GET /api/v1/spans`' filters and orders, the `GET /api/v1/traces` list
//! and the summary's buckets, against a naive reference: every span of a generated store,
//! filtered, grouped and sorted in plain Rust as docs/api.md says, must be
//! what paging through the API (a few at a time, with its cursors) returns —
//! on SQLite, and on PostgreSQL (`--ignored`).

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use support::*;
use valuestream::config::TracerBackend;

/// Pull requests with generated names, numbers and durations (a few still
/// open), delivered in a shuffled order.
fn deliveries() -> Vec<Value> {
    let mut rng = 0x5eed_u64;
    let mut next = move || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    let words = ["Fix login", "Add search", "Tune 100% cache", "Drop under_score", "Fix LOGIN again"];
    let mut list = Vec::new();
    for n in 1..=30u64 {
        let day = 10 + next() % 10;
        let opened = format!("2026-11-{day:02}T{:02}:00:00Z", next() % 24);
        // Durations collide on purpose (whole hours), so ties go by key.
        let hours = 1 + next() % 6;
        let closed_ns = nanos(&opened) + hours * 3_600_000_000_000;
        let closed = chrono::DateTime::from_timestamp_nanos(closed_ns as i64).to_rfc3339();
        let open = next() % 5 == 0;
        let mut body = if open {
            pull_request("opened", "open", &opened, None)
        } else {
            pull_request("closed", "closed", &closed, Some(&closed))
        };
        body["number"] = json!(n);
        let pr = &mut body["pull_request"];
        pr["number"] = json!(n);
        pr["created_at"] = json!(opened);
        pr["title"] = json!(format!("{} #{n}", words[(next() % 5) as usize]));
        pr["head"]["ref"] = json!(format!("feature-{n}"));
        if n % 3 == 0 {
            // A second repository, for filters naming several.
            body["repository"]["full_name"] = json!("octo-org/other");
            body["repository"]["name"] = json!("other");
        }
        list.push(body);
    }
    // Shuffled: arrival order must not matter.
    for i in (1..list.len()).rev() {
        list.swap(i, (next() as usize) % (i + 1));
    }
    list
}

async fn all_pages(app: &App, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => format!("/api/v1/spans?limit=3&{query}&cursor={c}"),
            None => format!("/api/v1/spans?limit=3&{query}"),
        };
        let (status, answer) = app.get(&page).await;
        assert_eq!(status, 200, "{page}: {answer}");
        out.extend(answer["spans"].as_array().unwrap().iter().cloned());
        match answer["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return out,
        }
        assert!(out.len() < 1000, "paging ends");
    }
}

fn keys(spans: &[Value]) -> Vec<String> {
    spans.iter().map(|s| s["key"].as_str().unwrap().to_string()).collect()
}

/// Whether `text` is in the span's name or key, whatever the case.
fn named(span: &Value, text: &str) -> bool {
    let both = format!("{}\n{}", span["name"].as_str().unwrap(), span["key"].as_str().unwrap());
    both.to_lowercase().contains(text)
}

/// Nanoseconds of a span's duration, ended spans only.
fn duration(span: &Value) -> Option<i64> {
    span["duration_seconds"].as_f64().map(|s| (s * 1e9).round() as i64)
}

fn start(span: &Value) -> i64 {
    nanos(span["start"].as_str().unwrap()) as i64
}

async fn check(app: &App) {
    for body in deliveries() {
        let n = body["number"].as_u64().unwrap();
        let (status, answer) = app.github("pull_request", &format!("spans-{n}"), &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, everything) = app.get("/api/v1/spans?limit=1000").await;
    let all: Vec<Value> = everything["spans"].as_array().unwrap().clone();
    assert_eq!(all.len(), 30);
    let trace = all[4]["trace_id"].as_str().unwrap().to_string();
    let hour = 3_600_000_000_000i64;

    type Pick = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(String, Pick)> = vec![
        (String::new(), Box::new(|_| true)),
        ("q=Hello-World%231".into(), Box::new(|s| named(s, "hello-world#1"))),
        ("q=PULL_REQUEST:2".into(), Box::new(|s| named(s, "pull_request:2"))),
        // `%` and `_` are plain characters: as wildcards they would match
        // `pull_request` and `…request:1` (`l%r`, `t_1`).
        ("q=l%25r".into(), Box::new(|s| named(s, "l%r"))),
        ("q=t_1".into(), Box::new(|s| named(s, "t_1"))),
        (format!("trace_id={}", trace.to_uppercase()), Box::new(move |s| s["trace_id"] == trace.as_str())),
        ("min_duration=2h".into(), Box::new(move |s| duration(s).is_some_and(|d| d > 2 * hour))),
        ("max_duration=10800".into(), Box::new(move |s| duration(s).is_some_and(|d| d <= 3 * hour))),
        (
            "min_duration=3600&max_duration=4h".into(),
            Box::new(move |s| duration(s).is_some_and(|d| d > hour && d <= 4 * hour)),
        ),
        ("state=open".into(), Box::new(|s| s["state"] == "open")),
        ("repo=octo-org/other".into(), Box::new(|s| s["repo"] == "octo-org/other")),
        // Several names, comma-separated, whatever their case; blanks dropped.
        ("repo=Octo-Org/Other,%20octo-org/nowhere,".into(), Box::new(|s| s["repo"] == "octo-org/other")),
        ("project=OTHER,hello-world&state=closed".into(), Box::new(|s| s["state"] == "closed")),
        ("project=other&repo=octo-org/hello-world,octo-org/other".into(), Box::new(|s| s["project"] == "other")),
    ];
    for (filter, pick) in &cases {
        let picked = all.iter().filter(|s| pick(s)).count();
        let plain = filter.contains("l%25r") || filter.contains("t_1");
        assert!(plain || (picked > 0 && (picked < all.len() || filter.is_empty())), "{filter}: {picked} spans");
        for order in ["start", "-start", "duration", "-duration"] {
            let mut expected: Vec<Value> = all.iter().filter(|s| pick(s)).cloned().collect();
            if order.ends_with("duration") {
                // Only an ended span has a duration.
                expected.retain(|s| duration(s).is_some());
            }
            let value = |s: &Value| if order.ends_with("duration") { duration(s).unwrap() } else { start(s) };
            expected.sort_by(|a, b| (value(a), &a["key"].as_str()).cmp(&(value(b), &b["key"].as_str())));
            if order.starts_with('-') {
                expected.reverse();
            }
            let query = if filter.is_empty() { format!("order={order}") } else { format!("{filter}&order={order}") };
            let got = all_pages(app, &query).await;
            assert_eq!(keys(&got), keys(&expected), "{query}");
        }
    }
    assert!(all.iter().any(|s| s["state"] == "open"), "the data has open spans");

    // The same page as CSV: a header and one line per span.
    let response =
        app.client.get(format!("{}/api/v1/spans?q=hello-world%231&format=csv", app.base)).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("key,kind,source,name,"), "{csv}");
    let named_1 = all.iter().filter(|s| named(s, "hello-world#1")).count();
    assert!(named_1 > 1);
    assert_eq!(lines.len(), named_1 + 1, "{csv}");

    for (query, says) in [
        ("order=size", "`order` must be start, -start, duration or -duration"),
        ("min_duration=soon", "`min_duration` must be seconds or a duration"),
        ("max_duration=-5", "`max_duration`"),
        ("trace_id=abc", "`trace_id` must be 32 hex digits"),
        ("format=xml", "`format` must be json or csv"),
    ] {
        let (status, answer) = app.get(&format!("/api/v1/spans?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{query}: {answer}");
    }
    // A cursor is for the order it came from.
    let (_, page) = app.get("/api/v1/spans?limit=2&order=-duration").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, answer) = app.get(&format!("/api/v1/spans?limit=2&order=start&cursor={cursor}")).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("`cursor` belongs to another `order`")));
}

/// A trace as the reference sees it: grouped from all spans.
#[derive(Debug)]
struct Trace {
    id: String,
    start: i64,
    spans: Vec<Value>,
}

fn traces_of(all: &[Value]) -> Vec<Trace> {
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for span in all {
        by_id.entry(span["trace_id"].as_str().unwrap().to_string()).or_default().push(span.clone());
    }
    by_id.into_iter().map(|(id, spans)| Trace { id, start: spans.iter().map(start).min().unwrap(), spans }).collect()
}

/// The list's summary of a trace, by hand.
fn summary(trace: &Trace) -> Value {
    let spans = &trace.spans;
    let open = spans.iter().filter(|s| s["state"] == "open").count();
    let end = spans.iter().filter_map(|s| s["end"].as_str().map(nanos)).max();
    let mut roots: Vec<&Value> = spans.iter().filter(|s| s["parent_key"].is_null()).collect();
    if roots.is_empty() {
        roots = spans.iter().collect();
    }
    roots.sort_by_key(|s| (start(s), s["key"].as_str().unwrap().to_string()));
    let root = roots[0];
    let sources: BTreeSet<&str> = spans.iter().map(|s| s["source"].as_str().unwrap()).collect();
    json!({
        "trace_id": trace.id,
        "root": {"key": root["key"], "name": root["name"], "kind": root["kind"]},
        "start": spans.iter().min_by_key(|s| start(s)).unwrap()["start"],
        "end": if open > 0 { Value::Null } else { json!(valuestream_core::time::Timestamp(end.unwrap() as i64)) },
        "spans": spans.len(),
        "sources": sources,
        "errors": spans.iter().filter(|s| s["outcome"] == "failure").count(),
        "open": open,
    })
}

async fn check_traces(app: &App) {
    let (_, everything) = app.get("/api/v1/spans?limit=1000").await;
    let all: Vec<Value> = everything["spans"].as_array().unwrap().clone();
    let traces = traces_of(&all);
    assert!(traces.len() > 10, "{} traces", traces.len());
    let (since, until) = ("2026-11-12T00:00:00Z", "2026-11-25T00:00:00Z");
    let in_window = |t: &Trace| nanos(since) as i64 <= t.start && t.start < nanos(until) as i64;
    let has = |t: &Trace, f: &dyn Fn(&Value) -> bool| t.spans.iter().any(f);
    type Pick = Box<dyn Fn(&Trace) -> bool>;
    let cases: Vec<(&str, Pick)> = vec![
        ("", Box::new(|_| true)),
        ("open=true", Box::new(move |t| has(t, &|s| s["state"] == "open"))),
        ("open=false", Box::new(move |t| !has(t, &|s| s["state"] == "open"))),
        ("has_error=true", Box::new(move |t| has(t, &|s| s["outcome"] == "failure"))),
        ("kind=DEPLOY", Box::new(move |t| has(t, &|s| s["kind"] == "deploy"))),
        ("repo=Octo-Org/Hello-World", Box::new(move |t| has(t, &|s| s["repo"] == "octo-org/hello-world"))),
        ("repo=octo-org/other,Octo-Org/Nowhere", Box::new(move |t| has(t, &|s| s["repo"] == "octo-org/other"))),
        ("q=HELLO-WORLD%232", Box::new(move |t| has(t, &|s| named(s, "hello-world#2")))),
    ];
    for (filter, pick) in &cases {
        let mut expected: Vec<&Trace> = traces.iter().filter(|t| in_window(t) && pick(t)).collect();
        expected.sort_by(|a, b| (b.start, &b.id).cmp(&(a.start, &a.id)));
        assert!(
            !expected.is_empty() && expected.len() < traces.len(),
            "{filter}: the data tells the filter's traces apart"
        );
        let mut got: Vec<Value> = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = format!("/api/v1/traces?since={since}&until={until}&limit=2&{filter}{cursor}");
            let (status, answer) = app.get(&page).await;
            assert_eq!(status, 200, "{page}: {answer}");
            got.extend(answer["traces"].as_array().unwrap().iter().cloned());
            match answer["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        let ids: Vec<&str> = got.iter().map(|t| t["trace_id"].as_str().unwrap()).collect();
        let wanted: Vec<&str> = expected.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, wanted, "{filter}");
        for (trace, answer) in expected.iter().zip(&got) {
            let mut answer = answer.clone();
            let map = answer.as_object_mut().unwrap();
            map.remove("duration_seconds");
            map.remove("pending_refs");
            assert_eq!(answer, summary(trace), "{filter}");
        }
    }
    assert!(traces.iter().any(|t| t.spans.len() > 3), "a trace of several spans");
    for (query, says) in
        [("open=yes", "`open` must be true or false"), ("limit=0", "`limit`"), ("cursor=abc", "`cursor`")]
    {
        let (status, answer) = app.get(&format!("/api/v1/traces?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{query}: {answer}");
    }
}

#[tokio::test]
async fn filters_and_orders_page_exactly_as_the_reference_filters_and_sorts() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    check(&app).await;
    app.stop().await;
}

/// `histogram=true`: each bucket counts the closed spans of at most its
/// bound, as Prometheus does, and a bucket's spans are what
/// `min_duration`/`max_duration` list for its edges.
#[tokio::test]
async fn summary_histograms_count_what_the_duration_filters_list() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    seed(&app).await;
    // A window holding every end, so the summary (by end) and the span list
    // (by start) take the same spans.
    let window = "since=2020-01-01T00:00:00Z&until=2030-01-01T00:00:00Z";
    let (status, summary) = app.get(&format!("/api/v1/summary?{window}&group_by=kind&histogram=true")).await;
    assert_eq!(status, 200, "{summary}");
    let (_, everything) = app.get("/api/v1/spans?limit=1000").await;
    let all = everything["spans"].as_array().unwrap();
    let mut checked = 0;
    for group in summary["groups"].as_array().unwrap() {
        let kind = group["kind"].as_str().unwrap();
        let histogram = &group["histogram"];
        let bounds: Vec<f64> =
            histogram["le_seconds"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
        assert_eq!(bounds.first(), Some(&1800.0));
        let durations: Vec<f64> = all
            .iter()
            .filter(|s| s["kind"] == kind && s["state"] == "closed")
            .filter_map(|s| s["duration_seconds"].as_f64())
            .collect();
        assert_eq!(histogram["count"], json!(durations.len()), "{kind}");
        let mut lower = 0.0;
        for (i, bound) in bounds.iter().enumerate() {
            let at_most = durations.iter().filter(|d| *d <= bound).count();
            assert_eq!(histogram["counts"][i], json!(at_most), "{kind} le={bound}");
            let (_, listed) = app
                .get(&format!("/api/v1/spans?kind={kind}&min_duration={lower}&max_duration={bound}&limit=1000"))
                .await;
            let in_bucket = durations.iter().filter(|d| **d > lower && *d <= bound).count();
            assert_eq!(listed["spans"].as_array().unwrap().len(), in_bucket, "{kind} ({lower}, {bound}]");
            checked += in_bucket;
            lower = *bound;
        }
    }
    assert!(checked > 20, "the buckets held the spans: {checked}");

    // The open-age histogram: ages at `until` of the spans open then
    // (started before it, not ended by it), counted at most each bound.
    let until = "2026-11-19T12:00:00Z";
    let (_, at) = app
        .get(&format!("/api/v1/summary?since=2026-11-01T00:00:00Z&until={until}&group_by=kind&histogram=true"))
        .await;
    let mut aged = 0;
    for group in at["groups"].as_array().unwrap() {
        let kind = group["kind"].as_str().unwrap();
        let histogram = &group["open_age_histogram"];
        let ages: Vec<f64> = all
            .iter()
            .filter(|s| s["kind"] == kind && start(s) < nanos(until) as i64)
            .filter(|s| s["end"].as_str().is_none_or(|end| nanos(end) >= nanos(until)))
            .map(|s| (nanos(until) as i64 - start(s)) as f64 / 1e9)
            .collect();
        assert_eq!(histogram["count"], json!(ages.len()), "{kind}");
        assert_eq!(group["open"], json!(ages.len()), "{kind}");
        let bounds = histogram["le_seconds"].as_array().unwrap();
        assert_eq!(bounds.len(), 5, "1 d, 3 d, 1 w, 2 w, 4 w");
        for (i, bound) in bounds.iter().enumerate() {
            let bound = bound.as_f64().unwrap();
            assert_eq!(
                histogram["counts"][i],
                json!(ages.iter().filter(|a| **a <= bound).count()),
                "{kind} le={bound}"
            );
        }
        aged += ages.len();
    }
    assert!(aged > 3, "spans were open at {until}: {aged}");
    let (status, plain) = app.get(&format!("/api/v1/summary?{window}&group_by=kind")).await;
    assert_eq!(status, 200);
    assert!(plain["groups"][0].get("histogram").is_none(), "only when asked");
    let (status, answer) = app.get("/api/v1/summary?histogram=yes").await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("`histogram` must be true or false; got \"yes\"")));
    app.stop().await;
}

/// `bucket=` on the summary: each element of `series` is exactly what the
/// summary of that bucket alone gives (the reference is the plain call,
/// itself checked against hand counts in tests/metrics.rs), the buckets
/// tile the window, and the total is the plain call's.
async fn check_summary_buckets(app: &App) {
    let cases = [
        ("since=2026-11-08T00:00:00Z&until=2026-11-22T00:00:00Z", "day", "kind,outcome"),
        ("since=2026-11-08T06:00:00Z&until=2026-11-21T18:00:00Z", "day", "repo"),
        ("since=2026-01-01T00:00:00Z&until=2027-01-01T00:00:00Z", "week", "kind"),
        ("since=2025-12-15T00:00:00Z&until=2027-02-01T00:00:00Z", "month", "kind,source"),
    ];
    let mut nonempty = 0;
    for (window, bucket, group_by) in cases {
        for histogram in ["", "&histogram=true"] {
            let base = format!("/api/v1/summary?{window}&group_by={group_by}{histogram}");
            let (status, answer) = app.get(&format!("{base}&bucket={bucket}")).await;
            assert_eq!(status, 200, "{answer}");
            let (_, plain) = app.get(&base).await;
            assert_eq!(answer["groups"], plain["groups"], "{base}: the whole window");
            let series = answer["series"].as_array().unwrap();
            assert_eq!(series[0]["start"], plain["since"], "{base}");
            assert_eq!(series.last().unwrap()["end"], plain["until"], "{base}");
            for pair in series.windows(2) {
                assert_eq!(pair[0]["end"], pair[1]["start"], "{base}: buckets tile the window");
            }
            for element in series {
                let (start, end) = (element["start"].as_str().unwrap(), element["end"].as_str().unwrap());
                let one = format!("/api/v1/summary?since={start}&until={end}&group_by={group_by}{histogram}");
                let (status, alone) = app.get(&one).await;
                assert_eq!(status, 200, "{alone}");
                assert_eq!(element["groups"], alone["groups"], "{base}&bucket={bucket}: bucket {start}");
                nonempty += usize::from(!alone["groups"].as_array().unwrap().is_empty());
            }
        }
    }
    assert!(nonempty > 20, "the buckets held spans: {nonempty}");

    // Several repositories at once: exactly their groups of the unfiltered call.
    let window = "since=2025-01-01T00:00:00Z&until=2028-01-01T00:00:00Z&group_by=repo,kind";
    let (_, all) = app.get(&format!("/api/v1/summary?{window}")).await;
    let all = all["groups"].as_array().unwrap();
    for (filter, wanted) in [
        ("octo-org/nowhere,Octo-Org/Other", &["octo-org/other"][..]),
        ("Octo-Org/Hello-World,octo-org/other", &["octo-org/hello-world", "octo-org/other"][..]),
    ] {
        let expected: Vec<&Value> = all.iter().filter(|g| wanted.iter().any(|r| g["repo"] == *r)).collect();
        assert!(!expected.is_empty(), "{filter}");
        let (status, some) = app.get(&format!("/api/v1/summary?{window}&repo={filter}")).await;
        assert_eq!(status, 200, "{some}");
        assert_eq!(some["groups"].as_array().unwrap().iter().collect::<Vec<_>>(), expected, "{filter}");
    }

    let (status, answer) = app.get("/api/v1/summary?bucket=hour").await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("bucket"), "{answer}");
}

#[tokio::test]
async fn summary_buckets_are_each_the_summary_of_their_window() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    seed(&app).await;
    check_summary_buckets(&app).await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn summary_buckets_are_each_the_summary_of_their_window_on_postgres() {
    let db = PostgresDb::create().await;
    let app = spawn_app_on(db.url.clone(), None, |url| config(url, TracerBackend::None, None, &[SECRET])).await;
    seed(&app).await;
    check_summary_buckets(&app).await;
    app.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn the_trace_list_pages_exactly_as_the_reference_groups_the_spans() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    seed(&app).await;
    check_traces(&app).await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn the_trace_list_pages_exactly_as_the_reference_on_postgres() {
    let db = PostgresDb::create().await;
    let app = spawn_app_on(db.url.clone(), None, |url| config(url, TracerBackend::None, None, &[SECRET])).await;
    seed(&app).await;
    check_traces(&app).await;
    app.stop().await;
    db.drop_database().await;
}

/// The generated pull requests and the delivery scenario (issue → pull
/// request → build → deploys, an incident, a failed job).
async fn seed(app: &App) {
    for body in deliveries() {
        let n = body["number"].as_u64().unwrap();
        let (status, answer) = app.github("pull_request", &format!("spans-{n}"), &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    for (i, (event, body)) in delivery_scenario().iter().enumerate() {
        let (status, answer) = app.github(event, &format!("scenario-{i}"), body).await;
        assert_eq!(status, 200, "{answer}");
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn filters_and_orders_page_exactly_as_the_reference_on_postgres() {
    let db = PostgresDb::create().await;
    let app = spawn_app_on(db.url.clone(), None, |url| config(url, TracerBackend::None, None, &[SECRET])).await;
    check(&app).await;
    app.stop().await;
    db.drop_database().await;
}
