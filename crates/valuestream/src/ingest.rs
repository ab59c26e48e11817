//! The ingest pipeline shared by the server and `replay`: authenticate, parse,
//! then hand the delivery to the single writer, which applies deliveries in
//! order and commits them in groups (one transaction for many deliveries).
//!
//! Architecture Invariant: `submit` returns only after the delivery and every
//! span change it causes are committed. Acknowledge means durable.

use crate::store::{Ack, Applicable, Store, StoreError};
use crate::telemetry::Telemetry;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{self, ParseError, Source, SourceOptions};
use valuestream_core::verify::AuthError;

/// Deliveries committed together at most (group commit).
const MAX_GROUP: usize = 256;
/// Deliveries waiting for the writer at most; senders wait beyond that.
const QUEUE: usize = 4096;

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    BadRequest(#[from] ParseError),
    #[error("the store cannot take the delivery: {0}")]
    Unavailable(String),
}

struct Job {
    item: Applicable,
    reply: oneshot::Sender<Result<Ack, String>>,
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
    pub options: Arc<SourceOptions>,
}

impl Ingest {
    /// Starts the writer task. `export` says whether finished spans are queued
    /// for export; `exported` is nudged after a commit that queued some.
    pub fn start(
        store: Store,
        options: SourceOptions,
        export: bool,
        exported: Arc<Notify>,
        telemetry: Telemetry,
    ) -> Ingest {
        let (jobs, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, receiver, export, exported, telemetry));
        Ingest { jobs, options: Arc::new(options) }
    }

    /// Checks, parses and durably applies one delivery. `secrets` empty means
    /// the source is unsigned (allowed by configuration, or a trusted replay).
    pub async fn submit(
        &self,
        source: &dyn Source,
        delivery: Delivery,
        secrets: &[String],
    ) -> Result<Ack, IngestError> {
        if !secrets.is_empty() {
            source.authenticate(&delivery, secrets)?;
        }
        let item = prepare(source, delivery, &self.options)?;
        self.apply(item).await
    }

    /// Hands a parsed delivery to the writer and waits for its commit.
    pub async fn apply(&self, item: Applicable) -> Result<Ack, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { item, reply })
            .await
            .map_err(|_| IngestError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| IngestError::Unavailable("the writer has stopped".into()))?
            .map_err(IngestError::Unavailable)
    }
}

/// The id the store knows a delivery by: `{source}:{the sender's delivery id}`,
/// else `{source}:{SHA-256 of source + body}`.
pub fn delivery_id(source: &dyn Source, delivery: &Delivery) -> String {
    format!("{}:{}", source.name(), source.delivery_id(delivery).unwrap_or_else(|| delivery.content_id()))
}

/// Parses a delivery into what the store applies (no IO). Headers carrying
/// credentials (the source's signatures and tokens, HTTP authentication,
/// cookies) are dropped here, and the query string is not kept: the store
/// never sees them.
pub fn prepare(source: &dyn Source, delivery: Delivery, options: &SourceOptions) -> Result<Applicable, ParseError> {
    let id = delivery_id(source, &delivery);
    let parsed = source.parse(&delivery, &id, options)?;
    let event_type = source.event_type(&delivery);
    let headers =
        delivery.headers.into_iter().filter(|(name, _)| !sources::is_credential_header(source, name)).collect();
    Ok(Applicable {
        id,
        source: source.name().to_string(),
        event_type,
        received_at: delivery.received_at,
        headers,
        body: delivery.body,
        parsed,
    })
}

async fn write_loop(
    store: Store,
    mut receiver: mpsc::Receiver<Job>,
    export: bool,
    exported: Arc<Notify>,
    telemetry: Telemetry,
) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (items, replies): (Vec<Applicable>, Vec<_>) = group.drain(..).map(|job| (job.item, job.reply)).unzip();
        let began = std::time::Instant::now();
        match store.apply_batch(&items, export).await {
            Ok((acks, queued)) => {
                telemetry.store_commit(began.elapsed().as_secs_f64());
                if queued > 0 {
                    exported.notify_one();
                }
                for (reply, ack) in replies.into_iter().zip(acks) {
                    record(&telemetry, &ack);
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(error) => {
                // One bad delivery must not fail its neighbours: retry each alone.
                tracing::warn!(%error, deliveries = items.len(), "Group commit failed; applying one by one.");
                for (item, reply) in items.iter().zip(replies) {
                    let answer = match store.apply_batch(std::slice::from_ref(item), export).await {
                        Ok((mut acks, queued)) => {
                            if queued > 0 {
                                exported.notify_one();
                            }
                            let ack = acks.remove(0);
                            record(&telemetry, &ack);
                            Ok(ack)
                        }
                        Err(error) => {
                            tracing::error!(%error, delivery = %item.id, "Could not store a delivery.");
                            Err(describe(&error))
                        }
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
}

/// Counts a committed delivery's span starts and ends (after the commit, so a
/// retried group is never counted twice).
fn record(telemetry: &Telemetry, ack: &Ack) {
    for transition in &ack.transitions {
        match &transition.ended {
            None => telemetry.span_started(&transition.source, &transition.kind),
            Some((outcome, seconds)) => telemetry.span_ended(&transition.source, &transition.kind, outcome, *seconds),
        }
    }
}

fn describe(error: &StoreError) -> String {
    error.to_string()
}
