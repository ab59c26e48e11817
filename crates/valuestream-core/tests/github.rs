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
        if ["issues", "pull_request", "pull_request_review"].contains(&event) {
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
