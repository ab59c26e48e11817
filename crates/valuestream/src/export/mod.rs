//! Exporting finished spans. The store queues each finished span in the outbox
//! (in the same transaction as the change that finished it); the export task
//! sends a queued span once it has stayed unchanged for the settle delay and
//! removes it once the backend acknowledged it (docs/sources.md:
//! one export per span, again only when its end or outcome changes).
//!
//! Architecture Invariant: nothing is exported from a request handler. A backend
//! that is down delays spans (retried with backoff); it never loses them.

mod logging;
mod otlp;

use crate::store::{Due, ExportSpan, Store};
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use valuestream_core::time::Timestamp;

pub use otlp::{OtlpExporter, OtlpSettings, Protocol};

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

/// How the export task settles spans: a row is sent once it has stayed
/// unchanged for `delay` (`--export-delay`).
#[derive(Clone, Copy, Debug)]
pub struct Settle {
    pub delay: Duration,
}

impl Settle {
    /// The newest change a row may have and still be sent at `now`.
    pub fn changed_before(&self, now: Timestamp) -> Timestamp {
        Timestamp(now.nanos().saturating_sub(duration_nanos(self.delay)))
    }

    /// How long to wait at `now` for a row last changed at `changed_at` to be due.
    fn until_due(&self, changed_at: Timestamp, now: Timestamp) -> Duration {
        let due = changed_at.nanos().saturating_add(duration_nanos(self.delay));
        Duration::from_nanos(due.saturating_sub(now.nanos()).max(0) as u64)
    }
}

fn duration_nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// The wall clock, as the writer stamps outbox rows (the delivery's receipt time).
fn now() -> Timestamp {
    Timestamp::now()
}

/// What one [`export_once`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Spans the backend acknowledged.
    pub sent: usize,
    /// Of those, spans it had received before (their end or outcome changed since).
    pub resent: usize,
    /// Rows removed unsent: the backend already had their end and outcome.
    pub dropped: usize,
}

impl Drained {
    /// How many rows left the outbox.
    pub fn removed(&self) -> usize {
        self.sent + self.dropped
    }
}

/// Runs until `shutdown` turns true, then flushes what is due within `flush_bound`.
/// Rows still settling stay in the outbox for the next start.
pub async fn run(
    store: Store,
    mut exporter: Exporter,
    settle: Settle,
    nudge: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    flush_bound: Duration,
    telemetry: Telemetry,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            let flush = flush(&store, &mut exporter, settle, &telemetry);
            let _ = tokio::time::timeout(flush_bound, flush).await;
            return;
        }
        match export_once(&store, &mut exporter, settle.changed_before(now())).await {
            Ok(drained) if drained.removed() > 0 => {
                telemetry.exported(drained.sent, drained.resent);
                backoff = Duration::from_millis(200);
            }
            Ok(_) => {
                // Nothing due: sleep until the oldest settling row is, or a nudge.
                let wait = match store.outbox_oldest_change().await {
                    Ok(Some(changed_at)) => settle.until_due(changed_at, now()).min(POLL),
                    _ => POLL,
                };
                tokio::select! {
                    _ = nudge.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
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

/// Exports until nothing is due or the backend fails.
async fn flush(store: &Store, exporter: &mut Exporter, settle: Settle, telemetry: &Telemetry) {
    while let Ok(drained) = export_once(store, exporter, settle.changed_before(now())).await {
        telemetry.exported(drained.sent, drained.resent);
        if drained.removed() == 0 {
            return;
        }
    }
}

/// Exports one batch of the rows not changed since `changed_before`. A row
/// whose end and outcome the backend already has (queued while its twin was
/// being sent) is removed unsent. Rows leave the outbox only after the backend
/// acknowledged them.
pub async fn export_once(store: &Store, exporter: &mut Exporter, changed_before: Timestamp) -> Result<Drained, String> {
    let due = store.outbox_due(changed_before, BATCH).await.map_err(|e| e.to_string())?;
    if due.is_empty() {
        return Ok(Drained::default());
    }
    let (dropped, fresh): (Vec<Due>, Vec<Due>) =
        due.into_iter().partition(|row| row.sent.as_ref().is_some_and(|sent| sent.matches(&row.span)));
    // One span per request: two versions of a span due together go out as the newest.
    let mut newest: Vec<Due> = Vec::with_capacity(fresh.len());
    let mut superseded = dropped;
    for row in fresh {
        match newest.iter_mut().find(|kept| kept.span.key == row.span.key) {
            Some(kept) => superseded.push(std::mem::replace(kept, row)),
            None => newest.push(row),
        }
    }
    let spans: Vec<ExportSpan> = newest.iter().map(|row| row.span.clone()).collect();
    if !spans.is_empty()
        && let Err(error) = exporter.export(&spans).await
    {
        let ids: Vec<i64> = newest.iter().map(|row| row.id).collect();
        let _ = store.outbox_failed(&ids).await;
        return Err(error);
    }
    store.outbox_sent(&newest, &superseded).await.map_err(|e| e.to_string())?;
    Ok(Drained {
        sent: newest.len(),
        resent: newest.iter().filter(|row| row.sent.is_some()).count(),
        dropped: superseded.len(),
    })
}
