//! The logging tracer: each finished span as one JSON line on stdout, with
//! what OTLP would send for it: its resource, span kind, status and links.

use super::ExportSpan;
use super::otlp;
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
    Line { span, resource, span_kind: export::span_kind(&span.kind, &span.attributes), status }
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
