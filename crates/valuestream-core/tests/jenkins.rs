//! Jenkins payloads (tests/data/jenkins: the original ValueStream's Statistics
//! Gatherer messages, and Notification plugin and Statistics Gatherer messages
//! written to each plugin's serialised shape) through the parser: reviewed
//! snapshots, build/deploy detection, outcomes, linking, folding in any order,
//! token authentication, bad input, and a robustness property.

use serde_json::{Value, json};
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{self, ParseError, Parsed, Source, SourceOptions, jenkins::Jenkins};
use valuestream_core::span::{Change, SpanEvent, SpanState, fold};
use valuestream_core::time::Timestamp;
use valuestream_core::verify::AuthError;

/// Every fixture, as `{folder}/{name}` without `.json`.
const FIXTURES: &[&str] = &[
    "build/inprogress",
    "build/success",
    "build/aborted",
    "deploy/inprogress",
    "deploy/success",
    "statistics-gatherer/started",
    "statistics-gatherer/finalized",
    "notification/queued",
    "notification/started",
    "notification/completed",
    "notification/finalized",
    "notification/deploy-started",
    "notification/deploy-completed",
];

/// The time deliveries are received in these tests: far from every payload time.
const RECEIVED: Timestamp = Timestamp(4_000_000_000_000_000_000);

/// A fixture's webhook body (the `payload` of its `{"payload": …}` recording).
fn payload(name: &str) -> Value {
    let path = format!("{}/tests/data/jenkins/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let recording: Value = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    recording["payload"].clone()
}

fn delivery(body: &[u8]) -> Delivery {
    Delivery::new("jenkins", [("Content-Type".to_string(), "application/json".to_string())], body.to_vec(), RECEIVED)
}

fn parse_with(body: &Value, options: &SourceOptions) -> Result<Parsed, ParseError> {
    Jenkins.parse(&delivery(&serde_json::to_vec(body).unwrap()), "d-1", options)
}

fn parse(body: &Value) -> Result<Parsed, ParseError> {
    parse_with(body, &SourceOptions::default())
}

/// The span event `body` gives. A Statistics Gatherer completion that cannot
/// tell build from deploy gives two tentative events (build key first); the
/// build one is returned, after checking the pair.
fn event_with(body: &Value, options: &SourceOptions) -> SpanEvent {
    match parse_with(body, options) {
        Ok(Parsed::Spans(mut events)) if events.len() == 1 => events.remove(0),
        Ok(Parsed::Spans(mut events)) if events.len() == 2 => {
            assert!(events.iter().all(|e| e.tentative), "{events:?}");
            assert_eq!(events[1].key, events[0].key.replacen(":build:", ":deploy:", 1));
            events.remove(0)
        }
        other => panic!("expected one span event, got {other:?}"),
    }
}

fn event(body: &Value) -> SpanEvent {
    event_with(body, &SourceOptions::default())
}

fn fixture_event(name: &str) -> SpanEvent {
    event(&payload(name))
}

fn time(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn err(body: &[u8]) -> String {
    match Jenkins.parse(&delivery(body), "d-1", &SourceOptions::default()) {
        Err(error) => error.to_string(),
        Ok(parsed) => panic!("expected an error for {}, got {parsed:?}", String::from_utf8_lossy(body)),
    }
}

fn outcome_of(event: &SpanEvent) -> Option<&str> {
    match &event.change {
        Change::End { outcome, .. } => Some(outcome),
        _ => None,
    }
}

// ---------------------------------------------------------------- fixtures

#[test]
fn fixtures_give_reviewed_snapshots() {
    for name in FIXTURES.iter().filter(|name| **name != "notification/queued") {
        let events = match parse(&payload(name)) {
            Ok(Parsed::Spans(events)) => events,
            other => panic!("{name}: expected span events, got {other:?}"),
        };
        insta::assert_json_snapshot!(name.replace('/', "."), events);
    }
}

#[test]
fn a_queued_notification_is_ignored() {
    let parsed = parse(&payload("notification/queued")).unwrap();
    assert!(matches!(&parsed, Parsed::Ignored { reason } if reason.contains("QUEUED")), "{parsed:?}");
}

#[test]
fn statistics_gatherer_fixtures_start_and_end_the_same_span() {
    let running = fixture_event("build/inprogress");
    assert_eq!(running.key, "jenkins:jenkins_test:build:252");
    assert_eq!(running.kind, "build");
    assert_eq!(running.name, "jenkins_test#252");
    // The original's hand-written times are seconds; the plugin's are milliseconds.
    assert_eq!(running.change, Change::Start { start: time("2016-07-25T13:38:23Z") });
    assert_eq!(running.at, time("2016-07-25T13:38:23Z"));
    assert_eq!(running.attributes["vcs.ref.head.name"], "master");

    let success = fixture_event("build/success");
    assert_eq!(success.key, running.key);
    assert_eq!(
        success.change,
        Change::End {
            start: Some(time("2016-07-25T13:38:13.548Z")),
            end: time("2016-07-25T13:38:23Z"),
            outcome: "success".into()
        }
    );
    assert_eq!(outcome_of(&fixture_event("build/aborted")), Some("cancelled"));

    // `deploy:jenkins_test` (jobName) with `type=deploy`; its end message has
    // only the job name's prefix to say so, and names the same span.
    let deploy_running = fixture_event("deploy/inprogress");
    let deploy_success = fixture_event("deploy/success");
    assert_eq!(deploy_running.key, "jenkins:jenkins_test:deploy:252");
    assert_eq!(deploy_success.key, deploy_running.key);
    assert_eq!(deploy_success.kind, "deploy");
    assert_eq!(deploy_success.attributes["deployment.environment.name"], "production");
}

#[test]
fn statistics_gatherer_finalized_message_starts_at_end_minus_duration() {
    // The plugin's finalized message carries `startTime` = when the message was
    // made; the build started `duration` before its end.
    let finalized = fixture_event("statistics-gatherer/finalized");
    assert_eq!(finalized.key, "jenkins:team-b/service:build:31");
    assert_eq!(
        finalized.change,
        Change::End {
            start: Some(time("2026-11-21T09:12:00.046Z")),
            end: time("2026-11-21T09:18:52.391Z"),
            outcome: "failure".into()
        }
    );
    let started = fixture_event("statistics-gatherer/started");
    assert_eq!(started.change, Change::Start { start: time("2026-11-21T09:12:00Z") });
    assert_eq!(started.repo.as_deref(), Some("acme/platform/service"));
    assert_eq!(started.project.as_deref(), Some("team-b"));
    assert_eq!(started.attributes["cicd.pipeline.run.url.full"], "https://ci.example.com/job/team-b/job/service/31/");
}

#[test]
fn notification_phases_give_start_and_end_at_payload_times() {
    let started = fixture_event("notification/started");
    assert_eq!(started.key, "jenkins:team-a/service:build:7");
    assert_eq!(started.name, "service#7");
    assert_eq!(started.project.as_deref(), Some("team-a"));
    assert_eq!(started.repo.as_deref(), Some("octo-org/service"));
    assert_eq!(started.change, Change::Start { start: time("2026-11-20T10:00:00Z") });

    // COMPLETED: timestamp = start + duration.
    let completed = fixture_event("notification/completed");
    assert_eq!(completed.key, started.key);
    assert_eq!(
        completed.change,
        Change::End {
            start: Some(time("2026-11-20T10:00:00Z")),
            end: time("2026-11-20T10:01:35Z"),
            outcome: "failure".into()
        }
    );
    assert_eq!(completed.attributes["cicd.pipeline.result"], "failure");
    assert_eq!(completed.attributes["valuestream.jenkins.result"], "UNSTABLE");

    // FINALIZED: timestamp = when it was finalized.
    let finalized = fixture_event("notification/finalized");
    assert_eq!(finalized.key, started.key);
    assert!(matches!(finalized.change, Change::End { end, .. } if end == time("2026-11-20T10:01:36.200Z")));

    // While STARTED, `status` may be the previous build's: the phase decides.
    let deploy = fixture_event("notification/deploy-started");
    assert_eq!(deploy.change, Change::Start { start: time("2026-11-20T14:30:00Z") });
    assert!(!deploy.attributes.contains_key("cicd.pipeline.result"));
}

#[test]
fn times_come_from_the_payload_and_receipt_only_when_it_has_none() {
    for name in FIXTURES.iter().filter(|name| **name != "notification/queued") {
        let event = fixture_event(name);
        assert_ne!(event.at, RECEIVED, "{name}");
    }
    let mut started = payload("notification/started");
    started["build"].as_object_mut().unwrap().remove("timestamp");
    assert_eq!(event(&started).change, Change::Start { start: RECEIVED });
    let mut running = payload("build/inprogress");
    running.as_object_mut().unwrap().remove("startTime");
    assert_eq!(event(&running).change, Change::Start { start: RECEIVED });
}

// ---------------------------------------------------------------- build or deploy

fn statistics(job_name: &str, full_job_name: &str, parameters: Value) -> Value {
    let mut body = payload("build/inprogress");
    body["jobName"] = json!(job_name);
    body["fullJobName"] = json!(full_job_name);
    body["parameters"] = parameters;
    body
}

fn kind_of(body: &Value, options: &SourceOptions) -> String {
    event_with(body, options).kind
}

#[test]
fn deploys_are_told_by_prefix_parameter_or_pattern() {
    let default = SourceOptions::default();
    let kind = |job: &str, full: &str, parameters: Value| kind_of(&statistics(job, full, parameters), &default);
    assert_eq!(kind("service", "service", json!({})), "build");
    assert_eq!(kind("deploy:service", "deploy:service", json!({})), "deploy");
    assert_eq!(kind("deploy-service", "deploy-service", json!({})), "deploy");
    assert_eq!(kind("Deploy-Service", "Deploy-Service", json!({})), "deploy");
    assert_eq!(kind("deploy-service", "team-a/deploy-service", json!({})), "deploy");
    // A folder named deploy-… does not make its jobs deploys.
    assert_eq!(kind("lint", "deploy-tools/lint", json!({})), "build");
    assert_eq!(kind("deployment-report", "deployment-report", json!({})), "build");
    assert_eq!(kind("release", "release", json!({"type": "deploy"})), "deploy");
    assert_eq!(kind("release", "release", json!([{"name": "type", "value": "deploy"}])), "deploy");
    assert_eq!(kind("release", "release", json!({"type": "build"})), "build");

    let pattern = SourceOptions { deploy_job_pattern: Some("^team-a/ship-|-prod$".into()), ..SourceOptions::default() };
    let with_pattern = |full: &str| kind_of(&statistics(full.rsplit('/').next().unwrap(), full, json!({})), &pattern);
    assert_eq!(with_pattern("team-a/ship-it"), "deploy");
    assert_eq!(with_pattern("payments-prod"), "deploy");
    assert_eq!(with_pattern("team-b/ship-it"), "build");
    // The pattern is over the full name, not the short one.
    assert_eq!(with_pattern("ship-it"), "build");
    let broken = SourceOptions { deploy_job_pattern: Some("(".into()), ..SourceOptions::default() };
    assert_eq!(kind_of(&statistics("ship-it", "ship-it", json!({})), &broken), "build");

    let mut notification = payload("notification/started");
    assert_eq!(kind_of(&notification, &default), "build");
    notification["build"]["parameters"]["type"] = json!("deploy");
    assert_eq!(kind_of(&notification, &default), "deploy");
    assert!(event(&notification).key.ends_with(":deploy:7"));
}

#[test]
fn the_environment_comes_from_a_parameter_or_defaults_to_production() {
    let environment = |parameters: Value| {
        let event = event(&statistics("deploy-service", "deploy-service", parameters));
        event.attributes["deployment.environment.name"].as_str().unwrap().to_string()
    };
    assert_eq!(environment(json!({"environment": "staging"})), "staging");
    assert_eq!(environment(json!({"ENVIRONMENT": "qa"})), "qa");
    assert_eq!(environment(json!({"environment": "  "})), "production");
    assert_eq!(environment(json!({})), "production");
    assert_eq!(fixture_event("notification/deploy-completed").attributes["deployment.environment.name"], "staging");
    // Builds carry no environment.
    let build = event(&statistics("service", "service", json!({"environment": "qa"})));
    assert!(!build.attributes.contains_key("deployment.environment.name"));
}

#[test]
fn results_map_to_outcomes() {
    for (result, outcome, pipeline_result) in [
        ("SUCCESS", "success", Some("success")),
        ("FAILURE", "failure", Some("failure")),
        ("UNSTABLE", "failure", Some("failure")),
        ("ABORTED", "cancelled", Some("cancellation")),
        ("NOT_BUILT", "skipped", Some("skip")),
        ("UNKNOWN", "unknown", None),
    ] {
        let mut statistics = payload("build/success");
        statistics["result"] = json!(result);
        let mut notification = payload("notification/completed");
        notification["build"]["status"] = json!(result);
        for body in [statistics, notification] {
            let event = event(&body);
            assert_eq!(outcome_of(&event), Some(outcome), "{result}");
            assert_eq!(
                event.attributes.get("cicd.pipeline.result").and_then(Value::as_str),
                pipeline_result,
                "{result}"
            );
        }
    }
    let mut no_status = payload("notification/completed");
    no_status["build"].as_object_mut().unwrap().remove("status");
    assert_eq!(outcome_of(&event(&no_status)), Some("unknown"));
}

// ---------------------------------------------------------------- names, keys, links

#[test]
fn branches_lose_origin() {
    let event = fixture_event("notification/completed");
    assert_eq!(event.attributes["vcs.ref.head.name"], "feature/vstrace-github-service-27-login");
    assert_eq!(event.attributes["vcs.ref.head.revision"], "6dcb09b5b57875f334f61aebed695e2e4193db5e");
    assert!(
        event.parent_refs.contains(&"github:octo-org/service:branch:feature/vstrace-github-service-27-login".into())
    );
    assert!(!event.parent_refs.iter().any(|r| r.contains("origin/")), "{:?}", event.parent_refs);
}

#[test]
fn folder_jobs_of_the_same_name_do_not_collide() {
    let team_a = payload("notification/started");
    let mut team_b = team_a.clone();
    team_b["url"] = json!("job/team-b/job/service/");
    team_b["build"]["url"] = json!("job/team-b/job/service/7/");
    team_b["build"]["full_url"] = json!("https://ci.example.com/job/team-b/job/service/7/");
    let (a, b) = (event(&team_a), event(&team_b));
    assert_eq!(a.key, "jenkins:team-a/service:build:7");
    assert_eq!(b.key, "jenkins:team-b/service:build:7");
    assert_eq!((a.name.as_str(), b.name.as_str()), ("service#7", "service#7"));

    let a = event(&statistics("service", "team-a/service", json!({})));
    let b = event(&statistics("service", "team-b/service", json!({})));
    assert_ne!(a.key, b.key);
}

#[test]
fn builds_look_for_parameters_then_branch_then_the_pull_request_of_their_branch() {
    let build = fixture_event("notification/completed");
    assert_eq!(
        build.parent_refs,
        vec!["vstrace-github-service-27", "github:octo-org/service:branch:feature/vstrace-github-service-27-login"]
    );
    assert_eq!(build.trace_refs, vec!["vstrace-jenkins-build-service-7"]);
    assert!(build.link_refs.is_empty());

    // A reference in any parameter value, and GitLab remotes.
    let started = fixture_event("statistics-gatherer/started");
    assert_eq!(
        started.parent_refs,
        vec!["vstrace-gitlab-service-4", "gitlab:acme/platform/service:branch:feature/login"]
    );

    // The explicit parameter comes first, lowercase, and may be a span key.
    let mut body = payload("notification/started");
    body["build"]["parameters"] =
        json!({"A": "vstrace-jira-PAY-12", "vstrace-trace-id": "github:Octo-Org/Service:pull_request:3"});
    let event = event(&body);
    assert_eq!(
        event.parent_refs,
        vec![
            "github:octo-org/service:pull_request:3",
            "vstrace-jira-pay-12",
            "vstrace-github-service-27",
            "github:octo-org/service:branch:feature/vstrace-github-service-27-login"
        ]
    );
}

#[test]
fn deploys_link_to_the_pull_requests_of_their_commit() {
    let deploy = fixture_event("notification/deploy-completed");
    assert_eq!(deploy.key, "jenkins:team-a/deploy-service:deploy:12");
    assert_eq!(
        deploy.parent_refs,
        vec![
            "vstrace-github-service-27",
            "github:octo-org/service:sha:a10867b14bb761a232cd80139fbd4c0d33264240",
            "github:octo-org/service:branch:main",
        ]
    );
    assert_eq!(
        deploy.trace_refs,
        vec![
            "vstrace-jenkins-deploy-deploy-service-12",
            "vstrace-jenkins-deploy-service-12",
            "github:octo-org/service:deployed:a10867b14bb761a232cd80139fbd4c0d33264240",
        ]
    );
    assert_eq!(deploy.link_refs, vec!["github:octo-org/service:sha:a10867b14bb761a232cd80139fbd4c0d33264240"]);
    // Without a GitHub or GitLab remote there is no repository to link by.
    let original = fixture_event("deploy/inprogress");
    assert_eq!(original.repo, None);
    assert!(original.link_refs.is_empty());
    assert_eq!(
        original.trace_refs,
        vec!["vstrace-jenkins-deploy-deploy-jenkins_test-252", "vstrace-jenkins-deploy-jenkins_test-252"]
    );
}

// ---------------------------------------------------------------- order

/// Folds `events` in every order and checks each gives the same span.
fn fold_every_order(events: &[SpanEvent]) -> valuestream_core::span::Span {
    fn permutations(items: &[SpanEvent]) -> Vec<Vec<SpanEvent>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first.clone());
                out.push(tail);
            }
        }
        out
    }
    let spans: Vec<_> = permutations(events).iter().map(|order| fold(order).unwrap()).collect();
    for span in &spans {
        assert_eq!(span, &spans[0]);
    }
    spans[0].clone()
}

fn with_delivery_id(mut event: SpanEvent, id: &str) -> SpanEvent {
    event.delivery_id = id.into();
    event
}

#[test]
fn start_and_end_fold_to_one_closed_span_in_any_order() {
    let span = fold_every_order(&[fixture_event("build/inprogress"), fixture_event("build/success")]);
    assert_eq!(span.state, SpanState::Closed);
    assert_eq!(span.outcome.as_deref(), Some("success"));
    assert_eq!(span.end, Some(time("2016-07-25T13:38:23Z")));

    let span = fold_every_order(&[fixture_event("deploy/success"), fixture_event("deploy/inprogress")]);
    assert_eq!((span.kind.as_str(), span.state), ("deploy", SpanState::Closed));
    // The end message has no scm info: the running one's attributes stay.
    assert_eq!(span.attributes["vcs.ref.head.name"], "master");

    let span = fold_every_order(&[
        fixture_event("statistics-gatherer/finalized"),
        fixture_event("statistics-gatherer/started"),
    ]);
    assert_eq!(span.start, time("2026-11-21T09:12:00Z"));
    assert_eq!(span.outcome.as_deref(), Some("failure"));
    // The finalized message has no parameters, so the started message's parent references stay.
    assert_eq!(span.parent_refs, fixture_event("statistics-gatherer/started").parent_refs);
    assert!(fixture_event("statistics-gatherer/finalized").parent_refs.is_empty());

    let span = fold_every_order(&[
        with_delivery_id(fixture_event("notification/started"), "a"),
        with_delivery_id(fixture_event("notification/completed"), "b"),
        with_delivery_id(fixture_event("notification/finalized"), "c"),
    ]);
    assert_eq!(span.state, SpanState::Closed);
    assert_eq!(span.start, time("2026-11-20T10:00:00Z"));
    assert_eq!(span.outcome.as_deref(), Some("failure"));

    let span = fold_every_order(&[
        fixture_event("notification/deploy-completed"),
        fixture_event("notification/deploy-started"),
    ]);
    assert_eq!((span.start, span.end), (time("2026-11-20T14:30:00Z"), Some(time("2026-11-20T14:33:03Z"))));
    assert_eq!(span.outcome.as_deref(), Some("success"));
}

#[test]
fn a_finished_message_sorts_after_the_running_one_even_at_the_same_instant() {
    // The original's in-progress and success messages carry the same time.
    let running = fixture_event("build/inprogress");
    let finished = fixture_event("build/success");
    assert_eq!(running.at, finished.at);
    let span = fold(&[with_delivery_id(finished, "a"), with_delivery_id(running, "z")]).unwrap();
    assert_eq!(span.state, SpanState::Closed);
}

// ---------------------------------------------------------------- the source

#[test]
fn the_source_is_registered() {
    let source = sources::by_name("jenkins").expect("jenkins is in SOURCES");
    assert_eq!(source.secret_variable(), "VS_JENKINS_TOKEN");
    assert_eq!(source.delivery_id(&delivery(b"{}")), None);
    let event_type = |name: &str| Jenkins.event_type(&delivery(&serde_json::to_vec(&payload(name)).unwrap()));
    assert_eq!(event_type("build/inprogress"), "build");
    assert_eq!(event_type("notification/started"), "notification");
    assert_eq!(Jenkins.event_type(&delivery(br#"{"jobName":"x","entryTime":1}"#)), "other");
    assert_eq!(Jenkins.event_type(&delivery(b"not json")), "other");
}

#[test]
fn other_jenkins_messages_are_ignored() {
    // The Statistics Gatherer's queue JSON, a Notification without its build, an empty object.
    for body in [
        json!({"ciUrl": "https://ci/", "jobName": "service", "entryTime": 1795168795000i64, "status": "left", "duration": 10}),
        json!({"name": "service", "url": "job/service/"}),
        json!({}),
    ] {
        assert!(matches!(parse(&body), Ok(Parsed::Ignored { .. })), "{body}");
    }
    let mut phase = payload("notification/started");
    phase["build"]["phase"] = json!("DELETED");
    assert!(matches!(parse(&phase), Ok(Parsed::Ignored { .. })));
}

fn with_auth(authorization: Option<&str>, query: Option<&str>) -> Delivery {
    let headers = authorization.map(|value| ("Authorization".to_string(), value.to_string()));
    Delivery::new("jenkins", headers, b"{}".to_vec(), RECEIVED).with_query(query.map(String::from))
}

#[test]
fn tokens_come_from_a_bearer_header_or_the_query() {
    let secrets = vec!["old-token".to_string(), "s3cret".to_string()];
    let auth = |authorization, query| Jenkins.authenticate(&with_auth(authorization, query), &secrets);
    assert_eq!(auth(Some("Bearer s3cret"), None), Ok(()));
    assert_eq!(auth(Some("bearer old-token"), None), Ok(()));
    assert_eq!(auth(None, Some("token=s3cret")), Ok(()));
    assert_eq!(auth(None, Some("job=x&token=s3cret")), Ok(()));
    assert_eq!(auth(None, Some("token=s3cret%21")), Err(AuthError::Mismatch("Authorization (or ?token=)")));
    // A header of another scheme is not a token: the query is used.
    assert_eq!(auth(Some("Basic czNjcmV0"), Some("token=s3cret")), Ok(()));
    assert!(matches!(auth(Some("Bearer wrong"), None), Err(AuthError::Mismatch(_))));
    assert!(matches!(auth(Some("Bearer s3cre"), None), Err(AuthError::Mismatch(_))));
    assert!(matches!(auth(Some("s3cret"), None), Err(AuthError::Missing(_))));
    assert!(matches!(auth(None, Some("token=")), Err(AuthError::Mismatch(_))));
    assert!(matches!(auth(None, None), Err(AuthError::Missing(_))));
    assert!(matches!(auth(None, Some("tok=s3cret")), Err(AuthError::Missing(_))));
    // A wrong bearer token is not rescued by the query.
    assert!(matches!(auth(Some("Bearer wrong"), Some("token=s3cret")), Err(AuthError::Mismatch(_))));
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_is_an_error_naming_the_field() {
    let check = |mut body: Value, pointer: &str, value: Value, expected: &str| {
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let target = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        if value.is_null() && expected.starts_with("missing") {
            target.remove(field);
        } else {
            target.insert(field.to_string(), value.clone());
        }
        let message = err(&serde_json::to_vec(&body).unwrap());
        assert!(message.contains(expected), "{pointer} = {value}: {message}");
    };
    let statistics = payload("build/inprogress");
    let notification = payload("notification/completed");
    check(statistics.clone(), "/number", json!("252"), "`number`");
    check(statistics.clone(), "/number", json!(-1), "`number`");
    check(statistics.clone(), "/number", json!(1.5), "`number`");
    check(statistics.clone(), "/number", Value::Null, "missing field `number`");
    check(statistics.clone(), "/result", Value::Null, "missing field `result`");
    check(statistics.clone(), "/result", json!(7), "`result`");
    check(statistics.clone(), "/startTime", json!("yesterday"), "`startTime`");
    check(statistics.clone(), "/startTime", json!(i64::MAX), "`startTime`: time out of range");
    check(statistics.clone(), "/startTime", json!(-5), "`startTime`: time before 1970");
    check(statistics.clone(), "/parameters", json!("type=deploy"), "`parameters`");
    check(statistics.clone(), "/parameters", json!({"type": {"nested": true}}), "`parameters.type`");
    check(statistics.clone(), "/parameters", json!([{"value": "x"}]), "missing field `name`");
    check(statistics.clone(), "/scmInfo", json!({"branch": 1}), "`scmInfo.branch`");
    let mut nameless = statistics.clone();
    nameless["fullJobName"] = json!("");
    nameless.as_object_mut().unwrap().remove("jobName");
    assert!(err(&serde_json::to_vec(&nameless).unwrap()).contains("`fullJobName`: missing"));
    let mut finished = payload("build/success");
    finished["duration"] = json!(-3);
    assert!(err(&serde_json::to_vec(&finished).unwrap()).contains("`duration`: negative duration"));
    finished["duration"] = json!(i64::MAX);
    assert!(err(&serde_json::to_vec(&finished).unwrap()).contains("`duration`"));
    check(notification.clone(), "/build/number", json!("7"), "`build.number`");
    check(notification.clone(), "/build/phase", Value::Null, "missing field `phase`");
    check(notification.clone(), "/build/timestamp", json!(1e30), "`build.timestamp`");
    check(notification.clone(), "/build/duration", json!(9_000_000_000_000i64), "`build.duration`");
    check(notification.clone(), "/build/scm", json!(["url"]), "`build.scm`");
    check(notification.clone(), "/build", json!("yes"), "`build`");
}

#[test]
fn malformed_bodies_are_errors() {
    assert!(err(b"").contains("EOF"));
    assert!(err(b"  ").contains("EOF"));
    assert!(err(b"[]").contains("must be a JSON object"));
    assert!(err(b"{\"number\": 1,").contains("EOF"));
    assert!(err(b"{\"name\": \"\xff\"}").contains("UTF-8"));
    let deep = format!("{{\"build\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(err(deep.as_bytes()).contains("nested deeper than 128"));
    assert!(err(b"{\"number\": 18446744073709551616}").contains("number"));
}
