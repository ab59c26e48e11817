//! What a span looks like to a trace backend (docs/sources.md):
//! its name, its OpenTelemetry span kind, its status and the attributes it
//! carries. The service's exporters (the logging tracer, OTLP) only put this
//! on the wire with the ids and times the store resolved.
//!
//! Status follows `error.type`: a span is exported with an error status
//! exactly when it carries `error.type`.

use crate::span::{Attributes, Span};
use crate::vocab::attr;
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

/// The span's name, as stored and exported. A pipeline run is named
/// `{cicd.pipeline.action.name} {cicd.pipeline.name}` (just the action when the
/// payload names no pipeline), a job by its task, anything else
/// `{kind} {short name}`. Pipeline runs' and jobs' names carry no run ids.
pub fn name(kind: &str, short_name: &str, attributes: &Attributes) -> String {
    let text = |name: &str| attributes.get(name).and_then(Value::as_str).filter(|t| !t.is_empty());
    if let Some(action) = text(attr::PIPELINE_ACTION) {
        return match text(attr::PIPELINE_NAME) {
            Some(pipeline) => format!("{action} {pipeline}"),
            None => action.to_string(),
        };
    }
    if let (true, Some(task)) = (kind == crate::vocab::kind::JOB, text(attr::TASK_NAME)) {
        return task.to_string();
    }
    format!("{kind} {short_name}")
}

/// The OpenTelemetry span kind: SERVER for a pipeline run (a span the source
/// gave a `cicd.pipeline.action.name`), INTERNAL for everything else.
pub fn span_kind(_kind: &str, attributes: &Attributes) -> SpanKind {
    if attributes.get(attr::PIPELINE_ACTION).and_then(Value::as_str).is_some_and(|a| !a.is_empty()) {
        SpanKind::Server
    } else {
        SpanKind::Internal
    }
}

/// Results (`cicd.pipeline.result`, `cicd.pipeline.task.run.result`) that
/// end a run with an error status; success, cancellation and skip do not.
pub const FAILED_RESULTS: &[&str] = &["failure", "error", "timeout"];

/// The attributes exported for a span: its own (without empty values) plus its
/// key, kind, outcome and repository, a deploy's `deployment.status`
/// (`succeeded`, `failed`), and `error.type` exactly when it failed: its result is a
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
    // Empty values are left out, never exported as `""` or `[]`.
    let mut exported: Attributes = attributes
        .iter()
        .filter(|(_, value)| match value {
            Value::String(text) => !text.is_empty(),
            Value::Array(items) => !items.is_empty(),
            Value::Null => false,
            _ => true,
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
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
    // The conventions' deployment status: a deploy either succeeded or failed.
    if kind == crate::vocab::kind::DEPLOY {
        match outcome {
            Some(crate::vocab::outcome::SUCCESS) => {
                exported.insert("deployment.status".into(), "succeeded".into());
            }
            Some(crate::vocab::outcome::FAILURE) => {
                exported.insert("deployment.status".into(), "failed".into());
            }
            _ => {}
        }
    }
    if failed {
        let reason = text(attr::ERROR_TYPE).or(result).unwrap_or(crate::vocab::outcome::FAILURE).to_string();
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
