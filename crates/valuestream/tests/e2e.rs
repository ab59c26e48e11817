//! Full-stack tests: the real server on port 0, signed real-shaped GitHub
//! deliveries over HTTP, the API read back, and an in-process OTLP/HTTP
//! receiver that checks what was exported.

mod support;

use serde_json::{Value, json};
use support::*;
use tokio::net::TcpListener;
use valuestream::config::TracerBackend;
use valuestream_core::ids;
use valuestream_core::time::Timestamp;
use valuestream_core::verify::hmac_sha256_hex;

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn scenario_gives_one_trace_in_the_api_and_in_otlp() {
    let otlp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", otlp.local_addr().unwrap());
    let received = start_otlp_receiver(otlp).await;
    let app = spawn_app(|db| config(db, TracerBackend::Otlp, Some(endpoint), &[SECRET])).await;

    for (i, (event, body)) in scenario().iter().enumerate() {
        let (status, answer) = app.github(event, &format!("delivery-{i}"), body).await;
        assert_eq!(status, 200, "{event}: {answer}");
        assert_eq!(answer["status"], "accepted", "{event}: {answer}");
        assert_eq!(answer["spans"], 1);
    }

    let (status, trace) = app.get("/api/v1/traces?ref=vstrace-github-hello-world-27").await;
    assert_eq!(status, 200, "{trace}");
    let trace_id = ids::trace_id(ISSUE_KEY);
    assert_eq!(trace["trace_id"], trace_id);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{trace}");
    let (issue, pr) = (&spans[0], &spans[1]);
    assert_eq!(issue["key"], ISSUE_KEY);
    assert_eq!(issue["span_id"], ids::span_id(ISSUE_KEY));
    assert_eq!(issue["parent_key"], Value::Null);
    assert_eq!(issue["start"], "2026-11-20T09:00:00Z");
    assert_eq!(issue["end"], "2026-11-21T17:00:00Z");
    assert_eq!(issue["outcome"], "completed");
    assert_eq!(pr["key"], PR_KEY);
    assert_eq!(pr["name"], "pull_request hello-world#42");
    assert_eq!(pr["trace_id"], trace_id);
    assert_eq!(pr["parent_key"], ISSUE_KEY);
    assert_eq!(pr["parent_span_id"], ids::span_id(ISSUE_KEY));
    assert_eq!(pr["start"], "2026-11-20T10:00:00Z");
    assert_eq!(pr["end"], "2026-11-21T16:30:00Z");
    assert_eq!(pr["duration_seconds"], 109800.0);
    assert_eq!(pr["outcome"], "merged");
    assert_eq!(pr["attributes"]["valuestream.first_review_at"], "2026-11-20T12:00:00Z");
    assert_eq!(pr["attributes"]["valuestream.first_approval_at"], "2026-11-20T12:00:00Z");
    assert_eq!(pr["attributes"]["vcs.ref.head.name"], "feature/vstrace-github-hello-world-27/x");

    // The same trace by id, and the spans list filtered by kind.
    let (status, by_id) = app.get(&format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id, trace);
    let (_, prs) = app.get("/api/v1/spans?kind=pull_request&state=closed").await;
    assert_eq!(prs["spans"].as_array().unwrap().len(), 1);
    // Names match whatever their case, as GitHub treats them.
    for filter in
        ["repo=Octo-Org/Hello-World", "repo=OCTO-ORG%2FHELLO-WORLD&project=Hello-World", "project=HELLO-WORLD"]
    {
        let (status, spans) = app.get(&format!("/api/v1/spans?{filter}")).await;
        assert_eq!(status, 200, "{spans}");
        assert_eq!(spans["spans"].as_array().unwrap().len(), 2, "{filter}: {spans}");
        let (status, summary) =
            app.get(&format!("/api/v1/summary?{filter}&since=2026-11-01T00:00:00Z&until=2026-12-01T00:00:00Z")).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["groups"].as_array().unwrap().len(), 2, "{filter}: {summary}");
        let (status, keys) = app.get(&format!("/api/v1/dora?{filter}")).await;
        assert_eq!(status, 200, "{keys}");
    }
    let (_, spans) = app.get("/api/v1/spans?key=GitHub:Octo-Org/Hello-World:issue:27").await;
    assert_eq!(spans["spans"][0]["key"], ISSUE_KEY, "{spans}");
    let (_, spans) = app.get("/api/v1/spans?key=vstrace-github-hello-world-27").await;
    assert_eq!(spans["spans"], json!([]), "`key` takes a span key, not a trace reference: {spans}");

    // The OTLP receiver got both spans with the same ids and payload times.
    let exported = received.wait_for(2).await;
    let find = |key: &str| {
        exported
            .iter()
            .find(|(_, s)| s.span_id == hex::decode(ids::span_id(key)).unwrap())
            .unwrap_or_else(|| panic!("{key} was not exported"))
            .clone()
    };
    let (service, issue_span) = find(ISSUE_KEY);
    assert!(service.contains("github"), "service.name is the source: {service}");
    assert_eq!(hex::encode(&issue_span.trace_id), trace_id);
    assert!(issue_span.parent_span_id.is_empty());
    assert_eq!(issue_span.start_time_unix_nano, nanos("2026-11-20T09:00:00Z"));
    assert_eq!(issue_span.end_time_unix_nano, nanos("2026-11-21T17:00:00Z"));
    let (_, pr_span) = find(PR_KEY);
    assert_eq!(pr_span.name, "pull_request hello-world#42");
    assert_eq!(hex::encode(&pr_span.trace_id), trace_id);
    assert_eq!(hex::encode(&pr_span.parent_span_id), ids::span_id(ISSUE_KEY));
    assert_eq!(pr_span.start_time_unix_nano, nanos("2026-11-20T10:00:00Z"));
    assert_eq!(pr_span.end_time_unix_nano, nanos("2026-11-21T16:30:00Z"));
    assert_eq!(exported.len(), 2, "each finished span is exported once");
    app.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_down_delays_spans_but_loses_none() {
    // Reserve a port, then free it: nothing listens there until we start the receiver.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/traces");
    let app = spawn_app(|db| config(db, TracerBackend::Otlp, Some(endpoint), &[SECRET])).await;
    for (i, (event, body)) in scenario().iter().enumerate() {
        assert_eq!(app.github(event, &format!("d-{i}"), body).await.0, 200);
    }
    let store = valuestream::store::Store::open(&app.database).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 2, "both finished spans wait in the outbox");

    let received = start_otlp_receiver(TcpListener::bind(("127.0.0.1", port)).await.unwrap()).await;
    let exported = received.wait_for(2).await;
    assert_eq!(exported.len(), 2);
    // Once acknowledged, the outbox is emptied (the removal follows the ack):
    // stopping joins the export task, so whatever it was doing is done.
    app.stop().await;
    assert_eq!(store.outbox_len().await.unwrap(), 0, "the outbox was not emptied after export");
    assert_eq!(received.spans.lock().unwrap().len(), 2, "nothing is sent twice");
}

#[tokio::test]
async fn signatures_are_checked_and_rotation_works() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &["old-secret", SECRET])).await;
    let body = serde_json::to_vec(&issue("opened", "open", "2026-11-20T09:00:00Z", None)).unwrap();
    let headers = |signature: Option<String>, id: &str| {
        let mut h = vec![("x-github-event", "issues".to_string()), ("x-github-delivery", id.to_string())];
        if let Some(s) = signature {
            h.push(("x-hub-signature-256", s));
        }
        h
    };
    let good = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &body));
    let old = format!("sha256={}", hmac_sha256_hex(b"old-secret", &body));
    let wrong = format!("sha256={}", hmac_sha256_hex(b"guess", &body));

    let (status, answer) = app.post("/webhooks/github", &headers(None, "a"), body.clone()).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (401, "missing X-Hub-Signature-256 header"));
    let (status, _) = app.post("/webhooks/github", &headers(Some(wrong), "a"), body.clone()).await;
    assert_eq!(status, 401);
    let (status, answer) =
        app.post("/webhooks/github", &headers(Some(good[..30].to_string()), "a"), body.clone()).await;
    assert_eq!(status, 401, "truncated: {answer}");
    let (_, spans) = app.get("/api/v1/spans").await;
    assert_eq!(spans["spans"].as_array().unwrap().len(), 0, "rejected deliveries change nothing");

    let (status, answer) = app.post("/webhooks/github", &headers(Some(good.clone()), "a"), body.clone()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "accepted"));
    let (status, answer) = app.post("/github", &headers(Some(old), "b"), body.clone()).await;
    assert_eq!(
        (status, answer["status"].as_str().unwrap()),
        (200, "accepted"),
        "the original's path and the old secret"
    );
    let (status, answer) = app.post("/webhooks/github", &headers(Some(good), "a"), body).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "duplicate"));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_answered_with_the_reason() {
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::None, None, &[]);
        c.max_body_bytes = 64 * 1024;
        c
    })
    .await;
    let h = |event: &str| vec![("x-github-event", event.to_string()), ("content-type", "application/json".to_string())];

    let (status, answer) = app.post("/webhooks/github", &h("issues"), b"{\"action\": ".to_vec()).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("body is not valid JSON"), "{answer}");

    let (status, answer) = app.post("/webhooks/github", &h("issues"), br#"{"action":"opened"}"#.to_vec()).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (400, "invalid payload at `.`: missing field `issue`"));

    let mut wrong_type = issue("opened", "open", "2026-11-20T09:00:00Z", None);
    wrong_type["issue"]["number"] = json!("twenty-seven");
    let (status, answer) = app.post("/webhooks/github", &h("issues"), serde_json::to_vec(&wrong_type).unwrap()).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("issue.number"), "{answer}");

    // Over the limit: 413 (axum's own 2 MB default does not apply; ours is 64 KiB here).
    let (status, answer) = app.post("/webhooks/github", &h("issues"), vec![b' '; 70 * 1024]).await;
    assert_eq!(status, 413, "{answer}");

    let (status, answer) = app.post("/webhooks/github", &h("star"), b"{}".to_vec()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "ignored"));
    assert!(answer["reason"].as_str().unwrap().contains("star"));

    let (status, answer) =
        app.post("/webhooks/github", &h("ping"), serde_json::to_vec(&fixture("ping.repository-hook")).unwrap()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "pong"));

    let (status, _) = app.post("/webhooks/nosuchsource", &h("issues"), b"{}".to_vec()).await;
    assert_eq!(status, 404);

    // GitHub's form-encoded option: payload=<url-encoded JSON>.
    let json_body = serde_json::to_string(&issue("opened", "open", "2026-11-20T09:00:00Z", None)).unwrap();
    let form: String = form_urlencoded_encode(&json_body);
    let headers = vec![
        ("x-github-event", "issues".to_string()),
        ("content-type", "application/x-www-form-urlencoded".to_string()),
    ];
    let (status, answer) = app.post("/webhooks/github", &headers, format!("payload={form}").into_bytes()).await;
    assert_eq!((status, answer["status"].as_str().unwrap()), (200, "accepted"), "{answer}");

    for (query, name) in
        [("limit=0", "limit"), ("since=yesterday", "since"), ("state=done", "state"), ("colour=red", "colour")]
    {
        let (status, answer) = app.get(&format!("/api/v1/spans?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(answer["error"].as_str().unwrap().contains(name), "{query}: {answer}");
    }
    assert_eq!(app.get("/api/v1/traces/nothex").await.0, 400);
    assert_eq!(app.get(&format!("/api/v1/traces/{}", "0".repeat(32))).await.0, 404);
    assert_eq!(app.get("/api/v1/traces?ref=vstrace-github-nothing-1").await.0, 404);
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    app.stop().await;
}

fn form_urlencoded_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[tokio::test]
async fn spans_page_with_a_cursor() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    for n in 1..=5 {
        let mut body = issue("opened", "open", "2026-11-20T09:00:00Z", None);
        body["issue"]["number"] = json!(n);
        body["issue"]["created_at"] = json!(format!("2026-11-2{n}T09:00:00Z"));
        body["issue"]["updated_at"] = json!(format!("2026-11-2{n}T09:00:00Z"));
        assert_eq!(app.github("issues", &format!("p-{n}"), &body).await.0, 200);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/spans?limit=2".to_string();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for span in page["spans"].as_array().unwrap() {
            seen.push(span["key"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/spans?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=5).map(|n| format!("github:octo-org/hello-world:issue:{n}")).collect();
    assert_eq!(seen, expected);
    let (_, since) = app.get("/api/v1/spans?since=2026-11-24T00:00:00Z").await;
    assert_eq!(since["spans"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn otlp_over_grpc_carries_the_same_ids_and_times() {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = grpc.local_addr().unwrap().port();
    let received = start_grpc_receiver(grpc).await;
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::Otlp, Some(format!("http://127.0.0.1:{port}")), &[SECRET]);
        c.otlp_protocol = valuestream::export::Protocol::Grpc;
        c
    })
    .await;
    for (i, (event, body)) in scenario().iter().enumerate() {
        assert_eq!(app.github(event, &format!("g-{i}"), body).await.0, 200);
    }
    let exported = received.wait_for(2).await;
    let pr = exported
        .iter()
        .map(|(_, span)| span)
        .find(|span| span.span_id == hex::decode(ids::span_id(PR_KEY)).unwrap())
        .expect("the pull request was exported");
    assert_eq!(hex::encode(&pr.trace_id), ids::trace_id(ISSUE_KEY));
    assert_eq!(hex::encode(&pr.parent_span_id), ids::span_id(ISSUE_KEY));
    assert_eq!(pr.start_time_unix_nano, nanos("2026-11-20T10:00:00Z"));
    assert_eq!(pr.end_time_unix_nano, nanos("2026-11-21T16:30:00Z"));
    app.stop().await;
}

#[tokio::test]
async fn builds_and_deploys_join_the_issue_trace() {
    let otlp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", otlp.local_addr().unwrap());
    let received = start_otlp_receiver(otlp).await;
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::Otlp, Some(endpoint), &[SECRET]);
        c.secrets.insert("jenkins", vec!["jenkins-token".to_string()]);
        c
    })
    .await;

    let deliveries = builds_and_deploys();
    for (i, (event, body)) in deliveries.iter().enumerate() {
        let (status, answer) = app.github(event, &format!("bd-{i}"), body).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{event}: {answer}");
    }
    // A Jenkins deploy job (Notification plugin shape) naming the issue in a parameter.
    let mut jenkins = source_fixture("jenkins/notification/deploy-completed.json");
    jenkins["build"]["parameters"] =
        json!({"vstrace-trace-id": "vstrace-github-hello-world-27", "environment": "production"});
    jenkins["build"]["status"] = json!("SUCCESS");
    // On COMPLETED the plugin sends the end (start + duration) as `timestamp`.
    jenkins["build"]["timestamp"] =
        json!(Timestamp::parse_rfc3339("2026-11-21T17:22:00Z").unwrap().nanos() / 1_000_000);
    jenkins["build"]["duration"] = json!(120_000);
    let body = serde_json::to_vec(&jenkins).unwrap();
    let unsigned = vec![("content-type", "application/json".to_string())];
    assert_eq!(app.post("/webhooks/jenkins", &unsigned, body.clone()).await.0, 401, "the Jenkins token is checked");
    let bearer =
        vec![("content-type", "application/json".to_string()), ("authorization", "Bearer jenkins-token".to_string())];
    let (status, answer) = app.post("/webhooks/jenkins", &bearer, body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");

    let (status, trace) = app.get("/api/v1/traces?ref=vstrace-github-hello-world-27").await;
    assert_eq!(status, 200, "{trace}");
    let spans = trace["spans"].as_array().unwrap();
    let span = |key: &str| spans.iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("{key} not in {trace}"));
    let trace_id = ids::trace_id(ISSUE_KEY);
    let run_501 = "github:octo-org/hello-world:build:501:1";
    let run_502 = "github:octo-org/hello-world:build:502:1";
    let deploy = "github:octo-org/hello-world:deploy:991";
    assert_eq!(spans.len(), 8, "issue, PR, two runs, two jobs, two deploys: {trace}");
    let jenkins_deploy = spans.iter().find(|s| s["source"] == "jenkins").expect("the Jenkins deploy is in the trace");
    assert_eq!(jenkins_deploy["kind"], "deploy");
    assert_eq!(jenkins_deploy["parent_key"], ISSUE_KEY, "its vstrace-trace-id parameter");
    assert_eq!(jenkins_deploy["start"], "2026-11-21T17:20:00Z", "{jenkins_deploy:#}");
    assert_eq!(jenkins_deploy["end"], "2026-11-21T17:22:00Z");
    assert_eq!(jenkins_deploy["outcome"], "success");
    for s in spans {
        assert_eq!(s["trace_id"], trace_id, "{}", s["key"]);
    }
    assert_eq!(span(PR_KEY)["parent_key"], ISSUE_KEY);
    assert_eq!(span(run_501)["parent_key"], PR_KEY, "found by its branch");
    assert_eq!(span(run_501)["outcome"], "failure");
    assert_eq!(span(run_501)["start"], "2026-11-20T10:05:00Z");
    assert_eq!(span(run_501)["end"], "2026-11-20T10:10:00Z");
    assert_eq!(span(run_502)["parent_key"], PR_KEY, "named by pull_requests");
    assert_eq!(span(run_502)["outcome"], "success");
    assert_eq!(span(run_502)["name"], "RUN CI", "{{cicd.pipeline.action.name}} {{cicd.pipeline.name}}");
    assert_eq!(span("github:octo-org/hello-world:job:601:1")["parent_key"], run_501);
    assert_eq!(span("github:octo-org/hello-world:job:602:1")["parent_key"], run_502);
    assert_eq!(span("github:octo-org/hello-world:job:601:1")["attributes"]["valuestream.queued_seconds"], 60.0);
    assert_eq!(span(deploy)["parent_key"], PR_KEY, "the pull request whose merge commit was deployed");
    assert_eq!(span(deploy)["links"], json!([PR_KEY]));
    assert_eq!(span(deploy)["name"], "deploy production");
    assert_eq!(span(deploy)["start"], "2026-11-21T17:00:00Z");
    assert_eq!(span(deploy)["end"], "2026-11-21T17:12:00Z");
    assert_eq!(span(deploy)["outcome"], "success");
    assert_eq!(span(deploy)["attributes"]["deployment.environment.name"], "production");

    // Exported: 7 finished spans; the deploy carries its link and parent.
    let exported = received.wait_for(8).await;
    let (_, exported_deploy) = exported
        .iter()
        .find(|(_, s)| s.span_id == hex::decode(ids::span_id(deploy)).unwrap())
        .expect("the deploy was exported");
    assert_eq!(hex::encode(&exported_deploy.parent_span_id), ids::span_id(PR_KEY));
    assert_eq!(exported_deploy.links.len(), 1);
    assert_eq!(hex::encode(&exported_deploy.links[0].span_id), ids::span_id(PR_KEY));
    assert_eq!(hex::encode(&exported_deploy.links[0].trace_id), trace_id);
    let (_, exported_run) = exported
        .iter()
        .find(|(_, s)| s.span_id == hex::decode(ids::span_id(run_502)).unwrap())
        .expect("run 502 was exported");
    assert_eq!(exported_run.kind, 2, "builds are SERVER spans");
    assert_eq!(exported_run.name, "RUN CI");
    app.stop().await;
}

/// A recorded payload of another source (`{"payload": …}` wrappers unwrapped).
fn source_fixture(path: &str) -> Value {
    let path = format!("{}/../valuestream-core/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    value.get("payload").cloned().unwrap_or(value)
}

/// The original ValueStream's recorded Jira Cloud delivery, moved to issue PAY-12.
fn jira_issue(event: &str, category: &str, resolved: Option<&str>, timestamp_ms: i64) -> Value {
    let mut body = source_fixture("jira/original/issues/kanban/in_progress.json");
    body["webhookEvent"] = json!(event);
    body["timestamp"] = json!(timestamp_ms);
    let issue = &mut body["issue"];
    issue["key"] = json!("PAY-12");
    issue["self"] = json!("https://example.atlassian.net/rest/api/2/issue/10012");
    issue["fields"]["project"]["key"] = json!("PAY");
    issue["fields"]["created"] = json!("2026-11-20T08:00:00.000+0000");
    issue["fields"]["status"]["statusCategory"]["key"] = json!(category);
    issue["fields"]["resolutiondate"] = json!(resolved);
    issue["fields"]["statuscategorychangedate"] = json!(resolved.unwrap_or("2026-11-20T08:00:00.000+0000"));
    if event == "jira:issue_created" {
        body.as_object_mut().unwrap().remove("changelog");
    }
    body
}

#[tokio::test]
async fn a_jira_issue_github_pull_request_gitlab_pipeline_and_custom_deploy_share_one_trace() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    let post = |path: &'static str, headers: Vec<(&'static str, String)>, body: Value| {
        let app = &app;
        async move {
            let (status, answer) = app.post(path, &headers, serde_json::to_vec(&body).unwrap()).await;
            assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{path}: {answer}");
        }
    };
    let json_type = || ("content-type", "application/json".to_string());

    // 1. The Jira issue is created (category `new`).
    post("/webhooks/jira", vec![json_type()], jira_issue("jira:issue_created", "new", None, 1_795_680_000_000)).await;
    // 2. A GitHub pull request on branch PAY-12-fix-login.
    let mut pr = pull_request("opened", "open", "2026-11-20T10:00:00Z", None);
    pr["pull_request"]["head"]["ref"] = json!("PAY-12-fix-login");
    assert_eq!(app.github("pull_request", "x-1", &pr).await.0, 200);
    // 3. A GitLab pipeline of that branch (GitLab's documented example, moved to the branch).
    let mut pipeline = source_fixture("gitlab/docs/pipeline.json");
    pipeline["object_attributes"]["ref"] = json!("PAY-12-fix-login");
    pipeline["merge_request"] = Value::Null;
    pipeline["object_attributes"]["created_at"] = json!("2026-11-20 10:05:00 UTC");
    pipeline["object_attributes"]["finished_at"] = json!("2026-11-20 10:15:00 UTC");
    let gitlab_headers = vec![
        json_type(),
        ("x-gitlab-event", "Pipeline Hook".to_string()),
        ("x-gitlab-event-uuid", "5ad2b8c4-7f3e-4e5b-9d3a-0c1e2f3a4b5c".to_string()),
    ];
    post("/webhooks/gitlab", gitlab_headers, pipeline).await;
    // 4. A deploy script's custom events, naming the Jira issue.
    let event = |action: &str, at: &str| {
        json!({"id": "d-7", "action": action, "type": "deploy", "namespace": "payments",
               "parent_id": "vstrace-jira-PAY-12", "error": false, "timestamp": at,
               "metadata": {"environment": "production"}})
    };
    post("/webhooks/customhttp", vec![json_type()], event("start", "2026-11-21T09:00:00Z")).await;
    post("/webhooks/customhttp", vec![json_type()], event("end", "2026-11-21T09:05:00Z")).await;
    // 5. The Jira issue is done.
    post(
        "/webhooks/jira",
        vec![json_type()],
        jira_issue("jira:issue_updated", "done", Some("2026-11-22T10:00:00.000+0000"), 1_795_860_000_000),
    )
    .await;

    let (status, trace) = app.get("/api/v1/traces?ref=vstrace-jira-PAY-12").await;
    assert_eq!(status, 200, "{trace}");
    let spans = trace["spans"].as_array().unwrap();
    let jira_key = "jira:example.atlassian.net:issue:PAY-12";
    let by_source = |source: &str| {
        spans.iter().find(|s| s["source"] == source).unwrap_or_else(|| panic!("no {source} span in {trace}"))
    };
    assert_eq!(spans.len(), 4, "{trace}");
    assert_eq!(trace["trace_id"], ids::trace_id(jira_key));
    assert_eq!(by_source("jira")["key"], jira_key);
    assert_eq!(by_source("jira")["state"], "closed");
    assert_eq!(by_source("jira")["end"], "2026-11-22T10:00:00Z");
    assert_eq!(by_source("github")["parent_key"], jira_key, "the Jira key in the branch");
    assert_eq!(by_source("gitlab")["parent_key"], jira_key, "the pipeline's branch names the Jira key");
    assert_eq!(by_source("gitlab")["outcome"], "success");
    assert_eq!(by_source("customhttp")["parent_key"], jira_key, "parent_id vstrace-jira-PAY-12");
    assert_eq!(by_source("customhttp")["key"], "customhttp:payments:deploy:d-7");
    assert_eq!(by_source("customhttp")["duration_seconds"], 300.0);
    app.stop().await;
}

async fn get_text(app: &App, path: &str) -> (u16, String) {
    let response = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_routes_answer_and_count_from_payload_times() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    for (i, (event, body)) in scenario().iter().enumerate() {
        assert_eq!(app.github(event, &format!("m-{i}"), body).await.0, 200);
    }
    let (status, _) = app.post("/webhooks/github", &[("x-github-event", "issues".to_string())], b"{}".to_vec()).await;
    assert_eq!(status, 401);

    // Prometheus: the original ValueStream's series, durations from payload times.
    let (status, text) = get_text(&app, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains(r#"webhooks_event_start_total{event_source="github",event_type="issue"} 1"#), "{text}");
    assert!(
        text.contains(r#"webhooks_event_end_total{event_source="github",event_type="pull_request",error="false"} 1"#),
        "{text}"
    );
    // The pull request lasted 109,800 s = 30.5 h: in the 3-day bucket (2.592e8 ms), not the 24 h one.
    let bucket = |le: &str| {
        format!(r#"webhooks_event_duration_bucket{{event_source="github",event_type="pull_request",le="{le}"}}"#)
    };
    assert!(text.contains(&format!("{} 0", bucket("8.64e+07"))), "{text}");
    assert!(text.contains(&format!("{} 1", bucket("2.592e+08"))), "{text}");
    assert!(
        text.contains(r#"valuestream_deliveries_total{source="github",event="issues",result="accepted"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"result="rejected"} 1"#), "{text}");
    assert!(text.contains("valuestream_export_queue_spans 0"), "{text}");

    let (status, summary) = app.get("/api/v1/summary?since=2026-11-01T00:00:00Z&until=2026-12-01T00:00:00Z").await;
    assert_eq!(status, 200, "{summary}");
    let prs = summary["groups"].as_array().unwrap().iter().find(|g| g["kind"] == "pull_request").unwrap();
    assert_eq!(prs["closed"], 1);
    assert_eq!(prs["source"], "github");
    assert_eq!(prs["duration_seconds"]["p50"], 109800.0);
    let (status, dora) = app.get("/api/v1/dora?since=2026-11-01T00:00:00Z&until=2026-12-01T00:00:00Z").await;
    assert_eq!(status, 200, "{dora}");
    assert_eq!(dora["deployment_frequency"]["level"], "none");
    for (query, name) in [("group_by=colour", "group_by"), ("since=soon", "since"), ("team=x", "team")] {
        let (status, answer) = app.get(&format!("/api/v1/summary?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(answer["error"].as_str().unwrap().contains(name), "{query}: {answer}");
    }
    assert_eq!(app.get("/api/v1/dora?since=2026-12-01T00:00:00Z&until=2026-11-01T00:00:00Z").await.0, 400);
    app.stop().await;
}

#[tokio::test]
async fn a_jenkins_deploy_known_only_by_its_type_parameter_is_one_span_in_either_order() {
    // The original ValueStream's recorded Statistics Gatherer messages, renamed
    // to a job whose name says nothing: only the running message's parameter
    // `type=deploy` makes it a deploy; the finished message has no parameters.
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    let post = |path: &'static str, job: &'static str| {
        let app = &app;
        async move {
            let mut body = source_fixture(path);
            body["jobName"] = json!(job);
            body["fullJobName"] = json!(job);
            let body = serde_json::to_vec(&body).unwrap();
            let (status, answer) =
                app.post("/webhooks/jenkins", &[("content-type", "application/json".to_string())], body).await;
            assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{path}: {answer}");
        }
    };
    // Finished first: alone it makes no span (it cannot tell build from deploy).
    post("jenkins/deploy/success.json", "service").await;
    let (_, spans) = app.get("/api/v1/spans?source=jenkins").await;
    assert_eq!(spans["spans"].as_array().unwrap().len(), 0, "{spans}");
    post("jenkins/deploy/inprogress.json", "service").await;
    // A plain build's messages, in order, under another job.
    post("jenkins/build/inprogress.json", "tests").await;
    post("jenkins/build/success.json", "tests").await;

    let (_, spans) = app.get("/api/v1/spans?source=jenkins").await;
    let spans = spans["spans"].as_array().unwrap().clone();
    let found: Vec<(&str, &str)> =
        spans.iter().map(|s| (s["key"].as_str().unwrap(), s["state"].as_str().unwrap())).collect();
    assert_eq!(found.len(), 2, "one deploy and one build, no strays: {found:?}");
    assert!(found.contains(&("jenkins:service:deploy:252", "closed")), "{found:?}");
    assert!(
        found.iter().any(|(key, state)| key.starts_with("jenkins:tests:build:") && *state == "closed"),
        "{found:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn no_stored_delivery_keeps_a_credential_of_any_source() {
    // Issue 10, point 6: each source declares the headers carrying its
    // credentials; signatures, tokens, Authorization and cookies are dropped
    // before the store, and so is Jenkins' `?token=`.
    type Headers = Vec<(&'static str, String)>;
    let secret = |name: &str| format!("{name}-S3CRET-value");
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::None, None, &[]);
        for source in ["github", "gitlab", "jenkins", "jira", "customhttp"] {
            c.secrets.insert(source, vec![secret(source)]);
        }
        c
    })
    .await;
    let sign = |source: &str, body: &[u8]| format!("sha256={}", hmac_sha256_hex(secret(source).as_bytes(), body));
    let common = |h: &mut Headers| {
        h.push(("content-type", "application/json".to_string()));
        h.push(("cookie", "session=COOKIE-VALUE".to_string()));
        h.push(("proxy-authorization", "Basic UFJPWFktVkFMVUU=".to_string()));
    };
    let mut deliveries: Vec<(&str, Headers, Vec<u8>)> = Vec::new();

    let body = serde_json::to_vec(&issue("opened", "open", "2026-11-20T09:00:00Z", None)).unwrap();
    let sha1 = "sha1=0123456789abcdef0123456789abcdef01234567".to_string();
    let mut h = vec![
        ("x-github-event", "issues".to_string()),
        ("x-github-delivery", "cred-1".to_string()),
        ("x-hub-signature-256", sign("github", &body)),
        ("x-hub-signature", sha1),
    ];
    common(&mut h);
    deliveries.push(("/webhooks/github", h, body));

    let body = serde_json::to_vec(&source_fixture("gitlab/docs/pipeline.json")).unwrap();
    let mut h = vec![
        ("x-gitlab-event", "Pipeline Hook".to_string()),
        ("x-gitlab-event-uuid", "cred-2".to_string()),
        ("x-gitlab-token", secret("gitlab")),
    ];
    common(&mut h);
    deliveries.push(("/webhooks/gitlab", h, body));

    let body = serde_json::to_vec(&source_fixture("jenkins/notification/deploy-completed.json")).unwrap();
    let mut h = vec![("authorization", format!("Bearer {}", secret("jenkins")))];
    common(&mut h);
    deliveries.push(("/webhooks/jenkins", h, body));
    let body = serde_json::to_vec(&source_fixture("jenkins/build/success.json")).unwrap();
    let mut h = Vec::new();
    common(&mut h);
    deliveries.push(("/webhooks/jenkins?token=jenkins-S3CRET-value", h, body));

    let body = serde_json::to_vec(&jira_issue("jira:issue_created", "new", None, 1_795_680_000_000)).unwrap();
    let mut h =
        vec![("x-atlassian-webhook-identifier", "cred-3".to_string()), ("x-hub-signature", sign("jira", &body))];
    common(&mut h);
    deliveries.push(("/webhooks/jira", h, body));

    let body = serde_json::to_vec(&json!({"id": "c-1", "action": "start", "type": "deploy", "namespace": "payments",
                                          "timestamp": "2026-11-21T09:00:00Z"}))
    .unwrap();
    let mut h = vec![("x-vs-signature", sign("customhttp", &body)), ("x-api-token", "GATEWAY-TOKEN".to_string())];
    common(&mut h);
    deliveries.push(("/webhooks/customhttp", h, body));

    let sent: Vec<Vec<u8>> = deliveries.iter().map(|(_, _, body)| body.clone()).collect();
    for (path, headers, body) in deliveries {
        let (status, answer) = app.post(path, &headers, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }

    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&app.database).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT source, headers FROM deliveries ORDER BY source").fetch_all(&mut conn).await.unwrap();
    let sources: Vec<&str> = rows.iter().map(|(source, _)| source.as_str()).collect();
    assert_eq!(sources, ["customhttp", "github", "gitlab", "jenkins", "jenkins", "jira"]);
    for (source, headers) in &rows {
        let headers: std::collections::BTreeMap<String, String> = serde_json::from_str(headers).unwrap();
        assert!(headers.contains_key("content-type"), "{source}: other headers are kept: {headers:?}");
        for (name, value) in &headers {
            for word in ["authorization", "cookie", "token", "signature"] {
                assert!(!name.contains(word), "{source} stored the credential header {name}: {headers:?}");
            }
            for leak in ["S3CRET", "COOKIE-VALUE", "UFJPWFktVkFMVUU", "GATEWAY-TOKEN", "sha256=", "sha1="] {
                assert!(!value.contains(leak), "{source} stored {leak} in {name}: {headers:?}");
            }
        }
    }
    // Bodies are kept compressed, and come back as they were sent.
    let bodies: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT body, body_encoding FROM deliveries").fetch_all(&mut conn).await.unwrap();
    assert_eq!(bodies.len(), sent.len());
    for (stored, encoding) in &bodies {
        assert_eq!(encoding, valuestream::store::BODY_ENCODING);
        let body = valuestream::store::decode_body(encoding, stored).unwrap();
        assert!(sent.contains(&body), "a stored body is one that was sent");
    }
    app.stop().await;
}

/// A GET on a path that is no route is 404 with a JSON reason (it was a 405
/// "allow: POST" from the webhook route `/{source}`); a GET on a source's
/// webhook path is 405, and POST stays the way in.
#[tokio::test]
async fn unknown_paths_are_404_and_webhook_paths_take_only_post() {
    let app = spawn_app(|db| config(db, TracerBackend::None, None, &[SECRET])).await;
    for path in ["/nope", "/dashboard.css", "/api/v1/nope", "/a/b/c", "/webhooks/nope"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "GET {path}: {body}");
        assert!(body["error"].is_string(), "GET {path} says why: {body}");
    }
    for path in ["/github", "/webhooks/github"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 405, "GET {path}: {body}");
    }
    let (status, body) = app.github("ping", "route-1", &json!({"zen": "Keep it logically awesome."})).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
