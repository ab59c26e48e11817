//! The simple mix (`--mix simple`), the load generator's first: vendored
//! @octokit `issues` and `pull_request` payloads with the repository (200 of
//! them), number, title, state and times varied. Every span receives only
//! opened/closed snapshots, so it keeps earlier figures in docs/benchmarks.md
//! comparable.

use super::Delivery;
use serde_json::{Value, json};

/// Distinct issues/pull requests the load spreads over (events per span = deliveries / SPANS).
const SPANS: u64 = 20_000;

pub struct Simple {
    pub issue: Value,
    pull_request: Value,
}

impl Simple {
    pub fn new() -> Simple {
        Simple {
            issue: super::vendored("issues.opened.plain"),
            pull_request: super::vendored("pull_request.opened.installation"),
        }
    }

    /// The n-th delivery: alternately an issue and a pull request event, spread
    /// over `SPANS` spans in 200 repositories, times moving forward with n.
    pub fn delivery(&self, n: u64) -> Delivery {
        let span = n % SPANS;
        let repo = format!("repo-{}", span % 200);
        let number = span / 200 + 1;
        let minute = 60 * (n / SPANS) as i64;
        let time = |offset: i64| {
            chrono::DateTime::from_timestamp(1_790_000_000 + span as i64 * 60 + minute + offset, 0)
                .unwrap()
                .to_rfc3339()
        };
        let (event, mut body, object) = if n.is_multiple_of(2) {
            ("issues", self.issue.clone(), "issue")
        } else {
            ("pull_request", self.pull_request.clone(), "pull_request")
        };
        body["repository"]["name"] = json!(repo);
        body["repository"]["full_name"] = json!(format!("load-org/{repo}"));
        let closing = (n / SPANS) % 2 == 1;
        let action = if closing { "closed" } else { "opened" };
        body["action"] = json!(action);
        let o = &mut body[object];
        o["number"] = json!(number);
        o["title"] = json!(format!("Change number {n} to the service"));
        o["created_at"] = json!(time(0));
        o["updated_at"] = json!(time(30));
        o["state"] = json!(if closing { "closed" } else { "open" });
        o["closed_at"] = if closing { json!(time(30)) } else { Value::Null };
        if object == "pull_request" {
            o["head"]["ref"] = json!(format!("feature/vstrace-github-{repo}-{number}/work"));
        }
        Delivery {
            event,
            action,
            span: Some(format!("{repo}:{object}:{number}")),
            body: serde_json::to_vec(&body).unwrap(),
        }
    }
}
