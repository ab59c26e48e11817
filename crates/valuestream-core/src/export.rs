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

/// The attributes exported for a span: its own plus its key, kind, outcome,
/// repository and `error.type` when it failed.
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
        if outcome == crate::vocab::outcome::FAILURE {
            exported.insert("error.type".into(), outcome.into());
        }
    }
    if let Some(repo) = repo {
        exported.insert("valuestream.repo".into(), repo.into());
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
