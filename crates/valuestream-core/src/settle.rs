//! The writer's decisions about one span, as pure functions ("settle"):
//! given what the span's row said before a delivery and the span its events
//! fold into now, which columns it gets, which of its references changed,
//! whose change sets it can move, and whether it started, ended or stayed as
//! it was. The store loads the row, calls [`settle`] and [`step`], and
//! carries out what they return.

use crate::span::{Attributes, Span, SpanState};
use crate::time::Timestamp;
use crate::vocab::{HOTFIX_LABEL, attr, is_revert, kind, outcome, state};
use sha2::{Digest, Sha256};

/// The values a summary can group by, in the order the summary lists them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupValues {
    pub source: String,
    pub kind: String,
    pub repo: Option<String>,
    pub project: Option<String>,
    pub environment: Option<String>,
    pub outcome: Option<String>,
}

impl GroupValues {
    /// The group's id: the first 63 bits of the SHA-256 of its values. A hash,
    /// not a sequence, so writers on several replicas agree without a lookup.
    pub fn id(&self) -> i64 {
        let text = serde_json::to_string(&(
            &self.source,
            &self.kind,
            &self.repo,
            &self.project,
            &self.environment,
            &self.outcome,
        ))
        .expect("strings serialize");
        let digest = Sha256::digest(text.as_bytes());
        let bytes: [u8; 8] = digest[..8].try_into().expect("8 bytes");
        (u64::from_be_bytes(bytes) >> 1) as i64
    }
}

/// The columns the metrics read, derived from a span's attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricColumns {
    pub group: GroupValues,
    /// The commit a span is about: the one a build ran on or a deploy shipped
    /// (`vcs.ref.head.revision`), a merged pull request's merge commit, or an
    /// incident's root cause (`valuestream.root_cause`, often a prefix).
    pub revision: Option<String>,
    /// A pull request's first review (`valuestream.first_review_at`).
    pub reviewed_ns: Option<i64>,
    /// A pull request titled `Revert "…"` or labelled `hotfix` (metrics.md, rework).
    pub rework: bool,
}

impl MetricColumns {
    pub fn of(
        source: &str,
        kind: &str,
        repo: Option<&str>,
        project: Option<&str>,
        outcome: Option<&str>,
        attributes: &Attributes,
    ) -> MetricColumns {
        let text = |name: &str| attributes.get(name).and_then(|v| v.as_str());
        let title = text(attr::CHANGE_TITLE).unwrap_or("");
        let hotfix = attributes.get(attr::LABELS).and_then(|v| v.as_array()).is_some_and(|labels| {
            labels.iter().any(|label| label.as_str().is_some_and(|l| l.eq_ignore_ascii_case(HOTFIX_LABEL)))
        });
        MetricColumns {
            group: GroupValues {
                source: source.to_string(),
                kind: kind.to_string(),
                repo: repo.map(str::to_string),
                project: project.map(str::to_string),
                environment: text(attr::ENVIRONMENT).map(str::to_string),
                outcome: outcome.map(str::to_string),
            },
            revision: match kind {
                kind::INCIDENT => text(attr::ROOT_CAUSE),
                kind::PULL_REQUEST => text(attr::MERGE_COMMIT),
                _ => text(attr::HEAD_REVISION),
            }
            .map(str::to_string),
            reviewed_ns: text(attr::FIRST_REVIEW_AT).and_then(Timestamp::parse_rfc3339).map(|t| t.nanos()),
            rework: kind == kind::PULL_REQUEST && (is_revert(title) || hotfix),
        }
    }

    /// The columns of `span`.
    pub fn of_span(span: &Span) -> MetricColumns {
        MetricColumns::of(
            &span.source,
            &span.kind,
            span.repo.as_deref(),
            span.project.as_deref(),
            span.outcome.as_deref(),
            &span.attributes,
        )
    }
}

/// A pull request's times, as change sets copy them (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullRequestTimes {
    pub opened: i64,
    /// The earliest commit pushed to its head branch before it opened.
    pub first_commit: Option<i64>,
    pub reviewed: Option<i64>,
    pub merged: Option<i64>,
}

/// What a span's row said before a delivery: what the decisions compare.
/// References are kept as the JSON text the row stores.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub kind: String,
    pub repo: Option<String>,
    pub environment: Option<String>,
    pub revision: Option<String>,
    pub state: String,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub outcome: Option<String>,
    pub trace_refs: String,
    pub parent_refs: String,
    pub link_refs: String,
    pub group_id: Option<i64>,
    pub reviewed_ns: Option<i64>,
    pub first_commit_ns: Option<i64>,
    pub rework: bool,
    /// The end it was given when it expired (`state` `expired`).
    pub expired_ns: Option<i64>,
}

impl Stored {
    fn pull_request_times(&self) -> PullRequestTimes {
        PullRequestTimes {
            opened: self.start_ns,
            first_commit: self.first_commit_ns,
            reviewed: self.reviewed_ns,
            merged: self.end_ns.filter(|_| self.outcome.as_deref() == Some(outcome::MERGED)),
        }
    }
}

/// What a span's new state asks of the writer.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub columns: MetricColumns,
    pub group_id: i64,
    /// The references as the row stores them (JSON arrays).
    pub trace_refs: String,
    pub parent_refs: String,
    pub link_refs: String,
    /// Its group has no row yet as far as this span knows.
    pub new_group: bool,
    /// What it answers to changed: spans waiting for a parent or a link may now find it.
    pub trace_refs_changed: bool,
    /// Where it looks for its parent changed (or it is new).
    pub parent_refs_changed: bool,
    /// What it links to changed.
    pub link_refs_changed: bool,
    /// Its kind changed: its descendants' rework flags follow.
    pub kind_changed: bool,
    /// It was an incident and is no longer one: its cause goes.
    pub no_longer_incident: bool,
    /// A pull request whose rework flag (revert, hotfix) changed.
    pub rework_changed: bool,
    /// The repositories whose change sets or incident causes its change can
    /// move: what the derivation reads of it (a deploy's end, outcome,
    /// environment and sha; a merged pull request's times and merge commit;
    /// an incident's start and root cause) changed, in its repository and
    /// its old one.
    pub derive_for: Vec<String>,
}

/// The decisions for `span`, whose row said `before` (`None`: a new span).
pub fn settle(before: Option<&Stored>, span: &Span) -> Settled {
    let columns = MetricColumns::of_span(span);
    let group_id = columns.group.id();
    let trace_refs = serde_json::to_string(&span.trace_refs).expect("refs serialize");
    let parent_refs = serde_json::to_string(&span.parent_refs).expect("refs serialize");
    let link_refs = serde_json::to_string(&span.link_refs).expect("refs serialize");
    Settled {
        new_group: before.is_none_or(|b| b.group_id != Some(group_id)),
        trace_refs_changed: before.is_none_or(|b| b.trace_refs != trace_refs),
        parent_refs_changed: before.is_none_or(|b| b.parent_refs != parent_refs),
        // A new span without link references has nothing to relink (most spans).
        link_refs_changed: before.map_or(!span.link_refs.is_empty(), |b| b.link_refs != link_refs),
        kind_changed: before.is_some_and(|b| b.kind != span.kind),
        no_longer_incident: before.is_some_and(|b| b.kind == kind::INCIDENT && span.kind != kind::INCIDENT),
        rework_changed: span.kind == kind::PULL_REQUEST && before.is_some_and(|b| b.rework) != columns.rework,
        derive_for: derivation_inputs_changed(before, span, &columns),
        columns,
        group_id,
        trace_refs,
        parent_refs,
        link_refs,
    }
}

/// A pull request's times now, given its first commit, and whether they
/// differ from what its row said (then change sets that ship it copy them).
pub fn pull_request_times(
    before: Option<&Stored>,
    span: &Span,
    columns: &MetricColumns,
    first_commit: Option<i64>,
) -> (PullRequestTimes, bool) {
    let merged = span.end.filter(|_| span.outcome.as_deref() == Some(outcome::MERGED)).map(|e| e.nanos());
    let times = PullRequestTimes { opened: span.start.nanos(), first_commit, reviewed: columns.reviewed_ns, merged };
    (times, before.is_none_or(|b| b.pull_request_times() != times))
}

fn derivation_inputs_changed(before: Option<&Stored>, span: &Span, columns: &MetricColumns) -> Vec<String> {
    let now = derivation_input(
        &span.kind,
        span.repo.as_deref(),
        span.start.nanos(),
        span.end.map(|e| e.nanos()),
        span.outcome.as_deref(),
        columns.group.environment.as_deref(),
        columns.revision.as_deref(),
    );
    let then = before.and_then(|b| {
        derivation_input(
            &b.kind,
            b.repo.as_deref(),
            b.start_ns,
            b.end_ns,
            b.outcome.as_deref(),
            b.environment.as_deref(),
            b.revision.as_deref(),
        )
    });
    if now == then {
        return Vec::new();
    }
    let mut repos: Vec<String> =
        [now.and_then(|n| n.1), then.and_then(|t| t.1)].into_iter().flatten().map(str::to_string).collect();
    repos.dedup();
    repos
}

/// What the derivation (the store's `changes::load`) reads of a span, or
/// `None` when it reads nothing: a successful, ended deploy's end,
/// environment and sha; a merged pull request's times and merge commit; an
/// incident's start and root cause; each with its repository. A deploy that
/// has not succeeded (created, in progress, failed) is not read at all, so
/// its deliveries ask for no recomputation until its success (or until a
/// success is taken back).
type DerivationInput<'a> = (&'a str, Option<&'a str>, Option<i64>, Option<i64>, Option<&'a str>, Option<&'a str>);

fn derivation_input<'a>(
    kind_: &'a str,
    repo: Option<&'a str>,
    start: i64,
    end: Option<i64>,
    outcome_: Option<&str>,
    environment: Option<&'a str>,
    revision: Option<&'a str>,
) -> Option<DerivationInput<'a>> {
    match kind_ {
        kind::DEPLOY if outcome_ == Some(outcome::SUCCESS) && end.is_some() => {
            Some((kind_, repo, None, end, environment, revision))
        }
        kind::PULL_REQUEST if outcome_ == Some(outcome::MERGED) && end.is_some() => {
            Some((kind_, repo, Some(start), end, None, revision))
        }
        kind::INCIDENT => Some((kind_, repo, Some(start), None, None, revision)),
        _ => None,
    }
}

/// How a delivery moved a span through its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// First seen open, or open again after it had ended (`reopened`): an end
    /// still waiting to be exported is not its end any more.
    Opened { reopened: bool },
    /// Open before and still open.
    StillOpen,
    /// It had expired and is open again (an expiry age no longer reached): the
    /// expired version waiting to be exported is withdrawn.
    Unexpired,
    /// Open and past the expiry age (`--expire-open-after`): exported as
    /// expired once. `started`: it was new or had ended (a start to count);
    /// `changed`: it was not expired before with the same end.
    Expired { started: bool, changed: bool },
    /// It ended now, or its end time or outcome moved: count it, export it.
    Ended,
    /// Ended before with the same end and outcome: only a version still
    /// waiting in the outbox is refreshed.
    StillEnded,
}

impl Step {
    /// A start to count: first seen open, open again after an end, or
    /// expired as it arrived or reopened.
    pub fn starts(self) -> bool {
        matches!(self, Step::Opened { .. } | Step::Expired { started: true, .. })
    }

    /// An end to count (its outcome and duration).
    pub fn ends(self) -> bool {
        self == Step::Ended
    }

    /// A version still waiting in the outbox is no longer its end: withdraw it.
    pub fn withdraws(self) -> bool {
        matches!(self, Step::Opened { reopened: true } | Step::Unexpired)
    }

    /// Whether to queue it for export, and if so whether its end is new
    /// (`true`) or only a waiting version is refreshed (`false`).
    pub fn export(self) -> Option<bool> {
        match self {
            Step::Ended => Some(true),
            Step::StillEnded => Some(false),
            // Exported as expired, once; no end and no duration are counted.
            Step::Expired { changed, .. } => Some(changed),
            Step::Opened { .. } | Step::StillOpen | Step::Unexpired => None,
        }
    }
}

/// The step `span` took from what its row said (`before`); `expired_ns` is
/// the end it is stored expired with now, if it is.
pub fn step(before: Option<&Stored>, span: &Span, expired_ns: Option<i64>) -> Step {
    let was = |state: &str| before.is_some_and(|b| b.state == state);
    let (was_closed, was_expired) = (was(state::CLOSED), was(state::EXPIRED));
    if span.state != SpanState::Closed {
        return match (before, expired_ns) {
            (_, Some(end)) => Step::Expired {
                started: before.is_none() || was_closed,
                changed: !(was_expired && before.and_then(|b| b.expired_ns) == Some(end)),
            },
            (None, None) => Step::Opened { reopened: false },
            (Some(_), None) if was_closed => Step::Opened { reopened: true },
            (Some(_), None) if was_expired => Step::Unexpired,
            (Some(_), None) => Step::StillOpen,
        };
    }
    let same_end = before.is_some_and(|b| {
        was_closed && b.end_ns == span.end.map(|e| e.nanos()) && b.outcome.as_deref() == span.outcome.as_deref()
    });
    if same_end { Step::StillEnded } else { Step::Ended }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).unwrap()
    }

    fn span(kind_: &str, end: Option<i64>, outcome_: Option<&str>) -> Span {
        Span {
            key: "github:o/r:x:1".into(),
            source: "github".into(),
            kind: kind_.into(),
            name: "x".into(),
            repo: Some("o/r".into()),
            project: None,
            start: at(10),
            end: end.map(at),
            state: if end.is_some() { SpanState::Closed } else { SpanState::Open },
            outcome: outcome_.map(str::to_string),
            attributes: Attributes::new(),
            parent_refs: Vec::new(),
            trace_refs: vec!["ref".into()],
            link_refs: Vec::new(),
        }
    }

    /// The row `span` would leave behind.
    fn stored(span: &Span) -> Stored {
        let settled = settle(None, span);
        Stored {
            kind: span.kind.clone(),
            repo: span.repo.clone(),
            environment: settled.columns.group.environment.clone(),
            revision: settled.columns.revision.clone(),
            state: span.state.as_str().into(),
            start_ns: span.start.nanos(),
            end_ns: span.end.map(|e| e.nanos()),
            outcome: span.outcome.clone(),
            trace_refs: settled.trace_refs,
            parent_refs: settled.parent_refs,
            link_refs: settled.link_refs,
            group_id: Some(settled.group_id),
            reviewed_ns: settled.columns.reviewed_ns,
            first_commit_ns: None,
            rework: settled.columns.rework,
            expired_ns: None,
        }
    }

    #[test]
    fn a_span_steps_through_its_life() {
        let open = span(kind::ISSUE, None, None);
        let closed = span(kind::ISSUE, Some(20), Some("completed"));
        let check = |before: Option<&Span>, now: &Span, expected: Step| {
            let before = before.map(stored);
            assert_eq!(step(before.as_ref(), now, None), expected, "{before:?} → {now:?}");
        };
        check(None, &open, Step::Opened { reopened: false });
        check(Some(&open), &open, Step::StillOpen);
        check(Some(&open), &closed, Step::Ended);
        check(None, &closed, Step::Ended);
        check(Some(&closed), &closed, Step::StillEnded);
        check(Some(&closed), &span(kind::ISSUE, Some(30), Some("completed")), Step::Ended);
        check(Some(&closed), &span(kind::ISSUE, Some(20), Some("not_planned")), Step::Ended);
        check(Some(&closed), &open, Step::Opened { reopened: true });

        // Expiry (`--expire-open-after`): the end it is stored expired with.
        let expired = |before: Option<Stored>, now: &Span, at: Option<i64>| step(before.as_ref(), now, at);
        let was_expired = Stored { state: state::EXPIRED.into(), expired_ns: Some(99), ..stored(&open) };
        assert_eq!(expired(None, &open, Some(99)), Step::Expired { started: true, changed: true });
        assert_eq!(expired(Some(stored(&open)), &open, Some(99)), Step::Expired { started: false, changed: true });
        assert_eq!(
            expired(Some(was_expired.clone()), &open, Some(99)),
            Step::Expired { started: false, changed: false }
        );
        assert_eq!(
            expired(Some(was_expired.clone()), &open, Some(77)),
            Step::Expired { started: false, changed: true }
        );
        assert_eq!(expired(Some(was_expired.clone()), &open, None), Step::Unexpired);
        assert_eq!(expired(Some(stored(&closed)), &open, Some(99)), Step::Expired { started: true, changed: true });
        // A close closes an expired span as any open one.
        assert_eq!(expired(Some(was_expired), &closed, None), Step::Ended);
    }

    /// What each step asks of the writer: (starts, ends, withdraws, export).
    #[test]
    fn each_step_says_what_to_count_withdraw_and_export() {
        let check = |step: Step, expected: (bool, bool, bool, Option<bool>)| {
            assert_eq!((step.starts(), step.ends(), step.withdraws(), step.export()), expected, "{step:?}");
        };
        check(Step::Opened { reopened: false }, (true, false, false, None));
        check(Step::Opened { reopened: true }, (true, false, true, None));
        check(Step::StillOpen, (false, false, false, None));
        check(Step::Unexpired, (false, false, true, None));
        check(Step::Expired { started: true, changed: true }, (true, false, false, Some(true)));
        check(Step::Expired { started: false, changed: false }, (false, false, false, Some(false)));
        check(Step::Ended, (false, true, false, Some(true)));
        check(Step::StillEnded, (false, false, false, Some(false)));
    }

    #[test]
    fn only_what_the_derivation_reads_asks_for_a_recomputation() {
        let check = |before: Option<&Span>, now: &Span, expected: &[&str]| {
            let before = before.map(stored);
            assert_eq!(settle(before.as_ref(), now).derive_for, expected, "{before:?} → {now:?}");
        };
        let deploying = span(kind::DEPLOY, None, None);
        let deployed = span(kind::DEPLOY, Some(20), Some(outcome::SUCCESS));
        // A deploy is read once it has succeeded: created, in progress or
        // failed, it asks for nothing; its success and a success taken back do.
        check(None, &deploying, &[]);
        check(Some(&deploying), &deploying, &[]);
        check(Some(&deploying), &deployed, &["o/r"]);
        check(None, &span(kind::DEPLOY, Some(20), Some(outcome::FAILURE)), &[]);
        check(Some(&deployed), &span(kind::DEPLOY, Some(20), Some(outcome::FAILURE)), &["o/r"]);
        let mut restarted = deployed.clone();
        restarted.start = at(5);
        check(Some(&deployed), &restarted, &[]);
        // An incident's start and root cause are read, not its end.
        let incident = span(kind::INCIDENT, None, None);
        check(None, &incident, &["o/r"]);
        check(Some(&incident), &span(kind::INCIDENT, Some(30), Some("resolved")), &[]);
        let mut earlier = incident.clone();
        earlier.start = at(5);
        check(Some(&incident), &earlier, &["o/r"]);
        // A pull request matters only once merged; an issue never.
        check(None, &span(kind::PULL_REQUEST, None, None), &[]);
        check(None, &span(kind::PULL_REQUEST, Some(20), Some(outcome::MERGED)), &["o/r"]);
        check(None, &span(kind::ISSUE, Some(20), Some("completed")), &[]);
        // Moved to another repository: both.
        let mut moved = deployed.clone();
        moved.repo = Some("o/s".into());
        check(Some(&deployed), &moved, &["o/s", "o/r"]);
    }

    #[test]
    fn changed_references_and_kinds_are_noticed() {
        let issue = span(kind::ISSUE, None, None);
        let settled = settle(None, &issue);
        assert!(settled.new_group && settled.trace_refs_changed && settled.parent_refs_changed);
        assert!(!settled.link_refs_changed, "a new span without links has nothing to relink");

        let before = stored(&issue);
        let same = settle(Some(&before), &issue);
        assert!(!same.new_group && !same.trace_refs_changed && !same.parent_refs_changed && !same.kind_changed);

        let mut incident = issue.clone();
        incident.kind = kind::INCIDENT.into();
        let became = settle(Some(&before), &incident);
        assert!(became.kind_changed && !became.no_longer_incident && became.new_group);
        let back = settle(Some(&stored(&incident)), &issue);
        assert!(back.kind_changed && back.no_longer_incident);

        let mut revert = span(kind::PULL_REQUEST, None, None);
        let plain = stored(&revert);
        revert.attributes.insert(attr::CHANGE_TITLE.into(), json!("Revert \"Add login\""));
        assert!(settle(Some(&plain), &revert).rework_changed);
        assert!(!settle(Some(&stored(&revert)), &revert).rework_changed);
    }

    fn group(repo: Option<&str>, outcome: Option<&str>) -> GroupValues {
        GroupValues {
            source: "github".into(),
            kind: "build".into(),
            repo: repo.map(str::to_string),
            project: None,
            environment: None,
            outcome: outcome.map(str::to_string),
        }
    }

    #[test]
    fn group_ids_are_stable_positive_and_tell_null_from_empty() {
        let a = group(Some("org/a"), Some("success"));
        assert_eq!(a.id(), a.clone().id());
        assert!(a.id() >= 0);
        assert_ne!(a.id(), group(Some("org/a"), Some("failure")).id());
        assert_ne!(group(None, None).id(), group(Some(""), None).id());
        assert_ne!(group(Some("org/a"), None).id(), group(None, Some("org/a")).id());
    }

    #[test]
    fn columns_come_from_attributes() {
        let attributes: Attributes = serde_json::from_value(json!({
            "valuestream.merge_commit_sha": "abc123",
            "valuestream.first_review_at": "2026-01-02T03:04:05Z",
            "vcs.change.title": "Revert \"Add login\"",
            "deployment.environment.name": "production",
        }))
        .unwrap();
        let columns = MetricColumns::of("github", "pull_request", Some("org/a"), None, Some("merged"), &attributes);
        assert_eq!(columns.revision.as_deref(), Some("abc123"));
        assert_eq!(columns.reviewed_ns, Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").map(|t| t.nanos()));
        assert!(columns.rework);
        assert_eq!(columns.group.environment.as_deref(), Some("production"));

        let hotfix: Attributes = serde_json::from_value(json!({"valuestream.labels": ["HotFix"]})).unwrap();
        assert!(MetricColumns::of("github", "pull_request", None, None, None, &hotfix).rework);
        // Only pull requests are rework by title or label; a build is not.
        assert!(!MetricColumns::of("github", "build", None, None, None, &hotfix).rework);
        let plain: Attributes = serde_json::from_value(json!({"vcs.change.title": "Reverting the cache"})).unwrap();
        assert!(!MetricColumns::of("github", "pull_request", None, None, None, &plain).rework);
    }
}
