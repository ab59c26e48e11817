//! Custom HTTP events (tests/data/customhttp) through the parser: reviewed
//! snapshots, start/end in any order, deploy links, signatures, bad input and
//! "no input panics" properties.

use serde_json::{Value, json};
use valuestream_core::delivery::Delivery;
use valuestream_core::link::{deployed_alias, generic_ref, sha_alias};
use valuestream_core::sources::{self, ParseError, Parsed, Source, SourceOptions, customhttp::CustomHttp};
use valuestream_core::span::{Change, SpanEvent, SpanState, fold};
use valuestream_core::time::Timestamp;
use valuestream_core::verify::{AuthError, hmac_sha256_hex};

fn t(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

/// When the test deliveries arrive (the fallback time).
fn received() -> Timestamp {
    t("2026-11-27T09:00:00Z")
}

/// An original fixture: `{"payload": {...}}`.
fn original(name: &str) -> Value {
    let path = format!("{}/tests/data/customhttp/original/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["payload"].clone()
}

fn delivery(body: Vec<u8>, at: Timestamp) -> Delivery {
    Delivery::new("customhttp", [("Content-Type".to_string(), "application/json".to_string())], body, at)
}

fn parse(body: &Value) -> Result<Parsed, ParseError> {
    CustomHttp.parse(
        &delivery(serde_json::to_vec(body).unwrap(), received()),
        "customhttp:d",
        &SourceOptions::default(),
    )
}

fn event(body: &Value) -> SpanEvent {
    event_at(body, received())
}

fn event_at(body: &Value, at: Timestamp) -> SpanEvent {
    let bytes = serde_json::to_vec(body).unwrap();
    let d = delivery(bytes, at);
    let id = format!("customhttp:{}", d.content_id());
    match CustomHttp.parse(&d, &id, &SourceOptions::default()) {
        Ok(Parsed::Spans(mut events)) if events.len() == 1 => events.remove(0),
        other => panic!("expected one span event, got {other:?}"),
    }
}

fn deploy(action: &str, extra: Value) -> Value {
    let mut body = json!({"id": "42", "action": action, "type": "deploy", "namespace": "payments",
                          "timestamp": if action == "start" { "2026-11-27T10:00:00Z" } else { "2026-11-27T10:05:00Z" }});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn the_original_events_give_reviewed_snapshots() {
    let start = event(&original("start"));
    let end = event(&original("end"));
    assert_eq!(start.key, "customhttp:myproj:deploy:1");
    assert_eq!(start.change, Change::Start { start: received() }, "no timestamp: the time of receipt");
    assert_eq!(start.attributes["valuestream.metadata.key1"], "val1");
    assert_eq!(end.change, Change::End { start: None, end: received(), outcome: "success".into() });
    insta::assert_json_snapshot!("original.start", start);
    insta::assert_json_snapshot!("original.end", end);
}

#[test]
fn the_source_is_registered_with_its_secret_variable() {
    let source = sources::by_name("customhttp").expect("customhttp is in SOURCES");
    assert_eq!(source.secret_variable(), "VS_CUSTOMHTTP_SECRET");
}

#[test]
fn a_deploy_with_everything_gives_a_reviewed_snapshot() {
    let start = event(&deploy(
        "start",
        json!({"parent_id": "VSTRACE-github-hello-world-27",
               "metadata": {"environment": "production", "sha": "ABC123", "repo": "octo-org/hello-world",
                            "attempt": 2, "canary": false, "nested": {"no": 1}, "list": [1], "nothing": null}}),
    ));
    assert_eq!(start.key, "customhttp:payments:deploy:42");
    assert_eq!((start.kind.as_str(), start.name.as_str()), ("deploy", "payments#42"));
    assert_eq!(start.repo.as_deref(), Some("octo-org/hello-world"));
    assert_eq!(start.project.as_deref(), Some("payments"));
    assert_eq!(start.attributes["deployment.environment.name"], "production");
    assert_eq!(start.attributes["vcs.ref.head.revision"], "ABC123");
    assert_eq!(start.attributes["valuestream.metadata.attempt"], 2);
    assert_eq!(start.attributes["valuestream.metadata.canary"], false);
    for skipped in ["nested", "list", "nothing"] {
        assert!(!start.attributes.contains_key(&format!("valuestream.metadata.{skipped}")), "{skipped}");
    }
    assert_eq!(start.link_refs, [sha_alias("github", "octo-org/hello-world", "abc123")]);
    assert!(start.trace_refs.contains(&deployed_alias("github", "octo-org/hello-world", "abc123")));
    assert!(start.trace_refs.contains(&generic_ref("customhttp", "deploy", "payments", "42")));
    assert_eq!(start.parent_refs, ["vstrace-github-hello-world-27"]);
    insta::assert_json_snapshot!("deploy.start", start);
}

#[test]
fn the_metadata_names_the_vcs_of_the_deployed_sha() {
    let e = event(&deploy("start", json!({"metadata": {"sha": "abc", "repo": "group/app", "source": "GitLab"}})));
    assert_eq!(e.link_refs, [sha_alias("gitlab", "group/app", "abc")]);
    // Without a repo there is nothing to link to.
    let e = event(&deploy("start", json!({"metadata": {"sha": "abc"}})));
    assert!(e.link_refs.is_empty() && e.repo.is_none());
    // Only deploys map their metadata.
    let mut build = deploy("start", json!({"metadata": {"sha": "abc", "repo": "group/app", "environment": "prod"}}));
    build["type"] = json!("build");
    let e = event(&build);
    assert!(e.link_refs.is_empty() && e.repo.is_none());
    assert!(!e.attributes.contains_key("deployment.environment.name"));
    assert_eq!(e.attributes["valuestream.metadata.environment"], "prod");
}

#[test]
fn start_and_end_are_one_span_in_either_order() {
    let start = event(&deploy("start", json!({"parent_id": "vstrace-github-hello-world-27"})));
    let end = event(&deploy("end", json!({})));
    let in_order = fold(&[start.clone(), end.clone()]).unwrap();
    assert_eq!(in_order, fold(&[end.clone(), start]).unwrap());
    assert_eq!((in_order.state, in_order.outcome.as_deref()), (SpanState::Closed, Some("success")));
    assert_eq!(in_order.start, t("2026-11-27T10:00:00Z"));
    assert_eq!(in_order.end, Some(t("2026-11-27T10:05:00Z")));
    assert_eq!(in_order.parent_refs, ["vstrace-github-hello-world-27"], "the end names no parent: the start's stays");
    // An end alone is a closed span that starts when it ends, until its start arrives.
    let alone = fold(&[end]).unwrap();
    assert_eq!(
        (alone.state, alone.start, alone.end),
        (SpanState::Closed, t("2026-11-27T10:05:00Z"), Some(t("2026-11-27T10:05:00Z")))
    );
}

#[test]
fn an_error_ends_with_outcome_failure() {
    let end = event(&deploy("end", json!({"error": true})));
    assert_eq!(end.change, Change::End { start: None, end: t("2026-11-27T10:05:00Z"), outcome: "failure".into() });
    // `error` on a start says nothing.
    assert!(matches!(event(&deploy("start", json!({"error": true}))).change, Change::Start { .. }));
}

#[test]
fn parent_id_and_its_alias_parent_id() {
    let e = event(&deploy("start", json!({"ParentID": "vstrace-github-hello-world-27-fix-login"})));
    assert_eq!(e.parent_refs, ["vstrace-github-hello-world-27", "vstrace-github-hello-world-27-fix-login"]);
    let e = event(&deploy("start", json!({"parent_id": "GitHub:Octo-Org/Hello-World:issue:27"})));
    assert_eq!(e.parent_refs, ["github:octo-org/hello-world:issue:27"]);
    let e = event(&deploy("start", json!({"parent_id": "  "})));
    assert!(e.parent_refs.is_empty());
    let both = parse(&deploy("start", json!({"parent_id": "a", "ParentID": "b"}))).unwrap_err();
    assert!(both.to_string().contains("duplicate field `parent_id`"), "{both}");
}

#[test]
fn the_timestamp_is_the_event_time_else_the_time_of_receipt() {
    let e = event(&deploy("start", json!({"timestamp": "2026-11-27T11:00:00+01:00"})));
    assert_eq!(
        (e.at, e.change.clone()),
        (t("2026-11-27T10:00:00Z"), Change::Start { start: t("2026-11-27T10:00:00Z") })
    );
    let mut body = deploy("start", json!({}));
    body.as_object_mut().unwrap().remove("timestamp");
    let later = t("2026-11-28T00:00:00Z");
    assert_eq!(event_at(&body, later).at, later);
}

#[test]
fn any_order_of_events_folds_to_the_same_span() {
    let events = vec![
        event(&deploy("start", json!({"timestamp": "2026-11-27T10:00:00Z", "metadata": {"step": "1"}}))),
        event(&deploy("end", json!({"timestamp": "2026-11-27T10:05:00Z", "error": true}))),
        event(&deploy("start", json!({"timestamp": "2026-11-27T10:10:00Z", "metadata": {"step": "retry"}}))),
        event(&deploy("end", json!({"timestamp": "2026-11-27T10:20:00Z"}))),
    ];
    let in_order = fold(&events).unwrap();
    assert_eq!((in_order.outcome.as_deref(), in_order.end), (Some("success"), Some(t("2026-11-27T10:20:00Z"))));
    let mut shuffled = events.clone();
    for rotation in 0..events.len() {
        shuffled.rotate_left(1);
        assert_eq!(fold(&shuffled).unwrap(), in_order, "rotation {rotation}");
        shuffled.reverse();
        assert_eq!(fold(&shuffled).unwrap(), in_order, "reversed rotation {rotation}");
        shuffled.reverse();
    }
}

#[test]
fn other_actions_are_ignored_with_a_reason() {
    let Ok(Parsed::Ignored { reason }) = parse(&deploy("heartbeat", json!({}))) else { panic!() };
    assert!(reason.contains("heartbeat"), "{reason}");
    assert!(matches!(parse(&deploy(" END ", json!({}))), Ok(Parsed::Spans(_))), "case and spaces do not matter");
    let d = delivery(serde_json::to_vec(&deploy("heartbeat", json!({}))).unwrap(), received());
    assert_eq!(CustomHttp.event_type(&d), "other");
    let d = delivery(serde_json::to_vec(&deploy("end", json!({}))).unwrap(), received());
    assert_eq!(CustomHttp.event_type(&d), "end");
    assert_eq!(CustomHttp.event_type(&delivery(b"[]".to_vec(), received())), "missing");
    assert_eq!(CustomHttp.delivery_id(&d), None, "the store uses the body's SHA-256");
}

#[test]
fn signatures_right_wrong_missing_and_truncated() {
    let body = serde_json::to_vec(&original("start")).unwrap();
    let signed = |signature: &str| {
        let mut d = delivery(body.clone(), received());
        d.headers.push(("x-vs-signature".into(), signature.into()));
        d
    };
    let secrets = vec!["s3cret".to_string(), "next".to_string()];
    let good = format!("sha256={}", hmac_sha256_hex(b"s3cret", &body));
    assert_eq!(CustomHttp.authenticate(&signed(&good), &secrets), Ok(()));
    let next = format!("sha256={}", hmac_sha256_hex(b"next", &body));
    assert_eq!(CustomHttp.authenticate(&signed(&next), &secrets), Ok(()));
    let wrong = format!("sha256={}", hmac_sha256_hex(b"wrong", &body));
    assert_eq!(CustomHttp.authenticate(&signed(&wrong), &secrets), Err(AuthError::Mismatch("X-VS-Signature")));
    assert_eq!(CustomHttp.authenticate(&signed(&good[..50]), &secrets), Err(AuthError::Malformed("X-VS-Signature")));
    assert_eq!(CustomHttp.authenticate(&signed("sha256="), &secrets), Err(AuthError::Malformed("X-VS-Signature")));
    assert_eq!(
        CustomHttp.authenticate(&delivery(body.clone(), received()), &secrets),
        Err(AuthError::Missing("X-VS-Signature"))
    );
}

fn error_for(body: &Value) -> String {
    match parse(body) {
        Err(error) => error.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn raw_error(body: &[u8]) -> String {
    match CustomHttp.parse(&delivery(body.to_vec(), received()), "customhttp:d", &SourceOptions::default()) {
        Err(error) => error.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn bad_input_is_an_error_naming_the_field() {
    assert!(raw_error(b"").contains("not valid JSON"));
    assert!(raw_error(b"{\"id\":").contains("not valid JSON"));
    assert!(raw_error(b"[1]").contains("must be a JSON object"));
    assert!(raw_error(b"{\"id\": \"\xff\"}").contains("UTF-8"));
    for field in ["id", "action", "type", "namespace"] {
        let mut body = deploy("start", json!({}));
        body.as_object_mut().unwrap().remove(field);
        assert_eq!(error_for(&body), format!("invalid payload at `.`: missing field `{field}`"));
    }
    let with = |field: &str, value: Value| error_for(&deploy("start", json!({ field: value })));
    assert!(with("error", json!("yes")).starts_with("invalid payload at `error`"));
    assert!(with("timestamp", json!("soon")).starts_with("invalid payload at `timestamp`"));
    assert!(with("timestamp", json!(1_700_000_000)).starts_with("invalid payload at `timestamp`"));
    assert!(with("metadata", json!(["k", "v"])).starts_with("invalid payload at `metadata`"));
    assert!(with("parent_id", json!(27)).starts_with("invalid payload at `parent_id`"));
    assert!(with("id", json!(1.5)).starts_with("invalid payload at `id`"));
    assert!(with("id", Value::Null).starts_with("invalid payload at `id`"));
    assert_eq!(with("id", json!(" ")), "invalid payload at `id`: must not be empty");
    assert_eq!(with("namespace", json!("a:b")), "invalid payload at `namespace`: must not contain `:`");
    assert_eq!(with("type", json!("")), "invalid payload at `type`: must not be empty");
    // A numeric id is read as text.
    assert_eq!(event(&deploy("start", json!({"id": 42}))).key, "customhttp:payments:deploy:42");
}

// ---------------------------------------------------------------- bad input (mutations: tests/robustness.rs)

#[test]
fn deep_nesting_and_huge_numbers_are_errors() {
    let deep = format!(
        "{{\"id\":\"1\",\"action\":\"start\",\"type\":\"t\",\"namespace\":\"n\",\"metadata\":{{\"k\":{}1{}}}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(raw_error(deep.as_bytes()).contains("nested deeper than 128"));
    let huge = r#"{"id":18446744073709551616,"action":"start","type":"t","namespace":"n"}"#;
    assert!(!raw_error(huge.as_bytes()).is_empty());
    let huge_metadata = r#"{"id":"1","action":"start","type":"t","namespace":"n","metadata":{"k":1e400}}"#;
    assert!(raw_error(huge_metadata.as_bytes()).contains("number out of range"));
}
