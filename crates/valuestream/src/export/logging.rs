//! The logging tracer: each finished span as one JSON line on stdout.

use super::ExportSpan;
use std::io::Write;

pub(super) fn print(spans: &[ExportSpan]) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for span in spans {
        let line = serde_json::to_string(span).map_err(|e| e.to_string())?;
        writeln!(out, "{line}").map_err(|e| format!("writing to stdout: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing to stdout: {e}"))
}
