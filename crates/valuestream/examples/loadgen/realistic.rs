//! The realistic mix (`--mix realistic`, the default): what GitHub sends for
//! real units of work, spread over hundreds of repositories.
//!
//! A **unit of work** is one change from idea to production, in one
//! repository. GitHub sends, in this order:
//!
//! | delivery | how many |
//! |---|---|
//! | `issues` opened | 1 |
//! | `push` creating the branch `feature/vstrace-github-{repo}-{issue}/work` (1–3 commits) | 1 |
//! | `pull_request` opened (body says `Fixes #{issue}`) | 1 |
//! | `pull_request` synchronize (each after its own `push` of 1–2 commits to the branch) or edited | 2–4 |
//! | `workflow_run` requested, in_progress, completed (CI on the final head) | 3 |
//! | `workflow_job` queued, in_progress, completed, for the jobs `build` and `test` | 6 |
//! | `pull_request_review` submitted (commented, then approved; or approved only) | 1–2 |
//! | `pull_request` closed, merged | 1 |
//! | `push` to `main`: the branch's commits and the merge commit `Merge pull request #N from …` | 1 |
//! | `issues` closed (by the `Fixes` keyword, right after the merge) | 1 |
//! | `deployment` of the merge commit to `production` | 1 |
//! | `deployment_status` in_progress, then success (failure one time in eight) | 2 |
//!
//! so about 24 deliveries and 6 spans (issue, pull request, workflow run, two
//! jobs, deploy) per unit. The service links them into one trace: the
//! pull request finds its issue by its head branch, the run finds the pull
//! request (`pull_requests`), each job its run, the deploy the pull request
//! by the merge commit; the push to `main` makes the branch's commits and the
//! merge commit the changes the deploy ships.
//!
//! Units start every [`UNIT_GAP`] seconds of simulated time from
//! 2026-09-01 and last 3 to 21 hours (11 on average), so about 170 are in
//! flight at any time, and the deliveries of all of them are sent in time
//! order, as GitHub would. Everything is derived from the unit's index (a
//! seeded generator, SHA-256 of names for commit shas), so the same
//! arguments always give the same bytes: a file replayed twice, or two runs
//! of `http` against one store, send the same work again (under new
//! delivery ids in `http`).
//!
//! Bodies are the vendored @octokit payloads (the same ones the tests use)
//! with the fields the service reads set for the unit: ids, numbers,
//! shas, branch names, states, times, and the `html_url`s it keeps. Other
//! URLs keep the recorded object number; every mention of the repository,
//! though, names the unit's (see [`template`]).

use super::Delivery;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::ops::Range;

/// Owner of every repository of the mix.
const ORG: &str = "load-org";
/// Simulated time when the first unit starts: 2026-09-01T00:00:00Z.
const FIRST_UNIT_AT: i64 = 1_788_220_800;
/// A new unit of work starts every `UNIT_GAP` seconds of simulated time
/// (anywhere within its slot).
const UNIT_GAP: i64 = 240;
/// No unit lasts longer than this (checked as it is planned). The plan
/// reaches this far past the last unit the stream needs, so that the first
/// `count` deliveries in time order are exactly what GitHub would have sent
/// by then: no later unit could have sent one earlier.
const LONGEST_UNIT: i64 = 2 * DAY;
/// The fewest deliveries a unit makes (2 issue, 1 branch push, 1 + 2 + 1 pull
/// request, 1 review, 3 run, 6 job, 1 push to main, 3 deploy).
const FEWEST_PER_UNIT: usize = 21;
/// Issue and pull request numbers of each repository start here (and go up
/// by two per unit: the issue's, then its pull request's).
const FIRST_NUMBER: u64 = 100;
/// People who open issues, push and review.
const PEOPLE: u64 = 40;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

// Every kind of GitHub object gets ids from its own range, so none collide.
const REPO_IDS: u64 = 700_000_000;
const ISSUE_IDS: u64 = 3_000_000_000;
const PULL_IDS: u64 = 2_000_000_000;
const REVIEW_IDS: u64 = 1_500_000_000;
const WORKFLOW_IDS: u64 = 70_000_000;
const RUN_IDS: u64 = 9_000_000_000;
const CHECK_SUITE_IDS: u64 = 8_000_000_000;
const JOB_IDS: u64 = 20_000_000_000;
const DEPLOYMENT_IDS: u64 = 500_000_000;
const DEPLOYMENT_STATUS_IDS: u64 = 600_000_000;

/// The planned mix: every unit of work, and the order of their deliveries.
pub struct Realistic {
    templates: Templates,
    units: Vec<Unit>,
    /// The deliveries, in the order they are sent: (time, unit, step).
    order: Vec<(i64, u32, Step)>,
}

impl Realistic {
    /// Plans the first `count` deliveries of the mix over `repos` repositories.
    pub fn new(repos: usize, count: usize) -> Realistic {
        assert!(repos > 0, "--repos must be at least 1");
        let units_needed = count.div_ceil(FEWEST_PER_UNIT) + (LONGEST_UNIT / UNIT_GAP) as usize + 2;
        let mut next_number = vec![FIRST_NUMBER; repos];
        let mut units: Vec<Unit> =
            (0..units_needed as u64).map(|index| Unit::plan(index, repos, &mut next_number)).collect();
        chain_main_branches(&mut units, repos);
        let mut order: Vec<(i64, u32, Step)> = units
            .iter()
            .flat_map(|unit| unit.steps().into_iter().map(|(at, step)| (at, unit.index as u32, step)))
            .collect();
        // Stable: a unit's own steps at the same second keep their causal order.
        order.sort_by_key(|&(at, unit, _)| (at, unit));
        order.truncate(count);
        Realistic { templates: Templates::load(), units, order }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The n-th delivery of the mix.
    pub fn delivery(&self, n: usize) -> Delivery {
        let (_, unit, step) = self.order[n];
        let unit = &self.units[unit as usize];
        let (event, action, body) = self.render(unit, step);
        let span = unit.span_of(step).map(|kind| format!("{}:{kind}", unit.index));
        Delivery { event, action, span, body: self.templates.finish(body, unit.repo) }
    }

    fn render(&self, unit: &Unit, step: Step) -> (&'static str, &'static str, Value) {
        match step {
            Step::IssueOpened => ("issues", "opened", self.issue(unit, false)),
            Step::IssueClosed => ("issues", "closed", self.issue(unit, true)),
            Step::BranchPush(i) => ("push", "to a branch", self.branch_push(unit, i)),
            Step::PullRequestOpened => ("pull_request", "opened", self.pull_request(unit, step)),
            Step::PullRequestUpdated(i) => {
                let action = if unit.updates[i].push.is_some() { "synchronize" } else { "edited" };
                ("pull_request", action, self.pull_request(unit, step))
            }
            Step::PullRequestMerged => ("pull_request", "closed (merged)", self.pull_request(unit, step)),
            Step::Review(i) => ("pull_request_review", "submitted", self.review(unit, i)),
            Step::Run(phase) => ("workflow_run", phase.run_action(), self.workflow_run(unit, phase)),
            Step::Job(j, phase) => ("workflow_job", phase.job_action(), self.workflow_job(unit, j, phase)),
            Step::MainPush => ("push", "to main", self.main_push(unit)),
            Step::Deployment => ("deployment", "created", self.deployment(unit)),
            Step::DeploymentStatus(phase) => {
                let state = match phase {
                    Phase::Completed if unit.deploy_failed => "failure",
                    Phase::Completed => "success",
                    _ => "in_progress",
                };
                ("deployment_status", state, self.deployment_status(unit, state))
            }
        }
    }

    // ------------------------------------------------------------ payloads

    fn issue(&self, unit: &Unit, closed: bool) -> Value {
        let mut body = self.templates.issue.clone();
        body["action"] = json!(if closed { "closed" } else { "opened" });
        let updated = if closed { unit.issue_closed() } else { unit.opened };
        let issue = &mut body["issue"];
        issue["id"] = json!(ISSUE_IDS + unit.index);
        issue["number"] = json!(unit.issue);
        issue["title"] = json!(unit.title());
        issue["body"] = json!(format!("{}\n\nSteps to see it: open the service and look.", unit.title()));
        issue["user"]["login"] = json!(person(unit.author));
        issue["state"] = json!(if closed { "closed" } else { "open" });
        issue["state_reason"] = if closed { json!("completed") } else { Value::Null };
        issue["created_at"] = json!(time(unit.opened));
        issue["updated_at"] = json!(time(updated));
        issue["closed_at"] = if closed { json!(time(updated)) } else { Value::Null };
        issue["html_url"] = json!(format!("https://github.com/{ORG}/@REPO@/issues/{}", unit.issue));
        body
    }

    /// `pull_request` opened, synchronize, edited or closed (merged).
    fn pull_request(&self, unit: &Unit, step: Step) -> Value {
        let (mut body, at, merged) = match step {
            Step::PullRequestOpened => (self.templates.pull_request.clone(), unit.pr_opened, false),
            Step::PullRequestUpdated(i) => {
                let update = &unit.updates[i];
                let body = match update.push {
                    // New commits: the head moved from the previous push's last commit.
                    Some(push) => {
                        let mut body = self.templates.synchronize.clone();
                        body["action"] = json!("synchronize");
                        body["before"] = json!(unit.head_sha(unit.pushes[push].at - 1));
                        body["after"] = json!(unit.head_sha(update.at));
                        body
                    }
                    None => {
                        let mut body = self.templates.pull_request.clone();
                        body["action"] = json!("edited");
                        body["changes"] = json!({"body": {"from": "(work in progress)"}});
                        body
                    }
                };
                (body, update.at, false)
            }
            Step::PullRequestMerged => {
                let mut body = self.templates.pull_request.clone();
                body["action"] = json!("closed");
                (body, unit.merged, true)
            }
            _ => unreachable!("only pull request steps render a pull request"),
        };
        body["number"] = json!(unit.pull_request());
        let pr = &mut body["pull_request"];
        unit.fill_pull_request(pr, at);
        // Only the full object (not a review's) has these.
        pr["merged"] = json!(merged);
        pr["merged_by"] = if merged { json!({"login": person(unit.reviewer)}) } else { Value::Null };
        let pushed = unit.pushes.iter().rfind(|p| p.at <= at).map_or(0, |p| p.commits.end);
        pr["commits"] = json!(pushed);
        pr["additions"] = json!(12 * pushed + unit.index as usize % 50);
        pr["deletions"] = json!(3 * pushed + unit.index as usize % 7);
        pr["changed_files"] = json!(1 + pushed);
        if merged {
            pr["state"] = json!("closed");
            pr["closed_at"] = json!(time(unit.merged));
            pr["merged_at"] = json!(time(unit.merged));
            pr["merge_commit_sha"] = json!(unit.merge_sha);
        }
        body
    }

    fn review(&self, unit: &Unit, i: usize) -> Value {
        let (at, state) = unit.reviews[i];
        let mut body = self.templates.review.clone();
        body["action"] = json!("submitted");
        let review = &mut body["review"];
        review["id"] = json!(REVIEW_IDS + 2 * unit.index + i as u64);
        review["state"] = json!(state);
        review["body"] = json!(if state == "approved" { "Looks good to me." } else { "A question on the error path." });
        review["submitted_at"] = json!(time(at));
        review["commit_id"] = json!(unit.head_sha(at));
        review["user"]["login"] = json!(person(unit.reviewer));
        review["html_url"] = json!(format!(
            "https://github.com/{ORG}/@REPO@/pull/{}#pullrequestreview-{}",
            unit.pull_request(),
            REVIEW_IDS + 2 * unit.index + i as u64
        ));
        unit.fill_pull_request(&mut body["pull_request"], at);
        body
    }

    fn workflow_run(&self, unit: &Unit, phase: Phase) -> Value {
        let (status, conclusion, updated) = match phase {
            Phase::Queued => ("queued", Value::Null, unit.run_requested),
            Phase::InProgress => ("in_progress", Value::Null, unit.run_started),
            Phase::Completed => ("completed", json!("success"), unit.run_completed),
        };
        let mut body = self.templates.workflow_run.clone();
        body["action"] = json!(phase.run_action());
        body["workflow"]["id"] = json!(WORKFLOW_IDS + unit.repo as u64);
        body["workflow"]["name"] = json!("CI");
        body["workflow"]["path"] = json!(".github/workflows/ci.yml");
        let head = unit.head_sha(unit.run_requested);
        let run_id = unit.run_id();
        let run = &mut body["workflow_run"];
        run["id"] = json!(run_id);
        run["name"] = json!("CI");
        run["path"] = json!(".github/workflows/ci.yml");
        run["workflow_id"] = json!(WORKFLOW_IDS + unit.repo as u64);
        run["check_suite_id"] = json!(CHECK_SUITE_IDS + unit.index);
        run["display_title"] = json!(unit.title());
        run["run_number"] = json!(unit.ordinal + 1);
        run["run_attempt"] = json!(1);
        run["event"] = json!("pull_request");
        run["status"] = json!(status);
        run["conclusion"] = conclusion;
        run["head_branch"] = json!(unit.branch());
        run["head_sha"] = json!(head);
        let last = unit.head_commit(unit.run_requested);
        run["head_commit"]["id"] = json!(head);
        run["head_commit"]["message"] = json!(last.message);
        run["head_commit"]["timestamp"] = json!(time(last.at));
        run["created_at"] = json!(time(unit.run_requested));
        run["run_started_at"] = json!(time(if phase == Phase::Queued { unit.run_requested } else { unit.run_started }));
        run["updated_at"] = json!(time(updated));
        run["html_url"] = json!(format!("https://github.com/{ORG}/@REPO@/actions/runs/{run_id}"));
        run["pull_requests"] = json!([{
            "url": format!("https://api.github.com/repos/{ORG}/@REPO@/pulls/{}", unit.pull_request()),
            "id": PULL_IDS + unit.index,
            "number": unit.pull_request(),
            "head": {"ref": unit.branch(), "sha": head, "repo": {"id": REPO_IDS + unit.repo as u64, "name": "@REPO@"}},
            "base": {"ref": "main", "sha": unit.main_before, "repo": {"id": REPO_IDS + unit.repo as u64, "name": "@REPO@"}},
        }]);
        body
    }

    fn workflow_job(&self, unit: &Unit, j: usize, phase: Phase) -> Value {
        let job = &unit.jobs[j];
        let mut body = self.templates.jobs[phase as usize].clone();
        body["action"] = json!(phase.job_action());
        let run_id = unit.run_id();
        let w = &mut body["workflow_job"];
        w["id"] = json!(job.id);
        w["run_id"] = json!(run_id);
        w["run_attempt"] = json!(1);
        w["name"] = json!(job.name);
        w["workflow_name"] = json!("CI");
        w["head_branch"] = json!(unit.branch());
        w["head_sha"] = json!(unit.head_sha(unit.run_requested));
        w["created_at"] = json!(time(job.queued));
        w["html_url"] = json!(format!("https://github.com/{ORG}/@REPO@/actions/runs/{run_id}/job/{}", job.id));
        w["run_url"] = json!(format!("https://api.github.com/repos/{ORG}/@REPO@/actions/runs/{run_id}"));
        match phase {
            // GitHub reports a queued job as started when it was queued.
            Phase::Queued => {
                w["status"] = json!("queued");
                w["started_at"] = json!(time(job.queued));
                w["runner_id"] = Value::Null;
                w["runner_name"] = Value::Null;
            }
            Phase::InProgress | Phase::Completed => {
                let runner = 1 + (job.id % 20);
                w["runner_id"] = json!(runner);
                w["runner_name"] = json!(format!("GitHub Actions {runner}"));
                w["started_at"] = json!(time(job.started));
                w["status"] = json!(if phase == Phase::Completed { "completed" } else { "in_progress" });
            }
        }
        if phase == Phase::Completed {
            w["conclusion"] = json!("success");
            w["completed_at"] = json!(time(job.completed));
        }
        // The steps' own times, spread over the job's (the recorded ones are from 2021).
        if let Some(steps) = w["steps"].as_array_mut() {
            let slice = (job.completed - job.started) / steps.len().max(1) as i64;
            for (k, s) in steps.iter_mut().enumerate() {
                s["started_at"] = json!(time(job.started + k as i64 * slice));
                if phase == Phase::Completed {
                    s["completed_at"] = json!(time(job.started + (k as i64 + 1) * slice));
                }
            }
        }
        body
    }

    /// A push of new commits to the pull request's branch (the first creates it).
    fn branch_push(&self, unit: &Unit, i: usize) -> Value {
        let push = &unit.pushes[i];
        let before = if i == 0 { "0".repeat(40) } else { unit.head_sha(push.at - 1).to_string() };
        let commits: Vec<Value> =
            unit.commits[push.commits.clone()].iter().map(|c| self.commit(c, person(unit.author), true)).collect();
        let branch = format!("refs/heads/{}", unit.branch());
        self.push(unit, &branch, &before, unit.head_sha(push.at), i == 0, commits, push.at)
    }

    /// The merge reaching `main`: the branch's commits (already pushed, so not
    /// distinct), then the merge commit GitHub made.
    fn main_push(&self, unit: &Unit) -> Value {
        let mut commits: Vec<Value> = unit.commits.iter().map(|c| self.commit(c, person(unit.author), false)).collect();
        let merge = Commit {
            sha: unit.merge_sha.clone(),
            at: unit.merged,
            message: format!(
                "Merge pull request #{} from {ORG}/{}\n\n{}",
                unit.pull_request(),
                unit.branch(),
                unit.title()
            ),
        };
        let mut merge = self.commit(&merge, person(unit.reviewer), true);
        merge["committer"] = json!({"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"});
        commits.push(merge);
        self.push(unit, "refs/heads/main", &unit.main_before, &unit.merge_sha, false, commits, unit.merged + 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        unit: &Unit,
        git_ref: &str,
        before: &str,
        after: &str,
        created: bool,
        commits: Vec<Value>,
        at: i64,
    ) -> Value {
        let mut body = self.templates.push.clone();
        let pusher = person(if git_ref == "refs/heads/main" { unit.reviewer } else { unit.author });
        body["ref"] = json!(git_ref);
        body["before"] = json!(before);
        body["after"] = json!(after);
        body["created"] = json!(created);
        body["deleted"] = json!(false);
        body["forced"] = json!(false);
        body["base_ref"] = Value::Null;
        body["compare"] = json!(if created {
            format!("https://github.com/{ORG}/@REPO@/commit/{}", &after[..12])
        } else {
            format!("https://github.com/{ORG}/@REPO@/compare/{}...{}", &before[..12], &after[..12])
        });
        body["pusher"] = json!({"name": pusher, "email": format!("{pusher}@users.noreply.github.com")});
        body["sender"]["login"] = json!(pusher);
        body["repository"]["pushed_at"] = json!(at);
        body["head_commit"] = commits.last().cloned().unwrap_or(Value::Null);
        body["commits"] = Value::Array(commits);
        body
    }

    /// One entry of a push's `commits`.
    fn commit(&self, commit: &Commit, author: String, distinct: bool) -> Value {
        let mut c = self.templates.push["commits"][0].clone();
        let who = json!({"name": author, "email": format!("{author}@users.noreply.github.com"), "username": author});
        c["id"] = json!(commit.sha);
        c["tree_id"] = json!(sha(&format!("tree of {}", commit.sha)));
        c["distinct"] = json!(distinct);
        c["message"] = json!(commit.message);
        c["timestamp"] = json!(time(commit.at));
        c["url"] = json!(format!("https://github.com/{ORG}/@REPO@/commit/{}", commit.sha));
        c["author"] = who.clone();
        c["committer"] = who;
        c
    }

    /// The deployment object, as of `updated` (both events carry it whole).
    fn deployment_object(&self, unit: &Unit, updated: i64) -> Value {
        let mut d = self.templates.deployment["deployment"].clone();
        let id = DEPLOYMENT_IDS + unit.index;
        d["id"] = json!(id);
        d["url"] = json!(format!("https://api.github.com/repos/{ORG}/@REPO@/deployments/{id}"));
        d["statuses_url"] = json!(format!("https://api.github.com/repos/{ORG}/@REPO@/deployments/{id}/statuses"));
        d["sha"] = json!(unit.merge_sha);
        d["ref"] = json!("main");
        d["task"] = json!("deploy");
        d["environment"] = json!("production");
        d["original_environment"] = json!("production");
        d["description"] = json!(format!("Deploy {} to production", &unit.merge_sha[..7]));
        d["creator"]["login"] = json!("deploy-bot");
        d["created_at"] = json!(time(unit.deployed));
        d["updated_at"] = json!(time(updated));
        d
    }

    fn deployment(&self, unit: &Unit) -> Value {
        let mut body = self.templates.deployment.clone();
        body["deployment"] = self.deployment_object(unit, unit.deployed);
        body
    }

    fn deployment_status(&self, unit: &Unit, state: &str) -> Value {
        let (at, nth) = if state == "in_progress" { (unit.deploy_started, 0) } else { (unit.deploy_finished, 1) };
        let mut body = self.templates.deployment_status.clone();
        body["deployment"] = self.deployment_object(unit, at);
        let id = DEPLOYMENT_STATUS_IDS + 2 * unit.index + nth;
        let deployment = DEPLOYMENT_IDS + unit.index;
        let s = &mut body["deployment_status"];
        s["id"] = json!(id);
        s["url"] = json!(format!("https://api.github.com/repos/{ORG}/@REPO@/deployments/{deployment}/statuses/{id}"));
        s["deployment_url"] = json!(format!("https://api.github.com/repos/{ORG}/@REPO@/deployments/{deployment}"));
        s["state"] = json!(state);
        s["environment"] = json!("production");
        s["description"] = json!(match state {
            "in_progress" => "Deploying",
            "success" => "Deployed",
            _ => "Health checks failed",
        });
        s["target_url"] = json!(format!("https://github.com/{ORG}/@REPO@/actions/runs/{}", unit.run_id()));
        s["log_url"] = s["target_url"].clone();
        s["creator"]["login"] = json!("deploy-bot");
        s["created_at"] = json!(time(at));
        s["updated_at"] = json!(time(at));
        body
    }
}

// ---------------------------------------------------------------- the plan

/// One step of a unit: which delivery it is.
#[derive(Clone, Copy, Debug)]
enum Step {
    IssueOpened,
    /// The i-th push to the pull request's branch.
    BranchPush(usize),
    PullRequestOpened,
    /// The i-th of `Unit::updates`.
    PullRequestUpdated(usize),
    Run(Phase),
    /// Job j of the run.
    Job(usize, Phase),
    /// The i-th of `Unit::reviews`.
    Review(usize),
    PullRequestMerged,
    MainPush,
    IssueClosed,
    Deployment,
    /// `InProgress` or `Completed` (success or failure).
    DeploymentStatus(Phase),
}

/// The three deliveries of a workflow run or job (and two of a deploy's).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Queued,
    InProgress,
    Completed,
}

impl Phase {
    fn run_action(self) -> &'static str {
        match self {
            Phase::Queued => "requested",
            Phase::InProgress => "in_progress",
            Phase::Completed => "completed",
        }
    }

    fn job_action(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::InProgress => "in_progress",
            Phase::Completed => "completed",
        }
    }
}

struct Commit {
    sha: String,
    at: i64,
    message: String,
}

/// One push to the pull request's branch: `Unit::commits[commits]`.
struct BranchPush {
    at: i64,
    commits: Range<usize>,
}

/// A `synchronize` (after the branch push `push`) or, without one, an `edited`.
struct Update {
    at: i64,
    push: Option<usize>,
}

struct Job {
    id: u64,
    name: &'static str,
    queued: i64,
    started: i64,
    completed: i64,
}

/// Everything about one unit of work that its deliveries show: numbers,
/// people, commits and the time of each step (seconds since the epoch).
struct Unit {
    index: u64,
    repo: usize,
    /// How many units this repository had before this one.
    ordinal: u64,
    /// The issue's number; the pull request's is the next one.
    issue: u64,
    author: u64,
    reviewer: u64,
    opened: i64,
    /// The branch's commits, in order.
    commits: Vec<Commit>,
    pushes: Vec<BranchPush>,
    pr_opened: i64,
    updates: Vec<Update>,
    run_requested: i64,
    run_started: i64,
    run_completed: i64,
    jobs: [Job; 2],
    /// (submitted at, state)
    reviews: Vec<(i64, &'static str)>,
    merged: i64,
    merge_sha: String,
    /// `main`'s head before the merge (set by `chain_main_branches`).
    main_before: String,
    deployed: i64,
    deploy_started: i64,
    deploy_finished: i64,
    deploy_failed: bool,
}

impl Unit {
    /// Draws unit `index`: its repository, numbers and the time of each step.
    fn plan(index: u64, repos: usize, next_number: &mut [u64]) -> Unit {
        let mut rng = Rng::new(index);
        let repo = (rng.next() % repos as u64) as usize;
        let issue = next_number[repo];
        next_number[repo] += 2;
        let author = rng.next() % PEOPLE;
        let reviewer = (author + 1 + rng.next() % (PEOPLE - 1)) % PEOPLE;
        let opened = FIRST_UNIT_AT + index as i64 * UNIT_GAP + rng.between(0, UNIT_GAP - 1);
        let mut unit = Unit {
            index,
            repo,
            ordinal: (issue - FIRST_NUMBER) / 2,
            issue,
            author,
            reviewer,
            opened,
            commits: Vec::new(),
            pushes: Vec::new(),
            pr_opened: 0,
            updates: Vec::new(),
            run_requested: 0,
            run_started: 0,
            run_completed: 0,
            jobs: [("build", 0), ("test", 1)].map(|(name, j)| Job {
                id: JOB_IDS + 2 * index + j,
                name,
                queued: 0,
                started: 0,
                completed: 0,
            }),
            reviews: Vec::new(),
            merged: 0,
            merge_sha: sha(&format!("repo {repo} unit {index} merge")),
            main_before: String::new(),
            deployed: 0,
            deploy_started: 0,
            deploy_finished: 0,
            deploy_failed: false,
        };

        // Work starts on a branch; its first push creates it, and the pull
        // request opens a little later.
        let mut clock = opened + rng.between(20 * MINUTE, 3 * HOUR);
        let commits = rng.between(1, 3);
        unit.push_commits(&mut rng, &mut clock, commits);
        clock += rng.between(MINUTE, 20 * MINUTE);
        unit.pr_opened = clock;

        // 2–4 updates: mostly more commits (a push, then `synchronize`), some edits.
        let mut head_changed = clock;
        for _ in 0..rng.between(2, 4) {
            if rng.one_in(3) {
                clock += rng.between(5 * MINUTE, 2 * HOUR);
                unit.updates.push(Update { at: clock, push: None });
            } else {
                clock += rng.between(10 * MINUTE, 2 * HOUR);
                let commits = rng.between(1, 2);
                let push = unit.push_commits(&mut rng, &mut clock, commits);
                clock += 2;
                unit.updates.push(Update { at: clock, push: Some(push) });
                head_changed = clock;
            }
        }

        // CI on the final head: the run, and its two jobs side by side.
        unit.run_requested = head_changed + 3;
        unit.run_started = unit.run_requested + rng.between(5, 40);
        for job in &mut unit.jobs {
            job.queued = unit.run_started + 2;
            job.started = job.queued + rng.between(5, 90);
            job.completed = job.started + rng.between(2 * MINUTE, 12 * MINUTE);
        }
        unit.run_completed = unit.jobs.iter().map(|j| j.completed).max().unwrap() + 3;

        // Review: sometimes a comment first, then the approval; then the merge.
        clock = clock.max(unit.run_completed) + rng.between(10 * MINUTE, 4 * HOUR);
        if rng.one_in(2) {
            unit.reviews.push((clock, "commented"));
            clock += rng.between(30 * MINUTE, 3 * HOUR);
        }
        unit.reviews.push((clock, "approved"));
        clock += rng.between(2 * MINUTE, 2 * HOUR);
        unit.merged = clock;

        // The deploy of the merge commit; one in eight fails.
        unit.deployed = unit.merged + rng.between(2 * MINUTE, 10 * MINUTE);
        unit.deploy_started = unit.deployed + rng.between(10, 30);
        unit.deploy_finished = unit.deploy_started + rng.between(2 * MINUTE, 8 * MINUTE);
        unit.deploy_failed = rng.one_in(8);
        assert!(unit.deploy_finished - unit.opened < LONGEST_UNIT, "a unit lasts longer than LONGEST_UNIT");
        unit
    }

    /// Makes `count` commits, some minutes apart from `clock` on, and the push
    /// that brings them to the branch; returns the push's index.
    fn push_commits(&mut self, rng: &mut Rng, clock: &mut i64, count: i64) -> usize {
        let first = self.commits.len();
        for k in 0..count as usize {
            let n = first + k;
            self.commits.push(Commit {
                sha: sha(&format!("repo {} unit {} commit {n}", self.repo, self.index)),
                at: *clock,
                message: format!("{} (part {})", self.title(), n + 1),
            });
            *clock += rng.between(5 * MINUTE, 40 * MINUTE);
        }
        *clock += rng.between(MINUTE, 10 * MINUTE);
        self.pushes.push(BranchPush { at: *clock, commits: first..self.commits.len() });
        self.pushes.len() - 1
    }

    /// Every delivery of the unit with its time, in the order GitHub sends them.
    fn steps(&self) -> Vec<(i64, Step)> {
        let mut steps = vec![(self.opened, Step::IssueOpened), (self.pr_opened, Step::PullRequestOpened)];
        steps.extend(self.pushes.iter().enumerate().map(|(i, p)| (p.at, Step::BranchPush(i))));
        steps.extend(self.updates.iter().enumerate().map(|(i, u)| (u.at, Step::PullRequestUpdated(i))));
        steps.push((self.run_requested, Step::Run(Phase::Queued)));
        steps.push((self.run_started, Step::Run(Phase::InProgress)));
        for (j, job) in self.jobs.iter().enumerate() {
            steps.push((job.queued, Step::Job(j, Phase::Queued)));
            steps.push((job.started, Step::Job(j, Phase::InProgress)));
            steps.push((job.completed, Step::Job(j, Phase::Completed)));
        }
        steps.push((self.run_completed, Step::Run(Phase::Completed)));
        steps.extend(self.reviews.iter().enumerate().map(|(i, r)| (r.0, Step::Review(i))));
        steps.push((self.merged, Step::PullRequestMerged));
        steps.push((self.merged + 1, Step::MainPush));
        steps.push((self.issue_closed(), Step::IssueClosed));
        steps.push((self.deployed, Step::Deployment));
        steps.push((self.deploy_started, Step::DeploymentStatus(Phase::InProgress)));
        steps.push((self.deploy_finished, Step::DeploymentStatus(Phase::Completed)));
        // Stable: the push before its `synchronize`, the run before its jobs.
        steps.sort_by_key(|&(at, _)| at);
        steps
    }

    /// The span a step adds an event to (pushes make none).
    fn span_of(&self, step: Step) -> Option<&'static str> {
        match step {
            Step::IssueOpened | Step::IssueClosed => Some("issue"),
            Step::PullRequestOpened | Step::PullRequestUpdated(_) | Step::PullRequestMerged | Step::Review(_) => {
                Some("pull_request")
            }
            Step::Run(_) => Some("build"),
            Step::Job(0, _) => Some("job build"),
            Step::Job(_, _) => Some("job test"),
            Step::Deployment | Step::DeploymentStatus(_) => Some("deploy"),
            Step::BranchPush(_) | Step::MainPush => None,
        }
    }

    fn pull_request(&self) -> u64 {
        self.issue + 1
    }

    fn issue_closed(&self) -> i64 {
        self.merged + 3
    }

    fn run_id(&self) -> u64 {
        RUN_IDS + self.index
    }

    /// The head branch: its trace reference names the issue (linking.md).
    fn branch(&self) -> String {
        format!("feature/vstrace-github-@REPO@-{}/work", self.issue)
    }

    fn title(&self) -> String {
        const WHAT: [&str; 8] = [
            "retries",
            "the login page",
            "billing export",
            "search",
            "the cache",
            "audit log",
            "rate limits",
            "webhooks",
        ];
        const HOW: [&str; 6] = ["Speed up", "Fix", "Add metrics to", "Simplify", "Harden", "Document"];
        format!("{} {}", HOW[(self.index % 6) as usize], WHAT[(self.index / 6 % 8) as usize])
    }

    /// The branch's head at `at`: the last commit of the last push by then.
    fn head_commit(&self, at: i64) -> &Commit {
        let push = self.pushes.iter().rfind(|p| p.at <= at).expect("the branch exists by then");
        &self.commits[push.commits.end - 1]
    }

    fn head_sha(&self, at: i64) -> &str {
        &self.head_commit(at).sha
    }

    /// Sets the fields of a `pull_request` object (the full one, or the
    /// shorter one of a review) for the pull request as of `at`.
    fn fill_pull_request(&self, pr: &mut Value, at: i64) {
        let number = self.pull_request();
        pr["id"] = json!(PULL_IDS + self.index);
        pr["number"] = json!(number);
        pr["title"] = json!(self.title());
        pr["body"] = json!(format!("{}.\n\nFixes #{}", self.title(), self.issue));
        pr["state"] = json!("open");
        pr["draft"] = json!(false);
        pr["user"]["login"] = json!(person(self.author));
        pr["created_at"] = json!(time(self.pr_opened));
        pr["updated_at"] = json!(time(at));
        pr["closed_at"] = Value::Null;
        pr["merged_at"] = Value::Null;
        pr["merge_commit_sha"] = Value::Null;
        pr["html_url"] = json!(format!("https://github.com/{ORG}/@REPO@/pull/{number}"));
        pr["url"] = json!(format!("https://api.github.com/repos/{ORG}/@REPO@/pulls/{number}"));
        pr["head"]["ref"] = json!(self.branch());
        pr["head"]["label"] = json!(format!("{ORG}:{}", self.branch()));
        pr["head"]["sha"] = json!(self.head_sha(at));
        pr["base"]["ref"] = json!("main");
        pr["base"]["label"] = json!(format!("{ORG}:main"));
        pr["base"]["sha"] = json!(self.main_before);
    }
}

/// Chains each repository's pushes to `main`: in merge order, each merge
/// commit's `before` is the previous merge commit of that repository.
fn chain_main_branches(units: &mut [Unit], repos: usize) {
    let mut by_repo: Vec<Vec<usize>> = vec![Vec::new(); repos];
    for (i, unit) in units.iter().enumerate() {
        by_repo[unit.repo].push(i);
    }
    for (repo, mut list) in by_repo.into_iter().enumerate() {
        list.sort_by_key(|&i| (units[i].merged, i));
        let mut head = sha(&format!("repo {repo} initial commit"));
        for i in list {
            units[i].main_before = std::mem::replace(&mut head, units[i].merge_sha.clone());
        }
    }
}

// ---------------------------------------------------------------- templates

/// The vendored payloads each event starts from.
struct Templates {
    issue: Value,
    pull_request: Value,
    synchronize: Value,
    review: Value,
    workflow_run: Value,
    /// queued, in_progress, completed (indexed by `Phase`).
    jobs: [Value; 3],
    push: Value,
    deployment: Value,
    deployment_status: Value,
}

impl Templates {
    fn load() -> Templates {
        Templates {
            issue: template("issues.opened.plain"),
            pull_request: template("pull_request.opened.installation"),
            synchronize: template("pull_request.synchronize"),
            review: template("pull_request_review.submitted.installation"),
            workflow_run: template("workflow_run.completed.success.with-pr.org"),
            jobs: [
                template("workflow_job.queued.installation"),
                template("workflow_job.in_progress.installation-1"),
                template("workflow_job.completed.success.org"),
            ],
            push: template("push.ref-created.installation-1"),
            deployment: template("deployment.created.plain"),
            deployment_status: template("deployment_status.created.success"),
        }
    }

    /// The body's bytes, with the repository named throughout.
    fn finish(&self, mut body: Value, repo: usize) -> Vec<u8> {
        body["repository"]["id"] = json!(REPO_IDS + repo as u64);
        let mut bytes = serde_json::to_string(&body).unwrap().replace("@REPO@", &repo_name(repo)).into_bytes();
        // `replace` leaves room to grow; a run holds hundreds of thousands of these.
        bytes.shrink_to_fit();
        bytes
    }
}

fn repo_name(repo: usize) -> String {
    format!("repo-{repo:03}")
}

/// A vendored payload made generic: the recorded payloads name their
/// repository (`Codertocat/Hello-World`, `octo-org/octo-repo`) in dozens of
/// URLs and nested objects; every mention becomes `load-org/@REPO@` here, and
/// `@REPO@` is replaced by the unit's repository when the body is finished, so
/// a body names one repository throughout. Their default branch `master`
/// becomes `main`.
fn template(name: &str) -> Value {
    let text = String::from_utf8(super::vendored_bytes(name)).expect("UTF-8");
    let text = text
        .replace("Codertocat/Hello-World", &format!("{ORG}/@REPO@"))
        .replace("octo-org/octo-repo", &format!("{ORG}/@REPO@"))
        .replace("\"Hello-World\"", "\"@REPO@\"")
        .replace("\"octo-repo\"", "\"@REPO@\"")
        .replace("refs/heads/master", "refs/heads/main")
        .replace("\"master\"", "\"main\"");
    let mut body: Value = serde_json::from_str(&text).expect("a vendored payload");
    body["repository"]["owner"]["login"] = json!(ORG);
    body
}

// ---------------------------------------------------------------- small helpers

/// A commit sha made from a name: 40 hex digits, the same for the same name.
fn sha(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    digest[..20].iter().map(|b| format!("{b:02x}")).collect()
}

fn person(n: u64) -> String {
    format!("dev-{n:02}")
}

/// GitHub's time format: `2026-09-01T10:00:00Z`.
fn time(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A small deterministic generator (SplitMix64): the same unit always draws the same plan.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1B5_4A32)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A whole number in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1) as u64) as i64
    }

    /// True one time in `n`, on average.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}
