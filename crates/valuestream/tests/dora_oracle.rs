//! An independent, deliberately naive reference implementation ("oracle") of
//! the DORA keys as docs/metrics.md and docs/linking.md define them, and a property that feeds generated delivery histories through
//! the real parser and store, in shuffled order, and compares `dora()` and the
//! incidents' parents with the oracle.
//!
//! The oracle reads only this file's own history structs (never the store, never
//! the crate's code): O(n²) loops that follow those docs sentence by sentence.
//!
//! Run: `cargo test -p valuestream --test dora_oracle` (SQLite);
//! `cargo test -p valuestream --test dora_oracle -- --ignored` adds the same
//! property on PostgreSQL (`VS_TEST_POSTGRES_URL`, default the local server).
//! Each history is measured four ways: the whole window (11-01 → 11-29), an
//! inner window (11-03 → 11-12, so change sets and recovery reach across its
//! edges), and, with two repositories, each repository's filter; floats must
//! agree within 1e-6, counts and nulls exactly, incident parents exactly.
//! Each property draws from its own fixed proptest seed, so every run sees the
//! same histories; `PROPTEST_RNG_SEED=<n>`, `PROPTEST_CASES=<n>` and
//! `PROPTEST_MAX_SHRINK_ITERS=<n>` override. `VS_ORACLE_SURVEY=<n>` makes
//! `survey_of_disagreements` print, for n generated histories, which keys
//! disagree and how often (without failing); `VS_ORACLE_SURVEY_SHOW=<text>`
//! also prints each history with a disagreement whose line contains the text.
//! The survey also applies each history in listed and in shuffled order and
//! counts histories where the store's own answers differ between the two.
//!
//! Readings chosen where the docs leave a choice (the simplest one each time):
//! - Pushes: the oracle takes the smallest (pushed_at, after) among the pushes
//!   not yet taken with that `before`, and puts every push not reached from a
//!   root last by (pushed_at, after). The generator forks the chain only by
//!   resets (a forced push back to an earlier commit, after which the branch
//!   goes on from that commit) and never loops it.
//! - Forced pushes: the generator records which commits each one took off its
//!   branch (the payload only says `forced`); it rewrites or resets only the
//!   latest commits of main, and only with nothing else pending, which is what
//!   docs/metrics.md says the store can read from a payload. A deploy does not
//!   ship a commit a forced push at or before the deployed commit's push took
//!   off; a PR-only change belongs with the pushed change after it (after
//!   the last one, with the last push).
//! - A push's pushed_at is its head commit's timestamp (what GitHub's payload
//!   gives; the generator always makes the head commit the last commit).
//! - A PR-only change goes before the first push commit (branch order) whose
//!   push's pushed_at > merged_at, else at the end; a merged_at equal to a
//!   pushed_at goes after that push.
//! - "Its pull request" of a push commit: the stored pull request the message
//!   names; else the stored merged pull request whose merge_commit_sha it is.
//!   A closed-but-unmerged pull request (GitHub still fills merge_commit_sha)
//!   is never a change.
//! - Breakdown: pickup and review only for reviewed pull requests (review =
//!   merged − first review), deploy for every change with a stored merged PR.
//! - Root cause: the first line whose trimmed, lowercased text starts with
//!   `root cause:`; X is its first word. The generator writes only hex prefixes
//!   of 7+ characters (the GitHub parser ignores shorter ones).
//! - Parents: a deploy's parent is the stored pull request whose merge commit
//!   (merged ones) or head sha is the deployed sha (no payload references are
//!   generated); a pull request's parent is the issue its `Fixes #N` names
//!   (when stored); an incident's is its attributed deploy. Rework (b) walks
//!   these parents (stopping at a span seen twice) looking for a span of kind
//!   incident; failed deploys count (b) through their own parent chain only,
//!   since only successful deploys have change sets.
//! - per_day is 0 with no deployments; ratios are null with no deployments;
//!   medians are null with no values (metrics.md).
//! - `Incident`, `INCIDENT` count as the incident label; an issue labelled
//!   only `bug` is a plain issue (never attributed, not in time to restore).
//! - Generated snapshots of one object never share a time (a pull request
//!   opens at least a minute before it merges, a deploy ends at least a minute
//!   after it starts), so no result depends on how the store breaks such ties.
//! - Generated histories avoid parent cycles: a pull request that fixes an
//!   issue is created after it opened; root causes name a sha deployed to
//!   production (successfully) before the incident opened, a commit shipped
//!   by such a deploy, or an unknown sha. Each edge then goes strictly back in
//!   time, so no cycle can form.

mod support;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::RngSeed;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use support::*;
use valuestream::ingest::prepare;
use valuestream::metrics::{DoraFilter, ItemKey, Window, dora, dora_items, dora_items_page};
use valuestream::store::Store;
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{SourceOptions, by_name};
use valuestream_core::time::Timestamp;

const HW: &str = "octo-org/hello-world";
const OTHER: &str = "octo-org/other";
const REPOS: [&str; 2] = [HW, OTHER];
const PRODUCTION: [&str; 3] = ["production", "prod", "live"];
const ZEROS: &str = "0000000000000000000000000000000000000000";

// ---------------------------------------------------------------- time

/// Seconds since the epoch of an RFC 3339 time.
fn secs(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp()
}

/// 2026-11-`day` at `hh:mm` UTC, in seconds.
fn t(day: u32, hhmm: &str) -> i64 {
    secs(&format!("2026-11-{day:02}T{hhmm}:00Z"))
}

fn rfc3339(s: i64) -> String {
    chrono::DateTime::from_timestamp(s, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn short_time(s: i64) -> String {
    chrono::DateTime::from_timestamp(s, 0).unwrap().format("%m-%d %H:%M").to_string()
}

/// The history's span of time, and the two windows the property measures.
fn history_start() -> i64 {
    t(1, "00:00")
}
fn history_limit() -> i64 {
    t(27, "00:00")
}
fn full_window() -> (i64, i64) {
    (t(1, "00:00"), t(29, "00:00"))
}
fn inner_window() -> (i64, i64) {
    (t(3, "00:00"), t(12, "00:00"))
}

// ---------------------------------------------------------------- the history

#[derive(Clone, Debug)]
struct Commit {
    sha: String,
    message: String,
    at: i64,
}

#[derive(Clone, Debug)]
struct PushH {
    repo: &'static str,
    branch: &'static str,
    before: String,
    commits: Vec<Commit>,
    /// A forced push (GitHub's `forced`).
    forced: bool,
    /// A reset (a forced push of no new commit): the earlier commit it moved the branch back to.
    reset_to: Option<Commit>,
    /// What the generator's own branch lost by this push (never sent: the
    /// oracle's truth, where the store has only the payload to go by).
    drops: Vec<String>,
}

impl PushH {
    fn plain(repo: &'static str, branch: &'static str, before: String, commits: Vec<Commit>) -> PushH {
        PushH { repo, branch, before, commits, forced: false, reset_to: None, drops: Vec::new() }
    }
    fn head(&self) -> &Commit {
        self.commits.last().or(self.reset_to.as_ref()).expect("pushes have a head commit")
    }
    fn after(&self) -> &str {
        &self.head().sha
    }
    fn pushed_at(&self) -> i64 {
        self.head().at
    }
}

#[derive(Clone, Debug)]
struct Pr {
    repo: &'static str,
    number: u64,
    title: String,
    body: String,
    labels: Vec<String>,
    created: i64,
    /// Merged at (a merged pull request).
    merged: Option<i64>,
    /// Closed without merging at.
    closed: Option<i64>,
    merge_sha: Option<String>,
    reviews: Vec<i64>,
}

impl Pr {
    fn head_sha(&self) -> String {
        sha_of(&format!("head {} {}", self.repo, self.number))
    }
    fn first_review(&self) -> Option<i64> {
        self.reviews.iter().copied().min()
    }
    fn title(mut self, title: &str) -> Pr {
        self.title = title.to_string();
        self
    }
    fn label(mut self, label: &str) -> Pr {
        self.labels.push(label.to_string());
        self
    }
    fn body(mut self, body: &str) -> Pr {
        self.body = body.to_string();
        self
    }
    fn reviewed(mut self, at: i64) -> Pr {
        self.reviews.push(at);
        self
    }
}

fn merged_pr(repo: &'static str, number: u64, created: i64, merged: i64, sha: &str) -> Pr {
    Pr {
        repo,
        number,
        title: format!("Change {number}"),
        body: "Some work.".to_string(),
        labels: Vec::new(),
        created,
        merged: Some(merged),
        closed: None,
        merge_sha: Some(sha.to_string()),
        reviews: Vec::new(),
    }
}

#[derive(Clone, Debug)]
struct Dep {
    repo: &'static str,
    id: u64,
    sha: String,
    env: String,
    start: i64,
    /// End time and final GitHub state (`success`, `failure`, `error`); none
    /// while in progress.
    end: Option<(i64, &'static str)>,
}

impl Dep {
    fn key(&self) -> String {
        format!("github:{}:deploy:{}", self.repo, self.id)
    }
    fn end_time(&self) -> Option<i64> {
        self.end.map(|(end, _)| end)
    }
    fn outcome(&self) -> Option<&'static str> {
        match self.end {
            Some((_, "success")) => Some("success"),
            Some((_, "failure" | "error")) => Some("failure"),
            _ => None,
        }
    }
    fn successful(&self) -> bool {
        self.outcome() == Some("success")
    }
    fn production(&self) -> bool {
        PRODUCTION.contains(&self.env.as_str())
    }
    /// (end, key): the order of deploys.
    fn order(&self) -> (i64, String) {
        (self.end_time().expect("only ended deploys are ordered"), self.key())
    }
}

#[derive(Clone, Debug)]
struct Issue {
    repo: &'static str,
    number: u64,
    labels: Vec<String>,
    body: String,
    opened: i64,
    closed: Option<i64>,
}

impl Issue {
    fn key(&self) -> String {
        format!("github:{}:issue:{}", self.repo, self.number)
    }
    fn incident(&self) -> bool {
        self.labels.iter().any(|l| l.eq_ignore_ascii_case("incident"))
    }
}

#[derive(Clone, Debug, Default)]
struct History {
    pushes: Vec<PushH>,
    prs: Vec<Pr>,
    deploys: Vec<Dep>,
    issues: Vec<Issue>,
}

/// Hand-written histories read as a list of events.
impl History {
    fn push(mut self, repo: &'static str, before: &str, commits: &[(&str, &str, i64)]) -> History {
        let commits = commits.iter().map(|(sha, message, at)| Commit {
            sha: sha.to_string(),
            message: message.to_string(),
            at: *at,
        });
        self.pushes.push(PushH::plain(repo, "main", before.to_string(), commits.collect()));
        self
    }
    fn pr(mut self, pr: Pr) -> History {
        self.prs.push(pr);
        self
    }
    fn deploy(mut self, id: u64, sha: &str, env: &str, start: i64, end: i64, state: &'static str) -> History {
        self.deploys.push(Dep {
            repo: HW,
            id,
            sha: sha.to_string(),
            env: env.to_string(),
            start,
            end: Some((end, state)),
        });
        self
    }
    fn incident(mut self, number: u64, label: &str, opened: i64, closed: i64, body: &str) -> History {
        self.issues.push(Issue {
            repo: HW,
            number,
            labels: vec![label.to_string()],
            body: body.to_string(),
            opened,
            closed: Some(closed),
        });
        self
    }
    fn repos(&self) -> BTreeSet<&'static str> {
        let mut repos = BTreeSet::new();
        repos.extend(self.pushes.iter().map(|p| p.repo));
        repos.extend(self.prs.iter().map(|p| p.repo));
        repos.extend(self.deploys.iter().map(|d| d.repo));
        repos.extend(self.issues.iter().map(|i| i.repo));
        repos
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The history, one line per thing, for failure messages.
impl std::fmt::Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let repo = |r: &str| if r == HW { "hw" } else { "other" };
        for p in &self.pushes {
            let forced = if p.forced { " forced" } else { "" };
            write!(f, "push{forced} {} {} {}→{}:", repo(p.repo), p.branch, short(&p.before), short(p.after()))?;
            for c in &p.commits {
                write!(f, " [{} {} {:?}]", short(&c.sha), short_time(c.at), first_line(&c.message))?;
            }
            if !p.drops.is_empty() {
                let drops: Vec<&str> = p.drops.iter().map(|d| short(d)).collect();
                write!(f, " drops {drops:?}")?;
            }
            writeln!(f)?;
        }
        for p in &self.prs {
            let end = match (p.merged, p.closed) {
                (Some(m), _) => format!("merged {}", short_time(m)),
                (None, Some(c)) => format!("closed unmerged {}", short_time(c)),
                _ => "open".to_string(),
            };
            let reviews: Vec<String> = p.reviews.iter().map(|r| short_time(*r)).collect();
            writeln!(
                f,
                "pr {} #{} {:?} labels {:?} body {:?} created {} {end} sha {} reviews {reviews:?}",
                repo(p.repo),
                p.number,
                p.title,
                p.labels,
                p.body,
                short_time(p.created),
                p.merge_sha.as_deref().map_or("-", short),
            )?;
        }
        for d in &self.deploys {
            let end = d.end.map_or("in progress".to_string(), |(end, state)| format!("{} {state}", short_time(end)));
            writeln!(f, "deploy {} {} {} {} {}→{end}", repo(d.repo), d.id, d.env, short(&d.sha), short_time(d.start))?;
        }
        for i in &self.issues {
            writeln!(
                f,
                "issue {} #{} {:?} {}→{} {:?}",
                repo(i.repo),
                i.number,
                i.labels,
                short_time(i.opened),
                i.closed.map_or("open".to_string(), short_time),
                i.body
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- shas and a small PRNG

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 40-hex-digit sha derived from `text` (FNV-1a, then splitmix).
fn sha_of(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let (a, b, c) = (splitmix(h), splitmix(h ^ 1), splitmix(h ^ 2));
    format!("{a:016x}{b:016x}{:08x}", c >> 32)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// `order` cut into groups of 1–8 deliveries (or single deliveries).
fn batches(order: &[usize], seed: u64, grouped: bool) -> Vec<Vec<usize>> {
    if !grouped {
        return order.iter().map(|&i| vec![i]).collect();
    }
    let mut rng = Rng(seed ^ 0x5eed);
    let mut out = Vec::new();
    let mut rest = order;
    while !rest.is_empty() {
        let take = (1 + rng.below(8)).min(rest.len());
        out.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    out
}

// ---------------------------------------------------------------- the oracle

/// One change of a repository (docs/metrics.md, "Changes and change sets").
#[derive(Clone, Debug)]
struct Change {
    sha: String,
    /// Change time: the stored pull request's creation, else the commit's time.
    time: i64,
    /// Index into `History::prs` of the pull request it came through.
    pr: Option<usize>,
    revert: bool,
    hotfix: bool,
    /// The place in push order of the push that brought it (a PR-only
    /// change: that of the change before it); see `Oracle::change_set`.
    push: usize,
}

/// The pull request number a commit's first line names: `Merge pull request #N …`
/// or `Title (#N)`.
fn pr_named_by(message: &str) -> Option<u64> {
    let line = first_line(message);
    if let Some(rest) = line.strip_prefix("Merge pull request #") {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        return digits.parse().ok();
    }
    let inner = line.trim_end().strip_suffix(')')?;
    let open = inner.rfind("(#")?;
    inner[open + 2..].parse().ok()
}

/// The issue number a closing keyword (`Fixes #N`, `Closes #N`, `Resolves #N`) names.
fn closing_mention(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    for keyword in ["fixes #", "closes #", "resolves #"] {
        if let Some(at) = lower.find(keyword) {
            let digits: String = lower[at + keyword.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

/// X of the first `root cause: X` line, lowercase.
fn root_cause(body: &str) -> Option<String> {
    for line in body.lines() {
        let lower = line.trim().to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("root cause:") {
            return rest.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

/// PERCENTILE_CONT: linear between the closest ranks.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 0.5)
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Node {
    Deploy(usize),
    Pr(usize),
    Issue(usize),
}

struct Oracle<'a> {
    h: &'a History,
    /// Each repository's changes, in branch order.
    changes: HashMap<&'static str, Vec<Change>>,
    /// Each repository's shas a forced push took off the branch, with that push's place.
    dropped: HashMap<&'static str, HashMap<String, usize>>,
    /// Per successful deploy (index into `History::deploys`): `None` unmatched,
    /// else the indices of its changes.
    sets: HashMap<usize, Option<Vec<usize>>>,
    /// Per incident (index into `History::issues`): its attributed deploy.
    attributed: HashMap<usize, Option<usize>>,
}

impl<'a> Oracle<'a> {
    fn new(h: &'a History) -> Oracle<'a> {
        let mut oracle = Oracle {
            h,
            changes: HashMap::new(),
            dropped: HashMap::new(),
            sets: HashMap::new(),
            attributed: HashMap::new(),
        };
        for repo in REPOS {
            let (changes, dropped) = change_list(h, repo);
            oracle.changes.insert(repo, changes);
            oracle.dropped.insert(repo, dropped);
        }
        for (d, deploy) in h.deploys.iter().enumerate() {
            if deploy.successful() {
                let set = oracle.change_set(d);
                oracle.sets.insert(d, set);
            }
        }
        for (i, issue) in h.issues.iter().enumerate() {
            if issue.incident() {
                let deploy = oracle.attribute(i);
                oracle.attributed.insert(i, deploy);
            }
        }
        oracle
    }

    /// The index of `sha` in the deploy's repository's changes.
    fn position(&self, d: usize) -> Option<usize> {
        let deploy = &self.h.deploys[d];
        self.changes[deploy.repo].iter().position(|c| c.sha.eq_ignore_ascii_case(&deploy.sha))
    }

    /// docs/metrics.md, "Changes and change sets".
    fn change_set(&self, d: usize) -> Option<Vec<usize>> {
        let deploy = &self.h.deploys[d];
        let p = self.position(d)?;
        let mut m: Option<usize> = None;
        for (e, earlier) in self.h.deploys.iter().enumerate() {
            if earlier.successful()
                && earlier.repo == deploy.repo
                && earlier.env == deploy.env
                && earlier.order() < deploy.order()
                && let Some(q) = self.position(e)
            {
                m = Some(m.map_or(q, |m| m.max(q)));
            }
        }
        let from = m.map_or(0, |m| m + 1);
        // Not what a forced push at or before the deployed commit's push took off the branch.
        let changes = &self.changes[deploy.repo];
        let dropped = &self.dropped[deploy.repo];
        let on_branch = |i: &usize| {
            dropped.get(&changes[*i].sha.to_ascii_lowercase()).is_none_or(|&forced| forced > changes[p].push)
        };
        Some((from..=p).filter(on_branch).collect())
    }

    fn shipped(&self, d: usize) -> Vec<&Change> {
        let repo = self.h.deploys[d].repo;
        match self.sets.get(&d) {
            Some(Some(set)) => set.iter().map(|&i| &self.changes[repo][i]).collect(),
            _ => Vec::new(),
        }
    }

    /// docs/metrics.md, "Incidents".
    fn attribute(&self, i: usize) -> Option<usize> {
        let incident = &self.h.issues[i];
        let candidates: Vec<usize> = (0..self.h.deploys.len())
            .filter(|&d| {
                let deploy = &self.h.deploys[d];
                deploy.repo == incident.repo && deploy.production() && deploy.successful()
            })
            .collect();
        let latest_before = |set: &[usize]| {
            set.iter()
                .copied()
                .filter(|&d| self.h.deploys[d].end_time().unwrap() <= incident.opened)
                .max_by_key(|&d| self.h.deploys[d].order())
        };
        let earliest = |set: &[usize]| set.iter().copied().min_by_key(|&d| self.h.deploys[d].order());
        if let Some(x) = root_cause(&incident.body) {
            let named: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&d| self.h.deploys[d].sha.to_ascii_lowercase().starts_with(&x))
                .collect();
            if !named.is_empty() {
                return latest_before(&named).or_else(|| earliest(&named));
            }
            let shipping: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&d| self.shipped(d).iter().any(|c| c.sha.to_ascii_lowercase().starts_with(&x)))
                .collect();
            if let Some(d) = earliest(&shipping) {
                return Some(d);
            }
        }
        latest_before(&candidates)
    }

    /// linking.md (see the top of this file).
    fn parent(&self, node: Node) -> Option<Node> {
        match node {
            Node::Deploy(d) => {
                let deploy = &self.h.deploys[d];
                self.h
                    .prs
                    .iter()
                    .position(|p| {
                        p.repo == deploy.repo
                            && ((p.merged.is_some()
                                && p.merge_sha.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&deploy.sha)))
                                || p.head_sha().eq_ignore_ascii_case(&deploy.sha))
                    })
                    .map(Node::Pr)
            }
            Node::Pr(p) => {
                let pr = &self.h.prs[p];
                let n = closing_mention(&format!("{}\n{}", pr.title, pr.body))?;
                self.h.issues.iter().position(|i| i.repo == pr.repo && i.number == n).map(Node::Issue)
            }
            Node::Issue(i) => self.attributed.get(&i).copied().flatten().map(Node::Deploy),
        }
    }

    /// Whether an incident is among the ancestors of `node` (not `node` itself).
    fn incident_above(&self, node: Node) -> bool {
        let mut seen = HashSet::from([node]);
        let mut current = self.parent(node);
        while let Some(n) = current {
            if !seen.insert(n) {
                return false;
            }
            if let Node::Issue(i) = n
                && self.h.issues[i].incident()
            {
                return true;
            }
            current = self.parent(n);
        }
        false
    }

    /// The keys for window [since, until) and an optional repository filter.
    fn keys(&self, since: i64, until: i64, repo: Option<&str>) -> Value {
        let h = self.h;
        let days = (until - since) as f64 / 86_400.0;
        // `repo` may name several, comma-separated, whatever their case, as
        // the API takes them.
        let in_repo = |r: &str| repo.is_none_or(|want| want.split(',').any(|w| w.eq_ignore_ascii_case(r)));
        let deploys: Vec<usize> = (0..h.deploys.len())
            .filter(|&d| {
                let deploy = &h.deploys[d];
                deploy.production()
                    && in_repo(deploy.repo)
                    && deploy.outcome().is_some()
                    && deploy.end_time().is_some_and(|end| since <= end && end < until)
            })
            .collect();
        let successes: Vec<usize> = deploys.iter().copied().filter(|&d| h.deploys[d].successful()).collect();

        let days_with: BTreeSet<i64> =
            successes.iter().map(|&d| h.deploys[d].end_time().unwrap().div_euclid(86_400)).collect();

        let (mut leads, mut pickups, mut reviews, mut deploy_times) = (vec![], vec![], vec![], vec![]);
        let mut unmatched = 0;
        for &d in &successes {
            let end = h.deploys[d].end_time().unwrap();
            if self.sets[&d].is_none() {
                unmatched += 1;
            }
            for change in self.shipped(d) {
                leads.push((end - change.time) as f64);
                if let Some(p) = change.pr {
                    let pr = &h.prs[p];
                    if let Some(first) = pr.first_review() {
                        pickups.push((first - pr.created) as f64);
                        if let Some(merged) = pr.merged {
                            reviews.push((merged - first) as f64);
                        }
                    }
                    if let Some(merged) = pr.merged {
                        deploy_times.push((end - merged) as f64);
                    }
                }
            }
        }

        let caused: HashSet<usize> = self.attributed.values().flatten().copied().collect();
        let failed =
            deploys.iter().filter(|&&d| h.deploys[d].outcome() == Some("failure") || caused.contains(&d)).count();

        let failures: Vec<usize> =
            deploys.iter().copied().filter(|&d| h.deploys[d].outcome() == Some("failure")).collect();
        let mut recoveries = Vec::new();
        for &f in &failures {
            let failure = &h.deploys[f];
            let end = failure.end_time().unwrap();
            let next = h
                .deploys
                .iter()
                .filter(|n| n.successful() && n.repo == failure.repo && n.env == failure.env)
                .filter_map(|n| n.end_time())
                .filter(|&n| n > end)
                .min();
            if let Some(next) = next {
                recoveries.push((next - end) as f64);
            }
        }

        // Incidents closed in the window that no deploy is attributed to.
        let unattributed = h
            .issues
            .iter()
            .enumerate()
            .filter(|(_, i)| i.incident() && in_repo(i.repo))
            .filter(|(_, i)| i.closed.is_some_and(|c| since <= c && c < until))
            .filter(|(n, _)| self.attributed.get(n).copied().flatten().is_none())
            .count();
        let restores: Vec<f64> = h
            .issues
            .iter()
            .filter(|i| i.incident() && in_repo(i.repo))
            .filter_map(|i| i.closed.filter(|&c| since <= c && c < until).map(|c| (c - i.opened) as f64))
            .collect();

        let reworked: Vec<usize> = deploys
            .iter()
            .copied()
            .filter(|&d| {
                let shipped = self.shipped(d);
                shipped.iter().any(|c| c.revert || c.hotfix)
                    || self.incident_above(Node::Deploy(d))
                    || shipped.iter().filter_map(|c| c.pr).any(|p| self.incident_above(Node::Pr(p)))
            })
            .collect();
        let rework = reworked.len();

        // The rows behind each count (`/api/v1/dora/items`), as sorted
        // `key` or `key value` lines (values in whole seconds).
        let keys_of = |list: &[usize]| -> Vec<String> {
            let mut keys: Vec<String> = list.iter().map(|&d| h.deploys[d].key()).collect();
            keys.sort();
            keys
        };
        let mut change_rows = Vec::new();
        for &d in &successes {
            let end = h.deploys[d].end_time().unwrap();
            for change in self.shipped(d) {
                change_rows.push(format!("{} {}", h.deploys[d].key(), end - change.time));
            }
        }
        change_rows.sort();
        let failed_rows: Vec<usize> = deploys
            .iter()
            .copied()
            .filter(|&d| h.deploys[d].outcome() == Some("failure") || caused.contains(&d))
            .collect();
        let mut failure_rows: Vec<String> = failures
            .iter()
            .map(|&f| {
                let failure = &h.deploys[f];
                let end = failure.end_time().unwrap();
                let next = h
                    .deploys
                    .iter()
                    .filter(|n| n.successful() && n.repo == failure.repo && n.env == failure.env)
                    .filter_map(|n| n.end_time())
                    .filter(|&n| n > end)
                    .min();
                match next {
                    Some(next) => format!("{} {}", failure.key(), next - end),
                    None => failure.key(),
                }
            })
            .collect();
        failure_rows.sort();
        let mut incident_rows: Vec<String> = h
            .issues
            .iter()
            .filter(|i| i.incident() && in_repo(i.repo))
            .filter_map(|i| {
                i.closed.filter(|&c| since <= c && c < until).map(|c| format!("{} {}", i.key(), c - i.opened))
            })
            .collect();
        incident_rows.sort();
        // What the recent deploys panel shows beside each successful deploy:
        // the median lead time of its changes, whether an incident is
        // attributed to it, whether it is rework.
        let mut recent_rows: Vec<String> = successes
            .iter()
            .map(|&d| {
                let end = h.deploys[d].end_time().unwrap();
                let leads: Vec<f64> = self.shipped(d).iter().map(|c| (end - c.time) as f64).collect();
                let median = median(&leads).map_or("none".to_string(), |m| format!("{}", m.round() as i64));
                format!(
                    "{} median={median} incident={} rework={}",
                    h.deploys[d].key(),
                    caused.contains(&d),
                    reworked.contains(&d)
                )
            })
            .collect();
        recent_rows.sort();
        let items = json!({
            "recent": recent_rows,
            "deployments": keys_of(&successes),
            "changes": change_rows,
            "failed": keys_of(&failed_rows),
            "incidents": incident_rows,
            "failures": failure_rows,
            "rework": keys_of(&reworked),
        });

        json!({
            "deployment_frequency": {
                "deployments": successes.len(),
                "per_day": successes.len() as f64 / days,
                "deployment_days_per_week": days_with.len() as f64 / (days / 7.0),
            },
            "lead_time_for_changes": {
                "changes": leads.len(),
                "median_seconds": median(&leads),
                "p90_seconds": percentile(&leads, 0.9),
                "unmatched_deploys": unmatched,
                "breakdown": {
                    "coding": Value::Null,
                    "pickup": median(&pickups),
                    "review": median(&reviews),
                    "deploy": median(&deploy_times),
                },
            },
            "change_failure_rate": {
                "deployments": deploys.len(),
                "failed": failed,
                "ratio": ratio(failed, deploys.len()),
            },
            "time_to_restore": {
                "incidents": restores.len(),
                "median_seconds": median(&restores),
                "unattributed_incidents": unattributed,
            },
            "failed_deployment_recovery_time": {
                "failures": failures.len(),
                "median_seconds": median(&recoveries),
            },
            "deployment_rework_rate": {
                "deployments": deploys.len(),
                "rework": rework,
                "ratio": ratio(rework, deploys.len()),
            },
            "items": items,
        })
    }

    fn parents(&self) -> Value {
        let mut out = Map::new();
        for (i, issue) in self.h.issues.iter().enumerate() {
            if issue.incident() {
                let parent = self.attributed[&i].map(|d| self.h.deploys[d].key());
                out.insert(issue.key(), json!(parent));
            }
        }
        Value::Object(out)
    }

    /// What the oracle derived, for failure messages: change lists and sets.
    fn explain(&self) -> String {
        let mut out = String::new();
        for repo in self.h.repos() {
            let list: Vec<String> = self.changes[repo]
                .iter()
                .map(|c| {
                    let mut s = short(&c.sha).to_string();
                    if let Some(p) = c.pr {
                        let _ = write!(s, "(#{})", self.h.prs[p].number);
                    }
                    if c.revert {
                        s.push_str("(revert)");
                    }
                    if c.hotfix {
                        s.push_str("(hotfix)");
                    }
                    s
                })
                .collect();
            let _ = writeln!(out, "changes of {repo}: {}", list.join(" "));
        }
        for (d, deploy) in self.h.deploys.iter().enumerate() {
            if let Some(set) = self.sets.get(&d) {
                let text = match set {
                    None => "unmatched".to_string(),
                    Some(_) => {
                        let shas: Vec<&str> = self.shipped(d).iter().map(|c| short(&c.sha)).collect();
                        format!("ships [{}]", shas.join(" "))
                    }
                };
                let _ = writeln!(out, "deploy {} {} {text}", deploy.id, deploy.env);
            }
        }
        out
    }
}

/// docs/metrics.md, "Changes and change sets": push commits, PR-only changes, their pull requests.
/// A repository's changes in branch order, and per sha taken off the branch
/// the place in push order of the forced push that took it off.
fn change_list(h: &History, repo: &str) -> (Vec<Change>, HashMap<String, usize>) {
    // 1. Push commits in branch order.
    let pushes: Vec<&PushH> = h
        .pushes
        .iter()
        .filter(|p| p.repo == repo && p.branch == "main" && (p.forced || !p.commits.is_empty()))
        .collect();
    let order_key = |p: &PushH| (p.pushed_at(), p.after().to_string());
    let mut roots: Vec<usize> =
        (0..pushes.len()).filter(|&i| !pushes.iter().any(|q| q.after() == pushes[i].before)).collect();
    roots.sort_by_key(|&i| order_key(pushes[i]));
    let mut taken = vec![false; pushes.len()];
    let mut order: Vec<usize> = Vec::new();
    for root in roots {
        let mut current = Some(root);
        while let Some(i) = current {
            if taken[i] {
                break;
            }
            taken[i] = true;
            order.push(i);
            current = (0..pushes.len())
                .filter(|&j| !taken[j] && pushes[j].before == pushes[i].after())
                .min_by_key(|&j| order_key(pushes[j]));
        }
    }
    let mut rest: Vec<usize> = (0..pushes.len()).filter(|&i| !taken[i]).collect();
    rest.sort_by_key(|&i| order_key(pushes[i]));
    order.extend(rest);

    // Per sha: the place in `order` of the first forced push that took it off
    // the branch (the generator's own record; the payload only says "forced").
    let mut dropped: HashMap<String, usize> = HashMap::new();
    for (place, &i) in order.iter().enumerate() {
        for sha in &pushes[i].drops {
            dropped.entry(sha.to_ascii_lowercase()).or_insert(place);
        }
    }

    // (commit, its push's pushed_at, its push's place in `order`), a sha once.
    let mut push_commits: Vec<(&Commit, i64, usize)> = Vec::new();
    for (place, &i) in order.iter().enumerate() {
        for commit in &pushes[i].commits {
            if !push_commits.iter().any(|(c, _, _)| c.sha.eq_ignore_ascii_case(&commit.sha)) {
                push_commits.push((commit, pushes[i].pushed_at(), place));
            }
        }
    }

    // 2. Merged pull requests whose merge commit is not a push commit.
    let mut pr_only: Vec<usize> = (0..h.prs.len())
        .filter(|&p| {
            let pr = &h.prs[p];
            pr.repo == repo
                && pr.merged.is_some()
                && pr
                    .merge_sha
                    .as_deref()
                    .is_some_and(|sha| !push_commits.iter().any(|(c, _, _)| c.sha.eq_ignore_ascii_case(sha)))
        })
        .collect();
    pr_only.sort_by_key(|&p| (h.prs[p].merged, h.prs[p].merge_sha.clone()));
    let place = |p: usize| {
        let merged = h.prs[p].merged.unwrap();
        push_commits.iter().position(|(_, pushed_at, _)| *pushed_at > merged).unwrap_or(push_commits.len())
    };

    let revert = |text: &str| text.starts_with("Revert \"");
    let hotfix = |pr: &Pr| pr.labels.iter().any(|l| l.eq_ignore_ascii_case("hotfix"));
    let pr_change = |p: usize| {
        let pr = &h.prs[p];
        Change {
            sha: pr.merge_sha.clone().unwrap(),
            time: pr.created,
            pr: Some(p),
            revert: revert(&pr.title),
            hotfix: hotfix(pr),
            push: 0,
        }
    };
    let commit_change = |commit: &Commit| {
        // 3. Its pull request: named by the message, else the one merged as it.
        let named =
            pr_named_by(&commit.message).and_then(|n| h.prs.iter().position(|p| p.repo == repo && p.number == n));
        let merged_as = || {
            h.prs.iter().position(|p| {
                p.repo == repo
                    && p.merged.is_some()
                    && p.merge_sha.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&commit.sha))
            })
        };
        let pr = named.or_else(merged_as);
        Change {
            sha: commit.sha.clone(),
            time: pr.map_or(commit.at, |p| h.prs[p].created),
            pr,
            revert: revert(&commit.message) || pr.is_some_and(|p| revert(&h.prs[p].title)),
            hotfix: pr.is_some_and(|p| hotfix(&h.prs[p])),
            push: 0,
        }
    };

    let mut changes: Vec<Change> = Vec::new();
    // A PR-only change belongs with the pushed change after it; after the
    // last one, with the branch as the last push left it.
    let last_push = order.len().saturating_sub(1);
    for (index, (commit, _, push)) in push_commits.iter().enumerate() {
        for &p in pr_only.iter().filter(|&&p| place(p) == index) {
            changes.push(Change { push: *push, ..pr_change(p) });
        }
        changes.push(Change { push: *push, ..commit_change(commit) });
    }
    for &p in pr_only.iter().filter(|&&p| place(p) == push_commits.len()) {
        changes.push(Change { push: last_push, ..pr_change(p) });
    }
    (changes, dropped)
}

/// One measurement: a window and a repository filter.
struct View {
    name: String,
    since: i64,
    until: i64,
    /// One repository, or several comma-separated.
    repo: Option<String>,
}

fn views(h: &History) -> Vec<View> {
    let (since, until) = full_window();
    let (inner_since, inner_until) = inner_window();
    let mut views = vec![
        View { name: "full".into(), since, until, repo: None },
        View { name: "inner".into(), since: inner_since, until: inner_until, repo: None },
    ];
    let repos = h.repos();
    if repos.len() > 1 {
        for repo in &repos {
            views.push(View { name: format!("full[{repo}]"), since, until, repo: Some(repo.to_string()) });
        }
    }
    if repos.len() > 1 {
        // Two at once, the second spelt in upper case.
        let two = format!("{},{}", repos.first().unwrap(), repos.last().unwrap().to_uppercase());
        views.push(View { name: format!("full[{two}]"), since, until, repo: Some(two) });
    }
    views
}

/// The oracle's answer, shaped like the store's: one `dora()` object per view
/// and `incident_parents` (incident key → deploy key or null).
fn expected(h: &History) -> Value {
    let oracle = Oracle::new(h);
    let mut out = Map::new();
    for view in views(h) {
        out.insert(view.name.clone(), oracle.keys(view.since, view.until, view.repo.as_deref()));
    }
    out.insert("incident_parents".into(), oracle.parents());
    Value::Object(out)
}

// ---------------------------------------------------------------- comparing

fn close_enough(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Every leaf of `expected` that `actual` gets wrong, as `path: store X vs oracle Y`.
fn mismatches(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match expected {
        Value::Object(fields) => {
            for (name, value) in fields {
                let sub = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                mismatches(&sub, value, actual.get(name).unwrap_or(&Value::Null), out);
            }
        }
        Value::Number(n) => {
            let wanted = n.as_f64().unwrap();
            if !actual.as_f64().is_some_and(|a| close_enough(a, wanted)) {
                out.push(format!("{path}: store {actual} vs oracle {expected}"));
            }
        }
        _ => {
            if actual != expected {
                out.push(format!("{path}: store {actual} vs oracle {expected}"));
            }
        }
    }
}

// ---------------------------------------------------------------- deliveries

fn in_repo(body: &mut Value, repo: &str) {
    let (owner, name) = repo.split_once('/').unwrap();
    body["repository"]["name"] = json!(name);
    body["repository"]["full_name"] = json!(repo);
    body["repository"]["owner"]["login"] = json!(owner);
    body["repository"]["html_url"] = json!(format!("https://github.com/{repo}"));
}

fn labels(names: &[String]) -> Value {
    json!(names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>())
}

fn pr_payload(pr: &Pr, action: &str, state: &str, updated: i64) -> Value {
    let merged_at = if state == "closed" { pr.merged.map(rfc3339) } else { None };
    let mut body = pull_request(action, state, &rfc3339(updated), merged_at.as_deref());
    in_repo(&mut body, pr.repo);
    let p = &mut body["pull_request"];
    p["number"] = json!(pr.number);
    p["created_at"] = json!(rfc3339(pr.created));
    p["head"]["ref"] = json!(format!("feature-{}", pr.number));
    p["head"]["sha"] = json!(pr.head_sha());
    p["base"]["ref"] = json!("main");
    p["title"] = json!(pr.title);
    p["body"] = json!(pr.body);
    p["labels"] = labels(&pr.labels);
    if state == "closed" {
        // GitHub fills merge_commit_sha for unmerged pull requests too.
        p["merge_commit_sha"] = json!(pr.merge_sha);
        if pr.merged.is_none() {
            p["closed_at"] = json!(pr.closed.map(rfc3339));
        }
    } else {
        p["merge_commit_sha"] = Value::Null;
    }
    body
}

fn review_payload(pr: &Pr, at: i64, state: &str) -> Value {
    let mut body = review(state, &rfc3339(at));
    in_repo(&mut body, pr.repo);
    let p = &mut body["pull_request"];
    p["number"] = json!(pr.number);
    p["created_at"] = json!(rfc3339(pr.created));
    p["updated_at"] = json!(rfc3339(at));
    p["head"]["ref"] = json!(format!("feature-{}", pr.number));
    p["head"]["sha"] = json!(pr.head_sha());
    p["title"] = json!(pr.title);
    p["body"] = json!(pr.body);
    p["labels"] = labels(&pr.labels);
    body
}

fn push_payload(push: &PushH) -> Value {
    let mut body = push_merge(&rfc3339(push.pushed_at()));
    in_repo(&mut body, push.repo);
    body["ref"] = json!(format!("refs/heads/{}", push.branch));
    body["repository"]["default_branch"] = json!("main");
    body["before"] = json!(push.before);
    body["after"] = json!(push.after());
    body["forced"] = json!(push.forced);
    let commit = |c: &Commit| json!({"id": c.sha, "message": c.message, "timestamp": rfc3339(c.at)});
    body["commits"] = json!(push.commits.iter().map(commit).collect::<Vec<_>>());
    body["head_commit"] = commit(push.head());
    body
}

fn issue_payload(i: &Issue, closed: bool) -> Value {
    let (action, state, updated, closed_at) = match (closed, i.closed) {
        (true, Some(c)) => ("closed", "closed", c, Some(rfc3339(c))),
        _ => ("opened", "open", i.opened, None),
    };
    let mut body = issue(action, state, &rfc3339(updated), closed_at.as_deref());
    in_repo(&mut body, i.repo);
    body["issue"]["number"] = json!(i.number);
    body["issue"]["created_at"] = json!(rfc3339(i.opened));
    body["issue"]["title"] = json!(format!("Issue {}", i.number));
    body["issue"]["body"] = json!(i.body);
    body["issue"]["labels"] = labels(&i.labels);
    body
}

/// The history as GitHub deliveries (event name, payload).
fn deliveries(h: &History) -> Vec<(&'static str, Value)> {
    let mut list: Vec<(&'static str, Value)> = Vec::new();
    for push in &h.pushes {
        list.push(("push", push_payload(push)));
    }
    for pr in &h.prs {
        list.push(("pull_request", pr_payload(pr, "opened", "open", pr.created)));
        if let Some(end) = pr.merged.or(pr.closed) {
            list.push(("pull_request", pr_payload(pr, "closed", "closed", end)));
        }
        for (k, &at) in pr.reviews.iter().enumerate() {
            let state = if k == 0 { "commented" } else { "approved" };
            list.push(("pull_request_review", review_payload(pr, at, state)));
        }
    }
    for d in &h.deploys {
        let mut start = deployment(&d.sha, &rfc3339(d.start));
        in_repo(&mut start, d.repo);
        start["deployment"]["id"] = json!(d.id);
        start["deployment"]["environment"] = json!(d.env);
        list.push(("deployment", start));
        if let Some((end, state)) = d.end {
            let mut status = deployment_status(&d.sha, &rfc3339(d.start), state, &rfc3339(end));
            in_repo(&mut status, d.repo);
            status["deployment"]["id"] = json!(d.id);
            status["deployment"]["environment"] = json!(d.env);
            status["deployment_status"]["environment"] = json!(d.env);
            list.push(("deployment_status", status));
        }
    }
    for i in &h.issues {
        list.push(("issues", issue_payload(i, false)));
        if i.closed.is_some() {
            list.push(("issues", issue_payload(i, true)));
        }
    }
    list
}

// ---------------------------------------------------------------- the store's answer

async fn fill(store: &Store, list: &[(&'static str, Value)], batches: &[Vec<usize>]) {
    for batch in batches {
        let items: Vec<_> = batch
            .iter()
            .map(|&i| {
                let (event, body) = &list[i];
                let headers = [
                    ("X-GitHub-Event".to_string(), event.to_string()),
                    ("X-GitHub-Delivery".to_string(), format!("oracle-{i}")),
                ];
                let delivery = Delivery::new("github", headers, serde_json::to_vec(body).unwrap(), Timestamp(0));
                prepare(by_name("github").unwrap(), delivery, &SourceOptions::default()).unwrap()
            })
            .collect();
        store.apply_batch(&items, false).await.unwrap();
    }
}

fn window(since: i64, until: i64) -> Window {
    Window { since: Timestamp::from_unix_seconds(since).unwrap(), until: Timestamp::from_unix_seconds(until).unwrap() }
}

/// The store's answer, shaped like [`expected`].
async fn measured(store: &Store, h: &History) -> Value {
    let mut out = Map::new();
    for view in views(h) {
        let filter = DoraFilter { repo: view.repo.clone(), ..DoraFilter::default() };
        let window = window(view.since, view.until);
        let mut keys = dora(store, window, &filter).await.unwrap();
        keys["items"] = store_items(store, window, &filter).await;
        out.insert(view.name.clone(), keys);
    }
    let mut parents = Map::new();
    for issue in h.issues.iter().filter(|i| i.incident()) {
        let span = store.span(&issue.key()).await.unwrap();
        parents.insert(issue.key(), json!(span.and_then(|s| s.parent_key)));
    }
    out.insert("incident_parents".into(), Value::Object(parents));
    Value::Object(out)
}

/// `/api/v1/dora/items` for each key, shaped like the oracle's `items`.
async fn store_items(store: &Store, window: Window, filter: &DoraFilter) -> Value {
    let mut out = Map::new();
    for key in ItemKey::ALL {
        let items = dora_items(store, window, filter, key, None).await.unwrap();
        // A page of one row still counts them all (the drawer's `count`).
        let (page, count) = dora_items_page(store, window, filter, key, None, Some(1)).await.unwrap();
        assert_eq!((page.len(), count), (items.len().min(1), items.len() as u64), "{key:?}: the count beside a page");
        let mut rows: Vec<String> = items
            .iter()
            .map(|item| {
                // A change's row opens its pull request; the oracle names its deploy.
                let span = if key == ItemKey::Changes { &item["deploy_key"] } else { &item["span_key"] };
                let span = span.as_str().unwrap().to_string();
                match item["value"].as_f64() {
                    Some(seconds) if key != ItemKey::Deployments => format!("{span} {}", seconds.round() as i64),
                    _ => span,
                }
            })
            .collect();
        rows.sort();
        out.insert(key.name().into(), json!(rows));
        if key == ItemKey::Deployments {
            let mut recent: Vec<String> = items
                .iter()
                .map(|item| {
                    let median = item["median_lead_time_seconds"]
                        .as_f64()
                        .map_or("none".to_string(), |m| format!("{}", m.round() as i64));
                    let incident = !item["incident_key"].is_null();
                    let rework = item["rework"].as_bool().unwrap();
                    format!(
                        "{} median={median} incident={incident} rework={rework}",
                        item["span_key"].as_str().unwrap()
                    )
                })
                .collect();
            recent.sort();
            out.insert("recent".into(), json!(recent));
        }
    }
    Value::Object(out)
}

enum Backend {
    Sqlite,
    /// SQLite, then `valuestream rebuild`: everything derived again from the
    /// stored deliveries, read back in arrival order (here all received at
    /// once, so by delivery id), three to a page.
    SqliteRebuilt,
    /// PostgreSQL, then `valuestream rebuild`.
    PostgresRebuilt,
    Postgres,
    /// Two stores (replicas) on one PostgreSQL database, the deliveries split
    /// between them and applied concurrently.
    PostgresReplicas,
}

async fn store_answer(backend: &Backend, h: &History, batches: &[Vec<usize>]) -> Value {
    let list = deliveries(h);
    match backend {
        Backend::Sqlite => {
            let dir = TempDir::new();
            let store = Store::open(&format!("sqlite://{}", dir.0.join("oracle.db").display())).await.unwrap();
            store.migrate().await.unwrap();
            fill(&store, &list, batches).await;
            let answer = measured(&store, h).await;
            store.close().await;
            answer
        }
        Backend::SqliteRebuilt => {
            let dir = TempDir::new();
            let store = Store::open(&format!("sqlite://{}", dir.0.join("oracle.db").display())).await.unwrap();
            store.migrate().await.unwrap();
            fill(&store, &list, batches).await;
            valuestream::rebuild::rebuild_in_pages(&store, &SourceOptions::default(), false, 3).await.unwrap();
            let answer = measured(&store, h).await;
            store.close().await;
            answer
        }
        Backend::Postgres => {
            let db = PostgresDb::create().await;
            let store = Store::open(&db.url).await.unwrap();
            store.migrate().await.unwrap();
            fill(&store, &list, batches).await;
            let answer = measured(&store, h).await;
            store.close().await;
            db.drop_database().await;
            answer
        }
        Backend::PostgresRebuilt => {
            let db = PostgresDb::create().await;
            let store = Store::open(&db.url).await.unwrap();
            store.migrate().await.unwrap();
            fill(&store, &list, batches).await;
            valuestream::rebuild::rebuild_in_pages(&store, &SourceOptions::default(), false, 3).await.unwrap();
            let answer = measured(&store, h).await;
            store.close().await;
            db.drop_database().await;
            answer
        }
        Backend::PostgresReplicas => {
            let db = PostgresDb::create().await;
            let (one, two) = (Store::open(&db.url).await.unwrap(), Store::open(&db.url).await.unwrap());
            one.migrate().await.unwrap();
            two.migrate().await.unwrap();
            let (odd, even): (Vec<Vec<usize>>, Vec<Vec<usize>>) = batches.iter().cloned().enumerate().fold(
                (Vec::new(), Vec::new()),
                |(mut odd, mut even), (i, batch)| {
                    if i % 2 == 1 {
                        odd.push(batch)
                    } else {
                        even.push(batch)
                    }
                    (odd, even)
                },
            );
            tokio::join!(fill(&one, &list, &odd), fill(&two, &list, &even));
            let answer = measured(&one, h).await;
            assert_eq!(measured(&two, h).await, answer, "both replicas read the same numbers");
            one.close().await;
            two.close().await;
            db.drop_database().await;
            answer
        }
    }
}

/// The mismatches between the store (deliveries in `batches`) and the oracle.
fn disagreements(backend: &Backend, h: &History, batches: &[Vec<usize>]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let actual = runtime.block_on(store_answer(backend, h, batches));
    let mut out = Vec::new();
    mismatches("", &expected(h), &actual, &mut out);
    out
}

fn report(h: &History, found: &[String]) -> String {
    format!(
        "the store disagrees with the oracle on {} values:\n  {}\n\nhistory:\n{h}\noracle:\n{}",
        found.len(),
        found.join("\n  "),
        Oracle::new(h).explain()
    )
}

fn property(backend: &Backend, plan: &Plan, grouped: bool) {
    let h = plan.history();
    let order = shuffled(deliveries(&h).len(), plan.order_seed);
    let found = disagreements(backend, &h, &batches(&order, plan.order_seed, grouped));
    assert!(found.is_empty(), "{}", report(&h, &found));
}

// ---------------------------------------------------------------- the generator

/// One step of a generated history; the builder interprets it at "now" and
/// then moves the clock on by `gap` minutes. Choice fields are taken modulo
/// their number of options, so any value (and any shrunk value) is valid.
#[derive(Clone, Debug)]
enum Action {
    /// A commit on the repository's main branch (pushed by a later `Push`).
    Commit {
        repo: u8,
        kind: u8,
        flavor: u8,
        reviews: u8,
        lag: u16,
        gap: u16,
    },
    /// A pull request merged without its merge commit in any push, or closed unmerged.
    PrOnly {
        repo: u8,
        kind: u8,
        flavor: u8,
        reviews: u8,
        lag: u16,
        gap: u16,
    },
    Push {
        repo: u8,
        branch: u8,
        gap: u16,
    },
    /// A forced push to main: a reset back to an earlier commit, or an amend
    /// or rebase of the latest ones.
    Force {
        repo: u8,
        how: u8,
        gap: u16,
    },
    Deploy {
        repo: u8,
        env: u8,
        target: u8,
        pick: u16,
        outcome: u8,
        minutes: u16,
        gap: u16,
    },
    Incident {
        repo: u8,
        root: u8,
        pick: u16,
        label: u8,
        minutes: u16,
        gap: u16,
    },
}

#[derive(Clone, Debug)]
struct Plan {
    two_repos: bool,
    actions: Vec<Action>,
    order_seed: u64,
}

impl Plan {
    fn history(&self) -> History {
        let mut b = Builder::new(if self.two_repos { 2 } else { 1 });
        for action in &self.actions {
            if b.now > history_limit() {
                break;
            }
            b.apply(action);
        }
        b.h
    }
}

fn gap() -> BoxedStrategy<u16> {
    prop_oneof![2 => Just(0u16), 3 => 1u16..60, 2 => 60u16..720].boxed()
}

fn action() -> impl Strategy<Value = Action> {
    let u = any::<u8>;
    prop_oneof![
        6 => (u(), u(), u(), u(), 1u16..3000, gap()).prop_map(|(repo, kind, flavor, reviews, lag, gap)| {
            Action::Commit { repo, kind, flavor, reviews, lag, gap }
        }),
        1 => (u(), u(), u(), u(), 1u16..3000, gap()).prop_map(|(repo, kind, flavor, reviews, lag, gap)| {
            Action::PrOnly { repo, kind, flavor, reviews, lag, gap }
        }),
        2 => (u(), u(), gap()).prop_map(|(repo, branch, gap)| Action::Push { repo, branch, gap }),
        1 => (u(), u(), gap()).prop_map(|(repo, how, gap)| Action::Force { repo, how, gap }),
        3 => (u(), u(), u(), any::<u16>(), u(), 1u16..90, gap()).prop_map(
            |(repo, env, target, pick, outcome, minutes, gap)| Action::Deploy {
                repo, env, target, pick, outcome, minutes, gap,
            }
        ),
        1 => (u(), u(), any::<u16>(), u(), any::<u16>(), gap()).prop_map(
            |(repo, root, pick, label, minutes, gap)| Action::Incident { repo, root, pick, label, minutes, gap }
        ),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (any::<bool>(), prop::collection::vec(action(), 50..160), any::<u64>())
        .prop_map(|(two_repos, actions, order_seed)| Plan { two_repos, actions, order_seed })
}

struct Builder {
    h: History,
    now: i64,
    repos: usize,
    pending: Vec<Vec<Commit>>,
    last_after: Vec<String>,
    last_pushed: Vec<Option<Commit>>,
    /// Shas that reached main (pushed, or merged PR-only), in time order.
    available: Vec<Vec<String>>,
    /// The pushed commits on main now, in branch order.
    main: Vec<Vec<Commit>>,
    next_pr: Vec<u64>,
    next_issue: Vec<u64>,
    next_deploy: u64,
    serial: u64,
}

impl Builder {
    fn new(repos: usize) -> Builder {
        Builder {
            h: History::default(),
            now: history_start() + 6 * 3600,
            repos,
            pending: vec![Vec::new(); 2],
            last_after: vec![ZEROS.to_string(); 2],
            last_pushed: vec![None, None],
            available: vec![Vec::new(); 2],
            main: vec![Vec::new(); 2],
            next_pr: vec![1, 1],
            next_issue: vec![900, 900],
            next_deploy: 1,
            serial: 0,
        }
    }

    fn sha(&mut self, what: &str) -> String {
        self.serial += 1;
        sha_of(&format!("{what} {}", self.serial))
    }

    fn repo(&self, r: u8) -> usize {
        r as usize % self.repos
    }

    fn apply(&mut self, action: &Action) {
        let gap = match *action {
            Action::Commit { repo, kind, flavor, reviews, lag, gap } => {
                self.commit(self.repo(repo), kind, flavor, reviews, lag);
                gap
            }
            Action::PrOnly { repo, kind, flavor, reviews, lag, gap } => {
                self.pr_only(self.repo(repo), kind, flavor, reviews, lag);
                gap
            }
            Action::Push { repo, branch, gap } => {
                self.push(self.repo(repo), branch);
                gap
            }
            Action::Force { repo, how, gap } => {
                self.force(self.repo(repo), how);
                gap
            }
            Action::Deploy { repo, env, target, pick, outcome, minutes, gap } => {
                self.deploy(self.repo(repo), env, target, pick, outcome, minutes);
                gap
            }
            Action::Incident { repo, root, pick, label, minutes, gap } => {
                self.incident(self.repo(repo), root, pick, label, minutes);
                gap
            }
        };
        self.now += i64::from(gap) * 60;
    }

    /// A pull request of `repo` merged now as `merge_sha` (or closed unmerged).
    fn new_pr(&mut self, repo: usize, flavor: u8, reviews: u8, lag: u16, merge_sha: String, merged: bool) -> u64 {
        let number = self.next_pr[repo];
        self.next_pr[repo] += 1;
        let mut created = (self.now - i64::from(lag) * 60).max(history_start());
        let mut pr = merged_pr(REPOS[repo], number, created, self.now, &merge_sha);
        match flavor % 8 {
            1 => pr.title = format!("Revert \"Change {}\"", number.saturating_sub(1).max(1)),
            2 => pr.labels = vec![["hotfix", "Hotfix", "HOTFIX"][(flavor / 8) as usize % 3].to_string()],
            3 | 4 => {
                // Fixes an issue opened (at least two minutes) before: created after it.
                let open: Vec<&Issue> =
                    self.h.issues.iter().filter(|i| i.repo == REPOS[repo] && i.opened + 120 <= self.now).collect();
                if !open.is_empty() {
                    let issue = open[(flavor / 8) as usize % open.len()];
                    pr.body = format!("Fixes #{}\n\nThe fix.", issue.number);
                    created = created.max(issue.opened + 60);
                }
            }
            5 => pr.labels = vec!["bug".to_string()],
            _ => {}
        }
        // Opened strictly before it closes: snapshots of one object never tie.
        pr.created = created.min(self.now - 60);
        let created = pr.created;
        let count = i64::from(reviews % 3);
        pr.reviews = (1..=count).map(|k| created + (self.now - created) * k / (count + 1)).collect();
        if !merged {
            pr.merged = None;
            pr.closed = Some(self.now);
        }
        self.h.prs.push(pr);
        number
    }

    fn commit(&mut self, repo: usize, kind: u8, flavor: u8, reviews: u8, lag: u16) {
        let sha = self.sha("commit");
        let message = match kind % 10 {
            3 => format!("Revert \"Change {}\"\n\nThis reverts commit {}.", self.serial, short(&sha)),
            4 | 5 => {
                let n = self.new_pr(repo, flavor, reviews, lag, sha.clone(), true);
                format!("Merge pull request #{n} from octo-org/feature-{n}\n\nChange {n}")
            }
            6 => {
                let n = self.new_pr(repo, flavor, reviews, lag, sha.clone(), true);
                format!("Change {n} (#{n})")
            }
            // A rebase merge: only the pull request's merge_commit_sha names it.
            7 => {
                let n = self.new_pr(repo, flavor, reviews, lag, sha.clone(), true);
                format!("Change {n}")
            }
            // Names a pull request no delivery ever describes.
            8 => format!("Merge pull request #{} from octo-org/lost", 5000 + self.serial),
            _ => format!("Change {}", self.serial),
        };
        self.pending[repo].push(Commit { sha, message, at: self.now });
    }

    fn pr_only(&mut self, repo: usize, kind: u8, flavor: u8, reviews: u8, lag: u16) {
        let sha = self.sha("merge");
        let merged = kind % 4 != 3;
        self.new_pr(repo, flavor, reviews, lag, sha.clone(), merged);
        if merged {
            self.available[repo].push(sha);
        }
    }

    fn push(&mut self, repo: usize, branch: u8) {
        if self.pending[repo].is_empty() {
            return;
        }
        let mut commits = std::mem::take(&mut self.pending[repo]);
        if branch.is_multiple_of(12) {
            // To another branch: these commits never reach main.
            let before = self.sha("feature");
            self.h.pushes.push(PushH::plain(REPOS[repo], "feature-x", before, commits));
            return;
        }
        self.available[repo].extend(commits.iter().map(|c| c.sha.clone()));
        if branch % 12 == 1
            && let Some(previous) = self.last_pushed[repo].clone()
        {
            // Repeats the previous push's head commit first (first occurrence wins).
            commits.insert(0, previous);
        }
        let new: Vec<Commit> =
            commits.iter().filter(|c| !self.main[repo].iter().any(|m| m.sha == c.sha)).cloned().collect();
        self.main[repo].extend(new);
        let push = PushH::plain(REPOS[repo], "main", self.last_after[repo].clone(), commits);
        self.last_after[repo] = push.after().to_string();
        self.last_pushed[repo] = push.commits.last().cloned();
        self.h.pushes.push(push);
    }

    /// A forced push: `how` even rewrites the latest 1–3 commits of main
    /// (an amend, a rebase: new shas, same messages and times), odd resets
    /// main back 1–3 commits. Only with nothing pending, so the push brings
    /// exactly the rewritten commits.
    fn force(&mut self, repo: usize, how: u8) {
        let count = 1 + (how / 2) as usize % 3;
        let main = &self.main[repo];
        if !self.pending[repo].is_empty() || main.len() <= count {
            return;
        }
        let kept = main.len() - count;
        let old: Vec<Commit> = main[kept..].to_vec();
        let drops: Vec<String> = old.iter().map(|c| c.sha.clone()).collect();
        let (commits, reset_to) = if how.is_multiple_of(2) {
            (old.into_iter().map(|c| Commit { sha: self.sha("rewritten"), ..c }).collect(), None)
        } else {
            (Vec::new(), Some(main[kept - 1].clone()))
        };
        self.available[repo].retain(|sha| !drops.contains(sha));
        self.available[repo].extend(commits.iter().map(|c| c.sha.clone()));
        self.main[repo].truncate(kept);
        self.main[repo].extend(commits.iter().cloned());
        let push = PushH {
            repo: REPOS[repo],
            branch: "main",
            before: self.last_after[repo].clone(),
            commits,
            forced: true,
            reset_to,
            drops,
        };
        self.last_after[repo] = push.after().to_string();
        self.last_pushed[repo] = Some(push.head().clone());
        self.h.pushes.push(push);
    }

    fn deploy(&mut self, repo: usize, env: u8, target: u8, pick: u16, outcome: u8, minutes: u16) {
        if self.h.deploys.len() >= 30 {
            return;
        }
        let available = self.available[repo].clone();
        let earlier: Vec<String> = self
            .h
            .deploys
            .iter()
            .filter(|d| d.repo == REPOS[repo] && d.production() && d.end.is_some_and(|(_, s)| s == "success"))
            .map(|d| d.sha.clone())
            .collect();
        let pick = pick as usize;
        let sha = match (available.last(), target % 10) {
            (None, _) | (_, 8) => self.sha("unknown"),
            (Some(tip), 0..=3) => tip.clone(),
            // Several merges behind the tip.
            (Some(_), 4) => available[available.len() - 1 - (1 + pick % 4).min(available.len() - 1)].clone(),
            // A rollback to an older deployed sha, a redeploy of the last one.
            (Some(tip), 5) => earlier.get(pick % earlier.len().max(1)).unwrap_or(tip).clone(),
            (Some(tip), 6) => earlier.last().unwrap_or(tip).clone(),
            (Some(_), 7) => available[pick % available.len()].clone(),
            (Some(tip), _) => tip.to_ascii_uppercase(),
        };
        let env = match env % 10 {
            0..=5 => "production",
            6 | 7 => "staging",
            8 => "prod",
            _ => "Production",
        };
        let state = match outcome % 10 {
            0..=6 => Some("success"),
            7 => Some("failure"),
            8 => Some("error"),
            _ => None,
        };
        let id = self.next_deploy;
        self.next_deploy += 1;
        let end = state.map(|s| (self.now + i64::from(minutes) * 60, s));
        self.h.deploys.push(Dep { repo: REPOS[repo], id, sha, env: env.to_string(), start: self.now, end });
    }

    fn incident(&mut self, repo: usize, root: u8, pick: u16, label: u8, minutes: u16) {
        if self.h.issues.len() >= 6 {
            return;
        }
        let pick = pick as usize;
        let now = self.now;
        // Successful production deploys of the repository that ended by now.
        let before: Vec<Dep> = self
            .h
            .deploys
            .iter()
            .filter(|d| d.repo == REPOS[repo] && d.production() && d.successful() && d.end_time().unwrap() <= now)
            .cloned()
            .collect();
        let named = match root % 6 {
            2 if !before.is_empty() => {
                let sha = &before[pick % before.len()].sha;
                Some(format!("root cause: {}", &sha[..7 + pick % 6]))
            }
            3 => {
                // A commit such a deploy shipped that no deploy deployed.
                let oracle = Oracle::new(&self.h);
                let mut shipped: Vec<String> = Vec::new();
                for (d, deploy) in self.h.deploys.iter().enumerate() {
                    if before.iter().any(|b| b.key() == deploy.key()) {
                        shipped.extend(oracle.shipped(d).iter().map(|c| c.sha.clone()));
                    }
                }
                shipped.retain(|s| !self.h.deploys.iter().any(|d| d.sha.eq_ignore_ascii_case(s)));
                (!shipped.is_empty()).then(|| format!("root cause: {}", &shipped[pick % shipped.len()][..12]))
            }
            4 => None,
            5 if !before.is_empty() => {
                Some(format!("Root Cause: {}", before[pick % before.len()].sha.to_ascii_uppercase()))
            }
            _ => Some(String::new()),
        };
        let root_line = match named {
            Some(line) => line,
            // An unknown sha (also the fallback when nothing fits).
            None => format!("root cause: {}", &self.sha("unknown")[..12]),
        };
        let labels: Vec<String> = match label % 8 {
            4 => vec!["Incident".into()],
            5 => vec!["sev1".into(), "INCIDENT".into()],
            6 => vec!["bug".into()],
            _ => vec!["incident".into()],
        };
        let number = self.next_issue[repo];
        self.next_issue[repo] += 1;
        let closed = (!minutes.is_multiple_of(8)).then(|| now + (5 + i64::from(minutes) % 1440) * 60);
        let body = format!("Checkout is down.\n{root_line}\nWe are on it.").replace("\n\n", "\n");
        self.h.issues.push(Issue { repo: REPOS[repo], number, labels, body, opened: now, closed });
    }
}

// ---------------------------------------------------------------- the properties

const SEED: u64 = 0x0DDA_0D0A_2026_1101;

/// `cases` cases from a fixed seed (`salt` gives each property its own histories).
fn config(cases: u32, salt: u64) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(splitmix(SEED ^ salt));
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_ITERS").is_none() {
        // Each shrink step builds a store; a few dozen already give a short history.
        config.max_shrink_iters = 32;
    }
    config.failure_persistence = None;
    config
}

/// Like [`config`], with fewer shrink steps: each builds a PostgreSQL database.
fn postgres_config(cases: u32, salt: u64) -> ProptestConfig {
    let mut config = config(cases, salt);
    if std::env::var_os("PROPTEST_MAX_SHRINK_ITERS").is_none() {
        config.max_shrink_iters = 8;
    }
    config
}

proptest! {
    #![proptest_config(config(12, 1))]

    /// One delivery per transaction, in a shuffled order.
    #[test]
    fn sqlite_agrees_with_the_oracle_one_delivery_per_batch(plan in plan()) {
        property(&Backend::Sqlite, &plan, false);
    }
}

proptest! {
    #![proptest_config(config(8, 2))]

    /// Groups of 1–8 deliveries per transaction, in a shuffled order.
    #[test]
    fn sqlite_agrees_with_the_oracle_in_grouped_batches(plan in plan()) {
        property(&Backend::Sqlite, &plan, true);
    }
}

proptest! {
    #![proptest_config(config(8, 8))]

    /// Grouped batches, then `valuestream rebuild` re-derives everything from
    /// the stored deliveries (in another order): the oracle's numbers still.
    #[test]
    fn sqlite_agrees_with_the_oracle_after_a_rebuild(plan in plan()) {
        property(&Backend::SqliteRebuilt, &plan, true);
    }
}

proptest! {
    #![proptest_config(postgres_config(8, 3))]

    #[test]
    #[ignore = "needs PostgreSQL: run by .ci/run"]
    fn postgres_agrees_with_the_oracle(plan in plan()) {
        property(&Backend::Postgres, &plan, plan.order_seed.is_multiple_of(2));
    }
}

proptest! {
    #![proptest_config(postgres_config(4, 9))]

    /// `valuestream rebuild` on PostgreSQL: the oracle's numbers still.
    #[test]
    #[ignore = "needs PostgreSQL: run by .ci/run"]
    fn postgres_agrees_with_the_oracle_after_a_rebuild(plan in plan()) {
        property(&Backend::PostgresRebuilt, &plan, true);
    }
}

proptest! {
    #![proptest_config(postgres_config(4, 3))]

    /// Two `serve` replicas sharing PostgreSQL, each taking part of the
    /// deliveries at the same time, give the oracle's numbers too.
    #[test]
    #[ignore = "needs PostgreSQL: run by .ci/run"]
    fn two_postgres_replicas_agree_with_the_oracle(plan in plan()) {
        property(&Backend::PostgresReplicas, &plan, true);
    }
}

proptest! {
    #![proptest_config(config(64, 4))]

    /// The oracle itself reads its input as sets: listing the history's pushes,
    /// pull requests, deploys and issues in another order changes nothing.
    #[test]
    fn the_oracle_does_not_depend_on_the_order_of_its_input(plan in plan()) {
        let h = plan.history();
        let mut reordered = h.clone();
        let mut rng = Rng(plan.order_seed);
        let mut shuffle = |n: usize| shuffled(n, rng.next());
        reordered.pushes = shuffle(h.pushes.len()).into_iter().map(|i| h.pushes[i].clone()).collect();
        reordered.prs = shuffle(h.prs.len()).into_iter().map(|i| h.prs[i].clone()).collect();
        reordered.deploys = shuffle(h.deploys.len()).into_iter().map(|i| h.deploys[i].clone()).collect();
        reordered.issues = shuffle(h.issues.len()).into_iter().map(|i| h.issues[i].clone()).collect();
        prop_assert_eq!(expected(&reordered), expected(&h), "{}", h);
    }
}

/// With `VS_ORACLE_SURVEY=<n>`: which values disagree over n generated
/// histories, and how often (prints, never fails). A no-op otherwise.
#[test]
fn survey_of_disagreements() {
    let Some(n) = std::env::var("VS_ORACLE_SURVEY").ok().and_then(|n| n.parse::<u32>().ok()) else { return };
    let mut runner = proptest::test_runner::TestRunner::new(config(n, 5));
    let mut counts: BTreeMap<String, (u32, String)> = BTreeMap::new();
    let mut generated = 0;
    let mut sizes: Vec<[usize; 5]> = Vec::new();
    let (mut order_dependent, mut order_example) = (0, None::<String>);
    for _ in 0..n {
        let plan = plan().new_tree(&mut runner).unwrap().current();
        let h = plan.history();
        generated += 1;
        let commits: usize = h.pushes.iter().map(|p| p.commits.len()).sum();
        sizes.push([commits, h.prs.len(), h.deploys.len(), h.issues.len(), deliveries(&h).len()]);
        let order = shuffled(deliveries(&h).len(), plan.order_seed);
        let found = disagreements(&Backend::Sqlite, &h, &batches(&order, plan.order_seed, false));
        if let Ok(wanted) = std::env::var("VS_ORACLE_SURVEY_SHOW")
            && found.iter().any(|f| f.contains(&wanted))
        {
            println!("{}\n", report(&h, &found));
        }
        for found in found {
            let (path, _) = found.split_once(": ").unwrap();
            let path = if path.starts_with("incident_parents.") { "incident_parents.*" } else { path };
            let entry = counts.entry(path.to_string()).or_insert((0, found.clone()));
            entry.0 += 1;
        }
        // The store against itself: the deliveries in the order listed vs shuffled.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listed: Vec<usize> = (0..order.len()).collect();
        let in_order = runtime.block_on(store_answer(&Backend::Sqlite, &h, &batches(&listed, 0, false)));
        let in_shuffle = runtime.block_on(store_answer(&Backend::Sqlite, &h, &batches(&order, 0, false)));
        let mut differ = Vec::new();
        mismatches("", &in_order, &in_shuffle, &mut differ);
        if let Some(first) = differ.first() {
            order_dependent += 1;
            order_example.get_or_insert_with(|| first.replace("oracle", "listed order").replace("store", "shuffled"));
        }
    }
    for (k, what) in ["pushed commits", "pull requests", "deploys", "issues", "deliveries"].iter().enumerate() {
        let values: Vec<usize> = sizes.iter().map(|s| s[k]).collect();
        let (min, max) = (values.iter().min().unwrap_or(&0), values.iter().max().unwrap_or(&0));
        let mean = values.iter().sum::<usize>() as f64 / values.len().max(1) as f64;
        println!("{what} per history: min {min}, mean {mean:.1}, max {max}");
    }
    println!("disagreements over {generated} histories (path: histories, one example):");
    for (path, (count, example)) in counts {
        println!("  {path}: {count}  e.g. {example}");
    }
    println!("store answers that change with the delivery order: {order_dependent} histories, e.g. {order_example:?}");
}

// ---------------------------------------------------------------- hand-written rules

/// The oracle gives `pins` (path → value, computed by hand) on `h`, and the
/// store gives the oracle's answer with the deliveries in order and reversed.
fn check(h: History, pins: &[(&str, Value)]) {
    let oracle = expected(&h);
    for (path, value) in pins {
        let got = path.split('.').fold(&oracle, |v, part| v.get(part).unwrap_or(&Value::Null));
        let mut found = Vec::new();
        mismatches(path, value, got, &mut found);
        assert!(found.is_empty(), "the oracle disagrees with the hand computation: {found:?}\n{h}");
    }
    let n = deliveries(&h).len();
    let mut failures = Vec::new();
    for (name, order) in [("in order", (0..n).collect::<Vec<_>>()), ("reversed", (0..n).rev().collect())] {
        for found in disagreements(&Backend::Sqlite, &h, &batches(&order, 0, false)) {
            failures.push(format!("{name}: {found}"));
        }
    }
    assert!(failures.is_empty(), "{}", report(&h, &failures));
}

fn sha(name: &str) -> String {
    sha_of(&format!("hand {name}"))
}

fn deploy_key(id: u64) -> Value {
    json!(format!("github:{HW}:deploy:{id}"))
}

const INCIDENT_900: &str = "incident_parents.github:octo-org/hello-world:issue:900";

#[test]
fn a_rollback_ships_nothing_and_neither_does_redeploying_after_it() {
    let (a, b, c) = (sha("a"), sha("b"), sha("c"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00")), (&b, "Add b", t(2, "09:10")), (&c, "Add c", t(2, "09:20"))])
        .deploy(1, &b, "production", t(2, "10:00"), t(2, "10:10"), "success")
        .deploy(2, &c, "production", t(2, "11:00"), t(2, "11:10"), "success")
        .deploy(3, &a, "production", t(2, "12:00"), t(2, "12:10"), "success")
        .deploy(4, &c, "production", t(2, "13:00"), t(2, "13:10"), "success");
    // 1 ships a (4200 s), b (3600); 2 ships c (6600); 3 (rollback to a) and 4 (c
    // again: the largest shipped index is already c's) ship nothing.
    // Sorted 3600, 4200, 6600: median 4200, p90 = 4200 + 0.8 × 2400 = 6120.
    check(
        h,
        &[
            ("full.lead_time_for_changes.changes", json!(3)),
            ("full.lead_time_for_changes.median_seconds", json!(4200.0)),
            ("full.lead_time_for_changes.p90_seconds", json!(6120.0)),
            ("full.deployment_frequency.deployments", json!(4)),
        ],
    );
}

#[test]
fn commits_a_forced_push_took_off_the_branch_are_no_changes() {
    let (a, b, c, d, e) = (sha("a"), sha("b"), sha("c"), sha("d"), sha("e"));
    let mut h = History::default().push(
        HW,
        ZEROS,
        &[(&a, "Add a", t(2, "09:00")), (&b, "Add b", t(2, "09:10")), (&c, "Add c", t(2, "09:20"))],
    );
    // `git reset --hard a && git push --force`: b and c are off main.
    h.pushes.push(PushH {
        forced: true,
        reset_to: Some(Commit { sha: a.clone(), message: "Add a".into(), at: t(2, "09:00") }),
        drops: vec![b.clone(), c.clone()],
        ..PushH::plain(HW, "main", c.clone(), Vec::new())
    });
    // Then an amend of the next commit: d is replaced by e.
    let h = h.push(HW, &a, &[(&d, "Add d", t(2, "10:00"))]);
    let mut h = h;
    h.pushes.push(PushH {
        forced: true,
        drops: vec![d.clone()],
        ..PushH::plain(
            HW,
            "main",
            d.clone(),
            vec![Commit { sha: e.clone(), message: "Add d".into(), at: t(2, "10:00") }],
        )
    });
    let h = h.deploy(1, &e, "production", t(2, "11:00"), t(2, "11:10"), "success");
    // Deploy 1 ships a (2 h 10 min) and e (1 h 10 min), not b, c or d: median 6000 s.
    check(
        h,
        &[
            ("full.lead_time_for_changes.changes", json!(2)),
            ("full.lead_time_for_changes.median_seconds", json!(6000.0)),
        ],
    );
}

#[test]
fn a_redeploy_of_the_same_sha_ships_nothing() {
    let (a, b) = (sha("a"), sha("b"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00")), (&b, "Add b", t(2, "09:10"))])
        .deploy(1, &b, "production", t(2, "10:00"), t(2, "10:10"), "success")
        .deploy(2, &b, "production", t(2, "11:00"), t(2, "11:20"), "success");
    check(
        h,
        &[
            ("full.lead_time_for_changes.changes", json!(2)),
            ("full.lead_time_for_changes.median_seconds", json!(3900.0)),
            ("full.deployment_frequency.deployments", json!(2)),
        ],
    );
}

#[test]
fn a_pull_request_only_change_is_shipped() {
    let (a, p, b) = (sha("a"), sha("p"), sha("b"));
    // Branch order: a (pushed 09:00 ≤ merge 09:30), p, b (pushed 10:00 > 09:30).
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00"))])
        .pr(merged_pr(HW, 1, t(2, "08:00"), t(2, "09:30"), &p))
        .push(HW, &a, &[(&b, "Add b", t(2, "10:00"))])
        .deploy(1, &p, "production", t(2, "09:40"), t(2, "09:50"), "success")
        .deploy(2, &b, "production", t(2, "10:30"), t(2, "10:40"), "success");
    // 1 ships a (3000 s) and p (from the PR's creation: 6600); 2 ships b (2400).
    check(
        h,
        &[
            ("full.lead_time_for_changes.changes", json!(3)),
            ("full.lead_time_for_changes.median_seconds", json!(3000.0)),
            ("full.lead_time_for_changes.unmatched_deploys", json!(0)),
            ("full.lead_time_for_changes.breakdown.deploy", json!(1200.0)),
            ("full.lead_time_for_changes.breakdown.pickup", Value::Null),
        ],
    );
}

#[test]
fn a_pull_request_only_change_merged_at_a_push_time_goes_after_that_push() {
    let (a, p, b) = (sha("a"), sha("p"), sha("b"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00"))])
        .pr(merged_pr(HW, 1, t(2, "08:00"), t(2, "09:00"), &p))
        .push(HW, &a, &[(&b, "Add b", t(2, "09:30"))])
        .deploy(1, &a, "production", t(2, "10:00"), t(2, "10:10"), "success")
        .deploy(2, &b, "production", t(2, "11:00"), t(2, "11:10"), "success");
    // 1 ships a (4200 s); 2 ships p (11:10 − 08:00 = 11400) and b (6000).
    check(
        h,
        &[
            ("full.lead_time_for_changes.changes", json!(3)),
            ("full.lead_time_for_changes.median_seconds", json!(6000.0)),
            ("full.lead_time_for_changes.p90_seconds", json!(6000.0 + 0.8 * 5400.0)),
        ],
    );
}

#[test]
fn staging_deploys_do_not_consume_production_changes() {
    let (a, b) = (sha("a"), sha("b"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00")), (&b, "Add b", t(2, "09:10"))])
        .deploy(1, &b, "staging", t(2, "09:30"), t(2, "09:40"), "success")
        .deploy(2, &b, "production", t(2, "10:00"), t(2, "10:10"), "success");
    check(
        h,
        &[
            ("full.lead_time_for_changes.changes", json!(2)),
            ("full.lead_time_for_changes.median_seconds", json!(3900.0)),
            ("full.deployment_frequency.deployments", json!(1)),
        ],
    );
}

#[test]
fn an_incident_whose_root_cause_names_a_shipped_but_undeployed_commit_is_attributed_to_the_deploy_that_shipped_it() {
    let (a, b, c) = (sha("a"), sha("b"), sha("c"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00")), (&b, "Add b", t(2, "09:10")), (&c, "Add c", t(2, "09:20"))])
        .deploy(1, &a, "production", t(2, "10:00"), t(2, "10:10"), "success")
        .deploy(2, &c, "production", t(2, "11:00"), t(2, "11:10"), "success")
        .deploy(3, &c, "production", t(2, "12:00"), t(2, "12:10"), "success")
        .incident(900, "incident", t(2, "13:00"), t(2, "14:00"), &format!("Broken.\nroot cause: {}", &b[..10]));
    // No deploy of b: the earliest whose change set holds b is 2 (not 3, the
    // latest before the incident).
    check(
        h,
        &[
            (INCIDENT_900, deploy_key(2)),
            ("full.change_failure_rate.failed", json!(1)),
            ("full.change_failure_rate.ratio", json!(1.0 / 3.0)),
            ("full.time_to_restore.incidents", json!(1)),
            ("full.time_to_restore.median_seconds", json!(3600.0)),
        ],
    );
}

#[test]
fn the_incident_label_matches_case_insensitively() {
    let a = sha("a");
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00"))])
        .deploy(1, &a, "production", t(2, "10:00"), t(2, "10:10"), "success")
        .incident(900, "Incident", t(2, "11:00"), t(2, "11:30"), "Search is slow.");
    check(
        h,
        &[
            (INCIDENT_900, deploy_key(1)),
            ("full.time_to_restore.incidents", json!(1)),
            ("full.time_to_restore.median_seconds", json!(1800.0)),
            ("full.change_failure_rate.failed", json!(1)),
        ],
    );
}

#[test]
fn the_deploy_an_incident_is_attributed_to_is_not_rework() {
    let (a, b) = (sha("a"), sha("b"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00"))])
        .push(HW, &a, &[(&b, "Add b", t(2, "09:10"))])
        .deploy(1, &a, "production", t(2, "10:00"), t(2, "10:10"), "success")
        .deploy(2, &b, "production", t(2, "11:00"), t(2, "11:10"), "success")
        .incident(900, "incident", t(2, "12:00"), t(2, "13:00"), &format!("root cause: {}", &a[..7]));
    check(
        h,
        &[
            (INCIDENT_900, deploy_key(1)),
            ("full.change_failure_rate.failed", json!(1)),
            ("full.deployment_rework_rate.rework", json!(0)),
            ("full.deployment_rework_rate.ratio", json!(0.0)),
        ],
    );
}

/// An incident after deploy 1, and pull request #1 that fixes it (merged as `b`).
fn fixing_history(a: &str, b: &str) -> History {
    History::default()
        .push(HW, ZEROS, &[(a, "Add a", t(2, "09:00"))])
        .deploy(1, a, "production", t(2, "10:00"), t(2, "10:10"), "success")
        .incident(900, "incident", t(2, "11:00"), t(2, "14:00"), "Checkout is down.")
        .pr(merged_pr(HW, 1, t(2, "11:30"), t(2, "12:00"), b).body("Fixes #900"))
}

#[test]
fn the_deploy_of_a_pull_request_that_fixes_an_incident_is_rework() {
    let (a, b) = (sha("a"), sha("b"));
    let h = fixing_history(&a, &b)
        .push(HW, &a, &[(&b, "Merge pull request #1 from octo-org/feature-1", t(2, "12:00"))])
        .deploy(2, &b, "production", t(2, "12:30"), t(2, "12:40"), "success")
        // A redeploy of b ships nothing, but its parent is still pull request #1.
        .deploy(3, &b, "production", t(2, "13:00"), t(2, "13:10"), "success");
    // a: 4200 s; b: 12:40 − 11:30 (the PR's creation) = 4200.
    check(
        h,
        &[
            (INCIDENT_900, deploy_key(1)),
            ("full.deployment_rework_rate.rework", json!(2)),
            ("full.deployment_rework_rate.ratio", json!(2.0 / 3.0)),
            ("full.change_failure_rate.failed", json!(1)),
            ("full.lead_time_for_changes.changes", json!(2)),
            ("full.lead_time_for_changes.median_seconds", json!(4200.0)),
        ],
    );
}

#[test]
fn a_deploy_whose_change_set_holds_a_fixing_pull_request_is_rework() {
    let (a, b, c) = (sha("a"), sha("b"), sha("c"));
    let h = fixing_history(&a, &b)
        .push(
            HW,
            &a,
            &[(&b, "Merge pull request #1 from octo-org/feature-1", t(2, "12:00")), (&c, "Tidy up", t(2, "12:05"))],
        )
        .deploy(2, &c, "production", t(2, "12:30"), t(2, "12:40"), "success");
    check(h, &[("full.deployment_rework_rate.rework", json!(1)), ("full.lead_time_for_changes.changes", json!(3))]);
}

#[test]
fn reverts_and_hotfixes_are_rework_and_changes_are_timed_by_their_pull_request() {
    let (a, b, c, d) = (sha("a"), sha("b"), sha("c"), sha("d"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00"))])
        .pr(merged_pr(HW, 1, t(2, "09:30"), t(2, "10:00"), &b).title("Revert \"Add a\""))
        .push(HW, &a, &[(&b, "Merge pull request #1 from octo-org/feature-1", t(2, "10:00"))])
        .pr(merged_pr(HW, 2, t(2, "10:30"), t(2, "11:00"), &c).label("HotFix").reviewed(t(2, "10:45")))
        .push(HW, &b, &[(&c, "Fix login (#2)", t(2, "11:00"))])
        // A rebase merge: only merge_commit_sha ties d to #3.
        .pr(merged_pr(HW, 3, t(2, "11:30"), t(2, "12:00"), &d))
        .push(HW, &c, &[(&d, "Plain change", t(2, "12:00"))])
        .deploy(1, &a, "production", t(2, "09:10"), t(2, "09:20"), "success")
        .deploy(2, &b, "production", t(2, "10:10"), t(2, "10:20"), "success")
        .deploy(3, &c, "production", t(2, "11:10"), t(2, "11:20"), "success")
        .deploy(4, &d, "production", t(2, "12:10"), t(2, "12:20"), "success");
    // Leads: a 1200; b 10:20 − 09:30 = 3000; c 3000; d 3000. Median 3000.
    // Breakdown: pickup (#2 only) 900, review 900; deploy 1200 each.
    check(
        h,
        &[
            ("full.deployment_rework_rate.rework", json!(2)),
            ("full.deployment_rework_rate.ratio", json!(0.5)),
            ("full.lead_time_for_changes.median_seconds", json!(3000.0)),
            ("full.lead_time_for_changes.breakdown.pickup", json!(900.0)),
            ("full.lead_time_for_changes.breakdown.review", json!(900.0)),
            ("full.lead_time_for_changes.breakdown.deploy", json!(1200.0)),
        ],
    );
}

#[test]
fn deploys_ending_together_are_ordered_by_span_key() {
    let (a, b) = (sha("a"), sha("b"));
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00")), (&b, "Add b", t(2, "09:10"))])
        .deploy(9, &a, "production", t(2, "10:00"), t(2, "10:30"), "success")
        .deploy(10, &b, "production", t(2, "10:05"), t(2, "10:30"), "success")
        .incident(900, "incident", t(2, "11:00"), t(2, "11:30"), "Down.");
    // `…:deploy:10` < `…:deploy:9`: 10 ships a and b, 9 nothing; the latest
    // deploy before the incident is 9.
    check(
        h,
        &[
            (INCIDENT_900, deploy_key(9)),
            ("full.lead_time_for_changes.changes", json!(2)),
            ("full.change_failure_rate.failed", json!(1)),
        ],
    );
}

#[test]
fn a_deploy_of_an_unknown_sha_is_unmatched() {
    let a = sha("a");
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00"))])
        .deploy(1, &sha("unknown"), "production", t(2, "10:00"), t(2, "10:10"), "success")
        .deploy(2, &a.to_ascii_uppercase(), "production", t(2, "11:00"), t(2, "11:10"), "success");
    check(
        h,
        &[
            ("full.lead_time_for_changes.unmatched_deploys", json!(1)),
            ("full.lead_time_for_changes.changes", json!(1)),
            ("full.lead_time_for_changes.median_seconds", json!(7800.0)),
        ],
    );
}

#[test]
fn recovery_waits_for_a_success_in_the_same_environment() {
    let a = sha("a");
    let h = History::default()
        .push(HW, ZEROS, &[(&a, "Add a", t(2, "09:00"))])
        .deploy(1, &a, "production", t(2, "10:00"), t(2, "10:10"), "failure")
        .deploy(2, &a, "staging", t(2, "10:20"), t(2, "10:30"), "success")
        .deploy(3, &a, "production", t(2, "11:00"), t(2, "11:20"), "success")
        .deploy(4, &a, "prod", t(2, "12:00"), t(2, "12:10"), "error");
    check(
        h,
        &[
            ("full.failed_deployment_recovery_time.failures", json!(2)),
            ("full.failed_deployment_recovery_time.median_seconds", json!(4200.0)),
            ("full.change_failure_rate.deployments", json!(3)),
            ("full.change_failure_rate.failed", json!(2)),
            ("full.deployment_frequency.deployments", json!(1)),
        ],
    );
}

/// Issue 11: a recomputation bounded to the deploys near a new fact must
/// still reach a deploy far back. Twelve pushes, each deployed; the second
/// push arrives last of all, after every later deploy and an incident whose
/// root cause is one of its commits: deploy 2 (unmatched until then) ships
/// that push's commits, deploy 3 only its own, and the incident is deploy 2's.
#[test]
fn a_late_push_far_back_redoes_the_deploys_it_reaches() {
    const DEPLOYS: u32 = 12;
    let mut h = History::default();
    let mut before = ZEROS.to_string();
    for k in 1..=DEPLOYS {
        let (x, y) = (sha(&format!("x{k}")), sha(&format!("y{k}")));
        let hour = format!("{:02}:00", 8 + k);
        let minutes = |m: u32| format!("{:02}:{m:02}", 8 + k);
        h = h.push(HW, &before, &[(&x, "Change x", t(2, &hour)), (&y, "Change y", t(2, &minutes(10)))]).deploy(
            u64::from(k),
            &y,
            "production",
            t(2, &minutes(20)),
            t(2, &minutes(30)),
            "success",
        );
        before = y;
    }
    let cause = sha("x2");
    let h = h.incident(900, "incident", t(2, "22:00"), t(2, "22:30"), &format!("root cause: {}", &cause[..12]));
    check(
        h.clone(),
        &[
            (INCIDENT_900, deploy_key(2)),
            ("full.lead_time_for_changes.changes", json!(2 * DEPLOYS)),
            ("full.lead_time_for_changes.unmatched_deploys", json!(0)),
        ],
    );
    // Listed order (the pushes, the deploys, the incident) but the second
    // push, which comes last.
    let late = 1;
    let n = deliveries(&h).len();
    let order: Vec<usize> = (0..n).filter(|&i| i != late).chain([late]).collect();
    let failures = disagreements(&Backend::Sqlite, &h, &batches(&order, 0, false));
    assert!(failures.is_empty(), "{}", report(&h, &failures));
}
