//! GitHub payloads from `@octokit/webhooks-examples` (tests/data/github) through
//! the parser: reviewed snapshots of the span events each one gives.

use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{ParseError, Parsed, Source, SourceOptions, github::GitHub};
use valuestream_core::span::{Change, SpanEvent};
use valuestream_core::time::Timestamp;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/github/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn delivery(event: &str, body: Vec<u8>) -> Delivery {
    Delivery::new(
        "github",
        [("X-GitHub-Event".to_string(), event.to_string()), ("X-GitHub-Delivery".to_string(), "d-1".to_string())],
        body,
        Timestamp(0),
    )
}

fn parse(event: &str, fixture_name: &str) -> Result<Parsed, ParseError> {
    GitHub.parse(&delivery(event, fixture(fixture_name)), "d-1", &SourceOptions::default())
}

fn events(event: &str, fixture_name: &str) -> Vec<SpanEvent> {
    match parse(event, fixture_name) {
        Ok(Parsed::Spans(events)) => events,
        other => panic!("{fixture_name}: expected span events, got {other:?}"),
    }
}

#[test]
fn ping_is_answered_pong() {
    assert_eq!(parse("ping", "ping.repository-hook").unwrap(), Parsed::Pong);
}

#[test]
fn issue_opened_starts_an_issue_span_at_created_at() {
    let events = events("issues", "issues.opened.plain");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.key, "github:Codertocat/Hello-World:issue:1");
    assert_eq!(event.kind, "issue");
    assert_eq!(event.change, Change::Start { start: Timestamp::parse_rfc3339("2019-05-15T15:20:18Z").unwrap() });
    assert!(event.trace_refs.contains(&"vstrace-github-hello-world-1".to_string()));
    assert!(event.trace_refs.contains(&"vstrace-github-issue-hello-world-1".to_string()));
    insta::assert_json_snapshot!(events);
}

#[test]
fn issue_labeled_incident_becomes_an_incident() {
    let options = SourceOptions { incident_labels: vec!["BUG".into()], ..SourceOptions::default() };
    let parsed = GitHub.parse(&delivery("issues", fixture("issues.labeled.plain")), "d", &options).unwrap();
    let Parsed::Spans(events) = parsed else { panic!("expected spans") };
    assert_eq!(events[0].kind, "incident", "the fixture carries the label `bug`");
    let default = events_kind("issues.labeled.plain");
    assert_eq!(default, "issue");
}

fn events_kind(name: &str) -> String {
    events("issues", name)[0].kind.clone()
}

#[test]
fn closed_issue_snapshots_end_the_span() {
    // issues.reopened carries closed_at of its earlier close; flip it to a close
    // to check the end time and outcome, including `not_planned`.
    let mut body: serde_json::Value = serde_json::from_slice(&fixture("issues.reopened")).unwrap();
    body["action"] = "closed".into();
    body["issue"]["state"] = "closed".into();
    body["issue"]["state_reason"] = "not_planned".into();
    let parsed = GitHub.parse(&delivery("issues", serde_json::to_vec(&body).unwrap()), "d", &SourceOptions::default());
    let Ok(Parsed::Spans(events)) = parsed else { panic!("expected spans: {parsed:?}") };
    assert_eq!(
        events[0].change,
        Change::End {
            start: Timestamp::parse_rfc3339("2021-07-05T18:05:24Z"),
            end: Timestamp::parse_rfc3339("2021-07-05T18:07:10Z").unwrap(),
            outcome: "not_planned".into()
        }
    );
}

#[test]
fn pull_request_events_give_reviewed_snapshots() {
    for name in
        ["pull_request.opened.installation", "pull_request.closed.unmerged.installation", "pull_request.synchronize"]
    {
        insta::assert_json_snapshot!(name, events("pull_request", name));
    }
}

#[test]
fn unmerged_close_ends_with_outcome_closed() {
    let events = events("pull_request", "pull_request.closed.unmerged.installation");
    let Change::End { end, outcome, .. } = &events[0].change else { panic!("expected an end") };
    assert_eq!(outcome, "closed");
    assert_eq!(*end, Timestamp::parse_rfc3339("2019-05-15T15:21:18Z").unwrap());
}

#[test]
fn review_records_first_review_time_only() {
    let events = events("pull_request_review", "pull_request_review.submitted.installation");
    assert_eq!(events[0].key, "github:Codertocat/Hello-World:pull_request:2");
    assert!(matches!(events[0].change, Change::Update { .. }));
    assert_eq!(
        events[0].first_times.get("valuestream.first_review_at"),
        Timestamp::parse_rfc3339("2019-05-15T15:20:38Z").as_ref()
    );
    assert!(!events[0].first_times.contains_key("valuestream.first_approval_at"), "the review is `commented`");
}

#[test]
fn every_issue_and_pull_request_fixture_parses() {
    let dir = format!("{}/tests/data/github", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let event = stem.split('.').next().unwrap();
        if [
            "issues",
            "pull_request",
            "pull_request_review",
            "workflow_run",
            "workflow_job",
            "deployment",
            "deployment_status",
        ]
        .contains(&event)
        {
            let parsed = parse(event, stem);
            assert!(matches!(parsed, Ok(Parsed::Spans(ref e)) if e.len() == 1), "{stem}: {parsed:?}");
            count += 1;
        }
    }
    assert!(count >= 20, "expected the vendored fixtures, found {count}");
}

#[test]
fn form_encoded_payloads_work() {
    let body = fixture("issues.opened.plain");
    let form: String = form_urlencoded_body(&body);
    let mut d = delivery("issues", form.into_bytes());
    d.headers.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
    let Ok(Parsed::Spans(events)) = GitHub.parse(&d, "d", &SourceOptions::default()) else { panic!() };
    assert_eq!(events[0].key, "github:Codertocat/Hello-World:issue:1");
}

fn form_urlencoded_body(json: &[u8]) -> String {
    let mut out = String::from("payload=");
    for byte in json {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(*byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[test]
fn bad_input_is_a_named_error() {
    let bad = |event: &str, body: &str| {
        GitHub.parse(&delivery(event, body.as_bytes().to_vec()), "d", &SourceOptions::default())
    };
    assert!(matches!(bad("issues", "{not json"), Err(ParseError::Json(_))));
    assert!(matches!(bad("issues", ""), Err(ParseError::Json(_))));
    let missing = bad("issues", r#"{"action":"opened","repository":{"full_name":"a/b","name":"b"}}"#).unwrap_err();
    assert_eq!(missing.to_string(), "invalid payload at `.`: missing field `issue`");
    let wrong_type = bad(
        "issues",
        r#"{"action":"opened","repository":{"full_name":"a/b","name":"b"},"issue":{"number":"x","state":"open","created_at":"2019-05-15T15:20:18Z"}}"#,
    )
    .unwrap_err();
    assert!(wrong_type.to_string().starts_with("invalid payload at `issue.number`"), "{wrong_type}");
    let bad_time = bad(
        "issues",
        r#"{"action":"opened","repository":{"full_name":"a/b","name":"b"},"issue":{"number":1,"state":"open","created_at":"soon"}}"#,
    )
    .unwrap_err();
    assert!(bad_time.to_string().contains("issue.created_at"), "{bad_time}");
    assert!(matches!(
        GitHub.parse(&Delivery::new("github", [], b"{}".to_vec(), Timestamp(0)), "d", &SourceOptions::default()),
        Err(ParseError::MissingHeader("X-GitHub-Event"))
    ));
    assert!(matches!(bad("star", "{}"), Ok(Parsed::Ignored { .. })));
}

#[test]
fn workflow_runs_and_jobs_give_reviewed_snapshots() {
    for (event, name) in [
        ("workflow_run", "workflow_run.requested.queued.org"),
        ("workflow_run", "workflow_run.completed.success.with-pr.org"),
        ("workflow_job", "workflow_job.queued.installation"),
        ("workflow_job", "workflow_job.completed.failure.org"),
        ("deployment", "deployment.created.plain"),
        ("deployment_status", "deployment_status.created.success"),
        ("deployment_status", "deployment_status.created.in_progress.actions.org.installation"),
    ] {
        insta::assert_json_snapshot!(name, events(event, name));
    }
}

#[test]
fn a_completed_run_is_a_finished_build_child_of_its_pull_request() {
    let events = events("workflow_run", "workflow_run.completed.success.with-pr.org");
    let run = &events[0];
    assert_eq!(run.key, "github:octo-org/octo-repo:build:289782451:1");
    assert_eq!(run.kind, "build");
    assert_eq!(
        run.change,
        Change::End {
            start: Timestamp::parse_rfc3339("2020-10-05T16:33:49Z"),
            end: Timestamp::parse_rfc3339("2020-10-05T16:33:49Z").unwrap(),
            outcome: "success".into()
        }
    );
    assert_eq!(run.attributes["cicd.pipeline.result"], "success");
    assert_eq!(run.parent_refs[0], "github:octo-org/octo-repo:pull_request:2");
    assert_eq!(run.parent_refs[1], "github:octo-org/octo-repo:branch:master");
}

#[test]
fn a_job_is_a_child_of_its_run_attempt_with_its_queue_time() {
    let events = events("workflow_job", "workflow_job.completed.failure.org");
    let job = &events[0];
    assert_eq!(job.key, "github:Codertocat/Hello-World:job:289782451:1");
    assert_eq!(job.parent_refs, vec!["github:codertocat/hello-world:build:2202229078:1"]);
    let Change::End { outcome, .. } = &job.change else { panic!("completed job ends") };
    assert_eq!(outcome, "failure");
    assert_eq!(job.attributes["valuestream.queued_seconds"], 60.0);
}

#[test]
fn deployment_statuses_end_the_deploy_whatever_their_order() {
    let created = events("deployment", "deployment.created.plain").remove(0);
    let success = events("deployment_status", "deployment_status.created.success").remove(0);
    assert_eq!(created.key, success.key);
    assert_eq!(created.key, "github:Codertocat/Hello-World:deploy:145988746");
    let in_order = valuestream_core::span::fold(&[created.clone(), success.clone()]).unwrap();
    let reversed = valuestream_core::span::fold(&[success, created]).unwrap();
    assert_eq!(in_order, reversed);
    assert_eq!(in_order.outcome.as_deref(), Some("success"));
    assert_eq!(in_order.start, Timestamp::parse_rfc3339("2019-05-15T15:20:53Z").unwrap());
    assert_eq!(in_order.end, Timestamp::parse_rfc3339("2019-05-15T15:20:55Z"));
    assert_eq!(in_order.attributes["deployment.environment.name"], "production");
    assert_eq!(in_order.link_refs, vec!["github:codertocat/hello-world:sha:f95f852bd8fca8fcc58a9a2d6c842781e32a215e"]);
}

#[test]
fn pushes_record_commits_and_say_whether_they_are_to_the_default_branch() {
    let Parsed::Push(push) = parse("push", "push.ref-created.installation-1").unwrap() else {
        panic!("expected a push")
    };
    assert_eq!(push.repo, "Codertocat/Hello-World");
    assert_eq!(push.branch, "master");
    assert_eq!(push.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(push.commits.len(), 1);
    assert_eq!(push.commits[0].timestamp, Timestamp::parse_rfc3339("2019-05-15T15:19:25Z").unwrap());
    assert!(matches!(parse("push", "push.ref-deleted"), Ok(Parsed::Ignored { .. })));

    let mut body: serde_json::Value = serde_json::from_slice(&fixture("push.ref-created.installation-1")).unwrap();
    body["commits"][0]["message"] = "Add the login page (#42)\n\nDetails".into();
    let merge = serde_json::json!({"id": "abc", "message": "Merge pull request #7 from octo/branch", "timestamp": "2019-05-15T15:20:00Z"});
    body["commits"].as_array_mut().unwrap().push(merge);
    let parsed = GitHub.parse(&delivery("push", serde_json::to_vec(&body).unwrap()), "d", &SourceOptions::default());
    let Ok(Parsed::Push(push)) = parsed else { panic!("{parsed:?}") };
    assert_eq!(push.commits[0].message, "Add the login page (#42)");
    assert_eq!(push.commits[0].pull_request, Some(42));
    assert_eq!(push.commits[1].pull_request, Some(7));

    assert!(push.default_branch);
    assert!(!push.forced);
    body["forced"] = true.into();
    let parsed = GitHub.parse(&delivery("push", serde_json::to_vec(&body).unwrap()), "d", &SourceOptions::default());
    let Ok(Parsed::Push(rewritten)) = parsed else { panic!("{parsed:?}") };
    assert!(rewritten.forced, "a forced push says so: it rewrote the branch");

    // A push to another branch is recorded too, marked as such: it dates a
    // pull request's commits (coding time), and is no change.
    body["ref"] = "refs/heads/feature".into();
    let parsed = GitHub.parse(&delivery("push", serde_json::to_vec(&body).unwrap()), "d", &SourceOptions::default());
    let Ok(Parsed::Push(feature)) = parsed else { panic!("{parsed:?}") };
    assert_eq!((feature.branch.as_str(), feature.default_branch), ("feature", false));
}
