//! The ingest pipeline shared by the server and `replay`: authenticate, parse,
//! then hand the delivery to the single writer, which applies deliveries in
//! order and commits them in groups (one transaction for many deliveries).
//!
//! Architecture Invariant: `submit` returns an [`Ack`] only after the delivery
//! and every span change it causes are committed. Acknowledge means durable.
//! Anything else — a store error, a full write queue, a commit that takes too
//! long, a writer that panicked — is [`IngestError::Unavailable`] (503, the
//! sender retries).
//!
//! The writer is supervised: a panic inside it answers its deliveries in
//! flight with 503, is logged, and the writer restarts after a pause (longer
//! while it keeps panicking); queued deliveries wait for it. Its health
//! (running, failing to commit, restarting, stopped) is what `/readyz` reports.

use crate::store::{Ack, Applicable, Store, StoreError, Swept};
use crate::telemetry::Telemetry;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{self, ParseError, Source, SourceOptions};
use valuestream_core::time::Timestamp;
use valuestream_core::verify::AuthError;

/// Deliveries committed together at most (group commit).
const MAX_GROUP: usize = 256;
/// Deliveries waiting for the writer at most; a webhook beyond that is
/// answered 503 at once (replay waits for room instead).
pub const QUEUE: usize = 4096;
/// Longest a webhook waits for its commit before it is answered 503 (GitHub
/// gives up after 10 s). A delivery committed after its sender was told 503
/// is harmless: the sender's retry is answered `duplicate`.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(4);
/// Longest one group may take to commit before the writer gives up on it and
/// closes its connection (a database that stopped answering mid-transaction).
/// A SQLite file's writer runs its group on its own connection to the end
/// instead (store/db.rs): SQLite's busy timeout bounds its waits for a lock,
/// and a disk that hangs hangs it, which `/readyz` reports after
/// [`STUCK_AFTER`] while webhooks are still answered 503 after [`ANSWER_WITHIN`].
const COMMIT_WITHIN: Duration = Duration::from_secs(10);
/// How often a writer whose last commit failed checks, while no delivery
/// comes, whether the store takes writes again.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A writer busy on one group for longer than this is reported not ready.
const STUCK_AFTER: Duration = Duration::from_secs(5);
/// Pause before restarting a writer that panicked; doubled after each panic
/// that comes soon after a restart, up to [`RESTART_AFTER_MAX`].
const RESTART_AFTER: Duration = Duration::from_millis(500);
const RESTART_AFTER_MAX: Duration = Duration::from_secs(30);
/// A writer that ran this long since its last restart is trusted again (the
/// pause before the next restart starts over).
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How often the writer sweeps for open spans that grew older than
/// `--expire-open-after`: every minute, or every tenth of a shorter age
/// (tests use seconds), never more often than every 100 ms.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_millis(100);

fn sweep_interval(age: Duration) -> Duration {
    (age / 10).clamp(SWEEP_AT_MOST_EVERY, SWEEP_EVERY)
}

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
    health: Arc<Health>,
    /// How many deliveries the writer has taken off the queue.
    taken: watch::Receiver<u64>,
    pub options: Arc<SourceOptions>,
}

/// The writer task, to stop and join on shutdown.
pub struct Writer {
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Writer {
    /// Lets the writer commit what is already queued, then waits for it to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "The writer task did not end cleanly.");
        }
    }
}

impl Ingest {
    /// Starts the supervised writer task. `export` says whether finished spans
    /// are queued for export; `exported` is nudged after a commit that queued some.
    pub fn start(
        store: Store,
        options: SourceOptions,
        export: bool,
        exported: Arc<Notify>,
        telemetry: Telemetry,
    ) -> (Ingest, Writer) {
        Ingest::start_with_queue(store, options, export, exported, telemetry, QUEUE)
    }

    /// [`Ingest::start`] with a write queue of `queue` deliveries (tests fill a small one).
    #[doc(hidden)]
    pub fn start_with_queue(
        store: Store,
        options: SourceOptions,
        export: bool,
        exported: Arc<Notify>,
        telemetry: Telemetry,
        queue: usize,
    ) -> (Ingest, Writer) {
        let (jobs, receiver) = mpsc::channel(queue);
        let (stop, stopping) = watch::channel(false);
        let health = Arc::new(Health::new());
        let (took, taken) = watch::channel(0);
        let writer = WriteLoop { store, export, exported, telemetry, health: health.clone(), taken: took };
        let task = tokio::spawn(supervise(writer, receiver, stopping));
        (Ingest { jobs, health, taken, options: Arc::new(options) }, Writer { task, stop })
    }

    /// Checks, parses and durably applies one delivery. `secrets` empty means
    /// the source is unsigned (allowed by configuration, or a trusted replay).
    /// Answers within [`ANSWER_WITHIN`]: a full queue or a slow store is
    /// [`IngestError::Unavailable`], never a wait.
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
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(Job { item, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => IngestError::Unavailable(format!(
                "{} deliveries already wait for the store; retry later",
                self.jobs.max_capacity()
            )),
            mpsc::error::TrySendError::Closed(_) => IngestError::Unavailable("the writer has stopped".into()),
        })?;
        match tokio::time::timeout(ANSWER_WITHIN, answer).await {
            Ok(answer) => settle(answer),
            Err(_) => Err(IngestError::Unavailable(format!("the store did not commit it within {ANSWER_WITHIN:?}"))),
        }
    }

    /// Hands a parsed delivery to the writer and waits, however long, for
    /// room in the queue and for its commit.
    pub async fn apply(&self, item: Applicable) -> Result<Ack, IngestError> {
        self.enqueue(item).await?.committed().await
    }

    /// Hands a parsed delivery to the writer, waiting however long for room
    /// in the queue, and returns before its commit. Deliveries enqueued one
    /// after another are applied in that order: `replay` keeps a recording's
    /// order, so a span's events mostly come in order and fold incrementally
    /// instead of being read and folded again.
    pub async fn enqueue(&self, item: Applicable) -> Result<Queued, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { item, reply })
            .await
            .map_err(|_| IngestError::Unavailable("the writer has stopped".into()))?;
        Ok(Queued(answer))
    }

    /// Deliveries waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// The count of deliveries the writer has taken off the queue, changing as
    /// it takes each group: once it counts a delivery, that delivery's group
    /// is closed, and later ones form the next. Tests await it instead of
    /// pausing and hoping the writer has started.
    #[doc(hidden)]
    pub fn taken(&self) -> watch::Receiver<u64> {
        self.taken.clone()
    }

    /// `Ok` when the writer runs and can commit; else why not (for `/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        if self.jobs.is_closed() {
            return Err("the writer has stopped".into());
        }
        self.health.readiness()
    }
}

/// A delivery in the writer's queue ([`Ingest::enqueue`]).
pub struct Queued(oneshot::Receiver<Result<Ack, String>>);

impl Queued {
    /// Waits for the delivery's commit: its answer.
    pub async fn committed(self) -> Result<Ack, IngestError> {
        settle(self.0.await)
    }
}

fn settle(answer: Result<Result<Ack, String>, oneshot::error::RecvError>) -> Result<Ack, IngestError> {
    answer
        .map_err(|_| IngestError::Unavailable("the writer stopped before committing it".into()))?
        .map_err(IngestError::Unavailable)
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
    let body = crate::store::compress_body(&delivery.body);
    parse_for_store(source, delivery, options, body)
}

/// [`prepare`] for a delivery the store already keeps (`valuestream
/// rebuild`): the same parse, without compressing its body again (the stored
/// row keeps its own; `body` is left empty).
pub fn reparse(source: &dyn Source, delivery: Delivery, options: &SourceOptions) -> Result<Applicable, ParseError> {
    parse_for_store(source, delivery, options, Vec::new())
}

fn parse_for_store(
    source: &dyn Source,
    delivery: Delivery,
    options: &SourceOptions,
    body: Vec<u8>,
) -> Result<Applicable, ParseError> {
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
        body,
        parsed,
    })
}

// ---------------------------------------------------------------- health

const RUNNING: u8 = 0;
const FAILING: u8 = 1;
const RESTARTING: u8 = 2;
const STOPPED: u8 = 3;

/// What the writer is doing, shared with `/readyz`.
struct Health {
    state: AtomicU8,
    /// Milliseconds after `epoch` at which the writer began its current group, plus one; 0 when idle.
    busy_since: AtomicU64,
    epoch: Instant,
    /// Why the last commit failed.
    failure: Mutex<String>,
}

impl Health {
    fn new() -> Health {
        Health {
            state: AtomicU8::new(RUNNING),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
            failure: Mutex::new(String::new()),
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
    }

    fn is(&self, state: u8) -> bool {
        self.state.load(Ordering::SeqCst) == state
    }

    fn committed(&self) {
        if self.state.swap(RUNNING, Ordering::SeqCst) == FAILING {
            tracing::info!("The store takes writes again.");
        }
    }

    fn failed(&self, error: &str) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = error.to_string();
        if self.state.swap(FAILING, Ordering::SeqCst) != FAILING {
            tracing::error!(%error, "The writer cannot commit; deliveries are answered 503 until it can.");
        }
    }

    fn busy(&self, busy: bool) {
        let now = if busy { self.epoch.elapsed().as_millis() as u64 + 1 } else { 0 };
        self.busy_since.store(now, Ordering::SeqCst);
    }

    fn readiness(&self) -> Result<(), String> {
        match self.state.load(Ordering::SeqCst) {
            STOPPED => return Err("the writer has stopped".into()),
            RESTARTING => return Err("the writer is restarting after a panic".into()),
            FAILING => {
                let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                return Err(format!("the writer cannot commit: {failure}"));
            }
            _ => {}
        }
        let since = self.busy_since.load(Ordering::SeqCst);
        if since > 0 {
            let busy = Duration::from_millis((self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(since));
            if busy > STUCK_AFTER {
                return Err(format!("the writer has been committing one group for {} s", busy.as_secs()));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- the writer

/// Runs the write loop, restarting it after a panic, until it is stopped.
async fn supervise(writer: WriteLoop, mut receiver: mpsc::Receiver<Job>, mut stopping: watch::Receiver<bool>) {
    let mut pause = RESTART_AFTER;
    loop {
        let started = Instant::now();
        let run = AssertUnwindSafe(writer.run(&mut receiver, &mut stopping)).catch_unwind().await;
        let Err(panic) = run else {
            break;
        };
        writer.health.set(RESTARTING);
        writer.health.busy(false);
        if started.elapsed() > STABLE_AFTER {
            pause = RESTART_AFTER;
        }
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        tracing::error!(
            panic = %reason,
            restart_in_ms = pause.as_millis() as u64,
            "The writer panicked; its deliveries in flight were answered 503. Restarting it."
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
        pause = (pause * 2).min(RESTART_AFTER_MAX);
        writer.health.set(RUNNING);
    }
    writer.health.set(STOPPED);
}

struct WriteLoop {
    store: Store,
    export: bool,
    exported: Arc<Notify>,
    telemetry: Telemetry,
    health: Arc<Health>,
    /// Counts the deliveries taken off the queue ([`Ingest::taken`]).
    taken: watch::Sender<u64>,
}

impl WriteLoop {
    /// Takes groups off the queue and commits them until the queue is closed
    /// (stop requested) and drained. Returns early only by panicking.
    async fn run(&self, receiver: &mut mpsc::Receiver<Job>, stopping: &mut watch::Receiver<bool>) {
        let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
        let mut stopped = false;
        // At start-up: bring stored expiries in line with the setting, then expire.
        let mut sweep = Sweep { next: tokio::time::Instant::now(), reconcile: true, total: Swept::default() };
        loop {
            if !stopped && *stopping.borrow() {
                // No new deliveries; those queued still get their commit.
                receiver.close();
                stopped = true;
            }
            let probe = self.health.is(FAILING) && !stopped;
            let sweeping = !stopped && !probe && (sweep.reconcile || self.store.expire_open_after().is_some());
            tokio::select! {
                received = receiver.recv_many(&mut group, MAX_GROUP) => {
                    if received == 0 {
                        return;
                    }
                    self.taken.send_modify(|taken| *taken += received as u64);
                }
                _ = stopping.changed(), if !stopped => {
                    if stopping.has_changed().is_err() {
                        // The handle is gone: stop as if asked.
                        receiver.close();
                        stopped = true;
                    }
                    continue;
                }
                _ = tokio::time::sleep(PROBE_EVERY), if probe => {
                    match tokio::time::timeout(COMMIT_WITHIN, self.store.probe_write()).await {
                        Ok(Ok(())) => self.health.committed(),
                        Ok(Err(error)) => self.health.failed(&error.to_string()),
                        Err(_) => self.health.failed(&format!("a write did not commit within {COMMIT_WITHIN:?}")),
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(sweep.next), if sweeping => {
                    self.sweep(&mut sweep).await;
                    continue;
                }
            }
            // A sender that gave up (its answer deadline passed) was told 503:
            // its delivery need not be applied.
            let jobs: Vec<Job> = group.drain(..).filter(|job| !job.reply.is_closed()).collect();
            if !jobs.is_empty() {
                self.commit_group(jobs).await;
            }
        }
    }

    async fn commit_group(&self, jobs: Vec<Job>) {
        let (items, replies): (Vec<Applicable>, Vec<_>) = jobs.into_iter().map(|job| (job.item, job.reply)).unzip();
        let mut replies = InFlight { replies, health: &self.health };
        self.health.busy(true);
        let began = Instant::now();
        match self.apply(&items).await {
            Ok((acks, queued)) => {
                self.telemetry.store_commit(began.elapsed().as_secs_f64());
                self.committed(queued);
                for (reply, ack) in replies.take().into_iter().zip(acks) {
                    record(&self.telemetry, &ack);
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(error) if items.len() == 1 || error.store_wide => {
                // A group of one was already tried alone; a store that did
                // not answer will not answer one delivery at a time either.
                tracing::error!(error = %error.message, deliveries = items.len(), "Could not store deliveries.");
                self.health.failed(&error.message);
                for reply in replies.take() {
                    let _ = reply.send(Err(error.message.clone()));
                }
            }
            Err(error) => {
                // One bad delivery must not fail its neighbours: retry each alone.
                tracing::warn!(error = %error.message, deliveries = items.len(), "Group commit failed; applying one by one.");
                for item in &items {
                    // The sender stays in `replies` until its answer is known (see `InFlight`).
                    if replies.replies[0].is_closed() {
                        replies.replies.remove(0);
                        continue;
                    }
                    let answer = match self.apply(std::slice::from_ref(item)).await {
                        Ok((mut acks, queued)) => {
                            self.committed(queued);
                            let ack = acks.remove(0);
                            record(&self.telemetry, &ack);
                            Ok(ack)
                        }
                        Err(error) => {
                            tracing::error!(error = %error.message, delivery = %item.id, "Could not store a delivery.");
                            self.health.failed(&error.message);
                            Err(error.message)
                        }
                    };
                    let _ = replies.replies.remove(0).send(answer);
                }
            }
        }
        self.health.busy(false);
    }

    /// One transaction for `items`, given up after [`COMMIT_WITHIN`].
    async fn apply(&self, items: &[Applicable]) -> Result<(Vec<Ack>, usize), GroupError> {
        match tokio::time::timeout(COMMIT_WITHIN, self.store.apply_batch(items, self.export)).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => Err(GroupError { message: describe(&error), store_wide: false }),
            Err(_) => Err(GroupError {
                message: format!("the store did not commit within {COMMIT_WITHIN:?}"),
                store_wide: true,
            }),
        }
    }

    /// One step of the expiry sweep (store/expiry.rs), given up after
    /// [`COMMIT_WITHIN`]. A full step is followed by the next at once (after
    /// the deliveries waiting by then); the sweep's counts are logged when it
    /// is through. A failed step is retried at the next interval.
    async fn sweep(&self, sweep: &mut Sweep) {
        let age = self.store.expire_open_after();
        let interval = age.map_or(SWEEP_EVERY, sweep_interval);
        self.health.busy(true);
        let now = Timestamp::now();
        let step =
            tokio::time::timeout(COMMIT_WITHIN, self.store.sweep_expired(now, sweep.reconcile, self.export)).await;
        self.health.busy(false);
        let swept = match step {
            Ok(Ok(swept)) => swept,
            Ok(Err(error)) => {
                tracing::warn!(%error, "Could not expire open spans; the sweep runs again later.");
                sweep.next = tokio::time::Instant::now() + interval;
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "Expiring open spans did not commit within {COMMIT_WITHIN:?}; the sweep runs again later."
                );
                sweep.next = tokio::time::Instant::now() + interval;
                return;
            }
        };
        if swept.queued > 0 {
            self.exported.notify_one();
        }
        sweep.total.add(swept);
        if swept.more {
            sweep.next = tokio::time::Instant::now();
            return;
        }
        let total = std::mem::take(&mut sweep.total);
        let age_seconds = age.map(|age| age.as_secs_f64());
        if total.expired > 0 {
            tracing::info!(
                spans = total.expired,
                age_seconds,
                "Expired spans still open --expire-open-after after their start."
            );
        }
        if total.reopened + total.redated > 0 {
            tracing::info!(
                reopened = total.reopened,
                redated = total.redated,
                age_seconds,
                "Brought expired spans in line with --expire-open-after: open again when younger than it (or it is off), ended at their start plus it otherwise."
            );
        }
        sweep.reconcile = false;
        sweep.next = tokio::time::Instant::now() + interval;
    }

    fn committed(&self, queued: usize) {
        self.health.committed();
        if queued > 0 {
            self.exported.notify_one();
        }
    }
}

/// Where the writer's expiry sweep stands.
struct Sweep {
    next: tokio::time::Instant,
    /// Stored expiries still to be brought in line with the setting (once per start).
    reconcile: bool,
    /// What the steps of the sweep under way changed so far.
    total: Swept,
}

struct GroupError {
    message: String,
    /// The store itself failed (it did not answer), not one delivery.
    store_wide: bool,
}

/// The answers owed to a group's senders. Dropped while the writer panics,
/// it marks the writer as restarting before the senders hear (503), so a
/// `/readyz` they send next already tells.
struct InFlight<'a> {
    replies: Vec<oneshot::Sender<Result<Ack, String>>>,
    health: &'a Health,
}

impl InFlight<'_> {
    fn take(&mut self) -> Vec<oneshot::Sender<Result<Ack, String>>> {
        std::mem::take(&mut self.replies)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.health.set(RESTARTING);
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
