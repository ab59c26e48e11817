//! Changes, change sets and incident attribution (metrics.md), as pure
//! functions over plain values. The store loads a repository's pushes,
//! merged pull requests, deploys and incidents, calls these, and writes what
//! they return; so every number DORA reports is a function of the set of
//! deliveries, whatever order they arrived in.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One push to a default branch, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct PushRecord {
    pub before: String,
    pub after: String,
    /// Nanoseconds.
    pub pushed_at: i64,
    /// A forced push: it rewrote the branch instead of adding to it.
    pub forced: bool,
    /// In payload order.
    pub commits: Vec<CommitRecord>,
}

/// One commit of a push.
#[derive(Clone, Debug, PartialEq)]
pub struct CommitRecord {
    pub sha: String,
    pub committed_at: i64,
    /// The pull request number its message names (`Merge pull request #12`, `Title (#12)`).
    pub pull_request: Option<String>,
    /// Its message starts with `Revert "`.
    pub revert: bool,
}

/// A merged pull request: its merge (or squash) commit is a change too.
#[derive(Clone, Debug, PartialEq)]
pub struct MergedPullRequest {
    pub number: String,
    pub merge_sha: String,
    pub merged_at: i64,
    /// When it was opened: the change time of its merge commit when no push carried it.
    pub opened_at: i64,
}

/// A change: a commit that reached the default branch.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub sha: String,
    /// The commit's timestamp (a pull-request-only change: the pull request's creation).
    pub committed_at: i64,
    /// The pull request it came through, when known.
    pub pull_request: Option<String>,
    pub revert: bool,
    /// Which line of the branch it belongs to: 0 until the first forced
    /// push, then one more after each.
    pub line: usize,
    /// The line of the forced push that took it off the branch, if one did.
    pub dropped_in: Option<usize>,
}

impl Change {
    /// Whether a deploy of a commit on `line` ships this change: not when a
    /// forced push on that line or an earlier one took it off the branch.
    fn on_line(&self, line: usize) -> bool {
        self.dropped_in.is_none_or(|dropped| dropped > line)
    }
}

/// The changes of one repository in the order they reached its default
/// branch (metrics.md): pushes chained `before` → `after` (chains by their
/// first push's time; a push only reachable through a cycle last), each
/// push's commits in order; then each merged pull request whose merge commit
/// no push carried, placed by its merge time among the pushes. A sha counts
/// once. A commit that is a pull request's merge commit belongs to it.
///
/// A forced push rewrites the branch, and the commits it took off are no
/// longer changes for deploys after it. A push payload names no parents, so
/// which commits it took off is read from what it says: a push back to a
/// commit already recorded (a reset) takes off every commit after that one;
/// a push of new commits (an amend, a rebase) takes off as many of the
/// latest commits as it brings.
pub fn branch_order(pushes: &[PushRecord], merged: &[MergedPullRequest]) -> Vec<Change> {
    let order = push_order(pushes);
    let by_merge_sha: HashMap<String, &MergedPullRequest> =
        merged.iter().map(|pr| (pr.merge_sha.to_ascii_lowercase(), pr)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Per push's `before`: the position of the first commit it brought (a
    // reset back to that `before` takes off everything from there).
    let mut starts: HashMap<String, usize> = HashMap::new();
    // (pushed_at of its push, change) in branch order.
    let mut pushed: Vec<(i64, Change)> = Vec::new();
    let mut line = 0;
    for push in order {
        if push.forced {
            line += 1;
            rewrite(&mut pushed, &seen, &starts, push, line);
        }
        starts.entry(push.before.to_ascii_lowercase()).or_insert(pushed.len());
        for commit in &push.commits {
            let sha = commit.sha.to_ascii_lowercase();
            if seen.contains_key(&sha) {
                continue;
            }
            seen.insert(sha.clone(), pushed.len());
            let pull_request =
                commit.pull_request.clone().or_else(|| by_merge_sha.get(&sha).map(|pr| pr.number.clone()));
            pushed.push((
                push.pushed_at,
                Change {
                    sha: commit.sha.clone(),
                    committed_at: commit.committed_at,
                    pull_request,
                    revert: commit.revert,
                    line,
                    dropped_in: None,
                },
            ));
        }
    }
    let mut only_merged: Vec<&MergedPullRequest> =
        merged.iter().filter(|pr| !seen.contains_key(&pr.merge_sha.to_ascii_lowercase())).collect();
    only_merged.sort_by(|a, b| (a.merged_at, &a.merge_sha).cmp(&(b.merged_at, &b.merge_sha)));
    only_merged.dedup_by(|a, b| a.merge_sha.eq_ignore_ascii_case(&b.merge_sha));

    let mut changes: Vec<Change> = Vec::with_capacity(pushed.len() + only_merged.len());
    let mut waiting = only_merged.into_iter().peekable();
    for (pushed_at, change) in pushed {
        while let Some(pr) = waiting.next_if(|pr| pr.merged_at < pushed_at) {
            // On the line of the pushed change after it; after the last one,
            // on the branch's line now (a reset brings no change of its own).
            changes.push(merged_change(pr, change.line));
        }
        changes.push(change);
    }
    changes.extend(waiting.map(|pr| merged_change(pr, line)));
    changes
}

/// Marks the changes forced push `push` (starting `line`) took off the
/// branch: after `after` when it is a recorded commit; from where a push
/// began when `after` is that push's `before` (a commit older than what was
/// recorded); else, for new commits, as many of the latest up to its
/// `before` as it brings (none when its `before` was never recorded).
fn rewrite(
    pushed: &mut [(i64, Change)],
    seen: &HashMap<String, usize>,
    starts: &HashMap<String, usize>,
    push: &PushRecord,
    line: usize,
) {
    let on_branch = |c: &Change| c.dropped_in.is_none();
    let after = push.after.to_ascii_lowercase();
    let from_on = |from: usize| (from..pushed.len()).filter(|&i| on_branch(&pushed[i].1)).collect::<Vec<_>>();
    let gone: Vec<usize> = if let Some(&at) = seen.get(&after) {
        from_on(at + 1)
    } else if let Some(&from) = starts.get(&after) {
        from_on(from)
    } else {
        let brought = push.commits.iter().filter(|c| !seen.contains_key(&c.sha.to_ascii_lowercase())).count();
        match seen.get(&push.before.to_ascii_lowercase()) {
            Some(&tip) => {
                let mut latest: Vec<usize> = (0..=tip).rev().filter(|&i| on_branch(&pushed[i].1)).collect();
                latest.truncate(brought);
                latest
            }
            None => Vec::new(),
        }
    };
    for i in gone {
        pushed[i].1.dropped_in = Some(line);
    }
}

fn merged_change(pr: &MergedPullRequest, line: usize) -> Change {
    Change {
        sha: pr.merge_sha.clone(),
        committed_at: pr.opened_at,
        pull_request: Some(pr.number.clone()),
        revert: false,
        line,
        dropped_in: None,
    }
}

/// Pushes in branch order: chains from their roots (a push whose `before` no
/// push reached), earliest root first; at a fork the earliest push not yet
/// placed (after a reset, the branch goes on from a commit an earlier push
/// already reached); pushes only reachable through a cycle last, by time.
fn push_order(pushes: &[PushRecord]) -> Vec<&PushRecord> {
    let rank = |i: &usize| (pushes[*i].pushed_at, pushes[*i].after.clone());
    let afters: HashSet<&str> = pushes.iter().map(|p| p.after.as_str()).collect();
    let mut by_before: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, push) in pushes.iter().enumerate() {
        by_before.entry(push.before.as_str()).or_default().push(i);
    }
    for next in by_before.values_mut() {
        next.sort_by_key(rank);
    }
    let mut roots: Vec<usize> = (0..pushes.len()).filter(|&i| !afters.contains(pushes[i].before.as_str())).collect();
    roots.sort_by_key(rank);
    let mut order = Vec::with_capacity(pushes.len());
    let mut placed = vec![false; pushes.len()];
    for root in roots {
        let mut next = Some(root);
        while let Some(i) = next {
            if placed[i] {
                break;
            }
            placed[i] = true;
            order.push(&pushes[i]);
            next = by_before.get(pushes[i].after.as_str()).and_then(|v| v.iter().copied().find(|&j| !placed[j]));
        }
    }
    let mut rest: Vec<usize> = (0..pushes.len()).filter(|&i| !placed[i]).collect();
    rest.sort_by_key(rank);
    order.extend(rest.into_iter().map(|i| &pushes[i]));
    order
}

/// A deploy, as change sets and attribution need it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployRecord {
    pub key: String,
    pub end: i64,
    pub environment: String,
    /// The deployed sha, when the source said.
    pub sha: Option<String>,
}

/// What a successful deploy shipped: the positions of its changes in the
/// repository's branch order (possibly none), or `None` when its sha is not
/// among them (metrics.md: unmatched; it ships nothing).
pub type Shipped = Option<Vec<usize>>;

/// The change set of each successful deploy of one repository (metrics.md):
/// the changes up to and including its sha that no earlier successful deploy
/// to the same environment shipped, and that no forced push before its sha
/// took off the branch. `deploys` are the successful ones, any order.
pub fn change_sets(changes: &[Change], deploys: &[DeployRecord]) -> BTreeMap<String, Shipped> {
    let position: HashMap<String, usize> =
        changes.iter().enumerate().map(|(i, change)| (change.sha.to_ascii_lowercase(), i)).collect();
    let mut in_order: Vec<&DeployRecord> = deploys.iter().collect();
    in_order.sort_by(|a, b| (&a.environment, a.end, &a.key).cmp(&(&b.environment, b.end, &b.key)));
    let mut sets = BTreeMap::new();
    // Per environment: one past the furthest change shipped so far.
    let mut shipped_upto: HashMap<&str, usize> = HashMap::new();
    for deploy in in_order {
        let at = deploy.sha.as_ref().and_then(|sha| position.get(&sha.to_ascii_lowercase()).copied());
        let set = at.map(|at| {
            let from = shipped_upto.get(deploy.environment.as_str()).copied().unwrap_or(0);
            let upto = shipped_upto.entry(deploy.environment.as_str()).or_insert(0);
            *upto = (*upto).max(at + 1);
            // A rollback or redeploy (`from > at`) ships nothing.
            let line = changes[at].line;
            (from..at + 1).filter(|&i| changes[i].on_line(line)).collect()
        });
        sets.insert(deploy.key.clone(), set);
    }
    sets
}

/// An incident, as attribution needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRecord {
    pub key: String,
    pub start: i64,
    /// The sha (or prefix) its `root cause:` line names.
    pub root_cause: Option<String>,
}

/// The deploy an incident is attributed to (metrics.md, "Incidents"), among a
/// repository's successful production `deploys`, `ships` giving the changes
/// each shipped: the deploy of the sha its root cause names — the latest that ended
/// by the time it opened, else the earliest — else the first deploy whose
/// change set holds that commit; without a root cause (or one naming nothing
/// known), the last deploy that ended by the time it opened.
pub fn attribute<'a, 'b>(
    incident: &IncidentRecord,
    deploys: &'a [DeployRecord],
    ships: impl Fn(&DeployRecord) -> &'b [Change],
) -> Option<&'a DeployRecord> {
    let order = |d: &&DeployRecord| (d.end, d.key.clone());
    let before = |d: &&&DeployRecord| d.end <= incident.start;
    if let Some(cause) = incident.root_cause.as_deref().map(str::to_ascii_lowercase).filter(|c| !c.is_empty()) {
        let names = |sha: &str| sha.to_ascii_lowercase().starts_with(&cause);
        let mut of_sha: Vec<&DeployRecord> = deploys.iter().filter(|d| d.sha.as_deref().is_some_and(names)).collect();
        of_sha.sort_by_key(order);
        if let Some(deploy) = of_sha.iter().rev().find(before).or(of_sha.first()) {
            return Some(deploy);
        }
        let mut holding: Vec<&DeployRecord> =
            deploys.iter().filter(|d| ships(d).iter().any(|c| names(&c.sha))).collect();
        holding.sort_by_key(order);
        if let Some(deploy) = holding.first() {
            return Some(deploy);
        }
    }
    let mut earlier: Vec<&DeployRecord> = deploys.iter().filter(|d| d.end <= incident.start).collect();
    earlier.sort_by_key(order);
    earlier.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    fn commit(sha: &str, at: i64) -> CommitRecord {
        CommitRecord { sha: sha.into(), committed_at: at * H, pull_request: None, revert: false }
    }

    fn push(before: &str, at: i64, shas: &[&str]) -> PushRecord {
        PushRecord {
            before: before.into(),
            after: shas.last().unwrap().to_string(),
            pushed_at: at * H,
            forced: false,
            commits: shas.iter().map(|s| commit(s, at)).collect(),
        }
    }

    /// A forced push from `before` to `after` bringing `shas`.
    fn forced(before: &str, after: &str, at: i64, shas: &[&str]) -> PushRecord {
        PushRecord {
            before: before.into(),
            after: after.into(),
            pushed_at: at * H,
            forced: true,
            commits: shas.iter().map(|s| commit(s, at)).collect(),
        }
    }

    fn shas(changes: &[Change]) -> Vec<&str> {
        changes.iter().map(|c| c.sha.as_str()).collect()
    }

    fn deploy(key: &str, end: i64, environment: &str, sha: &str) -> DeployRecord {
        DeployRecord { key: key.into(), end: end * H, environment: environment.into(), sha: Some(sha.into()) }
    }

    fn merged(number: &str, sha: &str, merged_at: i64) -> MergedPullRequest {
        MergedPullRequest { number: number.into(), merge_sha: sha.into(), merged_at: merged_at * H, opened_at: 0 }
    }

    #[test]
    fn branch_order_follows_the_push_chain_not_arrival() {
        let pushes = [push("b", 1, &["c", "d"]), push("0", 5, &["a", "b"]), push("d", 3, &["e"])];
        assert_eq!(shas(&branch_order(&pushes, &[])), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn merged_pull_requests_are_changes_placed_by_merge_time() {
        let pushes = [push("0", 1, &["a"]), push("a", 5, &["b"])];
        // #7 merged at 3 between the pushes; #8's merge commit `b` came by push (no duplicate).
        let prs = [merged("7", "m7", 3), merged("8", "B", 4), merged("9", "m9", 9)];
        let changes = branch_order(&pushes, &prs);
        assert_eq!(shas(&changes), ["a", "m7", "b", "m9"]);
        assert_eq!(changes[2].pull_request.as_deref(), Some("8"), "a push commit that is a merge commit");
        assert_eq!(changes[1].pull_request.as_deref(), Some("7"));
        assert_eq!(changes[1].committed_at, 0, "timed by the pull request's creation");
    }

    /// metrics.md, "Changes and change sets", one rule per row.
    #[test]
    fn change_sets_ship_each_change_once() {
        let changes = branch_order(&[push("0", 0, &["a", "b", "c", "d", "e"])], &[]);
        let check = |deploys: &[DeployRecord], expected: &[(&str, Option<&[&str]>)]| {
            let sets = change_sets(&changes, deploys);
            for (key, want) in expected {
                let got = sets[*key].clone().map(|set| set.iter().map(|&i| changes[i].sha.clone()).collect());
                let want: Option<Vec<String>> = want.map(|w| w.iter().map(|s| s.to_string()).collect());
                assert_eq!(got, want, "{key} of {deploys:?}");
            }
        };
        // In branch order: each deploy ships what lies after the previous one.
        check(
            &[deploy("1", 1, "prod", "b"), deploy("2", 2, "prod", "d")],
            &[("1", Some(&["a", "b"])), ("2", Some(&["c", "d"]))],
        );
        // A rollback to an older sha ships nothing, and the next deploy does not ship again.
        check(
            &[deploy("1", 1, "prod", "d"), deploy("2", 2, "prod", "b"), deploy("3", 3, "prod", "e")],
            &[("1", Some(&["a", "b", "c", "d"])), ("2", Some(&[])), ("3", Some(&["e"]))],
        );
        // A redeploy of the same sha ships nothing.
        check(&[deploy("1", 1, "prod", "c"), deploy("2", 2, "prod", "C")], &[("2", Some(&[]))]);
        // Another environment has change sets of its own.
        check(
            &[deploy("s", 1, "staging", "e"), deploy("1", 2, "prod", "b")],
            &[("s", Some(&["a", "b", "c", "d", "e"])), ("1", Some(&["a", "b"]))],
        );
        // An unknown sha is unmatched and does not move the next deploy's start.
        check(
            &[deploy("1", 1, "prod", "b"), deploy("x", 2, "prod", "zzz"), deploy("2", 3, "prod", "c")],
            &[("x", None), ("2", Some(&["c"]))],
        );
    }

    /// A forced push takes commits off the branch; deploys after it do not ship them.
    #[test]
    fn forced_pushes_take_commits_off_the_branch() {
        let check = |pushes: &[PushRecord], deploys: &[DeployRecord], expected: &[(&str, &[&str])]| {
            let changes = branch_order(pushes, &[]);
            let sets = change_sets(&changes, deploys);
            for (key, want) in expected {
                let got: Vec<&str> = sets[*key].iter().flatten().map(|&i| changes[i].sha.as_str()).collect();
                assert_eq!(got, *want, "{key} of {pushes:?}");
            }
        };
        let base = push("0", 0, &["a", "b", "c", "d"]);
        // A reset back to `b`, then a new commit: `c` and `d` are no changes.
        check(
            &[base.clone(), forced("d", "b", 2, &[]), push("b", 3, &["e"])],
            &[deploy("1", 4, "prod", "e")],
            &[("1", &["a", "b", "e"])],
        );
        // An amend of the tip: `d` is replaced by `d2`.
        check(
            &[base.clone(), forced("d", "d2", 2, &["d2"])],
            &[deploy("1", 4, "prod", "d2")],
            &[("1", &["a", "b", "c", "d2"])],
        );
        // A rebase of the last two, in any arrival order of the pushes.
        check(
            &[push("d2", 5, &["f"]), forced("d", "d2", 2, &["c2", "d2"]), base.clone()],
            &[deploy("1", 6, "prod", "f")],
            &[("1", &["a", "b", "c2", "d2", "f"])],
        );
        // What a deploy shipped before the rewrite stays shipped; the next ships only the new line.
        check(
            &[base.clone(), forced("d", "d2", 2, &["c2", "d2"])],
            &[deploy("1", 1, "prod", "d"), deploy("2", 4, "prod", "d2")],
            &[("1", &["a", "b", "c", "d"]), ("2", &["c2", "d2"])],
        );
        // A deploy of the old line after the rewrite is a rollback: it ships nothing new.
        check(
            &[base.clone(), forced("d", "d2", 2, &["c2", "d2"])],
            &[deploy("1", 3, "prod", "d2"), deploy("2", 4, "prod", "d")],
            &[("1", &["a", "b", "c2", "d2"]), ("2", &[])],
        );
        // A reset back past every recorded commit (to the first push's `before`): all of them.
        check(
            &[push("z", 0, &["a", "b"]), forced("b", "z", 2, &[]), push("z", 3, &["e"])],
            &[deploy("1", 4, "prod", "e")],
            &[("1", &["e"])],
        );
        // A forced push whose `before` was never recorded (a push delivery lost) takes off nothing.
        check(
            &[push("0", 0, &["a"]), forced("b", "b2", 2, &["b2"])],
            &[deploy("1", 4, "prod", "b2")],
            &[("1", &["a", "b2"])],
        );
        // A merged pull request no push carried, merged after a reset: on the branch's new line.
        let changes = branch_order(
            &[base.clone(), forced("d", "b", 2, &[])],
            &[MergedPullRequest { number: "5".into(), merge_sha: "m".into(), merged_at: 3 * H, opened_at: 0 }],
        );
        let sets = change_sets(&changes, &[deploy("1", 4, "prod", "m")]);
        let shipped: Vec<&str> = sets["1"].iter().flatten().map(|&i| changes[i].sha.as_str()).collect();
        assert_eq!(shipped, ["a", "b", "m"]);

        // The chain goes on after a reset, not along the old line again.
        let changes = branch_order(
            &[push("0", 0, &["a", "b"]), push("b", 1, &["c"]), forced("c", "b", 2, &[]), push("b", 3, &["e"])],
            &[],
        );
        assert_eq!(shas(&changes), ["a", "b", "c", "e"]);
        assert_eq!(changes[2].dropped_in, Some(1));
        assert_eq!(changes[3].line, 1);
    }

    #[test]
    fn incidents_are_attributed_by_root_cause_else_the_last_deploy() {
        let changes = branch_order(&[push("0", 0, &["aaaa1", "bbbb2", "cccc3"])], &[]);
        let deploys = [deploy("1", 1, "prod", "aaaa1"), deploy("2", 5, "prod", "cccc3")];
        let sets = change_sets(&changes, &deploys);
        let check = |start: i64, root_cause: Option<&str>, expected: Option<&str>| {
            let incident = IncidentRecord { key: "i".into(), start: start * H, root_cause: root_cause.map(Into::into) };
            let shipped: HashMap<String, Vec<Change>> = sets
                .iter()
                .map(|(key, set)| (key.clone(), set.iter().flatten().map(|&i| changes[i].clone()).collect()))
                .collect();
            let ships = |d: &DeployRecord| shipped[&d.key].as_slice();
            let got = attribute(&incident, &deploys, ships).map(|d| d.key.as_str());
            assert_eq!(got, expected, "incident at {start} with root cause {root_cause:?}");
        };
        check(6, None, Some("2"));
        check(3, None, Some("1"));
        check(0, None, None);
        check(6, Some("AAAA"), Some("1"));
        // A shipped commit that was never deployed itself: the deploy that shipped it.
        check(6, Some("bbbb"), Some("2"));
        // A root cause naming nothing known falls back to the last deploy.
        check(6, Some("ffff"), Some("2"));
        // The deploy of that sha ended after the incident opened: still it.
        check(3, Some("cccc"), Some("2"));
    }
}
