//! Exporting finished spans. The store queues each finished span in the outbox
//! (in the same transaction as the change that finished it); the export task
//! sends queued spans to the tracer backend and removes them once acknowledged.
//!
//! Architecture Invariant: nothing is exported from a request handler. A backend
//! that is down delays spans (retried with backoff); it never loses them.

mod logging;
mod otlp;

use crate::store::{ApiSpan, Store};
use crate::telemetry::Telemetry;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use valuestream_core::span::Attributes;
use valuestream_core::time::Timestamp;

pub use otlp::{OtlpExporter, OtlpSettings, Protocol};

/// A finished span as sent to the backend, with the ids known when it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportSpan {
    pub key: String,
    pub source: String,
    pub kind: String,
    /// `{kind} {short name}`, e.g. `pull_request hello-world#42`.
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub outcome: Option<String>,
    pub attributes: Attributes,
    pub links: Vec<ExportLink>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportLink {
    pub trace_id: String,
    pub span_id: String,
}

impl ExportSpan {
    pub fn from_api(span: &ApiSpan, links: Vec<ExportLink>) -> ExportSpan {
        let mut attributes = span.attributes.clone();
        attributes.insert("valuestream.span.key".into(), span.key.clone().into());
        attributes.insert("valuestream.kind".into(), span.kind.clone().into());
        if let Some(outcome) = &span.outcome {
            attributes.insert("valuestream.outcome".into(), outcome.clone().into());
            if outcome == "failure" {
                attributes.insert("error.type".into(), outcome.clone().into());
            }
        }
        if let Some(repo) = &span.repo {
            attributes.insert("valuestream.repo".into(), repo.clone().into());
        }
        ExportSpan {
            key: span.key.clone(),
            source: span.source.clone(),
            kind: span.kind.clone(),
            name: span.name.clone(),
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            parent_span_id: span.parent_span_id.clone(),
            start: span.start,
            end: span.end.unwrap_or(span.start),
            outcome: span.outcome.clone(),
            attributes,
            links,
        }
    }
}

/// Where finished spans go (`--tracer`).
pub enum Exporter {
    /// One JSON object per span on stdout.
    Logging,
    /// OTLP over HTTP/protobuf or gRPC.
    Otlp(Box<OtlpExporter>),
}

impl Exporter {
    async fn export(&mut self, spans: &[ExportSpan]) -> Result<(), String> {
        match self {
            Exporter::Logging => logging::print(spans),
            Exporter::Otlp(otlp) => otlp.export(spans).await,
        }
    }
}

/// Spans sent per request to the backend.
const BATCH: usize = 512;
/// The longest wait between retries while the backend is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the outbox is checked even without a nudge (other replicas may fill it).
const POLL: Duration = Duration::from_secs(2);

/// Runs until `shutdown` turns true, then flushes what it can within `flush_bound`.
pub async fn run(
    store: Store,
    mut exporter: Exporter,
    nudge: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    flush_bound: Duration,
    telemetry: Telemetry,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            let _ = tokio::time::timeout(flush_bound, flush(&store, &mut exporter)).await;
            return;
        }
        match export_once(&store, &mut exporter).await {
            Ok(n) if n > 0 => backoff = Duration::from_millis(200),
            Ok(_) => {
                tokio::select! {
                    _ = nudge.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(error) => {
                telemetry.export_failed(1);
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "Export failed; the spans stay queued.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Exports until the outbox is empty or the backend fails.
async fn flush(store: &Store, exporter: &mut Exporter) {
    while let Ok(n) = export_once(store, exporter).await {
        if n == 0 {
            return;
        }
    }
}

/// Exports one batch; returns how many spans left the outbox.
pub async fn export_once(store: &Store, exporter: &mut Exporter) -> Result<usize, String> {
    let batch = store.outbox_batch(BATCH).await.map_err(|e| e.to_string())?;
    if batch.is_empty() {
        return Ok(0);
    }
    let (ids, spans): (Vec<i64>, Vec<ExportSpan>) = batch.into_iter().unzip();
    match exporter.export(&spans).await {
        Ok(()) => {
            store.outbox_remove(&ids).await.map_err(|e| e.to_string())?;
            Ok(ids.len())
        }
        Err(error) => {
            let _ = store.outbox_failed(&ids).await;
            Err(error)
        }
    }
}
