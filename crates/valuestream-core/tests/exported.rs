//! Every vendored delivery of every source (tests/data), as a trace backend
//! would receive the spans it makes on its own: name, span kind, status and
//! every exported attribute, pinned as one reviewed snapshot per fixture.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use valuestream_core::delivery::Delivery;
use valuestream_core::export::{self, View};
use valuestream_core::sources::{self, Parsed, SourceOptions};
use valuestream_core::span::{Span, SpanEvent, SpanState, fold};
use valuestream_core::time::Timestamp;

/// A receipt time before any time the recordings report.
fn received() -> Timestamp {
    Timestamp::parse_rfc3339("2019-01-01T00:00:00Z").unwrap()
}

/// One vendored delivery.
struct Fixture {
    /// `github.workflow_run.completed.success.org`, `gitlab.original.build.success` …
    name: String,
    source: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The `X-Gitlab-Event` of a GitLab documentation example, from its file name.
fn gitlab_documented_event(stem: &str) -> &'static str {
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

fn json_files(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "json") && !path.ends_with("headers.json") {
            // headers.json lists header sets for tests/robustness.rs, not a payload.
            found.push(path);
        }
    }
}

/// Every fixture: recorded `{"headers", "payload"}` files, `{"payload"}`
/// wrappers and plain bodies; GitHub's event comes from the file name.
fn fixtures() -> Vec<Fixture> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut fixtures = Vec::new();
    for source in sources::SOURCES {
        let source = source.name();
        let mut files = Vec::new();
        json_files(&data.join(source), &mut files);
        for path in files {
            let relative = path.strip_prefix(data.join(source)).unwrap().with_extension("");
            let stem = relative.to_string_lossy().replace('/', ".");
            let Ok(value) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else {
                continue; // a recording kept as a bad-input case (its README says which)
            };
            let mut headers: Vec<(String, String)> = value["headers"]
                .as_object()
                .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            let body = if value.get("payload").is_some() { value["payload"].clone() } else { value };
            match source {
                "github" => {
                    headers.push(("X-GitHub-Event".into(), stem.split('.').next().unwrap().into()));
                    headers.push(("X-GitHub-Delivery".into(), "d-1".into()));
                }
                "gitlab" if stem.starts_with("docs.") => {
                    headers.push(("X-Gitlab-Event".into(), gitlab_documented_event(&stem["docs.".len()..]).into()));
                }
                _ => {}
            }
            let body = serde_json::to_vec(&body).unwrap();
            fixtures.push(Fixture { name: format!("{source}.{stem}"), source, headers, body });
        }
    }
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    fixtures
}

fn events(fixture: &Fixture) -> Vec<SpanEvent> {
    let source = sources::by_name(fixture.source).unwrap();
    let delivery = Delivery::new(fixture.source, fixture.headers.clone(), fixture.body.clone(), received());
    let parsed = source
        .parse(&delivery, &fixture.name, &SourceOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
    match parsed {
        Parsed::Spans(events) => events,
        _ => Vec::new(),
    }
}

/// The spans a fixture makes. A message that alone makes no span (a Jenkins
/// completion that cannot tell build from deploy, sent to both tentatively)
/// is taken with the running message recorded beside it.
fn spans(fixture: &Fixture, all: &[Fixture]) -> Vec<Span> {
    let mut events = events(fixture);
    if !events.is_empty() && events.iter().all(|e| e.tentative) {
        let folder = fixture.name.rsplit_once('.').unwrap().0;
        let running = all
            .iter()
            .find(|f| [".inprogress", ".started"].iter().any(|stem| f.name == format!("{folder}{stem}")))
            .unwrap_or_else(|| panic!("{}: no running message beside it", fixture.name));
        events.extend(self::events(running));
    }
    let mut by_key: BTreeMap<String, Vec<SpanEvent>> = BTreeMap::new();
    for event in events {
        by_key.entry(event.key.clone()).or_default().push(event);
    }
    by_key.values().filter(|events| events.iter().any(|e| !e.tentative)).filter_map(|events| fold(events)).collect()
}

#[test]
fn every_fixture_is_exported_as_its_snapshot_says() {
    let fixtures = fixtures();
    assert!(fixtures.len() > 100, "all vendored deliveries: {}", fixtures.len());
    for fixture in &fixtures {
        let spans = spans(fixture, &fixtures);
        if spans.is_empty() {
            continue; // pings, pushes, ignored events
        }
        let exported: Vec<Value> = spans
            .iter()
            .map(|span| {
                let View { name, kind, error, attributes } = export::view(span);
                json!({"state": span.state, "name": name, "kind": kind, "error": error, "attributes": attributes})
            })
            .collect();
        insta::assert_json_snapshot!(fixture.name.as_str(), exported);
    }
}

// ---------------------------------------------------------------- conformance

/// What the OpenTelemetry CI/CD and VCS conventions (as docs/sources.md, reads them) require of an exported span, by the span it is.
struct Rule {
    /// Which spans the rule is about.
    about: &'static str,
    applies: fn(&View) -> bool,
    /// Attributes that must be there (with a non-empty value).
    required: &'static [&'static str],
}

fn is_pipeline_run(view: &View) -> bool {
    view.kind == export::SpanKind::Server
}

fn is_task_run(view: &View) -> bool {
    view.attributes["valuestream.kind"] == "job"
}

fn is_change(view: &View) -> bool {
    view.attributes["valuestream.kind"] == "pull_request"
}

/// A deploy a CI or VCS source reports (a custom event names its environment only if it wants to).
fn is_deploy(view: &View) -> bool {
    view.attributes["valuestream.kind"] == "deploy"
        && !view.attributes["valuestream.span.key"].as_str().unwrap_or("").starts_with("customhttp:")
}

fn is_done_deploy(view: &View) -> bool {
    view.attributes["valuestream.kind"] == "deploy"
        && ["success", "failure"].contains(&view.attributes["valuestream.outcome"].as_str().unwrap_or(""))
}

fn is_from_a_repository(view: &View) -> bool {
    view.attributes.contains_key("vcs.repository.url.full")
}

fn names_a_head_ref_kind(view: &View) -> bool {
    // Pull requests' refs are branches; a GitLab pipeline or job says `tag`.
    is_change(view)
        || view.attributes.get("valuestream.span.key").and_then(Value::as_str).is_some_and(|key| {
            key.starts_with("gitlab:")
                && ["build", "job"].contains(&view.attributes["valuestream.kind"].as_str().unwrap())
        })
}

/// Every attribute of the conventions ValueStream exports, with the values
/// the conventions allow where they enumerate them (`None`: any value). An
/// attribute outside `valuestream.*` that is not here breaks the test: check
/// the conventions, then add it.
const CONVENTIONS: &[(&str, Option<&[&str]>)] = &[
    ("cicd.pipeline.action.name", Some(&["BUILD", "RUN", "SYNC"])),
    ("cicd.pipeline.name", None),
    ("cicd.pipeline.result", Some(&["success", "failure", "error", "timeout", "cancellation", "skip"])),
    ("cicd.pipeline.run.id", None),
    ("cicd.pipeline.run.url.full", None),
    ("cicd.pipeline.task.name", None),
    ("cicd.pipeline.task.run.id", None),
    ("cicd.pipeline.task.run.result", Some(&["success", "failure", "error", "timeout", "cancellation", "skip"])),
    ("cicd.pipeline.task.run.url.full", None),
    ("cicd.worker.id", None),
    ("cicd.worker.name", None),
    ("deployment.environment.name", None),
    ("deployment.id", None),
    ("deployment.name", None),
    ("deployment.status", Some(&["failed", "succeeded"])),
    ("error.type", None),
    ("vcs.change.id", None),
    ("vcs.change.state", Some(&["open", "wip", "closed", "merged"])),
    ("vcs.change.title", None),
    ("vcs.owner.name", None),
    ("vcs.provider.name", Some(&["github", "gitlab", "gittea", "gitea", "bitbucket"])),
    ("vcs.ref.base.name", None),
    ("vcs.ref.base.revision", None),
    ("vcs.ref.base.type", Some(&["branch", "tag"])),
    ("vcs.ref.head.name", None),
    ("vcs.ref.head.revision", None),
    ("vcs.ref.head.type", Some(&["branch", "tag"])),
    ("vcs.repository.name", None),
    ("vcs.repository.url.full", None),
];

/// Attributes outside the conventions' list, values they do not allow, ids
/// that are not strings, and empty values (omitted, never `""`).
fn value_problems(view: &View) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in &view.attributes {
        let empty = match value {
            Value::String(text) => text.is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::Null => true,
            _ => false,
        };
        if empty {
            problems.push(format!("{name} is empty"));
        }
        if name.starts_with("valuestream.") {
            continue;
        }
        match CONVENTIONS.iter().find(|(known, _)| known == name) {
            None => problems.push(format!("{name} is no convention's attribute")),
            Some((_, Some(allowed))) if !value.as_str().is_some_and(|v| allowed.contains(&v)) => {
                problems.push(format!("{name} = {value} is not one of {allowed:?}"))
            }
            Some(_) if (name.ends_with(".id") || name.ends_with(".name")) && !value.is_string() => {
                problems.push(format!("{name} = {value} is not a string"))
            }
            Some(_) => {}
        }
    }
    problems
}

const RULES: &[Rule] = &[
    Rule {
        about: "a pipeline run (SERVER)",
        applies: is_pipeline_run,
        required: &[
            "cicd.pipeline.action.name",
            "cicd.pipeline.name",
            "cicd.pipeline.run.id",
            "cicd.pipeline.run.url.full",
            "cicd.pipeline.result",
        ],
    },
    Rule {
        about: "a pull request (a VCS change)",
        applies: is_change,
        required: &[
            "vcs.change.id",
            "vcs.change.state",
            "vcs.ref.head.name",
            "vcs.ref.base.name",
            "vcs.repository.name",
            "vcs.provider.name",
        ],
    },
    Rule { about: "a span of a repository", applies: is_from_a_repository, required: &["vcs.owner.name"] },
    Rule {
        about: "a span whose refs' kind the payload tells",
        applies: names_a_head_ref_kind,
        required: &["vcs.ref.head.type"],
    },
    Rule { about: "a CI or VCS source's deploy", applies: is_deploy, required: &["deployment.environment.name"] },
    Rule { about: "a deploy that succeeded or failed", applies: is_done_deploy, required: &["deployment.status"] },
    Rule {
        about: "a job (task run)",
        applies: is_task_run,
        required: &[
            "cicd.pipeline.task.name",
            "cicd.pipeline.task.run.id",
            "cicd.pipeline.task.run.url.full",
            "cicd.pipeline.task.run.result",
        ],
    },
];

/// Results of the conventions that end a run with an error status.
const FAILED_RESULTS: &[&str] = &["failure", "error", "timeout"];

/// docs/sources.md: error status and `error.type` exactly when the result is a
/// failure, an error or a timeout (or, without a result, a failed deploy or
/// custom event); never `Ok`.
fn status_problem(view: &View) -> Option<String> {
    let text = |name: &str| view.attributes.get(name).and_then(Value::as_str);
    let result = text("cicd.pipeline.result").or(text("cicd.pipeline.task.run.result"));
    let failed = match result {
        Some(result) => FAILED_RESULTS.contains(&result),
        None => text("valuestream.outcome") == Some("failure"),
    };
    let error_type = text("error.type");
    if failed != error_type.is_some() {
        return Some(format!(
            "result {result:?}, outcome {:?}, error.type {error_type:?}",
            text("valuestream.outcome")
        ));
    }
    (view.error.as_deref() != error_type).then(|| format!("status {:?} but error.type {error_type:?}", view.error))
}

/// docs/sources.md: every pipeline run (a CI source's build, a Jenkins deploy) is
/// SERVER and named `{cicd.pipeline.action.name} {cicd.pipeline.name}`; a job
/// is named by its task; no name carries a run id.
fn naming_problem(view: &View) -> Option<String> {
    let text = |name: &str| view.attributes.get(name).and_then(Value::as_str);
    let key = text("valuestream.span.key").unwrap_or_default();
    let kind = text("valuestream.kind").unwrap_or_default();
    let ci_source = ["github:", "gitlab:", "jenkins:"].iter().any(|prefix| key.starts_with(prefix));
    let pipeline_run = (ci_source && kind == "build") || (key.starts_with("jenkins:") && kind == "deploy");
    if pipeline_run && view.kind != export::SpanKind::Server {
        return Some("a pipeline run that is not SERVER".into());
    }
    let expected = if view.kind == export::SpanKind::Server {
        let action = text("cicd.pipeline.action.name").unwrap_or("?");
        if !["RUN", "BUILD"].contains(&action) {
            return Some(format!("cicd.pipeline.action.name {action:?}"));
        }
        format!("{action} {}", text("cicd.pipeline.name").unwrap_or("?"))
    } else if kind == "job" {
        text("cicd.pipeline.task.name").unwrap_or("?").to_string()
    } else {
        return None;
    };
    if view.name != expected {
        return Some(format!("named {:?}, not {expected:?}", view.name));
    }
    match text("cicd.pipeline.run.id") {
        Some(id) if view.name.contains(id) => Some(format!("the name {:?} carries the run id", view.name)),
        _ => None,
    }
}

/// What is wrong with one exported span, by the rules.
fn violations(view: &View) -> Vec<String> {
    let mut problems: Vec<String> =
        status_problem(view).into_iter().chain(naming_problem(view)).chain(value_problems(view)).collect();
    for rule in RULES.iter().filter(|rule| (rule.applies)(view)) {
        for name in rule.required {
            let present = match view.attributes.get(*name) {
                Some(Value::String(text)) => !text.is_empty(),
                Some(Value::Null) | None => false,
                Some(_) => true,
            };
            if !present {
                problems.push(format!("{} lacks {name}", rule.about));
            }
        }
    }
    problems
}

#[test]
fn every_exported_span_carries_what_the_conventions_require() {
    let fixtures = fixtures();
    let mut problems = Vec::new();
    for fixture in &fixtures {
        // Only finished spans are exported.
        for span in spans(fixture, &fixtures).iter().filter(|s| s.state == SpanState::Closed) {
            for problem in violations(&export::view(span)) {
                problems.push(format!("{} ({}): {problem}", fixture.name, span.key));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// The view of one fixture's only span, the fixture's body edited first.
fn view_of(name: &str, edit: impl FnOnce(&mut Value)) -> View {
    let all = fixtures();
    let fixture = all.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no fixture {name}"));
    let mut body: Value = serde_json::from_slice(&fixture.body).unwrap();
    edit(&mut body);
    let edited = Fixture {
        name: fixture.name.clone(),
        source: fixture.source,
        headers: fixture.headers.clone(),
        body: serde_json::to_vec(&body).unwrap(),
    };
    let spans = spans(&edited, &all);
    assert_eq!(spans.len(), 1, "{name}");
    export::view(&spans[0])
}

#[test]
fn a_failed_job_keeps_the_reason_gitlab_gives() {
    let view = view_of("gitlab.docs.job", |job| {
        job["build_status"] = json!("failed");
        job["build_started_at"] = json!("2021-02-23T02:41:37.886Z");
        job["build_finished_at"] = json!("2021-02-23T02:43:37.886Z");
    });
    assert_eq!(view.attributes["cicd.pipeline.task.run.result"], "failure");
    assert_eq!(view.attributes["error.type"], "script_failure", "{view:#?}");
    assert_eq!(view.error.as_deref(), Some("script_failure"));
    // A reason that says the runner, not the script, failed is an error; a timeout, a timeout.
    for (reason, result) in [("runner_system_failure", "error"), ("job_execution_timeout", "timeout")] {
        let view = view_of("gitlab.docs.job", |job| {
            job["build_status"] = json!("failed");
            job["build_failure_reason"] = json!(reason);
            job["build_started_at"] = json!("2021-02-23T02:41:37.886Z");
            job["build_finished_at"] = json!("2021-02-23T02:43:37.886Z");
        });
        assert_eq!(view.attributes["cicd.pipeline.task.run.result"], result, "{reason}");
        assert_eq!(view.error.as_deref(), Some(reason));
    }
}

#[test]
fn runs_that_end_in_an_error_or_a_timeout_have_an_error_status() {
    let view = view_of("github.workflow_run.requested.action_required.org", |_| {});
    assert_eq!(view.attributes["cicd.pipeline.result"], "error");
    assert_eq!(view.error.as_deref(), Some("action_required"), "the conclusion is the most specific reason");
    let view = view_of("github.workflow_run.completed.success.org", |run| {
        run["workflow_run"]["conclusion"] = json!("timed_out");
    });
    assert_eq!(view.attributes["cicd.pipeline.result"], "timeout");
    assert_eq!(view.error.as_deref(), Some("timeout"));
    let view = view_of("github.workflow_run.completed.success.org", |run| {
        run["workflow_run"]["conclusion"] = json!("cancelled");
    });
    assert_eq!((view.attributes.get("error.type"), view.error), (None, None), "a cancellation is no error");
}

#[test]
fn pipeline_runs_are_named_by_their_action_and_the_pipeline_the_payload_names() {
    let view = view_of("github.workflow_run.completed.success.org", |_| {});
    assert_eq!(view.attributes["cicd.pipeline.name"], "test", "workflow.name (the run's own name is empty)");
    assert_eq!(view.attributes["cicd.pipeline.action.name"], "RUN");
    assert_eq!(view.name, "RUN test");
    let view = view_of("gitlab.docs.pipeline", |_| {});
    assert_eq!((view.name.as_str(), view.kind), ("RUN Pipeline for branch: master", export::SpanKind::Server));
    let view = view_of("jenkins.notification.deploy-completed", |_| {});
    assert_eq!((view.name.as_str(), view.kind), ("BUILD team-a/deploy-service", export::SpanKind::Server));
    assert_eq!(view.attributes["deployment.environment.name"], "staging", "still a deploy");
    let view = view_of("github.workflow_job.completed.success.org", |_| {});
    assert_eq!((view.name.as_str(), view.kind), ("linters", export::SpanKind::Internal), "its task");
}

/// A custom event (the original ValueStream's format) as one folded span.
fn custom_span(events: &[Value]) -> Span {
    let mut parsed = Vec::new();
    for (i, body) in events.iter().enumerate() {
        let delivery = Delivery::new("customhttp", Vec::new(), serde_json::to_vec(body).unwrap(), received());
        match sources::by_name("customhttp").unwrap().parse(&delivery, &format!("c-{i}"), &SourceOptions::default()) {
            Ok(Parsed::Spans(events)) => parsed.extend(events),
            other => panic!("{other:?}"),
        }
    }
    fold(&parsed).unwrap()
}

#[test]
fn a_custom_build_is_a_pipeline_run_with_the_cicd_attributes_and_other_custom_events_are_not() {
    let event = |action: &str, kind: &str, at: &str| {
        json!({"id": "42", "action": action, "type": kind, "namespace": "payments", "error": true,
               "timestamp": at, "metadata": {"url": "https://ci.example.com/payments/42"}})
    };
    let build =
        custom_span(&[event("start", "build", "2026-11-20T10:00:00Z"), event("end", "build", "2026-11-20T10:05:00Z")]);
    let view = export::view(&build);
    assert_eq!(view.kind, export::SpanKind::Server);
    assert_eq!(view.name, "RUN payments");
    for (name, value) in [
        ("cicd.pipeline.name", "payments"),
        ("cicd.pipeline.run.id", "42"),
        ("cicd.pipeline.result", "failure"),
        ("cicd.pipeline.run.url.full", "https://ci.example.com/payments/42"),
        ("error.type", "failure"),
    ] {
        assert_eq!(view.attributes[name], value, "{name}");
    }
    assert!(violations(&view).is_empty(), "{:?}", violations(&view));
    let deploy = custom_span(&[event("end", "deploy", "2026-11-20T10:05:00Z")]);
    let view = export::view(&deploy);
    assert_eq!((view.kind, view.name.as_str()), (export::SpanKind::Internal, "deploy payments#42"));
    assert!(!view.attributes.contains_key("cicd.pipeline.result"));
}

#[test]
fn sources_declare_every_event_type_and_span_kind_they_give() {
    // The metrics publish each declared (source, kind) and event type at 0
    // from start-up: one a source gives but does not declare would be born at 1.
    let fixtures = fixtures();
    for fixture in &fixtures {
        let source = sources::by_name(fixture.source).unwrap();
        let delivery = Delivery::new(fixture.source, fixture.headers.clone(), fixture.body.clone(), received());
        let event = source.event_type(&delivery);
        assert!(source.event_types().contains(&event.as_str()), "{}: event type {event:?}", fixture.name);
        if let Some(kinds) = source.span_kinds() {
            for span in spans(fixture, &fixtures) {
                assert!(kinds.contains(&span.kind.as_str()), "{}: kind {}", fixture.name, span.kind);
            }
        }
    }
    let incident = SourceOptions { incident_labels: vec!["bug".into()], ..SourceOptions::default() };
    let labeled = fixtures.iter().find(|f| f.name == "github.issues.labeled.plain").unwrap();
    let delivery = Delivery::new("github", labeled.headers.clone(), labeled.body.clone(), received());
    let Ok(Parsed::Spans(events)) = sources::by_name("github").unwrap().parse(&delivery, "d", &incident) else {
        panic!("an issue")
    };
    assert!(sources::by_name("github").unwrap().span_kinds().unwrap().contains(&events[0].kind.as_str()));
}

/// The exported attribute `name` of `view` as text.
fn text<'a>(view: &'a View, name: &str) -> Option<&'a str> {
    view.attributes.get(name).and_then(Value::as_str)
}

#[test]
fn what_the_payloads_already_say_is_exported_under_the_conventions_names() {
    // An open draft is work in progress; GitLab's `locked` is still open.
    let draft = view_of("github.pull_request.opened.installation", |pr| pr["pull_request"]["draft"] = json!(true));
    assert_eq!(text(&draft, "vcs.change.state"), Some("wip"));
    assert_eq!(
        (text(&draft, "vcs.ref.head.type"), text(&draft, "vcs.ref.base.type")),
        (Some("branch"), Some("branch"))
    );
    assert_eq!(text(&draft, "vcs.owner.name"), Some("Codertocat"));
    let locked = view_of("gitlab.docs.merge_request", |mr| mr["object_attributes"]["state"] = json!("locked"));
    assert_eq!(text(&locked, "vcs.change.state"), Some("open"));
    assert_eq!(text(&locked, "vcs.owner.name"), Some("gitlabhq"));

    // GitLab says whether a pipeline ran for a tag.
    let tagged = view_of("gitlab.docs.pipeline", |p| p["object_attributes"]["tag"] = json!(true));
    assert_eq!(text(&tagged, "vcs.ref.head.type"), Some("tag"));

    // The runner that ran a job.
    let job = view_of("github.workflow_job.completed.success.org", |_| {});
    assert_eq!((text(&job, "cicd.worker.name"), text(&job, "cicd.worker.id")), (Some("GitHub Actions 5"), Some("5")));
    let job = view_of("gitlab.docs.job", |job| {
        job["build_status"] = json!("success");
        job["build_finished_at"] = json!("2021-02-23T02:43:37.886Z");
    });
    assert_eq!(text(&job, "cicd.worker.name"), Some("shared-runners-manager-6.gitlab.com"));
    assert_eq!(text(&job, "cicd.worker.id"), Some("380987"));

    // A deploy's status, and its name where the payload gives one.
    let deploy = view_of("github.deployment_status.created.success", |_| {});
    assert_eq!(text(&deploy, "deployment.status"), Some("succeeded"));
    assert_eq!(text(&deploy, "deployment.name"), Some("deploy"));
    let failed =
        view_of("github.deployment_status.created.success", |d| d["deployment_status"]["state"] = json!("failure"));
    assert_eq!(text(&failed, "deployment.status"), Some("failed"));

    // Jenkins: the repository its SCM names (worked out for linking anyway).
    let build = view_of("jenkins.notification.completed", |_| {});
    assert_eq!(text(&build, "vcs.provider.name"), Some("github"));
    assert_eq!(text(&build, "vcs.owner.name"), Some("octo-org"));
    assert_eq!(text(&build, "vcs.repository.name"), Some("service"));
    assert_eq!(text(&build, "vcs.repository.url.full"), Some("https://github.com/octo-org/service"));
    assert_eq!(text(&build, "vcs.ref.head.type"), Some("branch"));
    let with_credentials = view_of("jenkins.notification.completed", |n| {
        n["build"]["scm"]["url"] = json!("https://bot:s3cret@github.com/octo-org/service.git")
    });
    assert_eq!(text(&with_credentials, "vcs.repository.url.full"), Some("https://github.com/octo-org/service"));
    let deploy = view_of("jenkins.notification.deploy-completed", |_| {});
    assert_eq!(text(&deploy, "deployment.name"), Some("deploy-service"));

    // Empty values are left out.
    let unlabeled = view_of("github.issues.opened.plain", |i| {
        i["issue"]["labels"] = json!([]);
        i["issue"]["html_url"] = json!("");
    });
    assert!(!unlabeled.attributes.contains_key("valuestream.labels"), "{:?}", unlabeled.attributes);
    assert!(!unlabeled.attributes.contains_key("valuestream.url"));
}

#[test]
fn docs_sources_md_names_every_exported_attribute() {
    let docs = std::fs::read_to_string(format!("{}/../../docs/sources.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let fixtures = fixtures();
    let mut missing = std::collections::BTreeSet::new();
    for fixture in &fixtures {
        for span in spans(fixture, &fixtures) {
            for name in export::view(&span).attributes.keys() {
                // `valuestream.jira.*` and `valuestream.metadata.{name}` stand for their families.
                let family = name.rsplit_once('.').map(|(prefix, _)| prefix).filter(|f| f.contains('.'));
                let named = docs.contains(&format!("`{name}`"))
                    || family.is_some_and(|f| {
                        docs.contains(&format!("`{f}.*`")) || docs.contains(&format!("`{f}.{{name}}`"))
                    })
                    || (name.starts_with("vcs.repository.") && docs.contains("`vcs.repository.*`"));
                if !named {
                    missing.insert(name.clone());
                }
            }
        }
    }
    assert!(missing.is_empty(), "docs/sources.md does not name {missing:?}");
}
