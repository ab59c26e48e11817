//! Finding parents (linking.md): trace references such as
//! `vstrace-github-hello-world-27` in branches, titles and parameters, and
//! closing keywords such as `Fixes #27` in pull request text.
//!
//! Everything here is lowercase and textual; which span a reference names is
//! decided by the store, which knows the spans.

use regex::Regex;
use std::sync::LazyLock;

/// A place a span looks for its parent: a trace reference or a span key, in
/// lowercase. Keys contain `:`, references never do.
pub type ParentRef = String;

/// The characters a trace reference is made of; any other ends it.
fn is_ref_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Every reading of every `vstrace-…` reference in `text`, lowercase, most
/// specific first. `feature/vstrace-github-hello-world-27/login` gives
/// `vstrace-github-hello-world-27`; `vstrace-github-hello-world-27-fix-2` gives
/// `…-27-fix-2` and `…-27` (the reading that names a known span wins).
pub fn find_trace_refs(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("vstrace-") {
        let preceded_by_ref_char = lower[..lower.len() - rest.len() + at].chars().next_back().is_some_and(is_ref_char);
        let token_len = rest[at..].find(|c: char| !is_ref_char(c)).unwrap_or(rest.len() - at);
        let token = rest[at..at + token_len].trim_end_matches(['.', '_', '-']);
        if !preceded_by_ref_char {
            for reading in readings(token) {
                if !found.contains(&reading) {
                    found.push(reading);
                }
            }
        }
        rest = &rest[at + token_len.max(1)..];
    }
    found
}

/// The prefixes of a reference token that end with a number, longest first.
/// A reading needs at least `vstrace-{source}-{something}-{number}`.
fn readings(token: &str) -> Vec<String> {
    let segments: Vec<&str> = token.split('-').collect();
    let mut out = Vec::new();
    for end in (3..segments.len()).rev() {
        let last = segments[end];
        if !last.is_empty()
            && last.bytes().all(|b| b.is_ascii_digit())
            && segments[1..end].iter().all(|s| !s.is_empty())
        {
            out.push(segments[..=end].join("-"));
        }
    }
    out
}

/// An issue named by a closing keyword: `#27`, `owner/repo#27` or an issue URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueMention {
    /// `owner/repo` (or a GitLab `group/project` path) when the text names one.
    pub repo_path: Option<String>,
    pub number: u64,
}

static CLOSING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        \b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?|implement(?:s|ed)?)\b\s*:?\s+
        (?:
            https?://[A-Za-z0-9.-]+/(?P<url_repo>[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+?)(?:/-)?/issues/(?P<url_num>\d+)
          | (?P<repo>[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)\#(?P<repo_num>\d+)
          | \#(?P<num>\d+)
        )\b",
    )
    .expect("closing keyword pattern is valid")
});

/// Issues named by closing keywords in `text`, in order of appearance.
pub fn find_closing_mentions(text: &str) -> Vec<IssueMention> {
    let mut found = Vec::new();
    for caps in CLOSING.captures_iter(text) {
        let (repo_path, number) = if let (Some(repo), Some(num)) = (caps.name("url_repo"), caps.name("url_num")) {
            (Some(repo.as_str()), num.as_str())
        } else if let (Some(repo), Some(num)) = (caps.name("repo"), caps.name("repo_num")) {
            (Some(repo.as_str()), num.as_str())
        } else if let Some(num) = caps.name("num") {
            (None, num.as_str())
        } else {
            continue;
        };
        let Ok(number) = number.parse() else { continue };
        let mention = IssueMention { repo_path: repo_path.map(str::to_string), number };
        if !found.contains(&mention) {
            found.push(mention);
        }
    }
    found
}

/// The trace references an issue-like span answers to, e.g. for GitHub issue
/// `octo-org/hello-world#27`: `vstrace-github-hello-world-27` and
/// `vstrace-github-issue-hello-world-27`.
pub fn issue_refs(source: &str, project: &str, number: &str) -> Vec<String> {
    vec![
        format!("vstrace-{source}-{project}-{number}").to_ascii_lowercase(),
        format!("vstrace-{source}-issue-{project}-{number}").to_ascii_lowercase(),
    ]
}

/// The reference any span answers to, as the original built it:
/// `vstrace-{source}-{kind}-{name}-{id}`.
pub fn generic_ref(source: &str, kind: &str, name: &str, id: &str) -> String {
    format!("vstrace-{source}-{kind}-{name}-{id}").to_ascii_lowercase()
}

static ISSUE_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^A-Za-z0-9])([A-Z][A-Z0-9_]+-[0-9]+)").expect("issue key pattern is valid"));

/// Jira-style issue keys (`PAY-12`) in a branch or title, lowercase, in order.
/// A Jira issue answers to its bare key, so such a key names it only when the
/// project is one seen from Jira (linking.md); otherwise it resolves to nothing.
pub fn find_issue_keys(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for caps in ISSUE_KEY.captures_iter(text) {
        let key = caps[1].to_ascii_lowercase();
        if !key.starts_with("vstrace") && !found.contains(&key) {
            found.push(key);
        }
    }
    found
}

/// The alias a span answers to for a branch it is built from (a pull
/// request's head branch; builds of that branch look for it). Aliases contain
/// `:` and are never shown as trace references.
pub fn branch_alias(source: &str, repo: &str, branch: &str) -> String {
    format!("{source}:{repo}:branch:{branch}").to_ascii_lowercase()
}

/// The alias a span carrying commit `sha` answers to (a pull request's head
/// or merge commit; deploys of that sha look for it).
pub fn sha_alias(source: &str, repo: &str, sha: &str) -> String {
    format!("{source}:{repo}:sha:{sha}").to_ascii_lowercase()
}

/// The alias a deploy of `sha` answers to (so commits recorded later find it).
pub fn deployed_alias(source: &str, repo: &str, sha: &str) -> String {
    format!("{source}:{repo}:deployed:{sha}").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references_in_both_branch_forms() {
        assert_eq!(
            find_trace_refs("feature/vstrace-github-hello-world-27/login"),
            vec!["vstrace-github-hello-world-27"]
        );
        assert_eq!(find_trace_refs("vstrace-github-issue-hello-world-27"), vec!["vstrace-github-issue-hello-world-27"]);
        assert_eq!(find_trace_refs("VSTRACE-GitHub-My_Repo.js-3"), vec!["vstrace-github-my_repo.js-3"]);
        assert_eq!(find_trace_refs("see vstrace-github-hello-world-27."), vec!["vstrace-github-hello-world-27"]);
    }

    #[test]
    fn text_after_the_number_gives_several_readings() {
        assert_eq!(
            find_trace_refs("vstrace-github-hello-world-27-fix-2"),
            vec!["vstrace-github-hello-world-27-fix-2", "vstrace-github-hello-world-27"]
        );
        assert_eq!(find_trace_refs("vstrace-github-hello-world-27-fix-login"), vec!["vstrace-github-hello-world-27"]);
    }

    #[test]
    fn ignores_text_without_a_whole_reference() {
        assert!(find_trace_refs("main").is_empty());
        assert!(find_trace_refs("vstrace-github-27").is_empty());
        assert!(find_trace_refs("xvstrace-github-a-27").is_empty());
        assert!(find_trace_refs("vstrace-").is_empty());
    }

    #[test]
    fn finds_jira_keys_in_branches_and_titles() {
        assert_eq!(find_issue_keys("PAY-12-fix-login"), vec!["pay-12"]);
        assert_eq!(find_issue_keys("feature/PAY-12 and OPS2-7: login"), vec!["pay-12", "ops2-7"]);
        assert!(find_issue_keys("fix-12 lower-case is not a key").is_empty());
        assert!(find_issue_keys("XPAY-12").contains(&"xpay-12".to_string()));
    }

    #[test]
    fn finds_closing_keywords() {
        let m = |repo: Option<&str>, number| IssueMention { repo_path: repo.map(String::from), number };
        assert_eq!(find_closing_mentions("Fixes #27"), vec![m(None, 27)]);
        assert_eq!(
            find_closing_mentions("this closes octo-org/hello-world#27."),
            vec![m(Some("octo-org/hello-world"), 27)]
        );
        assert_eq!(
            find_closing_mentions("Resolves: https://github.com/octo-org/hello-world/issues/9"),
            vec![m(Some("octo-org/hello-world"), 9)]
        );
        assert_eq!(
            find_closing_mentions("Closes https://gitlab.com/group/sub/project/-/issues/4"),
            vec![m(Some("group/sub/project"), 4)]
        );
        assert!(find_closing_mentions("prefixes #27 and #28").is_empty());
        assert!(find_closing_mentions("see #27").is_empty());
    }
}
