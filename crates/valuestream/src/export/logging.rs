//! The logging tracer: each finished span as one JSON line on stdout, with
//! what OTLP sends for it: its resource, instrumentation scope, span kind,
//! status (with `error.type`), attributes and links (trace and span ids).

use super::otlp;
use crate::store::ExportSpan;
use opentelemetry::trace::Status;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use valuestream_core::export::{self, SpanKind};

/// One line: the exported span, plus the resource and the OTLP kind and status.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    span: &'a ExportSpan,
    resource: BTreeMap<String, Value>,
    scope: Value,
    span_kind: SpanKind,
    status: Value,
}

fn line(span: &ExportSpan) -> Line<'_> {
    let resource = otlp::resource(&span.source)
        .iter()
        .map(|(key, value)| (key.to_string(), Value::String(value.to_string())))
        .collect();
    let status = match otlp::status(span) {
        Status::Error { description } => json!({"code": "error", "message": description}),
        Status::Ok => json!({"code": "ok"}),
        Status::Unset => json!({"code": "unset"}),
    };
    let scope = otlp::scope();
    let scope = json!({"name": scope.name(), "version": scope.version()});
    Line { span, resource, scope, span_kind: export::span_kind(&span.kind, &span.attributes), status }
}

pub(super) fn print(spans: &[ExportSpan]) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for span in spans {
        let line = serde_json::to_string(&line(span)).map_err(|e| e.to_string())?;
        writeln!(out, "{line}").map_err(|e| format!("writing to stdout: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing to stdout: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ExportLink;
    use opentelemetry::trace::SpanKind as OtlpKind;
    use valuestream_core::time::Timestamp;

    /// A failed pipeline run with a parent and a link: every part OTLP sends.
    fn failed_build() -> ExportSpan {
        let attributes = serde_json::from_value(json!({
            "cicd.pipeline.name": "CI",
            "cicd.pipeline.action.name": "RUN",
            "cicd.pipeline.result": "failure",
            "error.type": "tests failed",
            "cicd.pipeline.run.id": 42,
            "valuestream.labels": ["a", "b"],
        }))
        .unwrap();
        ExportSpan {
            key: "github:octo-org/hello-world:build:42".into(),
            source: "github".into(),
            kind: "build".into(),
            name: "RUN CI".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: Some("a3ce929d0e0e4736".into()),
            start: Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap(),
            end: Timestamp::parse_rfc3339("2026-11-20T10:10:00Z").unwrap(),
            outcome: Some("failure".into()),
            attributes,
            links: vec![ExportLink {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "b7ad6b7169203331".into(),
            }],
        }
    }

    #[test]
    fn a_line_says_what_otlp_sends() {
        let span = failed_build();
        let line = serde_json::to_value(line(&span)).unwrap();
        let otlp = otlp::span_data(&span);

        // The resource: service.name is the source, with ValueStream's namespace and version.
        let resource: BTreeMap<String, Value> = otlp::resource(&span.source)
            .iter()
            .map(|(key, value)| (key.to_string(), Value::String(value.to_string())))
            .collect();
        assert_eq!(line["resource"], json!(resource));
        assert_eq!(line["resource"]["service.name"], "github");
        assert_eq!(line["resource"]["service.version"], env!("CARGO_PKG_VERSION"));
        // The instrumentation scope.
        assert_eq!(line["scope"]["name"], otlp.instrumentation_scope.name());
        assert_eq!(line["scope"]["version"], json!(otlp.instrumentation_scope.version()));
        // Name, ids, times.
        assert_eq!(line["name"], otlp.name.as_ref());
        assert_eq!(line["trace_id"], otlp.span_context.trace_id().to_string());
        assert_eq!(line["span_id"], otlp.span_context.span_id().to_string());
        assert_eq!(line["parent_span_id"], otlp.parent_span_id.to_string());
        assert_eq!(
            (line["start"].as_str(), line["end"].as_str()),
            (Some("2026-11-20T10:00:00Z"), Some("2026-11-20T10:10:00Z"))
        );
        // Span kind: a pipeline run is SERVER.
        assert_eq!(otlp.span_kind, OtlpKind::Server);
        assert_eq!(line["span_kind"], "server");
        // Status: error with error.type as its message.
        assert_eq!(otlp.status, Status::error("tests failed"));
        assert_eq!(line["status"], json!({"code": "error", "message": "tests failed"}));
        assert_eq!(line["attributes"]["error.type"], "tests failed");
        // Every attribute OTLP carries, and no other.
        let exported: BTreeMap<String, String> =
            otlp.attributes.iter().map(|kv| (kv.key.to_string(), kv.value.to_string())).collect();
        let printed: BTreeMap<String, String> = line["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect();
        assert_eq!(printed, exported);
        // Links with the linked spans' trace and span ids.
        let links: Vec<Value> = otlp
            .links
            .iter()
            .map(|link| {
                json!({"trace_id": link.span_context.trace_id().to_string(),
                       "span_id": link.span_context.span_id().to_string()})
            })
            .collect();
        assert_eq!(line["links"], json!(links));
        assert_eq!(line["links"][0]["span_id"], "b7ad6b7169203331");
    }
}
