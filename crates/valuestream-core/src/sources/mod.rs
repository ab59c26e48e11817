//! Sources: the systems that send deliveries. Each module knows one vendor's
//! headers and payloads and turns a delivery into [`SpanEvent`]s; nothing
//! outside this folder knows a vendor's payload shape.
//!
//! Adding a source is one module implementing [`Source`] and one line in [`SOURCES`].

pub mod customhttp;
pub mod github;
pub mod gitlab;
pub mod jenkins;
pub mod jira;

use crate::delivery::Delivery;
use crate::span::SpanEvent;
use crate::time::Timestamp;
use crate::verify::AuthError;

/// Every source ValueStream understands; its name gives the route
/// (`/webhooks/{name}`), the metric label and the fixture folder.
pub static SOURCES: &[&dyn Source] =
    &[&github::GitHub, &gitlab::GitLab, &jenkins::Jenkins, &jira::Jira, &customhttp::CustomHttp];

/// Looks a source up by its name (`github`, …).
pub fn by_name(name: &str) -> Option<&'static dyn Source> {
    SOURCES.iter().copied().find(|source| source.name() == name)
}

/// Options a user can set per source (TOML file); defaults fit most teams.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Labels that make an issue an `incident` span (compared case-insensitively).
    pub incident_labels: Vec<String>,
    /// A regular expression: CI jobs whose full name matches are deploys
    /// (besides the `deploy:`/`deploy-` prefixes and the `type=deploy` parameter).
    pub deploy_job_pattern: Option<String>,
    /// The default branch when a payload does not say (pushes elsewhere are not changes).
    pub default_branch: String,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            incident_labels: vec!["incident".to_string()],
            deploy_job_pattern: None,
            default_branch: "main".to_string(),
        }
    }
}

/// Checks a user-supplied regular expression (configuration), naming the problem.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| e.to_string())
}

/// Commits that reached a repository's default branch in one push, in the
/// order they were pushed (metrics.md, "Changes and change sets").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Push {
    /// The repository, as spans name it (`octo-org/hello-world`).
    pub repo: String,
    pub branch: String,
    /// Whether `branch` is the repository's default branch. Only those
    /// commits are changes; a push to another branch tells when a pull
    /// request's commits were made (metrics.md, coding time).
    pub default_branch: bool,
    /// The branch head before and after the push; chains pushes in order.
    pub before: String,
    pub after: String,
    /// A forced push: it rewrote the branch rather than adding to it
    /// (GitHub says so; GitLab's push hook does not).
    #[serde(default)]
    pub forced: bool,
    pub pushed_at: Timestamp,
    pub commits: Vec<Commit>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    pub sha: String,
    pub timestamp: Timestamp,
    /// The first line of the commit message.
    pub message: String,
    /// The pull request the commit came from, when the message says
    /// (`Merge pull request #12 from …`, `Title (#12)`).
    pub pull_request: Option<u64>,
}

/// What a delivery means.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// A connectivity check (GitHub's `ping`): answered `pong`.
    Pong,
    /// Understood but not something ValueStream tracks; answered `ignored`.
    Ignored { reason: String },
    /// Changes to zero or more spans.
    Spans(Vec<SpanEvent>),
    /// Commits that reached the default branch.
    Push(Push),
}

/// Why a delivery could not be understood. The message names the problem and
/// is safe to return to the sender (it never echoes payload content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("invalid payload at `{path}`: {message}")]
    Field { path: String, message: String },
    #[error("{0}")]
    Body(String),
}

impl ParseError {
    /// The problem without any payload value, for logs at info: the kind of
    /// problem and where, never what the payload said there (serde's messages
    /// quote the bad value; the sender still gets the full message).
    pub fn reason(&self) -> String {
        match self {
            ParseError::MissingHeader(header) => format!("missing {header} header"),
            ParseError::Json(_) => "body is not valid JSON".to_string(),
            ParseError::Field { path, message } => format!("invalid payload at `{path}`: {}", value_free(message)),
            ParseError::Body(message) => value_free(message),
        }
    }

    /// Turns a serde error, with the path where it happened, into a `ParseError`.
    pub fn from_path_error(error: serde_path_to_error::Error<serde_json::Error>) -> ParseError {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            ParseError::Json(inner.to_string())
        } else {
            // serde_json appends " at line L column C"; the path says more.
            let message = inner.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_string();
            ParseError::Field { path, message }
        }
    }
}

/// A parse message with the payload values taken out. serde writes
/// `invalid type: string "x", expected u64`, `unknown variant `x`, expected …`
/// and custom errors may quote their input; `missing field `x`` names our own
/// field and is kept.
fn value_free(message: &str) -> String {
    if message.starts_with("missing field `") {
        return message.to_string();
    }
    for kind in ["invalid type", "invalid value", "invalid length", "unknown variant", "unknown field"] {
        if message.starts_with(kind) {
            return match message.split_once(", expected ") {
                Some((_, expected)) => format!("{kind}, expected {expected}"),
                None => kind.to_string(),
            };
        }
    }
    match message.find(['"', '`', '\'']) {
        Some(quote) => format!("{}…", message[..quote].trim_end()),
        None => message.to_string(),
    }
}

/// Deepest nesting accepted anywhere in a payload (serde_json's own limit for
/// the values it reads; checked here for the values it skips as well).
pub const MAX_DEPTH: usize = 128;

/// Checks what serde does not check in the parts of a document a typed parse
/// skips: the body is a JSON object, valid UTF-8 throughout, nested at most
/// [`MAX_DEPTH`] deep. One linear pass, no allocation.
pub fn check_document(bytes: &[u8]) -> Result<(), ParseError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ParseError::Body("body is not valid UTF-8".into()));
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => return Err(ParseError::Json("EOF while parsing a value at line 1 column 0".into())),
        Some(_) => return Err(ParseError::Body("body must be a JSON object".into())),
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::Body(format!("body is nested deeper than {MAX_DEPTH} levels")));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Appends `value` under `name` when there is one.
pub(crate) fn insert_opt<T: Into<serde_json::Value>>(
    attributes: &mut crate::span::Attributes,
    name: &str,
    value: Option<T>,
) {
    if let Some(value) = value {
        attributes.insert(name.to_string(), value.into());
    }
}

/// Drops repeated items, keeping the first of each (parent references keep their order of preference).
pub(crate) fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// The time a snapshot of an object describes: its `updated_at`, never
/// earlier than the change it reports.
pub(crate) fn snapshot_time(change: &crate::span::Change, updated_at: Option<Timestamp>) -> Timestamp {
    use crate::span::Change;
    let own = match change {
        Change::Start { start } => *start,
        Change::Update { start } => start.unwrap_or(Timestamp(0)),
        Change::End { end, .. } => *end,
    };
    updated_at.map_or(own, |updated| updated.max(own))
}

/// A `ParseError` for one field.
pub(crate) fn field_error(path: &str, message: &str) -> ParseError {
    ParseError::Field { path: path.to_string(), message: message.to_string() }
}

/// Parses a JSON object into `T`, reporting the path of the first problem.
pub fn parse_json<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ParseError> {
    check_document(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(ParseError::from_path_error)?;
    deserializer.end().map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(value)
}

/// Headers that carry credentials whatever the source: HTTP authentication
/// (a proxy in front may add it) and cookies.
pub const HTTP_CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Whether a header carries a credential of `source` and so must never be
/// stored: one the source declares, HTTP's own, or, as a safety net for
/// senders behind other gateways, any whose name says token, signature,
/// secret, password or api key.
pub fn is_credential_header(source: &dyn Source, name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    source.credential_headers().iter().chain(HTTP_CREDENTIAL_HEADERS).any(|h| h.eq_ignore_ascii_case(&lower))
        || ["token", "signature", "secret", "password", "api-key", "apikey"].iter().any(|word| lower.contains(word))
}

/// One system that sends deliveries.
pub trait Source: Sync {
    /// Lowercase name: `github`, `gitlab`, `jenkins`, `jira`, `customhttp`.
    fn name(&self) -> &'static str;
    /// The environment variable that holds this source's secrets (comma-separated).
    fn secret_variable(&self) -> &'static str;
    /// What that secret is and where the sender puts it, for `--help`.
    fn secret_help(&self) -> &'static str;
    /// The headers that carry this source's credentials: its signatures and
    /// tokens (any case). They are dropped before a delivery is stored; HTTP's
    /// own ([`HTTP_CREDENTIAL_HEADERS`]) are dropped for every source.
    fn credential_headers(&self) -> &'static [&'static str];
    /// Checks the delivery's signature or token against the configured secrets.
    fn authenticate(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), AuthError>;
    /// The sender's delivery id, when it sends one.
    fn delivery_id(&self, delivery: &Delivery) -> Option<String>;
    /// The sender's event type (bounded: used as a metric label and in logs).
    fn event_type(&self, delivery: &Delivery) -> String;
    /// Every value [`Source::event_type`] returns (the metrics publish each from start-up).
    fn event_types(&self) -> Vec<&'static str>;
    /// The span kinds this source makes; `None` when its kinds are free text (customhttp).
    fn span_kinds(&self) -> Option<&'static [&'static str]>;
    /// What the delivery means. `delivery_id` is the id the store knows it by.
    fn parse(&self, delivery: &Delivery, delivery_id: &str, options: &SourceOptions) -> Result<Parsed, ParseError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_quote_no_payload_value() {
        let check = |error: ParseError, expected: &str| assert_eq!(error.reason(), expected, "{error}");
        let field = |message: &str| field_error("issue.number", message);
        check(
            field("invalid type: string \"ghp_SECRET\", expected u64"),
            "invalid payload at `issue.number`: invalid type, expected u64",
        );
        check(
            field("invalid value: integer `-4`, expected u32"),
            "invalid payload at `issue.number`: invalid value, expected u32",
        );
        check(
            field("unknown variant `ghp_SECRET`, expected `open` or `closed`"),
            "invalid payload at `issue.number`: unknown variant, expected `open` or `closed`",
        );
        check(field("missing field `number`"), "invalid payload at `issue.number`: missing field `number`");
        check(
            field("not an RFC 3339 time: \"ghp_SECRET\""),
            "invalid payload at `issue.number`: not an RFC 3339 time:…",
        );
        check(field("time before 1970"), "invalid payload at `issue.number`: time before 1970");
        check(ParseError::Json("expected `,` or `}` at line 1 column 9".into()), "body is not valid JSON");
        check(ParseError::MissingHeader("X-GitHub-Event"), "missing X-GitHub-Event header");
        check(ParseError::Body("body must be a JSON object".into()), "body must be a JSON object");
        let serde = parse_json::<std::collections::BTreeMap<String, u64>>(br#"{"a": "ghp_SECRET"}"#).unwrap_err();
        assert!(serde.to_string().contains("ghp_SECRET") && !serde.reason().contains("ghp_SECRET"), "{serde:?}");
    }

    #[test]
    fn every_source_drops_its_credentials_and_keeps_the_rest() {
        let check = |source: &dyn Source, name: &str, expected: bool| {
            assert_eq!(is_credential_header(source, name), expected, "{} {name}", source.name());
        };
        for source in SOURCES {
            for name in source.credential_headers().iter().chain(HTTP_CREDENTIAL_HEADERS) {
                check(*source, name, true);
                check(*source, &name.to_ascii_uppercase(), true);
            }
            for name in ["Authorization", "Cookie", "X-Hub-Signature", "X-Hub-Signature-256", "X-VS-Signature"] {
                check(*source, name, true);
            }
            check(*source, "X-Gitlab-Token", true);
            check(*source, "x-api-key", true);
            for name in ["content-type", "x-github-event", "x-github-delivery", "x-gitlab-event", "user-agent"] {
                check(*source, name, false);
            }
        }
    }
}
