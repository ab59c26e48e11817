//! GitLab (sources.md, "GitLab"): issue, merge request, pipeline, job and
//! deployment hooks become spans; pushes to the default branch record commits.
//!
//! Issue, merge request, pipeline and job hooks carry the whole object, so each
//! is a snapshot of its span: an open (or running) object starts or reopens the
//! span, a closed, merged or finished one ends it, and the event's `at` is the
//! latest time the object reports, so folding by time gives the same span
//! whatever the arrival order.
//!
//! GitLab does not put `merged_at` or `closed_at` in merge request hooks: the
//! `merge` and `close` hooks end the span at the object's `updated_at` (the
//! moment of the merge). A later hook about the already merged or closed merge
//! request (a label, a milestone) carries no end time, so it only updates
//! attributes instead of moving the end to the time of the edit.
//!
//! Times come in several formats (`2019-11-20 01:33:22 UTC`,
//! `2021-04-28 21:50:00 +0200`, RFC 3339); see [`parse_time`].

use super::{
    Commit, ParseError, Parsed, Push, Source, SourceOptions, dedup_in_order, insert_opt, parse_json, snapshot_time,
};
use crate::delivery::Delivery;
use crate::link::{
    ParentRef, branch_alias, deployed_alias, find_closing_mentions, find_issue_keys, find_trace_refs, generic_ref,
    issue_refs, sha_alias,
};
use crate::span::{Attributes, Change, SpanEvent};
use crate::time::Timestamp;
use crate::verify::{AuthError, verify_token};
use crate::vocab::{action, attr};
use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use std::borrow::Cow;
use std::collections::BTreeMap;

pub struct GitLab;

const TOKEN_HEADER: &str = "X-Gitlab-Token";
const EVENT_HEADER: &str = "X-Gitlab-Event";
const UUID_HEADER: &str = "X-Gitlab-Event-UUID";
const SOURCE: &str = "gitlab";

/// The hooks this module understands; any other `X-Gitlab-Event` is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Issue,
    MergeRequest,
    Pipeline,
    Job,
    Deployment,
    Push,
}

/// `X-Gitlab-Event` values and the hook each names. GitLab sends issues marked
/// confidential as `Confidential Issue Hook`; releases before 9.3 called the
/// job hook `Build Hook`.
const HOOKS: &[(&str, Hook)] = &[
    ("Issue Hook", Hook::Issue),
    ("Confidential Issue Hook", Hook::Issue),
    ("Merge Request Hook", Hook::MergeRequest),
    ("Pipeline Hook", Hook::Pipeline),
    ("Job Hook", Hook::Job),
    ("Build Hook", Hook::Job),
    ("Deployment Hook", Hook::Deployment),
    ("Push Hook", Hook::Push),
];

fn hook_of(header: &str) -> Option<Hook> {
    let header = header.trim();
    HOOKS.iter().find(|(name, _)| name.eq_ignore_ascii_case(header)).map(|(_, hook)| *hook)
}

impl Hook {
    /// The bounded metric label of the hook.
    fn label(self) -> &'static str {
        match self {
            Hook::Issue => "issue",
            Hook::MergeRequest => "merge_request",
            Hook::Pipeline => "pipeline",
            Hook::Job => "job",
            Hook::Deployment => "deployment",
            Hook::Push => "push",
        }
    }
}

impl Source for GitLab {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn secret_variable(&self) -> &'static str {
        "VS_GITLAB_TOKEN"
    }

    fn secret_help(&self) -> &'static str {
        "secret token of GitLab webhooks (X-Gitlab-Token)"
    }

    /// GitLab sends the webhook's secret token as is; it is compared in
    /// constant time against every configured token.
    fn credential_headers(&self) -> &'static [&'static str] {
        &[TOKEN_HEADER]
    }

    fn authenticate(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), AuthError> {
        verify_token(secrets, TOKEN_HEADER, delivery.header(TOKEN_HEADER))
    }

    fn delivery_id(&self, delivery: &Delivery) -> Option<String> {
        delivery.header(UUID_HEADER).map(str::trim).filter(|id| !id.is_empty()).map(String::from)
    }

    fn event_type(&self, delivery: &Delivery) -> String {
        match delivery.header(EVENT_HEADER) {
            Some(header) => hook_of(header).map_or("other", Hook::label).to_string(),
            None => "missing".to_string(),
        }
    }

    fn event_types(&self) -> Vec<&'static str> {
        let mut labels: Vec<&'static str> = HOOKS.iter().map(|(_, hook)| hook.label()).collect();
        labels.dedup();
        labels.extend(["other", "missing"]);
        labels
    }

    fn span_kinds(&self) -> Option<&'static [&'static str]> {
        Some(&["issue", "incident", "pull_request", "build", "job", "deploy"])
    }

    fn parse(&self, delivery: &Delivery, delivery_id: &str, options: &SourceOptions) -> Result<Parsed, ParseError> {
        let header = delivery.header(EVENT_HEADER).ok_or(ParseError::MissingHeader(EVENT_HEADER))?;
        let Some(hook) = hook_of(header) else {
            // System hooks, notes, tags, wiki pages, releases …: not spans.
            let shown: String = header.chars().take(64).collect();
            return Ok(Parsed::Ignored { reason: format!("GitLab event `{shown}` is not tracked") });
        };
        let context = Context { delivery_id, options, received_at: delivery.received_at };
        let body = &delivery.body;
        match hook {
            Hook::Issue => context.issue(parse_json(body)?),
            Hook::MergeRequest => context.merge_request(parse_json(body)?),
            Hook::Pipeline => context.pipeline(parse_json(body)?),
            Hook::Job => context.job(parse_json(body)?),
            Hook::Deployment => context.deployment(parse_json(body)?),
            Hook::Push => context.push(parse_json(body)?),
        }
    }
}

// ---------------------------------------------------------------- payloads

#[derive(Deserialize)]
struct Project {
    #[serde(default)]
    id: Option<u64>,
    path_with_namespace: String,
    #[serde(default)]
    web_url: Option<String>,
    #[serde(default)]
    default_branch: Option<String>,
}

/// The `repository` object: old job and push hooks have no `project`, only this.
#[derive(Deserialize)]
struct HookRepository {
    #[serde(default)]
    homepage: Option<String>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct Label {
    #[serde(alias = "name")]
    title: String,
}

#[derive(Deserialize)]
struct IssueHook {
    #[serde(default)]
    object_kind: Option<String>,
    #[serde(default)]
    user: Option<User>,
    project: Project,
    object_attributes: IssueAttributes,
    #[serde(default)]
    labels: Option<Vec<Label>>,
}

#[derive(Deserialize)]
struct IssueAttributes {
    iid: u64,
    #[serde(default)]
    title: Option<String>,
    state: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(deserialize_with = "time")]
    created_at: Timestamp,
    #[serde(default, deserialize_with = "optional_time")]
    updated_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    closed_at: Option<Timestamp>,
    #[serde(default)]
    url: Option<String>,
    /// `incident`, `issue`, `test_case` (GitLab 13+).
    #[serde(default)]
    issue_type: Option<String>,
    /// The work item type: `Issue`, `Incident`, `Task` … (GitLab 17.2+).
    #[serde(default, rename = "type")]
    work_item_type: Option<String>,
    #[serde(default)]
    labels: Option<Vec<Label>>,
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Deserialize)]
struct MergeRequestHook {
    #[serde(default)]
    user: Option<User>,
    project: Project,
    object_attributes: MergeRequestAttributes,
    #[serde(default)]
    labels: Option<Vec<Label>>,
}

#[derive(Deserialize)]
struct MergeRequestAttributes {
    iid: u64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    state: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(deserialize_with = "time")]
    created_at: Timestamp,
    #[serde(default, deserialize_with = "optional_time")]
    updated_at: Option<Timestamp>,
    /// Not sent by GitLab today; read if a payload has it.
    #[serde(default, deserialize_with = "optional_time")]
    merged_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    closed_at: Option<Timestamp>,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    last_commit: Option<LastCommit>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    work_in_progress: Option<bool>,
    #[serde(default)]
    labels: Option<Vec<Label>>,
}

#[derive(Deserialize)]
struct LastCommit {
    id: String,
}

#[derive(Deserialize)]
struct PipelineHook {
    object_attributes: PipelineAttributes,
    #[serde(default)]
    merge_request: Option<PipelineMergeRequest>,
    project: Project,
    #[serde(default)]
    builds: Option<Vec<PipelineBuild>>,
}

#[derive(Deserialize)]
struct PipelineAttributes {
    id: u64,
    #[serde(default)]
    iid: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    tag: Option<bool>,
    sha: String,
    #[serde(default)]
    source: Option<String>,
    status: String,
    #[serde(default)]
    detailed_status: Option<String>,
    #[serde(default, deserialize_with = "optional_time")]
    created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    finished_at: Option<Timestamp>,
    #[serde(default)]
    queued_duration: Option<f64>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct PipelineMergeRequest {
    iid: u64,
    #[serde(default)]
    target_project_id: Option<u64>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct PipelineBuild {
    #[serde(default, deserialize_with = "optional_time")]
    created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    started_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    finished_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct JobHook {
    build_id: u64,
    build_name: String,
    #[serde(default)]
    build_stage: Option<String>,
    build_status: String,
    #[serde(default, deserialize_with = "optional_time")]
    build_created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    build_started_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    build_finished_at: Option<Timestamp>,
    #[serde(default)]
    build_queued_duration: Option<f64>,
    #[serde(default)]
    build_allow_failure: Option<bool>,
    #[serde(default)]
    build_failure_reason: Option<String>,
    /// GitLab 13+; before, the pipeline id is `commit.id`.
    #[serde(default)]
    pipeline_id: Option<u64>,
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    tag: Option<bool>,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    project: Option<Project>,
    #[serde(default)]
    repository: Option<HookRepository>,
    #[serde(default)]
    commit: Option<JobCommit>,
    #[serde(default)]
    runner: Option<Runner>,
}

/// A job hook's `commit`: despite the name, the pipeline ("`commit.id` is the
/// ID of the pipeline", GitLab's webhook documentation).
#[derive(Deserialize)]
struct JobCommit {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Runner {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct DeploymentHook {
    status: String,
    #[serde(default, deserialize_with = "optional_time")]
    status_changed_at: Option<Timestamp>,
    deployment_id: u64,
    #[serde(default)]
    deployable_url: Option<String>,
    environment: String,
    #[serde(default)]
    environment_tier: Option<String>,
    #[serde(default)]
    environment_external_url: Option<String>,
    project: Project,
    /// Not sent by GitLab today (it sends `short_sha` and `commit_url`).
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    short_sha: Option<String>,
    #[serde(default)]
    commit_url: Option<String>,
    #[serde(default)]
    commit_title: Option<String>,
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
}

#[derive(Deserialize)]
struct PushHook {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    project: Option<Project>,
    #[serde(default)]
    repository: Option<HookRepository>,
    #[serde(default)]
    commits: Vec<PushCommit>,
}

#[derive(Deserialize)]
struct PushCommit {
    id: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(deserialize_with = "time")]
    timestamp: Timestamp,
}

// ---------------------------------------------------------------- spans

/// The project a hook is about, as spans name it.
struct Repo {
    /// `group/subgroup/project`: the span keys' middle part.
    path: String,
    /// The last path segment: the name trace references use.
    name: String,
    web_url: Option<String>,
}

impl Repo {
    fn new(path: &str, web_url: Option<String>, field: &str) -> Result<Repo, ParseError> {
        let path = path.trim().trim_matches('/');
        let name = path.rsplit('/').next().unwrap_or_default();
        if name.is_empty() {
            return Err(ParseError::Field { path: field.to_string(), message: "empty project path".into() });
        }
        Ok(Repo { path: path.to_string(), name: name.to_string(), web_url })
    }

    fn of(project: &Project) -> Result<Repo, ParseError> {
        Repo::new(&project.path_with_namespace, project.web_url.clone(), "project.path_with_namespace")
    }

    /// The `project` object, else (older job and push hooks) the path of the
    /// `repository.homepage` URL.
    fn of_hook(project: Option<&Project>, repository: Option<&HookRepository>) -> Result<Repo, ParseError> {
        if let Some(project) = project {
            return Repo::of(project);
        }
        let homepage = repository.and_then(|r| r.homepage.as_deref()).ok_or_else(|| ParseError::Field {
            path: "project".into(),
            message: "missing field `project` (and no `repository.homepage`)".into(),
        })?;
        let path = url_path(homepage).ok_or_else(|| ParseError::Field {
            path: "repository.homepage".into(),
            message: "not a project URL".into(),
        })?;
        Repo::new(path, Some(homepage.to_string()), "repository.homepage")
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{SOURCE}:{}:{kind}:{id}", self.path)
    }

    /// Where a span with this key is looked up as a parent (lowercase).
    fn key_ref(&self, kind: &str, id: impl std::fmt::Display) -> ParentRef {
        self.key(kind, id).to_ascii_lowercase()
    }

    fn attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert("vcs.provider.name".into(), json!(SOURCE));
        attributes.insert("vcs.repository.name".into(), json!(self.name));
        attributes.insert("valuestream.repo".into(), json!(self.path));
        if let Some(url) = &self.web_url {
            attributes.insert("vcs.repository.url.full".into(), json!(url));
        }
        // The group (or user) the project lives in: its path without the project.
        if let Some((owner, _)) = self.path.rsplit_once('/') {
            attributes.insert("vcs.owner.name".into(), json!(owner));
        }
        attributes
    }

    /// A GitLab page of this project (`-/pipelines/31`), when its URL is known.
    fn page(&self, suffix: &str) -> Option<String> {
        self.web_url.as_ref().map(|url| format!("{}/-/{suffix}", url.trim_end_matches('/')))
    }
}

/// The path part of `https://host[:port]/group/project[.git]`, without slashes.
fn url_path(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let path = path.split(['?', '#']).next()?.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (!path.is_empty()).then_some(path)
}

struct Context<'a> {
    delivery_id: &'a str,
    options: &'a SourceOptions,
    received_at: Timestamp,
}

/// A span event's parts that differ between hooks.
struct Draft {
    key: String,
    kind: &'static str,
    name: String,
    at: Timestamp,
    change: Change,
    attributes: Attributes,
    parent_refs: Vec<ParentRef>,
    trace_refs: Vec<String>,
    link_refs: Vec<String>,
}

impl Context<'_> {
    fn event(&self, repo: Repo, draft: Draft) -> Parsed {
        let Draft { key, kind, name, at, change, attributes, mut parent_refs, mut trace_refs, link_refs } = draft;
        dedup_in_order(&mut parent_refs);
        dedup_in_order(&mut trace_refs);
        Parsed::Spans(vec![SpanEvent {
            key,
            source: SOURCE.into(),
            kind: kind.into(),
            name,
            repo: Some(repo.path),
            project: Some(repo.name),
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            parent_refs,
            trace_refs,
            link_refs,
            tentative: false,
        }])
    }

    fn issue(&self, hook: IssueHook) -> Result<Parsed, ParseError> {
        let IssueHook { object_kind, user, project, object_attributes: issue, labels } = hook;
        let repo = Repo::of(&project)?;
        let type_says = |kind: &str| {
            [&issue.issue_type, &issue.work_item_type]
                .iter()
                .any(|t| t.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(kind)))
        };
        // Work items other than issues and incidents (tasks, epics, OKRs …) come
        // through the same hook; they are not delivery work items here.
        if object_kind.as_deref() == Some("work_item") && !type_says("issue") && !type_says("incident") {
            let kind: String = issue.work_item_type.as_deref().unwrap_or("unknown").chars().take(40).collect();
            return Ok(Parsed::Ignored { reason: format!("GitLab work item of type `{kind}` is not tracked") });
        }
        let labels: Vec<String> = issue.labels.or(labels).unwrap_or_default().into_iter().map(|l| l.title).collect();
        let labelled_incident = labels
            .iter()
            .any(|label| self.options.incident_labels.iter().any(|incident| incident.eq_ignore_ascii_case(label)));
        let kind = if type_says("incident") || labelled_incident { "incident" } else { "issue" };

        let outcome = (issue.state == "closed").then_some("completed");
        let ending = issue.action.as_deref().is_none_or(|action| action == "close");
        let change = snapshot_change(outcome, issue.closed_at, ending, issue.created_at, issue.updated_at);
        let at = snapshot_time(&change, issue.updated_at);

        let mut attributes = repo.attributes();
        attributes.insert("valuestream.issue.number".into(), json!(issue.iid));
        attributes.insert("valuestream.labels".into(), json!(labels));
        insert_opt(&mut attributes, "valuestream.title", issue.title);
        insert_opt(&mut attributes, "valuestream.url", issue.url);
        insert_opt(&mut attributes, "valuestream.severity", issue.severity);
        insert_opt(&mut attributes, "valuestream.gitlab.action", issue.action.clone());
        if issue.action.as_deref() == Some("open") {
            // The user of the hook that opened the issue is its author.
            insert_opt(&mut attributes, "valuestream.author", user.and_then(|u| u.username));
        }

        let iid = issue.iid.to_string();
        let mut trace_refs = issue_refs(SOURCE, &repo.name, &iid);
        trace_refs.push(generic_ref(SOURCE, kind, &repo.name, &iid));
        let draft = Draft {
            key: repo.key("issue", &iid),
            kind,
            name: format!("{}#{iid}", repo.name),
            at,
            change,
            attributes,
            parent_refs: Vec::new(),
            trace_refs,
            link_refs: Vec::new(),
        };
        Ok(self.event(repo, draft))
    }

    fn merge_request(&self, hook: MergeRequestHook) -> Result<Parsed, ParseError> {
        let MergeRequestHook { user, project, object_attributes: mr, labels } = hook;
        let repo = Repo::of(&project)?;
        let merged = mr.state == "merged";
        let (outcome, end_time) = match mr.state.as_str() {
            "merged" => (Some("merged"), mr.merged_at),
            "closed" => (Some("closed"), mr.closed_at),
            _ => (None, None),
        };
        let ending = mr.action.as_deref().is_none_or(|action| action == "merge" || action == "close");
        let change = snapshot_change(outcome, end_time, ending, mr.created_at, mr.updated_at);
        let at = snapshot_time(&change, mr.updated_at);
        let iid = mr.iid.to_string();
        let head_sha = mr.last_commit.map(|c| c.id);
        let merge_sha = mr.merge_commit_sha.filter(|sha| merged && !sha.is_empty());
        let title = mr.title.unwrap_or_default();
        let labels: Vec<String> = mr.labels.or(labels).unwrap_or_default().into_iter().map(|l| l.title).collect();

        let mut attributes = repo.attributes();
        // An open draft is work in progress; `locked` (a merge under way) is still open.
        let draft = mr.draft.or(mr.work_in_progress).unwrap_or(false);
        let state = match mr.state.as_str() {
            "opened" | "reopened" | "locked" if draft => "wip",
            "opened" | "reopened" | "locked" => "open",
            other => other,
        };
        attributes.insert("vcs.change.id".into(), json!(iid));
        attributes.insert("vcs.change.state".into(), json!(state));
        attributes.insert("vcs.change.title".into(), json!(title));
        attributes.insert("vcs.ref.head.name".into(), json!(mr.source_branch));
        attributes.insert("vcs.ref.head.type".into(), json!("branch"));
        attributes.insert("vcs.ref.base.name".into(), json!(mr.target_branch));
        attributes.insert("vcs.ref.base.type".into(), json!("branch"));
        attributes.insert("valuestream.labels".into(), json!(labels));
        insert_opt(&mut attributes, "vcs.ref.head.revision", head_sha.clone());
        insert_opt(&mut attributes, "valuestream.url", mr.url);
        insert_opt(&mut attributes, "valuestream.draft", mr.draft.or(mr.work_in_progress));
        insert_opt(&mut attributes, "valuestream.merge_commit_sha", merge_sha.clone());
        insert_opt(&mut attributes, "valuestream.gitlab.action", mr.action.clone());
        if let (true, Change::End { end, .. }) = (merged, &change) {
            attributes.insert("valuestream.merged_at".into(), json!(end.to_rfc3339()));
        }
        if mr.action.as_deref() == Some("open") {
            insert_opt(&mut attributes, "valuestream.author", user.and_then(|u| u.username));
        }

        // linking.md: a reference in the source branch; then references and
        // closing keywords in the title or description; then a Jira key.
        let mut parent_refs: Vec<ParentRef> = find_trace_refs(&mr.source_branch);
        let text = format!("{title}\n{}", mr.description.as_deref().unwrap_or(""));
        parent_refs.extend(find_trace_refs(&text));
        for mention in find_closing_mentions(&text) {
            let path = mention.repo_path.as_deref().unwrap_or(&repo.path);
            parent_refs.push(format!("{SOURCE}:{path}:issue:{}", mention.number).to_ascii_lowercase());
        }
        parent_refs.extend(find_issue_keys(&mr.source_branch));
        parent_refs.extend(find_issue_keys(&title));

        // Pipelines find it by its branch, deploys by its commits.
        let mut trace_refs = vec![
            generic_ref(SOURCE, "pull_request", &repo.name, &iid),
            branch_alias(SOURCE, &repo.path, &mr.source_branch),
        ];
        trace_refs.extend(head_sha.iter().map(|sha| sha_alias(SOURCE, &repo.path, sha)));
        trace_refs.extend(merge_sha.iter().map(|sha| sha_alias(SOURCE, &repo.path, sha)));

        let draft = Draft {
            key: repo.key("pull_request", &iid),
            kind: "pull_request",
            name: format!("{}!{iid}", repo.name),
            at,
            change,
            attributes,
            parent_refs,
            trace_refs,
            link_refs: Vec::new(),
        };
        Ok(self.event(repo, draft))
    }

    fn pipeline(&self, hook: PipelineHook) -> Result<Parsed, ParseError> {
        let PipelineHook { object_attributes: pipeline, merge_request, project, builds } = hook;
        let repo = Repo::of(&project)?;
        let builds = builds.unwrap_or_default();
        let build_times = builds.iter().flat_map(|b| [b.created_at, b.started_at, b.finished_at]).flatten();
        let times: Vec<Timestamp> =
            [pipeline.created_at, pipeline.finished_at].into_iter().flatten().chain(build_times).collect();
        let start = pipeline.created_at.or_else(|| times.iter().min().copied()).unwrap_or(self.received_at);
        let latest = times.iter().max().copied();
        let result = ci_result(&pipeline.status);
        let change = match result {
            Some((outcome, _)) => Change::End {
                start: Some(start),
                end: pipeline.finished_at.or(latest).unwrap_or(start),
                outcome: outcome.into(),
            },
            None => Change::Start { start },
        };
        // No `updated_at`: the latest time the payload reports stands for it.
        let at = snapshot_time(&change, latest);

        let id = pipeline.id.to_string();
        // A pipeline is named only when its project sets `workflow:name`; else
        // it is the project's pipeline, named by the project's path.
        let pipeline_name = pipeline.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| repo.path.clone());
        let mut attributes = repo.attributes();
        attributes.insert(attr::PIPELINE_ACTION.into(), json!(action::RUN));
        attributes.insert(attr::PIPELINE_NAME.into(), json!(pipeline_name));
        attributes.insert("cicd.pipeline.run.id".into(), json!(id));
        attributes.insert("vcs.ref.head.name".into(), json!(pipeline.git_ref));
        attributes.insert("vcs.ref.head.revision".into(), json!(pipeline.sha));
        attributes.insert("valuestream.gitlab.status".into(), json!(pipeline.status));
        if let Some((_, otel)) = result {
            attributes.insert("cicd.pipeline.result".into(), json!(otel));
        }
        let url = pipeline.url.or_else(|| repo.page(&format!("pipelines/{id}")));
        insert_opt(&mut attributes, "cicd.pipeline.run.url.full", url);
        insert_opt(&mut attributes, "valuestream.trigger", pipeline.source);
        insert_opt(&mut attributes, "valuestream.gitlab.detailed_status", pipeline.detailed_status);
        insert_opt(&mut attributes, "valuestream.pipeline.iid", pipeline.iid);
        insert_opt(&mut attributes, "valuestream.queued_seconds", pipeline.queued_duration);
        attributes.insert("vcs.ref.head.type".into(), json!(ref_type(pipeline.tag)));

        // linking.md: its merge request; then the merge request of its branch;
        // then a trace reference in the branch.
        let mut parent_refs: Vec<ParentRef> = Vec::new();
        if let Some(mr) = &merge_request {
            parent_refs.push(merge_request_ref(&repo, project.id, mr));
        }
        if let Some(iid) = merge_request_of_ref(&pipeline.git_ref) {
            parent_refs.push(repo.key_ref("pull_request", iid));
        }
        parent_refs.push(branch_alias(SOURCE, &repo.path, &pipeline.git_ref));
        parent_refs.extend(find_trace_refs(&pipeline.git_ref));
        // Last: a Jira key in the branch (`PAY-12-fix-login`), as for merge requests.
        parent_refs.extend(find_issue_keys(&pipeline.git_ref));

        let draft = Draft {
            key: repo.key("build", &id),
            kind: "build",
            name: pipeline_name,
            at,
            change,
            attributes,
            parent_refs,
            trace_refs: vec![generic_ref(SOURCE, "build", &repo.name, &id)],
            link_refs: Vec::new(),
        };
        Ok(self.event(repo, draft))
    }

    fn job(&self, hook: JobHook) -> Result<Parsed, ParseError> {
        let repo = Repo::of_hook(hook.project.as_ref(), hook.repository.as_ref())?;
        let pipeline_id =
            hook.pipeline_id.or(hook.commit.as_ref().and_then(|c| c.id)).ok_or_else(|| ParseError::Field {
                path: "pipeline_id".into(),
                message: "missing field `pipeline_id` (and no `commit.id`)".into(),
            })?;
        let times: Vec<Timestamp> =
            [hook.build_created_at, hook.build_started_at, hook.build_finished_at].into_iter().flatten().collect();
        let result = ci_result(&hook.build_status);
        let (change, at) = match (times.iter().min(), times.iter().max()) {
            (Some(&start), Some(&latest)) => {
                let change = match result {
                    Some((outcome, _)) => Change::End {
                        start: Some(start),
                        end: hook.build_finished_at.unwrap_or(latest),
                        outcome: outcome.into(),
                    },
                    None => Change::Start { start },
                };
                (change, latest)
            }
            // A job not yet started, from before GitLab sent `build_created_at`,
            // carries no time: it cannot be placed among the job's other
            // snapshots, so it names the span but never opens or ends it (with
            // the receipt time it would reopen a finished job on a replay).
            _ => (Change::Update { start: None }, self.received_at),
        };
        let timeless = times.is_empty();

        let id = hook.build_id.to_string();
        let mut attributes = repo.attributes();
        attributes.insert("cicd.pipeline.task.name".into(), json!(hook.build_name));
        attributes.insert("cicd.pipeline.task.run.id".into(), json!(id));
        attributes.insert("cicd.pipeline.run.id".into(), json!(pipeline_id.to_string()));
        if !timeless {
            attributes.insert("valuestream.gitlab.status".into(), json!(hook.build_status));
        }
        if let Some((outcome, otel)) = result.filter(|_| !timeless) {
            let reason = hook.build_failure_reason.filter(|r| !r.is_empty() && outcome == "failure");
            let otel = reason.as_deref().map_or(otel, failure_result);
            attributes.insert("cicd.pipeline.task.run.result".into(), json!(otel));
            insert_opt(&mut attributes, "error.type", reason);
        }
        let queued = hook.build_queued_duration.or_else(|| {
            let (created, started) = (hook.build_created_at?, hook.build_started_at?);
            Some(created.seconds_until(started).max(0.0))
        });
        insert_opt(&mut attributes, "valuestream.queued_seconds", queued);
        insert_opt(&mut attributes, "cicd.pipeline.name", hook.commit.and_then(|c| c.name));
        insert_opt(&mut attributes, "valuestream.stage", hook.build_stage);
        if hook.git_ref.is_some() {
            attributes.insert("vcs.ref.head.type".into(), json!(ref_type(hook.tag)));
        }
        insert_opt(&mut attributes, "vcs.ref.head.name", hook.git_ref);
        insert_opt(&mut attributes, "vcs.ref.head.revision", hook.sha);
        if let Some(runner) = hook.runner {
            insert_opt(&mut attributes, "cicd.worker.name", runner.description);
            insert_opt(&mut attributes, "cicd.worker.id", runner.id.map(|id| id.to_string()));
        }
        insert_opt(&mut attributes, "valuestream.allow_failure", hook.build_allow_failure);
        insert_opt(&mut attributes, "cicd.pipeline.task.run.url.full", repo.page(&format!("jobs/{id}")));

        let draft = Draft {
            key: repo.key("job", &id),
            kind: "job",
            name: hook.build_name,
            at,
            change,
            attributes,
            // A job is a child of its pipeline.
            parent_refs: vec![repo.key_ref("build", pipeline_id)],
            trace_refs: vec![generic_ref(SOURCE, "job", &repo.name, &id)],
            link_refs: Vec::new(),
        };
        Ok(self.event(repo, draft))
    }

    fn deployment(&self, hook: DeploymentHook) -> Result<Parsed, ParseError> {
        let repo = Repo::of(&hook.project)?;
        // Each hook reports one status change, timed by `status_changed_at`
        // (GitLab 14+; older hooks carry no time).
        let at = hook.status_changed_at.unwrap_or(self.received_at);
        let change = match hook.status.as_str() {
            "created" | "running" | "blocked" => Change::Start { start: at },
            "success" => Change::End { start: None, end: at, outcome: "success".into() },
            "failed" => Change::End { start: None, end: at, outcome: "failure".into() },
            "canceled" | "cancelled" => Change::End { start: None, end: at, outcome: "cancelled".into() },
            "skipped" => Change::End { start: None, end: at, outcome: "skipped".into() },
            _ => Change::Update { start: None },
        };
        let sha = deployed_sha(&hook);
        let id = hook.deployment_id.to_string();

        let mut attributes = repo.attributes();
        attributes.insert("deployment.environment.name".into(), json!(hook.environment));
        attributes.insert("deployment.id".into(), json!(id));
        attributes.insert("valuestream.deployment.state".into(), json!(hook.status));
        insert_opt(&mut attributes, "vcs.ref.head.revision", sha.clone());
        insert_opt(&mut attributes, "vcs.ref.head.name", hook.git_ref.clone());
        insert_opt(&mut attributes, "valuestream.url", hook.deployable_url);
        insert_opt(&mut attributes, "valuestream.environment_tier", hook.environment_tier);
        insert_opt(&mut attributes, "valuestream.environment_url", hook.environment_external_url);
        insert_opt(&mut attributes, "valuestream.commit_title", hook.commit_title);

        // linking.md: a trace reference in the ref; then the merge request
        // whose head or merge commit is the deployed sha.
        let mut parent_refs: Vec<ParentRef> = find_trace_refs(hook.git_ref.as_deref().unwrap_or(""));
        let mut trace_refs = vec![generic_ref(SOURCE, "deploy", &repo.name, &id)];
        let mut link_refs = Vec::new();
        if let Some(sha) = &sha {
            parent_refs.push(sha_alias(SOURCE, &repo.path, sha));
            link_refs.push(sha_alias(SOURCE, &repo.path, sha));
            trace_refs.push(deployed_alias(SOURCE, &repo.path, sha));
        }

        let draft = Draft {
            key: repo.key("deploy", &id),
            kind: "deploy",
            name: hook.environment,
            at,
            change,
            attributes,
            parent_refs,
            trace_refs,
            link_refs,
        };
        Ok(self.event(repo, draft))
    }

    /// A push: commits that reached the default branch are recorded (metrics.md).
    fn push(&self, hook: PushHook) -> Result<Parsed, ParseError> {
        let repo = Repo::of_hook(hook.project.as_ref(), hook.repository.as_ref())?;
        let default_branch = hook
            .project
            .as_ref()
            .and_then(|p| p.default_branch.clone())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| self.options.default_branch.clone());
        let Some(branch) = hook.git_ref.strip_prefix("refs/heads/") else {
            let shown: String = hook.git_ref.chars().take(80).collect();
            return Ok(Parsed::Ignored { reason: format!("push to {shown} is not to a branch") });
        };
        if !hook.after.is_empty() && hook.after.bytes().all(|b| b == b'0') {
            return Ok(Parsed::Ignored { reason: format!("push deleted branch {branch}") });
        }
        // The head commit's time stands for the push (the hook has no push time).
        let pushed_at = hook
            .commits
            .iter()
            .find(|c| c.id == hook.after)
            .or(hook.commits.last())
            .map_or(self.received_at, |c| c.timestamp);
        let commits = hook
            .commits
            .into_iter()
            .map(|commit| {
                let message = commit.message.unwrap_or_default();
                Commit {
                    pull_request: merge_request_of_message(&message, &repo.path),
                    sha: commit.id,
                    timestamp: commit.timestamp,
                    message: message.lines().next().unwrap_or("").to_string(),
                }
            })
            .collect();
        Ok(Parsed::Push(Push {
            default_branch: branch == default_branch,
            repo: repo.path,
            branch: branch.to_string(),
            before: hook.before,
            after: hook.after,
            forced: false,
            pushed_at,
            commits,
        }))
    }
}

/// What a snapshot of an issue or merge request says: open → start; ended
/// with a known end time → end; ended by this very hook (`close`, `merge`) →
/// end at `updated_at`; otherwise (an edit of an ended object whose payload
/// does not say when it ended) → attributes only.
fn snapshot_change(
    outcome: Option<&str>,
    end_time: Option<Timestamp>,
    ending_hook: bool,
    created: Timestamp,
    updated: Option<Timestamp>,
) -> Change {
    let Some(outcome) = outcome else {
        return Change::Start { start: created };
    };
    let end = end_time.or_else(|| ending_hook.then(|| updated.unwrap_or(created)));
    match end {
        Some(end) => Change::End { start: Some(created), end, outcome: outcome.to_string() },
        None => Change::Update { start: Some(created) },
    }
}

/// The outcome and OpenTelemetry `cicd.pipeline.result` of a finished
/// pipeline or job status; `None` while it is still to run or running.
fn ci_result(status: &str) -> Option<(&'static str, &'static str)> {
    match status {
        "success" => Some(("success", "success")),
        "failed" => Some(("failure", "failure")),
        "canceled" | "cancelled" => Some(("cancelled", "cancellation")),
        "skipped" => Some(("skipped", "skip")),
        // created, waiting_for_resource, preparing, pending, running,
        // manual, scheduled, canceling …
        _ => None,
    }
}

/// `vcs.ref.head.type` of a pipeline's or job's ref: GitLab says `tag: true`.
fn ref_type(tag: Option<bool>) -> &'static str {
    if tag == Some(true) { "tag" } else { "branch" }
}

/// The OpenTelemetry result of a job that failed for `reason`
/// (`build_failure_reason`): the conventions tell a failure of the job's own
/// script from an error of the CI system and from a timeout.
fn failure_result(reason: &str) -> &'static str {
    match reason {
        "script_failure" | "unknown_failure" => "failure",
        "job_execution_timeout" | "stuck_or_timeout_failure" => "timeout",
        // runner_system_failure, api_failure, missing_dependency_failure,
        // scheduler_failure, data_integrity_failure …: the system, not the job.
        _ => "error",
    }
}

/// The key of a pipeline's merge request. A merge request lives in its target
/// project: the pipeline's own unless the payload says otherwise, then the
/// project named in the merge request's URL.
fn merge_request_ref(repo: &Repo, project_id: Option<u64>, mr: &PipelineMergeRequest) -> ParentRef {
    let elsewhere = matches!((mr.target_project_id, project_id), (Some(target), Some(own)) if target != own);
    let path = mr.url.as_deref().filter(|_| elsewhere).and_then(url_path).and_then(|path| {
        let path = path.strip_suffix(&format!("/merge_requests/{}", mr.iid))?;
        Some(path.strip_suffix("/-").unwrap_or(path))
    });
    match path {
        Some(path) => format!("{SOURCE}:{path}:pull_request:{}", mr.iid).to_ascii_lowercase(),
        None => repo.key_ref("pull_request", mr.iid),
    }
}

/// The merge request of a merge request pipeline's ref
/// (`refs/merge-requests/15/head`, `…/merge`, `…/train`).
fn merge_request_of_ref(git_ref: &str) -> Option<u64> {
    let rest = git_ref.strip_prefix("refs/merge-requests/")?;
    rest.split('/').next()?.parse().ok()
}

/// The deployed commit: `sha` if a payload has it, else the commit URL's last
/// segment (GitLab sends `commit_url` with the full sha), else `short_sha`.
fn deployed_sha(hook: &DeploymentHook) -> Option<String> {
    let is_sha = |s: &&str| s.len() >= 7 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let from_url = hook.commit_url.as_deref().and_then(|url| {
        let (_, sha) = url.trim_end_matches('/').rsplit_once("/commit/")?;
        Some(sha)
    });
    hook.sha
        .as_deref()
        .filter(is_sha)
        .or(from_url.filter(is_sha))
        .or(hook.short_sha.as_deref().filter(is_sha))
        .map(str::to_ascii_lowercase)
}

/// The merge request a default-branch commit came from, when its message
/// says so: GitLab's merge commits end with `See merge request group/project!12`.
/// A merge request of another project does not count.
fn merge_request_of_message(message: &str, repo_path: &str) -> Option<u64> {
    const MARK: &str = "see merge request ";
    let lower = message.to_ascii_lowercase();
    let at = lower.rfind(MARK)?;
    let reference = lower[at + MARK.len()..].split_whitespace().next()?;
    let (path, number) = reference.rsplit_once('!')?;
    let digits = number.trim_end_matches(|c: char| !c.is_ascii_digit());
    let number: u64 = digits.parse().ok()?;
    (path.is_empty() || path.eq_ignore_ascii_case(repo_path)).then_some(number)
}

// ---------------------------------------------------------------- times

/// Reads the time formats GitLab sends: RFC 3339 (`2013-12-03T17:23:34Z`,
/// `2021-02-23T02:41:37.886Z`, `2011-12-12T14:27:31+02:00`), Ruby's
/// `2013-12-03 17:23:34 UTC` and `2019-05-15 15:20:33 -0500` (or `+02:00`),
/// with or without fractional seconds and with `T` or a space. A time without
/// any zone is taken as UTC. `None` for anything else or a time outside the
/// range of [`Timestamp`].
fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Some(time) = Timestamp::parse_rfc3339(text) {
        return Some(time);
    }
    const WITH_OFFSET: &[&str] =
        &["%Y-%m-%d %H:%M:%S%.f %z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f %z", "%Y-%m-%dT%H:%M:%S%.f%z"];
    for format in WITH_OFFSET {
        if let Ok(time) = DateTime::parse_from_str(text, format) {
            return time.timestamp_nanos_opt().map(Timestamp);
        }
    }
    let naive = ["UTC", "GMT", "Z"].iter().find_map(|zone| text.strip_suffix(zone)).map_or(text, str::trim_end);
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(naive, format) {
            return time.and_utc().timestamp_nanos_opt().map(Timestamp);
        }
    }
    None
}

const TIME_EXPECTED: &str = "not a time GitLab sends (expected e.g. `2019-11-20 01:33:22 UTC` or RFC 3339)";

fn time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
    let text = <Cow<'de, str>>::deserialize(deserializer)?;
    parse_time(&text).ok_or_else(|| serde::de::Error::custom(TIME_EXPECTED))
}

/// An optional time: `null`, absent or an empty string is no time.
fn optional_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    match <Option<Cow<'de, str>>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => parse_time(&text).map(Some).ok_or_else(|| serde::de::Error::custom(TIME_EXPECTED)),
    }
}

// ---------------------------------------------------------------- helpers

#[cfg(test)]
mod tests {
    use super::*;

    fn check_time(input: &str, expected: Option<&str>) {
        let parsed = parse_time(input).map(Timestamp::to_rfc3339);
        assert_eq!(parsed.as_deref(), expected, "{input:?}");
    }

    #[test]
    fn reads_every_time_format_gitlab_sends() {
        check_time("2013-12-03T17:23:34Z", Some("2013-12-03T17:23:34Z"));
        check_time("2021-02-23T02:41:37.886Z", Some("2021-02-23T02:41:37.886Z"));
        check_time("2011-12-12T14:27:31+02:00", Some("2011-12-12T12:27:31Z"));
        check_time("2019-11-20 01:33:22 UTC", Some("2019-11-20T01:33:22Z"));
        check_time(" 2019-11-20 01:33:22 UTC ", Some("2019-11-20T01:33:22Z"));
        check_time("2019-11-20 01:33:22.25 UTC", Some("2019-11-20T01:33:22.250Z"));
        check_time("2019-05-15 15:20:33 -0500", Some("2019-05-15T20:20:33Z"));
        check_time("2021-04-28 21:50:00 +0200", Some("2021-04-28T19:50:00Z"));
        check_time("2021-04-28 21:50:00 +02:00", Some("2021-04-28T19:50:00Z"));
        check_time("2021-04-28T21:50:00+0200", Some("2021-04-28T19:50:00Z"));
        check_time("2021-04-28 21:50:00", Some("2021-04-28T21:50:00Z"));
        check_time("2021-04-28T21:50:00", Some("2021-04-28T21:50:00Z"));
        check_time("2021-04-28 21:50:00 GMT", Some("2021-04-28T21:50:00Z"));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in [
            "",
            "soon",
            "2021-13-01 00:00:00 UTC",
            "2021-02-30 00:00:00 UTC",
            "2021-04-28 21:50:00 +99:99",
            "2021-04-28",
            "9999-12-31 23:59:59 UTC",
            "UTC",
        ] {
            check_time(text, None);
        }
    }

    #[test]
    fn merge_commit_messages_name_their_merge_request() {
        let check = |message: &str, expected: Option<u64>| {
            assert_eq!(merge_request_of_message(message, "group/project"), expected, "{message:?}")
        };
        check("Merge branch 'x' into 'main'\n\nFix login\n\nSee merge request group/project!12", Some(12));
        check("Merge branch 'x'\n\nSee merge request Group/Project!7.", Some(7));
        check("See merge request !3", Some(3));
        check("See merge request other/project!12", None);
        check("fixed readme", None);
        check("See merge request group/project!", None);
        check("See merge request group/project!99999999999999999999999", None);
    }

    #[test]
    fn merge_request_pipeline_refs_name_their_merge_request() {
        assert_eq!(merge_request_of_ref("refs/merge-requests/15/head"), Some(15));
        assert_eq!(merge_request_of_ref("refs/merge-requests/15/merge"), Some(15));
        assert_eq!(merge_request_of_ref("main"), None);
        assert_eq!(merge_request_of_ref("refs/merge-requests/x/head"), None);
    }

    #[test]
    fn project_paths_from_urls() {
        assert_eq!(url_path("https://gitlab.com/dm03514/test-project"), Some("dm03514/test-project"));
        assert_eq!(url_path("http://h:3005/a/b/c.git/"), Some("a/b/c"));
        assert_eq!(url_path("https://gitlab.com/"), None);
        assert_eq!(url_path("gitlab.com/a/b"), None);
    }
}
