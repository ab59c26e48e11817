//! What a span looks like to a trace backend (contract.md, "Exported spans"):
//! its name, its OpenTelemetry span kind, its status and the attributes it
//! carries. The service's exporters (the logging tracer, OTLP) only put this
//! on the wire with the ids and times the store resolved.
//!
//! Status follows `error.type`: a span is exported with an error status
//! exactly when it carries `error.type`.

use crate::span::{Attributes, Span};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The OpenTelemetry span kinds ValueStream exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// A pipeline run: the CI/CD conventions' SERVER span.
    Server,
    Internal,
}

/// A span as the backend receives it, without ids and times.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct View {
    pub name: String,
    pub kind: SpanKind,
    /// The error status's description (`error.type`); `None` for an unset status.
    pub error: Option<String>,
    pub attributes: Attributes,
}

/// The span's name, as stored and exported: `{kind} {short name}`.
pub fn name(kind: &str, short_name: &str, _attributes: &Attributes) -> String {
    format!("{kind} {short_name}")
}

/// The OpenTelemetry span kind of a span of `kind`.
pub fn span_kind(kind: &str, _attributes: &Attributes) -> SpanKind {
    if kind == crate::vocab::kind::BUILD { SpanKind::Server } else { SpanKind::Internal }
}

/// Results (`cicd.pipeline.result`, `cicd.pipeline.task.run.result`) that
/// end a run with an error status; success, cancellation and skip do not.
pub const FAILED_RESULTS: &[&str] = &["failure", "error", "timeout"];

/// The attributes exported for a span: its own plus its key, kind, outcome and
/// repository, and `error.type` exactly when it failed: its result is a
/// failure, an error or a timeout, or (a span without a result: a deploy, a
/// custom event) its outcome is `failure`. `error.type` is the most specific
/// reason the source gave (an `error.type` it set, such as GitLab's failure
/// reason), else the result, else `failure`.
pub fn attributes(
    key: &str,
    kind: &str,
    outcome: Option<&str>,
    repo: Option<&str>,
    attributes: &Attributes,
) -> Attributes {
    let mut exported = attributes.clone();
    exported.insert("valuestream.span.key".into(), key.into());
    exported.insert("valuestream.kind".into(), kind.into());
    if let Some(outcome) = outcome {
        exported.insert("valuestream.outcome".into(), outcome.into());
    }
    if let Some(repo) = repo {
        exported.insert("valuestream.repo".into(), repo.into());
    }
    let text = |name: &str| attributes.get(name).and_then(Value::as_str).filter(|t| !t.is_empty());
    let result = text("cicd.pipeline.result").or(text("cicd.pipeline.task.run.result"));
    let failed = match result {
        Some(result) => FAILED_RESULTS.contains(&result),
        None => outcome == Some(crate::vocab::outcome::FAILURE),
    };
    if failed {
        let reason = text("error.type").or(result).unwrap_or(crate::vocab::outcome::FAILURE).to_string();
        exported.insert("error.type".into(), reason.into());
    } else {
        // A reason from an earlier failed attempt of a span that ended well since.
        exported.remove("error.type");
    }
    exported
}

/// The error status of a span with these exported attributes: its `error.type`.
pub fn error(exported: &Attributes) -> Option<String> {
    match exported.get("error.type") {
        Some(Value::String(reason)) => Some(reason.clone()),
        _ => None,
    }
}

/// The whole view of a folded span.
pub fn view(span: &Span) -> View {
    let attributes = attributes(&span.key, &span.kind, span.outcome.as_deref(), span.repo.as_deref(), &span.attributes);
    View {
        name: name(&span.kind, &span.name, &span.attributes),
        kind: span_kind(&span.kind, &span.attributes),
        error: error(&attributes),
        attributes,
    }
}
