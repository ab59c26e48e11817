//! Jira Cloud deliveries (tests/data/jira) through the parser: reviewed
//! snapshots, the status-category rules, sprints, signatures, bad input and
//! "no input panics" properties.

use serde_json::{Value, json};
use valuestream_core::delivery::Delivery;
use valuestream_core::link::find_issue_keys;
use valuestream_core::sources::{self, ParseError, Parsed, Source, SourceOptions, jira::Jira};
use valuestream_core::span::{Change, Span, SpanEvent, SpanState, fold};
use valuestream_core::time::Timestamp;
use valuestream_core::verify::{AuthError, hmac_sha256_hex};

const RECEIVED: Timestamp = Timestamp(1_800_000_000_000_000_000);

fn t(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap_or_else(|| panic!("bad test time {text}"))
}

/// A recorded delivery: `{"headers": {...}, "payload": {...}}`.
fn recorded(name: &str) -> (Vec<(String, String)>, Value) {
    let path = format!("{}/tests/data/jira/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let file: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    let headers = file["headers"]
        .as_object()
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
        .unwrap_or_default();
    (headers, file["payload"].clone())
}

fn payload(name: &str) -> Value {
    recorded(name).1
}

fn delivery_of(headers: Vec<(String, String)>, body: Vec<u8>) -> Delivery {
    Delivery::new("jira", headers, body, RECEIVED)
}

fn parse_value(payload: &Value, options: &SourceOptions) -> Result<Parsed, ParseError> {
    Jira.parse(&delivery_of(vec![], serde_json::to_vec(payload).unwrap()), "jira:d-1", options)
}

fn events_of(payload: &Value) -> Vec<SpanEvent> {
    match parse_value(payload, &SourceOptions::default()) {
        Ok(Parsed::Spans(events)) => events,
        other => panic!("expected span events, got {other:?}"),
    }
}

fn event(name: &str) -> SpanEvent {
    let mut events = events_of(&payload(name));
    assert_eq!(events.len(), 1, "{name}");
    let mut event = events.remove(0);
    // Distinct delivery ids, as the store would give them.
    event.delivery_id = format!("jira:{name}");
    event
}

const KANBAN: &[&str] = &[
    "original/issues/kanban/done",
    "original/issues/kanban/in_progress",
    "original/issues/kanban/selected_to_backlog",
    "original/issues/kanban/selected_for_dev",
];

const VALID: &[&str] = &[
    "original/issues/kanban/done",
    "original/issues/kanban/in_progress",
    "original/issues/kanban/selected_to_backlog",
    "original/issues/kanban/selected_for_dev",
    "original/issues/scrum/created_in_sprint",
    "original/issues/scrum/in_progress_active_sprint",
    "original/sprints/started",
    "original/sprints/closed",
    "added/issue_deleted",
    "added/issue_updated.documented-shape",
];

// ---------------------------------------------------------------- snapshots

#[test]
fn every_valid_fixture_gives_a_reviewed_snapshot() {
    for name in VALID {
        let (headers, body) = recorded(name);
        let delivery = delivery_of(headers, serde_json::to_vec(&body).unwrap());
        // As the store names deliveries: the sender's id, else the body's SHA-256.
        let id = format!("jira:{}", Jira.delivery_id(&delivery).unwrap_or_else(|| delivery.content_id()));
        let parsed = Jira.parse(&delivery, &id, &SourceOptions::default());
        let Ok(Parsed::Spans(events)) = parsed else { panic!("{name}: {parsed:?}") };
        insta::assert_json_snapshot!(name.replace('/', "."), events);
    }
}

#[test]
fn the_source_is_registered_with_its_secret_variable() {
    let source = sources::by_name("jira").expect("jira is in SOURCES");
    assert_eq!(source.secret_variable(), "VS_JIRA_SECRET");
}

// ---------------------------------------------------------------- issues

#[test]
fn issue_keys_names_and_trace_references() {
    let e = event("original/issues/kanban/in_progress");
    assert_eq!(e.key, "jira:operationalanalytics.atlassian.net:issue:TP-3");
    assert_eq!((e.source.as_str(), e.kind.as_str(), e.name.as_str()), ("jira", "issue", "TP-3"));
    assert_eq!(e.project.as_deref(), Some("TP"));
    for reference in ["vstrace-jira-tp-3", "vstrace-jiracloud-issue-tp-3", "tp-3"] {
        assert!(e.trace_refs.contains(&reference.to_string()), "{reference}: {:?}", e.trace_refs);
    }
    // A pull request on branch `TP-3-fix-login` looks for `tp-3`, which this span answers to.
    assert!(find_issue_keys("TP-3-fix-login").iter().all(|key| e.trace_refs.contains(key)));
    assert_eq!(e.at, Timestamp::from_unix_millis(1574512928841).unwrap(), "the webhook's timestamp");
}

#[test]
fn reaching_done_ends_the_span_at_the_resolution_date() {
    let e = event("original/issues/kanban/done");
    assert_eq!(
        e.change,
        Change::End {
            start: Some(t("2019-11-22T15:22:30.725Z")),
            end: t("2019-11-23T12:39:45.572Z"),
            outcome: "completed".into()
        }
    );
    assert!(e.first_times.is_empty(), "done is not a work start");
}

#[test]
fn done_without_a_resolution_date_ends_at_the_category_change_then_the_move() {
    let mut p = payload("original/issues/kanban/done");
    p["issue"]["fields"]["resolutiondate"] = Value::Null;
    let Change::End { end, .. } = events_of(&p)[0].change else { panic!() };
    assert_eq!(end, t("2019-11-23T12:39:45.582Z"), "statuscategorychangedate");
    p["issue"]["fields"].as_object_mut().unwrap().remove("statuscategorychangedate");
    let Change::End { end, .. } = events_of(&p)[0].change else { panic!() };
    assert_eq!(end, Timestamp::from_unix_millis(1574512785596).unwrap(), "the changelog's move, at the webhook time");
    p["changelog"]["created"] = json!("2019-11-23T07:39:40.000-0500");
    let Change::End { end, .. } = events_of(&p)[0].change else { panic!() };
    assert_eq!(end, t("2019-11-23T12:39:40Z"), "the changelog's own time when it has one");
}

#[test]
fn leaving_done_reopens_the_span() {
    let done = event("original/issues/kanban/done");
    let in_progress = event("original/issues/kanban/in_progress");
    let span = fold(&[in_progress.clone(), done.clone()]).unwrap();
    assert_eq!(span.state, SpanState::Open);
    assert_eq!((span.end, span.outcome), (None, None));
    assert_eq!(span.start, t("2019-11-22T15:22:30.725Z"));
    // Before the reopen it was closed.
    assert_eq!(fold(&[done]).unwrap().state, SpanState::Closed);
}

#[test]
fn the_first_move_into_in_progress_is_the_work_start() {
    let e = event("original/issues/kanban/in_progress");
    assert!(matches!(e.change, Change::Start { .. }));
    assert_eq!(e.first_times.get("valuestream.started_at"), Some(&t("2019-11-23T12:42:08.827Z")));
    // Over the whole board history the earliest entry wins, whatever the order.
    let span = fold(&KANBAN.iter().map(|n| event(n)).collect::<Vec<_>>()).unwrap();
    assert_eq!(span.attributes["valuestream.started_at"], "2019-11-23T12:42:08.827Z");
    assert_eq!(span.state, SpanState::Open, "the latest snapshot is `Selected for Development` (new)");
    // An earlier entry reported later still wins.
    let mut earlier = payload("original/issues/scrum/in_progress_active_sprint");
    earlier["issue"]["fields"]["statuscategorychangedate"] = json!("2019-11-22T12:10:00.000-0500");
    earlier["timestamp"] = json!(1574446000000u64);
    let later = event("original/issues/scrum/in_progress_active_sprint");
    let span = fold(&[later, events_of(&earlier).remove(0)]).unwrap();
    assert_eq!(span.attributes["valuestream.started_at"], "2019-11-22T17:10:00Z");
}

#[test]
fn work_start_without_a_category_change_date_comes_from_the_changelog_move() {
    let mut p = payload("original/issues/kanban/in_progress");
    p["issue"]["fields"].as_object_mut().unwrap().remove("statuscategorychangedate");
    let e = events_of(&p).remove(0);
    assert_eq!(e.first_times.get("valuestream.started_at"), Some(&Timestamp::from_unix_millis(1574512928841).unwrap()));
    // A changelog that moved the issue to another status than the current one says nothing.
    p["changelog"]["items"][0]["to"] = json!("99");
    assert!(events_of(&p)[0].first_times.is_empty());
    // Nor does an in-progress snapshot with no status change and no date.
    p["changelog"]["items"] = json!([{"field": "summary", "fieldtype": "jira", "from": null, "to": null}]);
    assert!(events_of(&p)[0].first_times.is_empty());
}

#[test]
fn a_move_between_two_in_progress_statuses_keeps_the_category_entry_time() {
    // In Progress → In Review: both `indeterminate`. The category changed earlier,
    // when the issue entered In Progress; statuscategorychangedate says when.
    let mut p = payload("original/issues/kanban/in_progress");
    p["timestamp"] = json!(1574520000000u64);
    p["issue"]["fields"]["status"]["id"] = json!("10005");
    p["issue"]["fields"]["status"]["name"] = json!("In Review");
    p["changelog"]["items"][0] = json!({"field": "status", "fieldtype": "jira", "fieldId": "status",
        "from": "3", "fromString": "In Progress", "to": "10005", "toString": "In Review"});
    let e = events_of(&p).remove(0);
    assert_eq!(e.first_times.get("valuestream.started_at"), Some(&t("2019-11-23T12:42:08.827Z")));
}

#[test]
fn status_names_are_never_read() {
    // The same moves in another language and with other status names.
    for name in KANBAN {
        let mut p = payload(name);
        let status = &mut p["issue"]["fields"]["status"];
        status["name"] = json!("Statut inconnu");
        status["statusCategory"]["name"] = json!("Catégorie");
        for item in p["changelog"]["items"].as_array_mut().unwrap() {
            item["fromString"] = json!("Avant");
            item["toString"] = json!("Après");
        }
        let renamed = events_of(&p).remove(0);
        let original = events_of(&payload(name)).remove(0);
        assert_eq!(renamed.change, original.change, "{name}");
        assert_eq!(renamed.first_times, original.first_times, "{name}");
    }
}

/// `in_progress` edited later: a new summary and nothing else.
fn edited(name: &str) -> SpanEvent {
    let mut p = payload(name);
    p["timestamp"] = json!(p["timestamp"].as_u64().unwrap() + 3_600_000);
    p["issue"]["fields"]["summary"] = json!("A better summary");
    p["issue"]["fields"]["updated"] = json!("2019-11-23T09:00:00.000-0500");
    p["changelog"]["items"] = json!([{"field": "summary", "fieldtype": "jira", "fieldId": "summary",
        "from": null, "fromString": "Brand new backlog", "to": null, "toString": "A better summary"}]);
    let mut e = events_of(&p).remove(0);
    e.delivery_id = format!("jira:{name}:edited");
    e
}

fn without_attributes(span: &Span) -> Span {
    let mut span = span.clone();
    span.attributes.clear();
    span
}

#[test]
fn an_edit_that_changes_no_status_changes_only_attributes() {
    for name in ["original/issues/kanban/in_progress", "original/issues/kanban/done"] {
        let before = fold(&[event(name)]).unwrap();
        let after = fold(&[event(name), edited(name)]).unwrap();
        assert_eq!(without_attributes(&before), without_attributes(&after), "{name}");
        assert_eq!(after.attributes["valuestream.title"], "A better summary");
        assert_eq!(after.attributes.get("valuestream.started_at"), before.attributes.get("valuestream.started_at"));
        let changed: Vec<&String> =
            after.attributes.iter().filter(|(k, v)| before.attributes.get(*k) != Some(v)).map(|(k, _)| k).collect();
        assert_eq!(changed, ["valuestream.title"], "{name}");
    }
}

#[test]
fn a_deleted_issue_ends_with_outcome_deleted() {
    let deleted = event("added/issue_deleted");
    assert_eq!(deleted.key, "jira:operationalanalytics.atlassian.net:issue:TS-1");
    assert_eq!(
        deleted.change,
        Change::End {
            start: Some(t("2019-11-22T17:01:13.208Z")),
            end: Timestamp::from_unix_millis(1574446000000).unwrap(),
            outcome: "deleted".into()
        }
    );
    assert!(deleted.first_times.is_empty());
    let span = fold(&[deleted, event("original/issues/scrum/in_progress_active_sprint")]).unwrap();
    assert_eq!((span.state, span.outcome.as_deref()), (SpanState::Closed, Some("deleted")));
    assert_eq!(span.attributes["valuestream.started_at"], "2019-11-22T17:53:43.744Z");
}

#[test]
fn a_created_issue_starts_at_its_creation_time() {
    let e = event("original/issues/scrum/created_in_sprint");
    assert_eq!(e.key, "jira:operationalanalytics.atlassian.net:issue:TS-2");
    assert_eq!(e.change, Change::Start { start: t("2019-11-22T17:07:08.934Z") });
}

#[test]
fn the_documented_shape_without_a_status_only_updates() {
    let e = event("added/issue_updated.documented-shape");
    assert_eq!(e.key, "jira:acme.atlassian.net:issue:PAY-12");
    assert_eq!(e.change, Change::Update { start: Some(t("2018-05-01T14:12:45.100Z")) });
    assert_eq!(e.at, Timestamp::from_unix_millis(1525698237764).unwrap());
    assert_eq!(e.attributes["valuestream.jira.priority"], "Minor");
    assert_eq!(e.attributes["valuestream.labels"], json!(["ui", "login"]));
    assert_eq!(e.attributes["valuestream.url"], "https://acme.atlassian.net/browse/PAY-12");
    let mut created = payload("added/issue_updated.documented-shape");
    created["webhookEvent"] = json!("jira:issue_created");
    assert!(matches!(events_of(&created)[0].change, Change::Start { .. }));
}

#[test]
fn incidents_by_issue_type_or_label() {
    let mut p = payload("original/issues/scrum/created_in_sprint");
    assert_eq!(events_of(&p)[0].kind, "issue");
    p["issue"]["fields"]["issuetype"]["name"] = json!("Incident");
    assert_eq!(events_of(&p)[0].kind, "incident");
    p["issue"]["fields"]["issuetype"]["name"] = json!("[System] Incident");
    assert_eq!(events_of(&p)[0].kind, "incident");
    p["issue"]["fields"]["issuetype"]["name"] = json!("Bug");
    p["issue"]["fields"]["labels"] = json!(["Outage"]);
    assert_eq!(events_of(&p)[0].kind, "issue");
    let options = SourceOptions { incident_labels: vec!["outage".into()], ..SourceOptions::default() };
    let Ok(Parsed::Spans(events)) = parse_value(&p, &options) else { panic!() };
    assert_eq!(events[0].kind, "incident");
}

// ---------------------------------------------------------------- sprints

#[test]
fn sprints_start_and_close() {
    let started = event("original/sprints/started");
    assert_eq!(started.key, "jira:operationalanalytics.atlassian.net:sprint:1");
    assert_eq!((started.kind.as_str(), started.name.as_str()), ("sprint", "TS Sprint 1"));
    assert_eq!(started.change, Change::Start { start: t("2019-11-22T17:13:15.221Z") });
    assert_eq!(started.attributes["valuestream.sprint.name"], "TS Sprint 1");
    assert_eq!(started.attributes["valuestream.sprint.state"], "active");
    assert_eq!(started.attributes["valuestream.sprint.board"], 2);
    let closed = event("original/sprints/closed");
    assert_eq!(
        closed.change,
        Change::End {
            start: Some(t("2019-11-22T17:13:15.221Z")),
            end: t("2019-11-22T17:15:05.352Z"),
            outcome: "completed".into()
        }
    );
    let span = fold(&[closed, started]).unwrap();
    assert_eq!((span.state, span.outcome.as_deref()), (SpanState::Closed, Some("completed")));
    assert_eq!(span.attributes["valuestream.sprint.state"], "closed");
}

#[test]
fn a_sprint_closed_without_a_complete_date_ends_at_its_end_date() {
    let mut p = payload("original/sprints/closed");
    p["sprint"].as_object_mut().unwrap().remove("completeDate");
    let Change::End { end, .. } = events_of(&p)[0].change else { panic!() };
    assert_eq!(end, t("2019-12-06T17:13:00Z"));
}

#[test]
fn other_events_are_ignored_with_a_reason() {
    for other in ["sprint_created", "sprint_updated", "comment_created", "board_created", "jira:worklog_updated"] {
        let mut p = payload("original/sprints/started");
        p["webhookEvent"] = json!(other);
        let Ok(Parsed::Ignored { reason }) = parse_value(&p, &SourceOptions::default()) else { panic!("{other}") };
        assert!(reason.contains(other), "{reason}");
        let delivery = delivery_of(vec![], serde_json::to_vec(&p).unwrap());
        assert_eq!(Jira.event_type(&delivery), "other");
    }
}

// ---------------------------------------------------------------- order

/// Every permutation of `items` (Heap's algorithm).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    fn heap<T: Clone>(k: usize, items: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
        if k <= 1 {
            out.push(items.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, items, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            items.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(items.len(), &mut items.to_vec(), &mut out);
    out
}

#[test]
fn any_order_of_deliveries_folds_to_the_same_span() {
    let mut board: Vec<SpanEvent> = KANBAN.iter().map(|n| event(n)).collect();
    board.push(edited("original/issues/kanban/in_progress"));
    let in_order = fold(&board).unwrap();
    let all = permutations(&board);
    assert_eq!(all.len(), 120);
    for shuffled in all {
        assert_eq!(fold(&shuffled).unwrap(), in_order);
    }
    let sprint = [event("original/sprints/started"), event("original/sprints/closed")];
    assert_eq!(fold(&sprint), fold(&[sprint[1].clone(), sprint[0].clone()]));
    let scrum = [event("original/issues/scrum/in_progress_active_sprint"), event("added/issue_deleted")];
    assert_eq!(fold(&scrum), fold(&[scrum[1].clone(), scrum[0].clone()]));
}

// ---------------------------------------------------------------- deliveries and signatures

#[test]
fn delivery_id_and_event_type_come_from_jira() {
    let (headers, body) = recorded("added/issue_deleted");
    let delivery = delivery_of(headers, serde_json::to_vec(&body).unwrap());
    assert_eq!(Jira.delivery_id(&delivery).as_deref(), Some("added-issue-deleted-1"));
    assert_eq!(Jira.event_type(&delivery), "jira:issue_deleted");
    let bare = delivery_of(vec![], b"{}".to_vec());
    assert_eq!(Jira.delivery_id(&bare), None);
    assert_eq!(Jira.event_type(&bare), "missing");
    assert_eq!(Jira.event_type(&delivery_of(vec![], b"not json".to_vec())), "missing");
}

#[test]
fn signatures_right_wrong_missing_and_truncated() {
    let body = serde_json::to_vec(&payload("original/issues/kanban/done")).unwrap();
    let signed = |signature: &str| delivery_of(vec![("X-Hub-Signature".into(), signature.into())], body.clone());
    let secrets = vec!["old-secret".to_string(), "s3cret".to_string()];
    let good = format!("sha256={}", hmac_sha256_hex(b"s3cret", &body));
    assert_eq!(Jira.authenticate(&signed(&good), &secrets), Ok(()));
    let old = format!("sha256={}", hmac_sha256_hex(b"old-secret", &body));
    assert_eq!(Jira.authenticate(&signed(&old), &secrets), Ok(()), "rotation");
    let wrong = format!("sha256={}", hmac_sha256_hex(b"other", &body));
    assert_eq!(Jira.authenticate(&signed(&wrong), &secrets), Err(AuthError::Mismatch("X-Hub-Signature")));
    assert_eq!(Jira.authenticate(&signed(&good[..40]), &secrets), Err(AuthError::Malformed("X-Hub-Signature")));
    assert_eq!(Jira.authenticate(&signed(&good[7..]), &secrets), Err(AuthError::Malformed("X-Hub-Signature")));
    assert_eq!(
        Jira.authenticate(&delivery_of(vec![], body.clone()), &secrets),
        Err(AuthError::Missing("X-Hub-Signature"))
    );
    // GitHub's header is not Jira's.
    let github = delivery_of(vec![("X-Hub-Signature-256".into(), good.clone())], body.clone());
    assert_eq!(Jira.authenticate(&github, &secrets), Err(AuthError::Missing("X-Hub-Signature")));
    // A body changed after signing.
    let mut tampered = signed(&good);
    tampered.body.push(b' ');
    assert_eq!(Jira.authenticate(&tampered, &secrets), Err(AuthError::Mismatch("X-Hub-Signature")));
}

// ---------------------------------------------------------------- bad input

fn error_for(payload: &Value) -> String {
    match parse_value(payload, &SourceOptions::default()) {
        Err(error) => error.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn raw_error(body: &[u8]) -> ParseError {
    match Jira.parse(&delivery_of(vec![], body.to_vec()), "jira:d", &SourceOptions::default()) {
        Err(error) => error,
        other => panic!("expected an error for {:?}, got {other:?}", String::from_utf8_lossy(body)),
    }
}

#[test]
fn bad_input_is_an_error_naming_the_field() {
    // The original's broken capture: a raw line break inside a string.
    let path = format!("{}/tests/data/jira/original/issues/scrum/done_active_sprint.json", env!("CARGO_MANIFEST_DIR"));
    let broken = std::fs::read(path).unwrap();
    let error = raw_error(&broken);
    assert!(matches!(error, ParseError::Json(ref m) if m.contains("control character")), "{error}");

    assert!(matches!(raw_error(b""), ParseError::Json(_)));
    assert!(matches!(raw_error(b"{not json"), ParseError::Json(_)));
    assert!(raw_error(b"[]").to_string().contains("must be a JSON object"));
    assert!(raw_error(b"{\"webhookEvent\": \"jira:issue_updated\", \"x\": \"\xff\"}").to_string().contains("UTF-8"));
    assert_eq!(raw_error(b"{}").to_string(), "invalid payload at `.`: missing field `webhookEvent`");
    assert!(raw_error(b"{\"webhookEvent\": 7}").to_string().contains("`webhookEvent`"));

    let base = payload("original/issues/kanban/done");
    let with = |pointer: &str, value: Value| {
        let mut p = base.clone();
        *p.pointer_mut(pointer).unwrap() = value;
        error_for(&p)
    };
    let without = |parent: &str, key: &str| {
        let mut p = base.clone();
        p.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
        error_for(&p)
    };
    assert_eq!(without("", "issue"), "invalid payload at `.`: missing field `issue`");
    assert_eq!(without("/issue/fields", "created"), "invalid payload at `issue.fields`: missing field `created`");
    assert_eq!(without("/issue", "self"), "invalid payload at `issue`: missing field `self`");
    let bad_time = with("/issue/fields/created", json!("yesterday"));
    assert!(bad_time.starts_with("invalid payload at `issue.fields.created`: expected a time"), "{bad_time}");
    assert!(with("/issue/fields/resolutiondate", json!(12)).contains("`issue.fields.resolutiondate`"));
    assert!(with("/issue/self", json!("not a url")).starts_with("invalid payload at `issue.self`"));
    assert!(with("/issue/key", json!(" ")).starts_with("invalid payload at `issue.key`"));
    assert!(with("/issue/key", json!(12)).starts_with("invalid payload at `issue.key`"));
    assert!(with("/timestamp", json!(-9_000_000_000_000_000i64)).starts_with("invalid payload at `timestamp`"));
    assert!(with("/timestamp", json!(u64::MAX)).starts_with("invalid payload at `timestamp`"));
    assert!(with("/timestamp", json!(true)).starts_with("invalid payload at `timestamp`"));
    assert!(with("/issue/fields/labels", json!("one")).starts_with("invalid payload at `issue.fields.labels`"));
    assert!(with("/changelog/items", json!({})).starts_with("invalid payload at `changelog.items`"));

    let sprint = payload("original/sprints/closed");
    let mut p = sprint.clone();
    p["sprint"]["completeDate"] = json!("later");
    assert!(error_for(&p).starts_with("invalid payload at `sprint.completeDate`"));
    let mut p = sprint.clone();
    p["sprint"]["id"] = Value::Null;
    assert!(error_for(&p).starts_with("invalid payload at `sprint.id`"));
    let mut p = sprint;
    p["sprint"]["self"] = json!("/rest/agile/1.0/sprint/1");
    assert!(error_for(&p).starts_with("invalid payload at `sprint.self`"));
}

#[test]
fn tolerated_variations_parse() {
    let mut p = payload("original/issues/kanban/in_progress");
    // A timestamp written as a time (older documentation), ids as numbers, empty dates.
    p["timestamp"] = json!("2019-11-23T07:42:08.841-0500");
    p["issue"]["fields"]["status"]["id"] = json!(3);
    p["changelog"]["items"][0]["to"] = json!(3);
    p["issue"]["fields"]["resolutiondate"] = json!("");
    p["issue"]["fields"]["labels"] = Value::Null;
    let e = events_of(&p).remove(0);
    assert_eq!(e.at, t("2019-11-23T12:42:08.841Z"));
    assert!(e.first_times.contains_key("valuestream.started_at"));
    // No timestamp at all: the issue's `updated`.
    p.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(events_of(&p)[0].at, t("2019-11-23T12:42:08.827Z"));
}
