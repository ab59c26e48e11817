//! GitHub (sources.md, "GitHub"): issues, pull requests, reviews, Actions
//! workflow runs and jobs, deployments and their statuses, and pushes.
//!
//! Every issue and pull request payload carries the whole object, so each
//! event is a snapshot of its span at the object's `updated_at`: an open object
//! starts (or reopens) the span, a closed one ends it. Folding snapshots by time
//! makes the result independent of arrival order.

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
use crate::verify::{AuthError, verify_hmac_sha256};
use crate::vocab::{action, attr};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub struct GitHub;

const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

impl Source for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn secret_variable(&self) -> &'static str {
        "VS_GITHUB_SECRET"
    }

    fn secret_help(&self) -> &'static str {
        "HMAC secret of GitHub webhooks (X-Hub-Signature-256)"
    }

    /// `X-Hub-Signature-256`, and the SHA-1 `X-Hub-Signature` GitHub still sends beside it.
    fn credential_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER, "X-Hub-Signature"]
    }

    fn authenticate(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), AuthError> {
        verify_hmac_sha256(secrets, &delivery.body, SIGNATURE_HEADER, delivery.header(SIGNATURE_HEADER))
    }

    fn delivery_id(&self, delivery: &Delivery) -> Option<String> {
        delivery.header("X-GitHub-Delivery").map(str::trim).filter(|id| !id.is_empty()).map(String::from)
    }

    fn event_type(&self, delivery: &Delivery) -> String {
        match delivery.header("X-GitHub-Event") {
            Some(event) if SUPPORTED.contains(&event) => event.to_string(),
            Some(_) => "other".to_string(),
            None => "missing".to_string(),
        }
    }

    fn event_types(&self) -> Vec<&'static str> {
        SUPPORTED.iter().copied().chain(["other", "missing"]).collect()
    }

    fn span_kinds(&self) -> Option<&'static [&'static str]> {
        Some(&["issue", "incident", "pull_request", "build", "job", "deploy"])
    }

    fn parse(&self, delivery: &Delivery, delivery_id: &str, options: &SourceOptions) -> Result<Parsed, ParseError> {
        let event = delivery.header("X-GitHub-Event").ok_or(ParseError::MissingHeader("X-GitHub-Event"))?;
        if !SUPPORTED.contains(&event) {
            return Ok(Parsed::Ignored { reason: format!("GitHub event `{event}` is not tracked") });
        }
        let body = delivery.json_body().map_err(ParseError::Body)?;
        let context = Context { delivery_id, options, received_at: delivery.received_at };
        match event {
            "ping" => {
                let _: Value = parse_json(&body)?;
                Ok(Parsed::Pong)
            }
            "issues" => context.issue(parse_json(&body)?),
            "pull_request" => context.pull_request(parse_json(&body)?),
            "pull_request_review" => context.review(parse_json(&body)?),
            "workflow_run" => context.workflow_run(parse_json(&body)?),
            "workflow_job" => context.workflow_job(parse_json(&body)?),
            "deployment" => context.deployment(parse_json::<DeploymentEvent>(&body)?, None),
            "deployment_status" => {
                let event: DeploymentStatusEvent = parse_json(&body)?;
                let deployment = DeploymentEvent { deployment: event.deployment, repository: event.repository };
                context.deployment(deployment, Some(event.deployment_status))
            }
            "push" => context.push(parse_json(&body)?),
            _ => unreachable!("SUPPORTED lists only the events matched above"),
        }
    }
}

/// The events this module understands; any other is answered `ignored`.
const SUPPORTED: &[&str] = &[
    "ping",
    "issues",
    "pull_request",
    "pull_request_review",
    "workflow_run",
    "workflow_job",
    "deployment",
    "deployment_status",
    "push",
];

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    name: String,
    html_url: Option<String>,
    default_branch: Option<String>,
    owner: Option<User>,
}

#[derive(Deserialize)]
struct WorkflowRunEvent {
    workflow_run: WorkflowRun,
    /// The workflow the run belongs to: its `name` is the pipeline's.
    #[serde(default)]
    workflow: Option<Workflow>,
    repository: Repository,
}

#[derive(Deserialize)]
struct Workflow {
    name: Option<String>,
    path: Option<String>,
}

#[derive(Deserialize)]
struct WorkflowRun {
    id: u64,
    name: Option<String>,
    /// The workflow file, `.github/workflows/test.yml`.
    path: Option<String>,
    run_attempt: Option<u64>,
    run_number: Option<u64>,
    head_branch: Option<String>,
    head_sha: String,
    event: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    run_started_at: Option<Timestamp>,
    html_url: Option<String>,
    #[serde(default)]
    pull_requests: Vec<RunPullRequest>,
}

#[derive(Deserialize)]
struct RunPullRequest {
    number: u64,
}

#[derive(Deserialize)]
struct WorkflowJobEvent {
    workflow_job: WorkflowJob,
    repository: Repository,
}

#[derive(Deserialize)]
struct WorkflowJob {
    id: u64,
    run_id: u64,
    run_attempt: Option<u64>,
    name: String,
    workflow_name: Option<String>,
    head_branch: Option<String>,
    head_sha: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    created_at: Option<Timestamp>,
    started_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
    runner_name: Option<String>,
    runner_id: Option<u64>,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct DeploymentEvent {
    deployment: Deployment,
    repository: Repository,
}

#[derive(Deserialize)]
struct DeploymentStatusEvent {
    deployment_status: DeploymentStatus,
    deployment: Deployment,
    repository: Repository,
}

#[derive(Deserialize)]
struct Deployment {
    id: u64,
    sha: String,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    task: Option<String>,
    environment: Option<String>,
    description: Option<String>,
    #[serde(default)]
    payload: Value,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct DeploymentStatus {
    state: String,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    description: Option<String>,
    environment: Option<String>,
    log_url: Option<String>,
    target_url: Option<String>,
}

#[derive(Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
    #[serde(default)]
    commits: Vec<PushCommit>,
    head_commit: Option<PushCommit>,
    repository: Repository,
}

#[derive(Deserialize)]
struct PushCommit {
    id: String,
    message: String,
    timestamp: Timestamp,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct IssueEvent {
    action: String,
    issue: Issue,
    repository: Repository,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    title: Option<String>,
    body: Option<String>,
    state: String,
    state_reason: Option<String>,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    closed_at: Option<Timestamp>,
    html_url: Option<String>,
    user: Option<User>,
    #[serde(default)]
    labels: Vec<Label>,
}

#[derive(Deserialize)]
struct PullRequestEvent {
    action: String,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    title: Option<String>,
    body: Option<String>,
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    merged: Option<bool>,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    closed_at: Option<Timestamp>,
    merged_at: Option<Timestamp>,
    merge_commit_sha: Option<String>,
    html_url: Option<String>,
    user: Option<User>,
    head: GitRef,
    base: GitRef,
    #[serde(default)]
    labels: Vec<Label>,
    additions: Option<u64>,
    deletions: Option<u64>,
    changed_files: Option<u64>,
}

#[derive(Deserialize)]
struct GitRef {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
}

#[derive(Deserialize)]
struct ReviewEvent {
    action: String,
    review: Review,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct Review {
    state: String,
    submitted_at: Option<Timestamp>,
    user: Option<User>,
}

struct Context<'a> {
    delivery_id: &'a str,
    options: &'a SourceOptions,
    received_at: Timestamp,
}

impl Context<'_> {
    fn issue(&self, event: IssueEvent) -> Result<Parsed, ParseError> {
        let IssueEvent { action, issue, repository } = event;
        let labels: Vec<String> = issue.labels.into_iter().map(|l| l.name).collect();
        let is_incident = labels
            .iter()
            .any(|label| self.options.incident_labels.iter().any(|incident| incident.eq_ignore_ascii_case(label)));
        let number = issue.number.to_string();
        let change = if issue.state == "closed" {
            let outcome = match issue.state_reason.as_deref() {
                Some("not_planned") => "not_planned",
                _ => "completed",
            };
            let end = issue.closed_at.or(issue.updated_at).unwrap_or(issue.created_at);
            Change::End { start: Some(issue.created_at), end, outcome: outcome.to_string() }
        } else {
            Change::Start { start: issue.created_at }
        };
        let at = snapshot_time(&change, issue.updated_at);

        let mut attributes = repo_attributes(&repository);
        attributes.insert("valuestream.issue.number".into(), json!(issue.number));
        insert_opt(&mut attributes, "valuestream.title", issue.title);
        insert_opt(&mut attributes, "valuestream.author", issue.user.map(|u| u.login));
        insert_opt(&mut attributes, "valuestream.url", issue.html_url);
        insert_opt(&mut attributes, "valuestream.state_reason", issue.state_reason);
        // Four Keys' convention: an incident names the change that caused it.
        insert_opt(&mut attributes, "valuestream.root_cause", issue.body.as_deref().and_then(root_cause));
        attributes.insert("valuestream.labels".into(), json!(labels));
        attributes.insert("valuestream.github.action".into(), json!(action));

        let mut trace_refs = issue_refs("github", &repository.name, &number);
        trace_refs.push(generic_ref("github", "issue", &repository.name, &number));
        trace_refs.dedup();
        Ok(Parsed::Spans(vec![SpanEvent {
            key: format!("github:{}:issue:{number}", repository.full_name),
            source: "github".into(),
            kind: if is_incident { "incident" } else { "issue" }.into(),
            name: format!("{}#{number}", repository.name),
            repo: Some(repository.full_name),
            project: Some(repository.name),
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            parent_refs: Vec::new(),
            trace_refs,
            link_refs: Vec::new(),
            tentative: false,
        }]))
    }

    fn pull_request(&self, event: PullRequestEvent) -> Result<Parsed, ParseError> {
        let PullRequestEvent { action, pull_request, repository } = event;
        let mut span = self.pull_request_span(pull_request, &repository, true);
        span.attributes.insert("valuestream.github.action".into(), json!(action));
        span.attributes.extend(repo_attributes(&repository));
        Ok(Parsed::Spans(vec![span]))
    }

    fn review(&self, event: ReviewEvent) -> Result<Parsed, ParseError> {
        let ReviewEvent { action, review, pull_request, repository } = event;
        if action != "submitted" {
            return Ok(Parsed::Ignored { reason: format!("pull_request_review action `{action}` is not tracked") });
        }
        let created_at = pull_request.created_at;
        let mut span = self.pull_request_span(pull_request, &repository, false);
        let submitted = review.submitted_at.unwrap_or(created_at);
        // A review says nothing new about open/closed: it only adds review times.
        span.change = Change::Update { start: Some(created_at) };
        span.at = submitted;
        span.attributes.clear();
        span.first_times.insert("valuestream.first_review_at".into(), submitted);
        if review.state.eq_ignore_ascii_case("approved") {
            span.first_times.insert("valuestream.first_approval_at".into(), submitted);
        }
        if let Some(user) = review.user {
            span.attributes.insert("valuestream.last_reviewer".into(), json!(user.login));
        }
        Ok(Parsed::Spans(vec![span]))
    }

    /// The span of a pull request as its payload object describes it. Review
    /// payloads carry a shorter object, so `full` says whether counts are present.
    fn pull_request_span(&self, pr: PullRequest, repository: &Repository, full: bool) -> SpanEvent {
        let number = pr.number.to_string();
        let merged = pr.merged.unwrap_or(false) || pr.merged_at.is_some();
        let change = if pr.state == "closed" {
            let (end, outcome) = match (merged, pr.merged_at) {
                (true, Some(merged_at)) => (merged_at, "merged"),
                _ => (pr.closed_at.or(pr.updated_at).unwrap_or(pr.created_at), "closed"),
            };
            Change::End { start: Some(pr.created_at), end, outcome: outcome.to_string() }
        } else {
            Change::Start { start: pr.created_at }
        };
        let at = snapshot_time(&change, pr.updated_at);
        // An open draft is work in progress (the conventions' `wip`).
        let state = match (merged, pr.state.as_str(), pr.draft) {
            (true, _, _) => "merged",
            (false, "open", Some(true)) => "wip",
            (false, state, _) => state,
        };
        // Builds find a pull request by its head branch, deploys by its commits.
        let repo = &repository.full_name;
        let mut trace_refs = vec![
            generic_ref("github", "pull_request", &repository.name, &number),
            branch_ref(repo, &pr.head.name),
            sha_ref(repo, &pr.head.sha),
        ];
        if let (true, Some(sha)) = (merged, &pr.merge_commit_sha) {
            trace_refs.push(sha_ref(repo, sha));
        }

        let mut attributes = Attributes::new();
        attributes.insert("vcs.change.id".into(), json!(number));
        attributes.insert("vcs.change.state".into(), json!(state));
        attributes.insert("vcs.ref.head.name".into(), json!(pr.head.name));
        attributes.insert("vcs.ref.head.revision".into(), json!(pr.head.sha));
        attributes.insert("vcs.ref.head.type".into(), json!("branch"));
        attributes.insert("vcs.ref.base.name".into(), json!(pr.base.name));
        attributes.insert("vcs.ref.base.revision".into(), json!(pr.base.sha));
        attributes.insert("vcs.ref.base.type".into(), json!("branch"));
        insert_opt(&mut attributes, "vcs.change.title", pr.title.clone());
        insert_opt(&mut attributes, "valuestream.author", pr.user.map(|u| u.login));
        insert_opt(&mut attributes, "valuestream.url", pr.html_url);
        insert_opt(&mut attributes, "valuestream.merge_commit_sha", pr.merge_commit_sha.filter(|_| merged));
        insert_opt(&mut attributes, "valuestream.merged_at", pr.merged_at.map(|t| t.to_rfc3339()));
        attributes
            .insert("valuestream.labels".into(), json!(pr.labels.into_iter().map(|l| l.name).collect::<Vec<_>>()));
        if full {
            insert_opt(&mut attributes, "valuestream.draft", pr.draft);
            insert_opt(&mut attributes, "valuestream.additions", pr.additions);
            insert_opt(&mut attributes, "valuestream.deletions", pr.deletions);
            insert_opt(&mut attributes, "valuestream.changed_files", pr.changed_files);
        }

        // linking.md: head branch first, then references and closing keywords in the text.
        let mut parent_refs: Vec<ParentRef> = find_trace_refs(&pr.head.name);
        let text = format!("{}\n{}", pr.title.as_deref().unwrap_or(""), pr.body.as_deref().unwrap_or(""));
        parent_refs.extend(find_trace_refs(&text));
        for mention in find_closing_mentions(&text) {
            let repo = mention.repo_path.as_deref().unwrap_or(&repository.full_name);
            parent_refs.push(format!("github:{repo}:issue:{}", mention.number).to_ascii_lowercase());
        }
        // Last: a Jira key in the branch or title (`PAY-12-fix-login`).
        parent_refs.extend(find_issue_keys(&pr.head.name));
        parent_refs.extend(find_issue_keys(pr.title.as_deref().unwrap_or("")));
        dedup_in_order(&mut parent_refs);

        SpanEvent {
            key: format!("github:{}:pull_request:{number}", repository.full_name),
            source: "github".into(),
            kind: "pull_request".into(),
            name: format!("{}#{number}", repository.name),
            repo: Some(repository.full_name.clone()),
            project: Some(repository.name.clone()),
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            parent_refs,
            trace_refs,
            link_refs: Vec::new(),
            tentative: false,
        }
    }
}

fn branch_ref(repo: &str, branch: &str) -> String {
    branch_alias("github", repo, branch)
}

fn sha_ref(repo: &str, sha: &str) -> String {
    sha_alias("github", repo, sha)
}
impl Context<'_> {
    fn workflow_run(&self, event: WorkflowRunEvent) -> Result<Parsed, ParseError> {
        let WorkflowRunEvent { workflow_run: run, workflow, repository } = event;
        let repo = repository.full_name.clone();
        let attempt = run.run_attempt.unwrap_or(1);
        let start = run.run_started_at.unwrap_or(run.created_at);
        let finished = run.status.as_deref() == Some("completed") && run.conclusion.is_some();
        let change = match (&run.conclusion, finished) {
            (Some(conclusion), true) => Change::End {
                start: Some(start),
                end: run.updated_at.unwrap_or(start),
                outcome: outcome_of_conclusion(conclusion).to_string(),
            },
            _ => Change::Start { start },
        };
        let at = snapshot_time(&change, run.updated_at);
        // The pipeline is the workflow, as the payload names it: the workflow's
        // name, else the run's, else the workflow file; never made up.
        let (workflow_name, workflow_path) = workflow.map_or((None, None), |w| (w.name, w.path));
        let pipeline = [workflow_name, run.name.clone(), workflow_path, run.path.clone()]
            .into_iter()
            .flatten()
            .find(|name| !name.trim().is_empty());
        let branch = run.head_branch.clone().unwrap_or_default();

        let mut attributes = repo_attributes(&repository);
        attributes.insert(attr::PIPELINE_ACTION.into(), json!(action::RUN));
        insert_opt(&mut attributes, attr::PIPELINE_NAME, pipeline.clone());
        attributes.insert("cicd.pipeline.run.id".into(), json!(run.id.to_string()));
        attributes.insert("vcs.ref.head.name".into(), json!(branch));
        attributes.insert("vcs.ref.head.revision".into(), json!(run.head_sha));
        attributes.insert("valuestream.run_attempt".into(), json!(attempt));
        insert_opt(&mut attributes, "valuestream.run_number", run.run_number);
        insert_opt(&mut attributes, "valuestream.trigger", run.event);
        insert_opt(&mut attributes, "cicd.pipeline.run.url.full", run.html_url);
        if let Some(conclusion) = run.conclusion.as_deref().filter(|_| finished) {
            attributes.insert("cicd.pipeline.result".into(), json!(pipeline_result(conclusion)));
            insert_opt(&mut attributes, "error.type", error_reason(conclusion));
        }

        // linking.md: the pull request it runs for, then its branch's pull request, then references.
        let mut parent_refs: Vec<ParentRef> = run
            .pull_requests
            .iter()
            .map(|pr| format!("github:{repo}:pull_request:{}", pr.number).to_ascii_lowercase())
            .collect();
        if !branch.is_empty() {
            parent_refs.push(branch_ref(&repo, &branch));
        }
        parent_refs.extend(find_trace_refs(&branch));
        // Last: a Jira key in the branch (`PAY-12-fix-login`).
        parent_refs.extend(find_issue_keys(&branch));
        dedup_in_order(&mut parent_refs);

        let run_id = run.id.to_string();
        Ok(Parsed::Spans(vec![SpanEvent {
            key: format!("github:{repo}:build:{run_id}:{attempt}"),
            source: "github".into(),
            kind: "build".into(),
            name: pipeline.unwrap_or_else(|| action::RUN.to_string()),
            repo: Some(repo.clone()),
            project: Some(repository.name.clone()),
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            parent_refs,
            trace_refs: vec![generic_ref("github", "build", &repository.name, &run_id)],
            link_refs: Vec::new(),
            tentative: false,
        }]))
    }

    fn workflow_job(&self, event: WorkflowJobEvent) -> Result<Parsed, ParseError> {
        let WorkflowJobEvent { workflow_job: job, repository } = event;
        let repo = repository.full_name.clone();
        let attempt = job.run_attempt.unwrap_or(1);
        let created = job.created_at.or(job.started_at).unwrap_or(self.received_at);
        let finished = job.status.as_deref() == Some("completed") && job.conclusion.is_some();
        let change = match (&job.conclusion, finished) {
            (Some(conclusion), true) => Change::End {
                start: Some(created),
                end: job.completed_at.or(job.started_at).unwrap_or(created),
                outcome: outcome_of_conclusion(conclusion).to_string(),
            },
            _ => Change::Start { start: created },
        };
        let at = match &change {
            Change::End { end, .. } => *end,
            _ => job.started_at.unwrap_or(created),
        };

        let mut attributes = repo_attributes(&repository);
        attributes.insert("cicd.pipeline.task.name".into(), json!(job.name));
        attributes.insert("cicd.pipeline.task.run.id".into(), json!(job.id.to_string()));
        attributes.insert("cicd.pipeline.run.id".into(), json!(job.run_id.to_string()));
        insert_opt(&mut attributes, "cicd.pipeline.name", job.workflow_name);
        insert_opt(&mut attributes, "vcs.ref.head.name", job.head_branch);
        insert_opt(&mut attributes, "vcs.ref.head.revision", job.head_sha);
        insert_opt(&mut attributes, "cicd.worker.name", job.runner_name);
        insert_opt(&mut attributes, "cicd.worker.id", job.runner_id.map(|id| id.to_string()));
        insert_opt(&mut attributes, "cicd.pipeline.task.run.url.full", job.html_url);
        if let (Some(created), Some(started)) = (job.created_at, job.started_at) {
            attributes.insert("valuestream.queued_seconds".into(), json!(created.seconds_until(started).max(0.0)));
        }
        if let Some(conclusion) = job.conclusion.as_deref().filter(|_| finished) {
            attributes.insert("cicd.pipeline.task.run.result".into(), json!(pipeline_result(conclusion)));
            insert_opt(&mut attributes, "error.type", error_reason(conclusion));
        }
        let job_id = job.id.to_string();
        Ok(Parsed::Spans(vec![SpanEvent {
            key: format!("github:{repo}:job:{job_id}:{attempt}"),
            source: "github".into(),
            kind: "job".into(),
            name: job.name.clone(),
            repo: Some(repo.clone()),
            project: Some(repository.name.clone()),
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            // A job is a child of its workflow run (the same attempt).
            parent_refs: vec![format!("github:{repo}:build:{}:{attempt}", job.run_id).to_ascii_lowercase()],
            trace_refs: vec![generic_ref("github", "job", &repository.name, &job_id)],
            link_refs: Vec::new(),
            tentative: false,
        }]))
    }

    /// A `deployment` (no status yet) or a `deployment_status`: both carry the
    /// whole deployment, so each is a snapshot of the deploy span.
    fn deployment(&self, event: DeploymentEvent, status: Option<DeploymentStatus>) -> Result<Parsed, ParseError> {
        let DeploymentEvent { deployment, repository } = event;
        let repo = repository.full_name.clone();
        let environment = deployment
            .environment
            .clone()
            .or_else(|| status.as_ref().and_then(|s| s.environment.clone()))
            .unwrap_or_else(|| "production".to_string());
        let start = deployment.created_at;
        let (change, at) = match &status {
            None => (Change::Start { start }, deployment.updated_at.unwrap_or(start).max(start)),
            Some(status) => {
                let at = status.updated_at.unwrap_or(status.created_at).max(status.created_at);
                let change = match status.state.as_str() {
                    "success" => Change::End { start: Some(start), end: status.created_at, outcome: "success".into() },
                    "failure" | "error" => {
                        Change::End { start: Some(start), end: status.created_at, outcome: "failure".into() }
                    }
                    // queued, in_progress, pending, inactive: attributes only.
                    _ => Change::Update { start: Some(start) },
                };
                (change, at)
            }
        };

        let mut attributes = repo_attributes(&repository);
        attributes.insert("deployment.environment.name".into(), json!(environment));
        attributes.insert("deployment.id".into(), json!(deployment.id.to_string()));
        attributes.insert("vcs.ref.head.revision".into(), json!(deployment.sha));
        insert_opt(&mut attributes, "vcs.ref.head.name", deployment.git_ref.clone());
        insert_opt(&mut attributes, "deployment.name", deployment.task);
        insert_opt(&mut attributes, "valuestream.description", deployment.description.clone());
        if let Some(status) = &status {
            attributes.insert("valuestream.deployment.state".into(), json!(status.state));
            if matches!(status.state.as_str(), "failure" | "error") {
                attributes.insert("error.type".into(), json!(status.state));
            }
            insert_opt(&mut attributes, "valuestream.url", status.log_url.clone().or(status.target_url.clone()));
        }

        // linking.md: a reference in the payload, description or ref; then the
        // pull request whose merge or head commit is the deployed sha.
        let mut parent_refs: Vec<ParentRef> = Vec::new();
        if !deployment.payload.is_null() {
            parent_refs.extend(find_trace_refs(&deployment.payload.to_string()));
        }
        parent_refs.extend(find_trace_refs(deployment.description.as_deref().unwrap_or("")));
        if let Some(status) = &status {
            parent_refs.extend(find_trace_refs(status.description.as_deref().unwrap_or("")));
        }
        parent_refs.extend(find_trace_refs(deployment.git_ref.as_deref().unwrap_or("")));
        parent_refs.push(sha_ref(&repo, &deployment.sha));
        dedup_in_order(&mut parent_refs);

        let id = deployment.id.to_string();
        Ok(Parsed::Spans(vec![SpanEvent {
            key: format!("github:{repo}:deploy:{id}"),
            source: "github".into(),
            kind: "deploy".into(),
            name: environment,
            repo: Some(repo.clone()),
            project: Some(repository.name.clone()),
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            parent_refs,
            trace_refs: vec![
                generic_ref("github", "deploy", &repository.name, &id),
                deployed_alias("github", &repo, &deployment.sha),
            ],
            link_refs: vec![sha_ref(&repo, &deployment.sha)],
            tentative: false,
        }]))
    }

    /// A push: commits that reached the default branch are recorded (metrics.md).
    fn push(&self, event: PushEvent) -> Result<Parsed, ParseError> {
        let default_branch =
            event.repository.default_branch.clone().unwrap_or_else(|| self.options.default_branch.clone());
        let Some(branch) = event.git_ref.strip_prefix("refs/heads/") else {
            return Ok(Parsed::Ignored { reason: format!("push to {} is not to a branch", event.git_ref) });
        };
        if event.deleted {
            return Ok(Parsed::Ignored { reason: format!("push deleted branch {branch}") });
        }
        let pushed_at = event
            .head_commit
            .as_ref()
            .map(|c| c.timestamp)
            .or_else(|| event.commits.last().map(|c| c.timestamp))
            .unwrap_or(self.received_at);
        let commits = event
            .commits
            .into_iter()
            .map(|commit| {
                let message = commit.message.lines().next().unwrap_or("").to_string();
                Commit {
                    pull_request: pull_request_of_message(&message),
                    sha: commit.id,
                    timestamp: commit.timestamp,
                    message,
                }
            })
            .collect();
        Ok(Parsed::Push(Push {
            repo: event.repository.full_name,
            default_branch: branch == default_branch,
            branch: branch.to_string(),
            before: event.before,
            after: event.after,
            forced: event.forced,
            pushed_at,
            commits,
        }))
    }
}

/// The commit named by a `root cause: <sha>` line (any case), if any. Only
/// the prefix is compared: a line is never copied (an issue body may be 25 MB).
fn root_cause(body: &str) -> Option<String> {
    body.lines().find_map(|line| {
        let line = line.trim();
        let rest = ["root cause:", "root-cause:"].iter().find_map(|prefix| {
            let head = line.get(..prefix.len())?;
            head.eq_ignore_ascii_case(prefix).then(|| &line[prefix.len()..])
        })?;
        let sha = rest.split_whitespace().next()?;
        (sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_ascii_lowercase())
    })
}

/// The outcome of a GitHub Actions conclusion (metrics count success vs failure).
fn outcome_of_conclusion(conclusion: &str) -> &str {
    match conclusion {
        "success" => "success",
        "failure" | "timed_out" | "startup_failure" => "failure",
        "cancelled" => "cancelled",
        "skipped" => "skipped",
        other => other,
    }
}

/// OpenTelemetry's `cicd.pipeline.result` for a conclusion.
fn pipeline_result(conclusion: &str) -> &str {
    match conclusion {
        "success" | "neutral" => "success",
        "failure" => "failure",
        "timed_out" => "timeout",
        "cancelled" => "cancellation",
        "skipped" => "skip",
        _ => "error",
    }
}

/// The conclusion itself when it says more than its `error` result
/// (`action_required`, `stale`, `startup_failure`): the span's `error.type`.
fn error_reason(conclusion: &str) -> Option<&str> {
    (pipeline_result(conclusion) == "error").then_some(conclusion)
}

/// The pull request a default-branch commit came from, when its first line
/// says: `Merge pull request #12 from …` or a squash merge's `Title (#12)`.
fn pull_request_of_message(first_line: &str) -> Option<u64> {
    if let Some(rest) = first_line.strip_prefix("Merge pull request #") {
        return rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok();
    }
    let inner = first_line.trim_end().strip_suffix(')')?;
    let number = &inner[inner.rfind("(#")? + 2..];
    number.parse().ok()
}

fn repo_attributes(repository: &Repository) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert("vcs.provider.name".into(), json!("github"));
    attributes.insert("vcs.repository.name".into(), json!(repository.name));
    attributes.insert("valuestream.repo".into(), json!(repository.full_name));
    if let Some(url) = &repository.html_url {
        attributes.insert("vcs.repository.url.full".into(), json!(url));
    }
    let owner = repository.owner.as_ref().map(|o| o.login.clone());
    let owner = owner.or_else(|| repository.full_name.split_once('/').map(|(owner, _)| owner.to_string()));
    insert_opt(&mut attributes, "vcs.owner.name", owner);
    attributes
}

#[cfg(test)]
mod tests {
    use super::root_cause;

    #[test]
    fn root_cause_reads_a_sha_after_the_prefix_in_any_case() {
        let check = |body: &str, expected: Option<&str>| assert_eq!(root_cause(body).as_deref(), expected, "{body:?}");
        check("Down.\nroot cause: 9F8E7D6C5B4A", Some("9f8e7d6c5b4a"));
        check("  Root-Cause: abcdef1 see the deploy", Some("abcdef1"));
        check("ROOT CAUSE:abcdef12", Some("abcdef12"));
        check("root cause: abc", None);
        check("root cause: not-a-sha", None);
        check("the root cause: abcdef1", None);
        check("rööt cause: abcdef1", None);
        check("", None);
    }
}
