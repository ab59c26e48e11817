//! The words the rest of ValueStream matches on after a source has parsed a
//! delivery: span kinds, outcomes and the attribute names the metrics read.
//! Code outside the sources names them through these constants, never as
//! string literals, so a rename is one edit and a typo does not compile.

/// Span kinds (sources.md). Custom kinds from `customhttp` are free text.
pub mod kind {
    pub const ISSUE: &str = "issue";
    pub const INCIDENT: &str = "incident";
    pub const PULL_REQUEST: &str = "pull_request";
    pub const BUILD: &str = "build";
    pub const JOB: &str = "job";
    pub const DEPLOY: &str = "deploy";
    pub const SPRINT: &str = "sprint";
    /// Every kind a source other than `customhttp` gives.
    pub const ALL: &[&str] = &[ISSUE, INCIDENT, PULL_REQUEST, BUILD, JOB, DEPLOY, SPRINT];
}

/// A span's `state` in the store and the API: open, closed (it ended), or
/// expired (still open `--expire-open-after` after its start: given up for
/// lost, with no end of its own).
pub mod state {
    pub const OPEN: &str = "open";
    pub const CLOSED: &str = "closed";
    pub const EXPIRED: &str = "expired";
}

/// Span outcomes the metrics distinguish.
pub mod outcome {
    pub const SUCCESS: &str = "success";
    pub const FAILURE: &str = "failure";
    pub const MERGED: &str = "merged";
    pub const CANCELLED: &str = "cancelled";
    pub const SKIPPED: &str = "skipped";
    /// A pull request closed without merging.
    pub const CLOSED: &str = "closed";
    pub const COMPLETED: &str = "completed";
    pub const NOT_PLANNED: &str = "not_planned";
    pub const DELETED: &str = "deleted";
    /// Every outcome a source other than `customhttp` gives.
    pub const ALL: &[&str] = &[SUCCESS, FAILURE, CANCELLED, SKIPPED, MERGED, CLOSED, COMPLETED, NOT_PLANNED, DELETED];

    /// The outcomes a span of `kind` can end with (sources.md); a pipeline's
    /// own words beyond these count as other.
    pub fn of_kind(kind: &str) -> &'static [&'static str] {
        use super::kind;
        match kind {
            kind::ISSUE | kind::INCIDENT => &[COMPLETED, NOT_PLANNED, DELETED],
            kind::PULL_REQUEST => &[MERGED, CLOSED],
            kind::BUILD | kind::JOB | kind::DEPLOY => &[SUCCESS, FAILURE, CANCELLED, SKIPPED],
            kind::SPRINT => &[COMPLETED],
            _ => &[],
        }
    }
}

/// Attribute names the store and the metrics read.
pub mod attr {
    /// The commit a build ran on, a deploy shipped, a pull request's head.
    pub const HEAD_REVISION: &str = "vcs.ref.head.revision";
    /// A deploy's environment.
    pub const ENVIRONMENT: &str = "deployment.environment.name";
    /// The branch a pull request, build or job ran on.
    pub const HEAD_BRANCH: &str = "vcs.ref.head.name";
    /// A pull request's title.
    pub const CHANGE_TITLE: &str = "vcs.change.title";
    /// A merged pull request's merge (or squash) commit.
    pub const MERGE_COMMIT: &str = "valuestream.merge_commit_sha";
    /// A pull request's labels (array of strings).
    pub const LABELS: &str = "valuestream.labels";
    /// A pull request's first review (RFC 3339).
    pub const FIRST_REVIEW_AT: &str = "valuestream.first_review_at";
    /// The sha (or prefix) an incident's `root cause:` line names.
    pub const ROOT_CAUSE: &str = "valuestream.root_cause";
    /// What a pipeline run does (`RUN`, `BUILD`); set only on pipeline runs.
    pub const PIPELINE_ACTION: &str = "cicd.pipeline.action.name";
    /// The pipeline a run or job belongs to, as the payload names it.
    pub const PIPELINE_NAME: &str = "cicd.pipeline.name";
    /// A job's task name.
    pub const TASK_NAME: &str = "cicd.pipeline.task.name";
    /// Why a span failed, as specifically as its source says.
    pub const ERROR_TYPE: &str = "error.type";
    /// Exported (`true`) on a span that expired: its end is its start plus
    /// `--expire-open-after`, not a time any payload gave.
    pub const EXPIRED: &str = "valuestream.span.expired";
}

/// `cicd.pipeline.action.name` values.
pub mod action {
    /// A workflow run, a pipeline, a custom build.
    pub const RUN: &str = "RUN";
    /// A Jenkins build (deploys included).
    pub const BUILD: &str = "BUILD";
}

/// The label that makes a pull request a hotfix (metrics.md, rework).
pub const HOTFIX_LABEL: &str = "hotfix";

/// A revert, as git writes its default message and GitHub its pull request title.
pub fn is_revert(text: &str) -> bool {
    text.starts_with("Revert \"")
}

/// Deploy environments that count as production by default (metrics.md).
pub const PRODUCTION_ENVIRONMENTS: &[&str] = &["production", "prod", "live"];

/// A span key's parts: `{source}:{repo or project}:{kind}:{id}` (sources.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanKey<'a> {
    pub source: &'a str,
    pub repo: &'a str,
    pub kind: &'a str,
    pub id: &'a str,
}

impl<'a> SpanKey<'a> {
    /// Splits a key; `None` when it does not have the four parts. The repo
    /// part may not contain `:`; the id may.
    pub fn parse(key: &'a str) -> Option<SpanKey<'a>> {
        let mut parts = key.splitn(4, ':');
        let (source, repo, kind, id) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(SpanKey { source, repo, kind, id })
    }
}

impl std::fmt::Display for SpanKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}:{}", self.source, self.repo, self.kind, self.id)
    }
}

/// The key of pull request `number` of `repo`.
pub fn pull_request_key(source: &str, repo: &str, number: &str) -> String {
    SpanKey { source, repo, kind: kind::PULL_REQUEST, id: number }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_keys_split_and_join() {
        let key = "github:octo-org/hello-world:pull_request:42";
        let parts = SpanKey::parse(key).unwrap();
        assert_eq!(
            (parts.source, parts.repo, parts.kind, parts.id),
            ("github", "octo-org/hello-world", "pull_request", "42")
        );
        assert_eq!(parts.to_string(), key);
        assert_eq!(pull_request_key("github", "octo-org/hello-world", "42"), key);
        assert_eq!(SpanKey::parse("jenkins:svc:deploy:7:2").unwrap().id, "7:2");
        assert_eq!(SpanKey::parse("no-parts"), None);
    }
}
