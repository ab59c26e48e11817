//! GitLab deliveries through the parser: the original ValueStream's recorded
//! hooks (tests/data/gitlab/original) and GitLab's documented examples
//! (tests/data/gitlab/docs), as reviewed snapshots of what each one gives;
//! then the lifecycle rules (merged and closed merge requests and failed
//! pipelines end), order independence, linking, pushes, token
//! authentication, bad input and "no input panics" (docs/operations.md).

use serde_json::{Value, json};
use std::sync::LazyLock;
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{ParseError, Parsed, Push, Source, SourceOptions, by_name, gitlab::GitLab};
use valuestream_core::span::{Change, Span, SpanEvent, SpanState, fold};
use valuestream_core::time::Timestamp;
use valuestream_core::verify::{AuthError, verify_token};

const TOKEN: &str = "X-Gitlab-Token";

/// The recordings carry no receipt time: they are received at a time before
/// any time they report (only a job hook without any time of its own uses it).
fn received() -> Timestamp {
    t("2019-11-19T00:00:00Z")
}

fn t(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap_or_else(|| panic!("bad test time {text}"))
}

/// One vendored delivery: `original.issue.opened`, `docs.merge_request.merge` …
struct Fixture {
    name: String,
    event: String,
    body: Vec<u8>,
    value: Value,
}

/// The `X-Gitlab-Event` of a documentation example, from its file name.
fn documented_event(stem: &str) -> &'static str {
    match stem.split('.').next().unwrap() {
        "issue" => "Issue Hook",
        "merge_request" => "Merge Request Hook",
        "pipeline" => "Pipeline Hook",
        "job" => "Job Hook",
        "deployment" => "Deployment Hook",
        "push" => "Push Hook",
        other => panic!("no hook for docs/{other}"),
    }
}

static FIXTURES: LazyLock<Vec<Fixture>> = LazyLock::new(|| {
    let mut fixtures = Vec::new();
    let original = format!("{}/tests/data/gitlab/original", env!("CARGO_MANIFEST_DIR"));
    for folder in std::fs::read_dir(&original).unwrap() {
        let folder = folder.unwrap().path();
        for file in std::fs::read_dir(&folder).unwrap() {
            let path = file.unwrap().path();
            let recorded: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let event = recorded["headers"]["X-Gitlab-Event"].as_str().expect("recorded X-Gitlab-Event").to_string();
            let value = recorded["payload"].clone();
            let name = format!(
                "original.{}.{}",
                folder.file_name().unwrap().to_string_lossy(),
                path.file_stem().unwrap().to_string_lossy()
            );
            fixtures.push(Fixture { name, event, body: serde_json::to_vec_pretty(&value).unwrap(), value });
        }
    }
    let docs = format!("{}/tests/data/gitlab/docs", env!("CARGO_MANIFEST_DIR"));
    for file in std::fs::read_dir(&docs).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue; // the folder's LICENSE
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(&path).unwrap();
        let value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        fixtures.push(Fixture { name: format!("docs.{stem}"), event: documented_event(&stem).into(), body, value });
    }
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(fixtures.len(), 22, "14 recordings and 8 documentation examples");
    fixtures
});

fn fixture(name: &str) -> &'static Fixture {
    FIXTURES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no fixture {name}"))
}

fn delivery(event: &str, body: Vec<u8>) -> Delivery {
    Delivery::new(
        "gitlab",
        [
            ("X-Gitlab-Event".to_string(), event.to_string()),
            ("X-Gitlab-Event-UUID".to_string(), "9cf6ba7c-ef0f-4e0b-bc4c-8d2b4b3e6c1d".to_string()),
            ("Content-Type".to_string(), "application/json".to_string()),
        ],
        body,
        received(),
    )
}

fn parse_with(event: &str, body: Vec<u8>, id: &str, options: &SourceOptions) -> Result<Parsed, ParseError> {
    GitLab.parse(&delivery(event, body), id, options)
}

fn parse_value(event: &str, value: &Value, id: &str) -> Result<Parsed, ParseError> {
    parse_with(event, serde_json::to_vec(value).unwrap(), id, &SourceOptions::default())
}

/// The one span event a fixture (edited by `edit`) gives; the delivery id is the fixture's name.
fn event_of(name: &str, edit: impl FnOnce(&mut Value)) -> SpanEvent {
    event_with(name, &SourceOptions::default(), edit)
}

fn event_with(name: &str, options: &SourceOptions, edit: impl FnOnce(&mut Value)) -> SpanEvent {
    let fixture = fixture(name);
    let mut value = fixture.value.clone();
    edit(&mut value);
    match parse_with(&fixture.event, serde_json::to_vec(&value).unwrap(), name, options) {
        Ok(Parsed::Spans(mut events)) if events.len() == 1 => events.remove(0),
        other => panic!("{name}: expected one span event, got {other:?}"),
    }
}

fn event(name: &str) -> SpanEvent {
    event_of(name, |_| {})
}

fn push_of(name: &str, options: &SourceOptions, edit: impl FnOnce(&mut Value)) -> Result<Parsed, ParseError> {
    let fixture = fixture(name);
    let mut value = fixture.value.clone();
    edit(&mut value);
    parse_with(&fixture.event, serde_json::to_vec(&value).unwrap(), name, options)
}

fn end_of(event: &SpanEvent) -> (Timestamp, &str) {
    match &event.change {
        Change::End { end, outcome, .. } => (*end, outcome.as_str()),
        other => panic!("{}: expected an end, got {other:?}", event.key),
    }
}

fn remove(value: &mut Value, key: &str) {
    value.as_object_mut().expect("an object").remove(key);
}

fn folded(events: &[SpanEvent]) -> Span {
    fold(events).expect("events")
}

// ---------------------------------------------------------------- snapshots

#[test]
fn every_fixture_gives_reviewed_snapshots() {
    for fixture in FIXTURES.iter() {
        let parsed = parse_with(&fixture.event, fixture.body.clone(), &fixture.name, &SourceOptions::default());
        match parsed {
            Ok(Parsed::Spans(events)) => {
                assert_eq!(events.len(), 1, "{}", fixture.name);
                insta::assert_json_snapshot!(fixture.name.clone(), events);
            }
            Ok(Parsed::Push(push)) => insta::assert_json_snapshot!(fixture.name.clone(), push),
            other => panic!("{}: {other:?}", fixture.name),
        }
    }
}

// ---------------------------------------------------------------- lifecycles

#[test]
fn issues_are_snapshots_that_close_and_reopen() {
    let opened = event("original.issue.opened");
    assert_eq!(opened.key, "gitlab:dm03514/test-project:issue:8");
    assert_eq!(opened.kind, "issue");
    assert_eq!(opened.change, Change::Start { start: t("2019-11-20T00:07:32Z") });
    let closed = event("original.issue.closed");
    assert_eq!(end_of(&closed), (t("2019-11-20T00:07:38Z"), "completed"));
    let reopened = event("original.issue.reopened_opened");
    assert_eq!(reopened.change, Change::Start { start: t("2019-11-20T00:07:32Z") });
    assert_eq!(reopened.at, t("2019-11-20T00:09:56Z"));
    let closed_again = event("original.issue.reopened_closed");

    let span = folded(&[opened.clone(), closed.clone(), reopened.clone()]);
    assert_eq!(span.state, SpanState::Open, "the reopen is the latest snapshot");
    let span = folded(&[opened, closed, reopened, closed_again]);
    assert_eq!(
        (span.state, span.start, span.end),
        (SpanState::Closed, t("2019-11-20T00:07:32Z"), Some(t("2019-11-20T00:09:59Z")))
    );
    assert_eq!(span.outcome.as_deref(), Some("completed"));
    assert!(span.trace_refs.contains(&"vstrace-gitlab-test-project-8".to_string()));
    assert!(span.trace_refs.contains(&"vstrace-gitlab-issue-test-project-8".to_string()));
}

#[test]
fn merged_merge_requests_end_merged_at_the_merge() {
    let merged = event("docs.merge_request.merge");
    assert_eq!(merged.key, "gitlab:gitlabhq/gitlab-test:pull_request:1");
    assert_eq!(merged.kind, "pull_request");
    // GitLab sends no `merged_at`: the merge hook's `updated_at` is the merge.
    assert_eq!(end_of(&merged), (t("2013-12-03T17:23:34Z"), "merged"));
    assert_eq!(merged.attributes["vcs.change.state"], "merged");
    assert_eq!(merged.attributes["valuestream.merged_at"], "2013-12-03T17:23:34Z");

    let opened = event("docs.merge_request");
    assert_eq!(opened.change, Change::Start { start: t("2013-12-03T17:23:34Z") });
    let span = folded(&[merged.clone(), opened]);
    assert_eq!((span.state, span.outcome.as_deref()), (SpanState::Closed, Some("merged")));

    // A payload that has `merged_at` is believed; the merge commit is an alias.
    let with_time = event_of("docs.merge_request.merge", |v| {
        v["object_attributes"]["updated_at"] = json!("2013-12-04 10:00:00 UTC");
        v["object_attributes"]["merged_at"] = json!("2013-12-04 09:59:58 UTC");
        v["object_attributes"]["merge_commit_sha"] = json!("0123456789abcdef0123456789abcdef01234567");
    });
    assert_eq!(end_of(&with_time), (t("2013-12-04T09:59:58Z"), "merged"));
    assert_eq!(with_time.at, t("2013-12-04T10:00:00Z"));
    assert!(
        with_time
            .trace_refs
            .contains(&"gitlab:gitlabhq/gitlab-test:sha:0123456789abcdef0123456789abcdef01234567".to_string())
    );
    assert!(
        with_time
            .trace_refs
            .contains(&"gitlab:gitlabhq/gitlab-test:sha:da1560886d4f094c3e6c9ef40349f7d38b5d27d7".to_string())
    );
    // An open merge request's merge_commit_sha (none yet, or stale) is no alias.
    let open = event_of("docs.merge_request", |v| v["object_attributes"]["merge_commit_sha"] = json!("ffff000"));
    assert!(!open.trace_refs.iter().any(|r| r.ends_with(":sha:ffff000")));
}

#[test]
fn closed_merge_requests_end_closed_and_reopen() {
    let names = [
        "original.pull_request.opened",
        "original.pull_request.closed",
        "original.pull_request.reopened_opened",
        "original.pull_request.reopened_closed",
    ];
    let events: Vec<SpanEvent> = names.iter().map(|name| event(name)).collect();
    assert_eq!(events[0].key, "gitlab:dm03514/test-project:pull_request:3");
    assert_eq!(end_of(&events[1]), (t("2019-11-20T00:13:44Z"), "closed"));
    assert!(matches!(events[2].change, Change::Start { .. }));
    assert_eq!(end_of(&events[3]), (t("2019-11-20T00:13:52Z"), "closed"));
    assert_eq!(folded(&events[..3]).state, SpanState::Open);
    let span = folded(&events);
    assert_eq!(
        (span.state, span.end, span.outcome.as_deref()),
        (SpanState::Closed, Some(t("2019-11-20T00:13:52Z")), Some("closed"))
    );
    assert_eq!(span.start, t("2019-11-20T00:13:38Z"));
}

#[test]
fn an_edit_after_the_merge_keeps_the_merge_time() {
    let merged = event("docs.merge_request.merge");
    let labelled = event_of("docs.merge_request.merge", |v| {
        v["object_attributes"]["action"] = json!("update");
        v["object_attributes"]["updated_at"] = json!("2013-12-10T08:00:00Z");
        v["object_attributes"]["labels"] = json!([{"title": "released"}]);
    });
    assert_eq!(labelled.change, Change::Update { start: Some(t("2013-12-03T17:23:34Z")) });
    let span = folded(&[labelled, merged]);
    assert_eq!((span.state, span.end), (SpanState::Closed, Some(t("2013-12-03T17:23:34Z"))));
    assert_eq!(span.outcome.as_deref(), Some("merged"));
    assert_eq!(span.attributes["valuestream.labels"], json!(["released"]));
}

#[test]
fn failed_pipelines_end_with_failure() {
    let failed = event("docs.pipeline.failed");
    assert_eq!(failed.key, "gitlab:gitlab-org/gitlab-test:build:31");
    assert_eq!(failed.kind, "build");
    assert_eq!(
        failed.change,
        Change::End {
            start: Some(t("2016-08-12T15:23:28Z")),
            end: t("2016-08-12T15:26:29Z"),
            outcome: "failure".into()
        }
    );
    assert_eq!(failed.attributes["cicd.pipeline.result"], "failure");
    assert_eq!(failed.attributes["cicd.pipeline.name"], "Pipeline for branch: master");
    assert_eq!(failed.attributes["cicd.pipeline.run.id"], "31");
    assert_eq!(failed.attributes["vcs.ref.head.revision"], "bcbb5ec396a2c0f828686f14fac9b80b780504f2");
    assert_eq!(
        failed.attributes["cicd.pipeline.run.url.full"],
        "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"
    );
}

#[test]
fn pipelines_and_jobs_end_on_every_final_status() {
    for (status, outcome, result) in [
        ("success", Some("success"), "success"),
        ("failed", Some("failure"), "failure"),
        ("canceled", Some("cancelled"), "cancellation"),
        ("skipped", Some("skipped"), "skip"),
        ("created", None, ""),
        ("pending", None, ""),
        ("running", None, ""),
        ("manual", None, ""),
    ] {
        let pipeline = event_of("docs.pipeline", |v| v["object_attributes"]["status"] = json!(status));
        let job = event_of("docs.job", |v| {
            v["build_status"] = json!(status);
            v["build_started_at"] = json!("2021-02-23 02:59:53 UTC");
            v["build_finished_at"] = json!("2021-02-23 03:01:00 UTC");
        });
        match outcome {
            Some(outcome) => {
                assert_eq!(end_of(&pipeline), (t("2016-08-12T15:26:29Z"), outcome), "{status}");
                assert_eq!(pipeline.attributes["cicd.pipeline.result"], result, "{status}");
                assert_eq!(end_of(&job), (t("2021-02-23T03:01:00Z"), outcome), "{status}");
                assert_eq!(job.attributes["cicd.pipeline.task.run.result"], result, "{status}");
            }
            None => {
                assert_eq!(pipeline.change, Change::Start { start: t("2016-08-12T15:23:28Z") }, "{status}");
                assert!(!pipeline.attributes.contains_key("cicd.pipeline.result"));
                assert_eq!(job.change, Change::Start { start: t("2021-02-23T02:41:37.886Z") }, "{status}");
            }
        }
    }
    let failed_job = event_of("docs.job", |v| {
        v["build_status"] = json!("failed");
        v["build_finished_at"] = json!("2021-02-23 03:01:00 UTC");
    });
    assert_eq!(failed_job.attributes["error.type"], "script_failure");
}

#[test]
fn recorded_pipeline_and_job_runs_end_once_they_finish() {
    let pipeline: Vec<SpanEvent> =
        ["pending", "running", "success"].iter().map(|s| event(&format!("original.pipeline.{s}"))).collect();
    assert!(pipeline[..2].iter().all(|e| matches!(e.change, Change::Start { .. })));
    assert!(pipeline[0].at < pipeline[1].at, "a running snapshot is later than a pending one");
    let span = folded(&pipeline);
    assert_eq!((span.state, span.outcome.as_deref()), (SpanState::Closed, Some("success")));
    assert_eq!((span.start, span.end), (t("2019-11-19T12:40:07Z"), Some(t("2019-11-19T12:42:04Z"))));

    let job: Vec<SpanEvent> =
        ["created", "running", "success"].iter().map(|s| event(&format!("original.build.{s}"))).collect();
    // No time in the payload: it names the span but cannot open or end it,
    // whenever it is received (a replay without receipt times uses "now").
    assert_eq!(job[0].change, Change::Update { start: None });
    assert_eq!(job[0].at, received());
    assert!(!job[0].attributes.contains_key("valuestream.gitlab.status"));
    assert_eq!(folded(&job[..1]).state, SpanState::Open);
    let span = folded(&job);
    assert_eq!((span.state, span.outcome.as_deref()), (SpanState::Closed, Some("success")));
    assert_eq!((span.start, span.end), (t("2019-11-20T01:33:22Z"), Some(t("2019-11-20T01:34:17Z"))));
    let mut late = job.clone();
    late[0].at = t("2030-01-01T00:00:00Z");
    assert_eq!(folded(&late), span, "received long after the job finished");
}

#[test]
fn deployments_start_and_end_with_their_status() {
    let success = event("docs.deployment");
    assert_eq!(success.key, "gitlab:root/test-deployment-webhooks:deploy:15");
    assert_eq!((success.kind.as_str(), success.name.as_str()), ("deploy", "staging"));
    assert_eq!(end_of(&success), (t("2021-04-28T19:50:00Z"), "success"));
    assert_eq!(success.attributes["deployment.environment.name"], "staging");
    // GitLab sends the full sha only inside `commit_url`.
    let sha = "279484c09fbe69ededfced8c1bb6e6d24616b468";
    assert_eq!(success.attributes["vcs.ref.head.revision"], sha);
    let alias = format!("gitlab:root/test-deployment-webhooks:sha:{sha}");
    assert_eq!(success.parent_refs, vec![alias.clone()]);
    assert_eq!(success.link_refs, vec![alias]);
    assert!(success.trace_refs.contains(&format!("gitlab:root/test-deployment-webhooks:deployed:{sha}")));

    let running = event_of("docs.deployment", |v| {
        v["status"] = json!("running");
        v["status_changed_at"] = json!("2021-04-28 21:45:00 +0200");
        v["ref"] = json!("vstrace-gitlab-test-deployment-webhooks-3");
    });
    assert_eq!(running.change, Change::Start { start: t("2021-04-28T19:45:00Z") });
    assert_eq!(running.parent_refs[0], "vstrace-gitlab-test-deployment-webhooks-3");
    let span = folded(&[success, running]);
    assert_eq!(
        (span.state, span.start, span.end),
        (SpanState::Closed, t("2021-04-28T19:45:00Z"), Some(t("2021-04-28T19:50:00Z")))
    );
    for (status, outcome) in [("failed", "failure"), ("canceled", "cancelled")] {
        let event = event_of("docs.deployment", |v| v["status"] = json!(status));
        assert_eq!(end_of(&event).1, outcome);
    }
    // Only a short sha: still a sha, but no commit URL to read the full one from.
    let short = event_of("docs.deployment", |v| v["commit_url"] = Value::Null);
    assert_eq!(short.attributes["vcs.ref.head.revision"], "279484c0");
}

// ---------------------------------------------------------------- order

/// Every ordering of `items`.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut order in permutations(&rest) {
            order.insert(0, first.clone());
            out.push(order);
        }
    }
    out
}

#[test]
fn any_arrival_order_folds_to_the_same_span() {
    let sequences: &[&[&str]] = &[
        &[
            "original.issue.opened",
            "original.issue.closed",
            "original.issue.reopened_opened",
            "original.issue.reopened_closed",
        ],
        &[
            "original.pull_request.opened",
            "original.pull_request.closed",
            "original.pull_request.reopened_opened",
            "original.pull_request.reopened_closed",
        ],
        &["original.pipeline.pending", "original.pipeline.running", "original.pipeline.success"],
        &["original.build.created", "original.build.running", "original.build.success"],
        &["docs.merge_request", "docs.merge_request.merge"],
        &["docs.pipeline", "docs.pipeline.failed"],
    ];
    for sequence in sequences {
        let events: Vec<SpanEvent> = sequence.iter().map(|name| event(name)).collect();
        let in_order = folded(&events);
        let orders = permutations(&events);
        assert_eq!(orders.len(), (1..=events.len()).product::<usize>());
        for order in orders {
            assert_eq!(folded(&order), in_order, "{sequence:?}");
        }
        // A redelivery changes nothing either.
        let mut twice = events.clone();
        twice.extend(events.iter().rev().cloned());
        assert_eq!(folded(&twice), in_order, "{sequence:?} delivered twice");
    }
}

// ---------------------------------------------------------------- incidents

#[test]
fn incidents_by_issue_type_or_label() {
    assert_eq!(event("docs.issue").kind, "issue");
    assert_eq!(event_of("docs.issue", |v| v["object_attributes"]["type"] = json!("Incident")).kind, "incident");
    let typed = event_of("original.issue.opened", |v| v["object_attributes"]["issue_type"] = json!("incident"));
    assert_eq!(typed.kind, "incident");
    assert_eq!(typed.key, "gitlab:dm03514/test-project:issue:8", "incidents and issues share the key space");
    let labelled = event_of("docs.issue", |v| v["object_attributes"]["labels"] = json!([{"title": "Incident"}]));
    assert_eq!(labelled.kind, "incident", "the default incident label, compared case-insensitively");
    let options = SourceOptions { incident_labels: vec!["api".into()], ..SourceOptions::default() };
    assert_eq!(event_with("docs.issue", &options, |_| {}).kind, "incident", "the example carries the label `API`");
    // Other work items come through the same hook and are not tracked.
    let mut task = fixture("docs.issue").value.clone();
    task["object_kind"] = json!("work_item");
    task["object_attributes"]["type"] = json!("Task");
    assert!(matches!(parse_value("Issue Hook", &task, "d"), Ok(Parsed::Ignored { .. })));
    task["object_attributes"]["type"] = json!("Incident");
    assert!(matches!(parse_value("Issue Hook", &task, "d"), Ok(Parsed::Spans(e)) if e[0].kind == "incident"));
}

// ---------------------------------------------------------------- linking

#[test]
fn merge_requests_link_to_issues_by_references_and_closing_keywords() {
    let mr = event_of("docs.merge_request", |v| {
        let attrs = &mut v["object_attributes"];
        attrs["source_branch"] = json!("feature/vstrace-gitlab-gitlab-test-12/login");
        attrs["title"] = json!("PAY-7: login");
        attrs["description"] = json!(
            "Closes #23, fixes other/proj#3 and resolves https://gitlab.example.com/g/sub/p/-/issues/4.\nSee vstrace-jira-OPS-2"
        );
    });
    assert_eq!(
        mr.parent_refs,
        [
            "vstrace-gitlab-gitlab-test-12",
            "vstrace-jira-ops-2",
            "gitlab:gitlabhq/gitlab-test:issue:23",
            "gitlab:other/proj:issue:3",
            "gitlab:g/sub/p:issue:4",
            "pay-7",
        ]
    );
    // `Closes #23` names the documented issue's key; a branch reference names its trace reference.
    let issue = event("docs.issue");
    assert_eq!(issue.key.to_ascii_lowercase(), mr.parent_refs[2]);
    let referenced = event_of("docs.issue", |v| v["object_attributes"]["iid"] = json!(12));
    assert!(referenced.trace_refs.contains(&mr.parent_refs[0]));
    // What pipelines and deploys find it by.
    assert!(mr.trace_refs.contains(&"vstrace-gitlab-pull_request-gitlab-test-1".to_string()));
    assert!(
        mr.trace_refs
            .contains(&"gitlab:gitlabhq/gitlab-test:branch:feature/vstrace-gitlab-gitlab-test-12/login".to_string())
    );
}

#[test]
fn pipelines_are_children_of_their_merge_request() {
    let pipeline = event("docs.pipeline");
    assert_eq!(
        pipeline.parent_refs,
        ["gitlab:gitlab-org/gitlab-test:pull_request:1", "gitlab:gitlab-org/gitlab-test:branch:master"]
    );
    // The recorded pipeline names merge request 1 of the recorded project.
    let recorded = event("original.pipeline.success");
    assert_eq!(recorded.parent_refs[0], "gitlab:dm03514/test-project:pull_request:1");
    // Without `merge_request`, the branch: the recorded merge request 3 answers to it.
    let by_branch = event_of("original.pipeline.success", |v| v["merge_request"] = Value::Null);
    let mr = event("original.pull_request.opened");
    assert_eq!(by_branch.parent_refs[0], "gitlab:dm03514/test-project:branch:feature/test");
    assert!(mr.trace_refs.contains(&by_branch.parent_refs[0]));
    // A merge request pipeline's ref names its merge request.
    let mr_ref = event_of("docs.pipeline", |v| {
        v["merge_request"] = Value::Null;
        v["object_attributes"]["ref"] = json!("refs/merge-requests/15/head");
    });
    assert_eq!(mr_ref.parent_refs[0], "gitlab:gitlab-org/gitlab-test:pull_request:15");
    // A trace reference in the branch comes after the merge request and branch.
    let traced =
        event_of("docs.pipeline", |v| v["object_attributes"]["ref"] = json!("vstrace-gitlab-gitlab-test-9-fix"));
    assert_eq!(traced.parent_refs[2], "vstrace-gitlab-gitlab-test-9");
    // A merge request of another project (a fork's pipeline) is named by its URL.
    let fork = event_of("docs.pipeline", |v| {
        v["merge_request"]["target_project_id"] = json!(99);
        v["merge_request"]["url"] = json!("https://gitlab.example.com/upstream/app/-/merge_requests/1");
    });
    assert_eq!(fork.parent_refs[0], "gitlab:upstream/app:pull_request:1");
}

#[test]
fn jobs_are_children_of_their_pipeline() {
    let job = event("docs.job");
    assert_eq!(job.key, "gitlab:gitlab-org/gitlab-test:job:1977");
    assert_eq!(job.parent_refs, ["gitlab:gitlab-org/gitlab-test:build:2366"]);
    assert_eq!(job.attributes["cicd.pipeline.task.name"], "test");
    assert_eq!(job.attributes["cicd.pipeline.task.run.id"], "1977");
    assert_eq!(job.attributes["valuestream.queued_seconds"], 1095.588715);
    // Without `build_queued_duration`: started − created.
    let started = event_of("docs.job", |v| {
        remove(v, "build_queued_duration");
        v["build_started_at"] = json!("2021-02-23 02:42:07.886 UTC");
    });
    assert_eq!(started.attributes["valuestream.queued_seconds"], 30.0);
    // The recorded job has no `project` nor `pipeline_id`: the repository's
    // homepage names the project and `commit.id` is the pipeline.
    let recorded = event("original.build.success");
    assert_eq!(recorded.key, "gitlab:dm03514/test-project:job:355621877");
    assert_eq!(recorded.parent_refs, ["gitlab:dm03514/test-project:build:97138643"]);
    assert_eq!(
        recorded.change,
        Change::End {
            start: Some(t("2019-11-20T01:33:22Z")),
            end: t("2019-11-20T01:34:17Z"),
            outcome: "success".into()
        }
    );
}

// ---------------------------------------------------------------- pushes

#[test]
fn default_branch_pushes_record_their_commits_in_order() {
    let Ok(Parsed::Push(push)) = push_of("docs.push", &SourceOptions::default(), |_| {}) else { panic!() };
    assert_eq!(
        push,
        Push {
            repo: "mike/diaspora".into(),
            branch: "master".into(),
            default_branch: true,
            before: "95790bf891e76fee5e1747ab589903a6a1f80f22".into(),
            after: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into(),
            forced: false,
            pushed_at: t("2012-01-03T21:36:29Z"),
            commits: vec![
                valuestream_core::sources::Commit {
                    sha: "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327".into(),
                    timestamp: t("2011-12-12T12:27:31Z"),
                    message: "Update Catalan translation to e38cb41.".into(),
                    pull_request: None,
                },
                valuestream_core::sources::Commit {
                    sha: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into(),
                    timestamp: t("2012-01-03T21:36:29Z"),
                    message: "fixed readme".into(),
                    pull_request: None,
                },
            ],
        }
    );
    let Ok(Parsed::Push(merged)) = push_of("docs.push", &SourceOptions::default(), |v| {
        v["commits"][1]["message"] =
            json!("Merge branch 'fix' into 'master'\n\nFix readme\n\nSee merge request mike/diaspora!12");
    }) else {
        panic!()
    };
    assert_eq!(merged.commits[1].pull_request, Some(12));
    assert_eq!(merged.commits[1].message, "Merge branch 'fix' into 'master'");
}

#[test]
fn pushes_to_other_branches_are_recorded_as_such_and_tags_and_deletions_ignored() {
    let ignored = |parsed: Result<Parsed, ParseError>| match parsed {
        Ok(Parsed::Ignored { reason }) => reason,
        other => panic!("expected ignored, got {other:?}"),
    };
    let options = SourceOptions::default();
    let Ok(Parsed::Push(feature)) = push_of("docs.push", &options, |v| v["ref"] = json!("refs/heads/feature/x")) else {
        panic!("a push to a feature branch is recorded (coding time)")
    };
    assert_eq!((feature.branch.as_str(), feature.default_branch), ("feature/x", false));
    let reason = ignored(push_of("docs.push", &options, |v| v["ref"] = json!("refs/tags/v1")));
    assert!(reason.contains("not to a branch"), "{reason}");
    let reason = ignored(push_of("docs.push", &options, |v| {
        v["after"] = json!("0000000000000000000000000000000000000000");
        v["commits"] = json!([]);
    }));
    assert!(reason.contains("deleted"), "{reason}");
    // Without the project's default branch, the configured one decides.
    let no_default = |v: &mut Value| v["project"]["default_branch"] = Value::Null;
    let Ok(Parsed::Push(push)) = push_of("docs.push", &options, no_default) else { panic!() };
    assert!(!push.default_branch, "main is the default");
    let options = SourceOptions { default_branch: "master".into(), ..SourceOptions::default() };
    let Ok(Parsed::Push(push)) = push_of("docs.push", &options, no_default) else { panic!() };
    assert!(push.default_branch);
}

// ---------------------------------------------------------------- headers and auth

fn with_headers(headers: &[(&str, &str)]) -> Delivery {
    Delivery::new(
        "gitlab",
        headers.iter().map(|(name, value)| (name.to_string(), value.to_string())),
        fixture("docs.issue").body.clone(),
        received(),
    )
}

#[test]
fn the_token_is_compared_whole_against_every_configured_token() {
    let secrets = vec!["old-token".to_string(), "s3cret-token".to_string()];
    let auth = |token: Option<&str>| {
        let delivery = match token {
            Some(token) => with_headers(&[(TOKEN, token), ("X-Gitlab-Event", "Issue Hook")]),
            None => with_headers(&[("X-Gitlab-Event", "Issue Hook")]),
        };
        let result = GitLab.authenticate(&delivery, &secrets);
        // The comparison is verify_token's (constant time, docs/operations.md).
        assert_eq!(result, verify_token(&secrets, TOKEN, token));
        result
    };
    assert_eq!(auth(Some("s3cret-token")), Ok(()));
    assert_eq!(auth(Some("old-token")), Ok(()), "rotation: every configured token is accepted");
    assert_eq!(auth(Some("wrong-token")), Err(AuthError::Mismatch(TOKEN)));
    assert_eq!(auth(Some("s3cret-toke")), Err(AuthError::Mismatch(TOKEN)), "a prefix is not the token");
    assert_eq!(auth(Some("s3cret-token ")), Err(AuthError::Mismatch(TOKEN)));
    assert_eq!(auth(Some("")), Err(AuthError::Mismatch(TOKEN)));
    assert_eq!(auth(None), Err(AuthError::Missing(TOKEN)));
    let lower = with_headers(&[("x-gitlab-token", "s3cret-token")]);
    assert_eq!(GitLab.authenticate(&lower, &secrets), Ok(()), "header names are case-insensitive");
    assert_eq!(GitLab.authenticate(&lower, &[]), Err(AuthError::Mismatch(TOKEN)), "no token configured");
}

#[test]
fn source_name_secret_delivery_id_and_event_types() {
    assert_eq!((GitLab.name(), GitLab.secret_variable()), ("gitlab", "VS_GITLAB_TOKEN"));
    assert!(by_name("gitlab").is_some(), "listed in SOURCES");
    let uuid = with_headers(&[("X-Gitlab-Event-UUID", " 9cf6ba7c-ef0f-4e0b-bc4c-8d2b4b3e6c1d ")]);
    assert_eq!(GitLab.delivery_id(&uuid).as_deref(), Some("9cf6ba7c-ef0f-4e0b-bc4c-8d2b4b3e6c1d"));
    assert_eq!(GitLab.delivery_id(&with_headers(&[("X-Gitlab-Event-UUID", " ")])), None);
    assert_eq!(GitLab.delivery_id(&with_headers(&[])), None);
    for (header, label) in [
        ("Issue Hook", "issue"),
        ("Confidential Issue Hook", "issue"),
        ("Merge Request Hook", "merge_request"),
        ("Pipeline Hook", "pipeline"),
        ("Job Hook", "job"),
        ("Deployment Hook", "deployment"),
        ("Push Hook", "push"),
        ("System Hook", "other"),
        ("Note Hook", "other"),
        ("Tag Push Hook", "other"),
        ("something else entirely", "other"),
    ] {
        assert_eq!(GitLab.event_type(&with_headers(&[("X-Gitlab-Event", header)])), label, "{header}");
    }
    assert_eq!(GitLab.event_type(&with_headers(&[])), "missing");
}

#[test]
fn untracked_hooks_are_ignored_with_a_reason() {
    for header in
        ["System Hook", "Note Hook", "Tag Push Hook", "Wiki Page Hook", "Release Hook", "x".repeat(500).as_str()]
    {
        match GitLab.parse(&with_headers(&[("X-Gitlab-Event", header)]), "d", &SourceOptions::default()) {
            Ok(Parsed::Ignored { reason }) => assert!(reason.contains("not tracked") && reason.len() < 120, "{reason}"),
            other => panic!("{header}: {other:?}"),
        }
    }
    assert_eq!(
        GitLab.parse(&with_headers(&[]), "d", &SourceOptions::default()),
        Err(ParseError::MissingHeader("X-Gitlab-Event"))
    );
}

// ---------------------------------------------------------------- bad input

fn error(event: &str, body: &[u8]) -> ParseError {
    match parse_with(event, body.to_vec(), "d", &SourceOptions::default()) {
        Err(error) => error,
        Ok(parsed) => panic!("{event}: expected an error, got {parsed:?}"),
    }
}

/// An edit of a fixture's JSON value.
type Edit = Box<dyn FnOnce(&mut Value)>;

fn field_error(name: &str, edit: impl FnOnce(&mut Value)) -> (String, String) {
    let fixture = fixture(name);
    let mut value = fixture.value.clone();
    edit(&mut value);
    match error(&fixture.event, &serde_json::to_vec(&value).unwrap()) {
        ParseError::Field { path, message } => (path, message),
        other => panic!("{name}: expected a field error, got {other:?}"),
    }
}

#[test]
fn bad_input_is_an_error_naming_the_problem() {
    assert!(matches!(error("Issue Hook", b"{not json"), ParseError::Json(_)));
    assert!(matches!(error("Merge Request Hook", b""), ParseError::Json(_)));
    assert!(matches!(error("Pipeline Hook", b"[]"), ParseError::Body(m) if m.contains("JSON object")));
    assert!(matches!(error("Job Hook", b"{\"a\": \"\xff\"}"), ParseError::Body(m) if m.contains("UTF-8")));
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
    assert!(matches!(error("Push Hook", deep.as_bytes()), ParseError::Body(m) if m.contains("nested deeper")));

    // (fixture, edit, path of the error, part of its message)
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "docs.issue",
            Box::new(|v: &mut Value| remove(v, "object_attributes")),
            ".",
            "missing field `object_attributes`",
        ),
        (
            "docs.issue",
            Box::new(|v: &mut Value| v["object_attributes"]["iid"] = json!("23")),
            "object_attributes.iid",
            "invalid type",
        ),
        (
            "docs.issue",
            Box::new(|v: &mut Value| v["object_attributes"]["created_at"] = json!("soon")),
            "object_attributes.created_at",
            "not a time",
        ),
        (
            "docs.issue",
            Box::new(|v: &mut Value| v["project"]["path_with_namespace"] = json!(" / ")),
            "project.path_with_namespace",
            "empty",
        ),
        (
            "docs.merge_request",
            Box::new(|v: &mut Value| v["object_attributes"]["updated_at"] = json!(17)),
            "object_attributes.updated_at",
            "invalid type",
        ),
        (
            "docs.merge_request",
            Box::new(|v: &mut Value| remove(&mut v["object_attributes"], "source_branch")),
            "object_attributes",
            "missing field `source_branch`",
        ),
        (
            "docs.pipeline",
            Box::new(|v: &mut Value| v["object_attributes"]["status"] = json!(1)),
            "object_attributes.status",
            "invalid type",
        ),
        (
            "docs.pipeline",
            Box::new(|v: &mut Value| v["builds"][2]["finished_at"] = json!("2016-08-32 15:26:29 UTC")),
            "builds[2].finished_at",
            "not a time",
        ),
        ("docs.job", Box::new(|v: &mut Value| v["build_id"] = json!(-1)), "build_id", "invalid value"),
        ("docs.deployment", Box::new(|v: &mut Value| remove(v, "environment")), ".", "missing field `environment`"),
        (
            "docs.push",
            Box::new(|v: &mut Value| v["commits"][1]["timestamp"] = json!("yesterday")),
            "commits[1].timestamp",
            "not a time",
        ),
    ];
    for (name, edit, path, message) in cases {
        let (got_path, got_message) = field_error(name, edit);
        assert_eq!(got_path, path, "{name}: {got_message}");
        assert!(got_message.contains(message), "{name}: {got_message}");
    }
    // A job hook needs its project (or the repository's homepage) and its pipeline.
    let (path, message) = field_error("original.build.success", |v| remove(v, "repository"));
    assert_eq!(path, "project", "{message}");
    let (path, _) = field_error("docs.job", |v| {
        remove(v, "pipeline_id");
        remove(v, "commit");
    });
    assert_eq!(path, "pipeline_id");
    // A huge number is refused, not wrapped.
    let fixture = fixture("docs.pipeline");
    let text =
        String::from_utf8(fixture.body.clone()).unwrap().replacen("\"id\": 31", "\"id\": 18446744073709551616", 1);
    let message = error("Pipeline Hook", text.as_bytes()).to_string();
    assert!(message.contains("object_attributes.id") || message.contains("out of range"), "{message}");
}
