//! `valuestream rebuild`: re-derives every span, link and change set from the
//! raw deliveries the store keeps, through the same parse → apply path as the
//! server and `replay`. It brings a store written by an older version (or by
//! one with a derivation bug) up to date in place.
//!
//! Everything derived is emptied first, then the deliveries are read back in
//! the order they arrived, parsed again by this version's sources and applied
//! in groups. The deliveries are never deleted: a rebuild that stops half-way
//! loses nothing, and `serve` refuses to start until one runs to the end.
//! Spans whose end or outcome the trace backend already has are not exported
//! again (`span_exports` is kept); changed ones are queued for the next `serve`.

use crate::config::{CommonArgs, UsageError, database_url, expire_open_after};
use crate::ingest::reparse;
use crate::logging::load_and_log;
use crate::opening::open_store;
use crate::store::OpenMode;
use crate::store::{AckStatus, Applicable, ArrivalCursor, Store, StoredDelivery};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{self, SourceOptions};
use valuestream_core::time::Timestamp;

/// Deliveries read, parsed and applied (in one transaction) at a time.
const PAGE: usize = 512;
/// Deliveries that no longer parse, reported one by one on stderr at most.
const REPORTED_FAILURES: usize = 20;

#[derive(Debug, Clone, Args)]
pub struct RebuildCommand {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Expire spans still open this long after their start, as `serve` would: 90d, 12h, or off [default: off]
    #[arg(long, env = "VS_EXPIRE_OPEN_AFTER", value_name = "AGE")]
    pub expire_open_after: Option<String>,
}

/// What a rebuild did with the stored deliveries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildCounts {
    pub accepted: u64,
    pub ignored: u64,
    /// Stored deliveries this version cannot read back or parse (kept, but nothing derived from them).
    pub unparsable: u64,
}

/// Runs `valuestream rebuild` and prints the counts. Stored deliveries that
/// no longer parse are reported and counted, not fatal: they are kept.
pub async fn run(command: RebuildCommand) -> anyhow::Result<()> {
    let file_config = load_and_log(&command.common)?;
    let url = database_url(&command.common, &file_config);
    let options = file_config.source_options().map_err(UsageError::from_config)?;
    let age = expire_open_after(command.expire_open_after.as_ref(), &file_config)?;
    // A mistyped path is an error, never a new empty database.
    let production = file_config.production_environments.clone().unwrap_or_default();
    let store = open_store(&url, OpenMode::Existing, &production).await?.with_expire_open_after(age);
    let counts = rebuild(&store, &options, true).await?;
    store.close().await;
    let total = counts.accepted + counts.ignored + counts.unparsable;
    println!(
        "rebuilt from {total} stored deliveries: {} accepted, {} ignored, {} unreadable or unparsable (kept)",
        counts.accepted, counts.ignored, counts.unparsable
    );
    Ok(())
}

/// Re-derives everything in `store` from its deliveries, [`PAGE`] at a time.
pub async fn rebuild(store: &Store, options: &SourceOptions, progress: bool) -> anyhow::Result<RebuildCounts> {
    rebuild_in_pages(store, options, progress, PAGE).await
}

/// [`rebuild`] reading `page` deliveries at a time (tests use small pages).
/// While one page is applied (the writer's work), the next is read and
/// parsed on another thread. With `--expire-open-after`, the spans it left
/// open past the age are expired at the end, as `serve`'s sweep would.
pub async fn rebuild_in_pages(
    store: &Store,
    options: &SourceOptions,
    progress: bool,
    page: usize,
) -> anyhow::Result<RebuildCounts> {
    let stored = store.begin_rebuild().await?;
    let bar = if progress { ProgressBar::new(stored) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} deliveries ({per_sec}) {msg}",
        )
        .expect("progress template is valid"),
    );
    let mut counts = RebuildCounts::default();
    let mut reported = 0;
    let mut next = tokio::spawn(read_page(store.clone(), options.clone(), None, page));
    loop {
        let current = next.await.context("reading stored deliveries failed")??;
        if current.read == 0 {
            break;
        }
        next = tokio::spawn(read_page(store.clone(), options.clone(), current.cursor.clone(), page));
        for (id, reason) in &current.failures {
            counts.unparsable += 1;
            if reported < REPORTED_FAILURES {
                bar.suspend(|| eprintln!("valuestream: delivery {id} is kept, but nothing derives from it: {reason}"));
                reported += 1;
            }
        }
        let (acks, _) = store.rederive_batch(&current.items, true).await?;
        for ack in &acks {
            match ack.status {
                AckStatus::Accepted => counts.accepted += 1,
                // Duplicates cannot happen: each stored id is read once.
                AckStatus::Ignored | AckStatus::Pong | AckStatus::Duplicate => counts.ignored += 1,
            }
        }
        bar.inc(current.read as u64);
        bar.set_message(format!("{} accepted, {} ignored", counts.accepted, counts.ignored));
    }
    store.finish_rebuild().await?;
    bar.finish_and_clear();
    if store.expire_open_after().is_some() {
        let now = Timestamp::now();
        while store.sweep_expired(now, true, true).await?.changed() > 0 {}
    }
    Ok(counts)
}

/// One page of stored deliveries, parsed.
struct Page {
    /// How many deliveries were read (0: none left).
    read: usize,
    items: Vec<Applicable>,
    /// Ids and reasons of those that cannot be read or no longer parse.
    failures: Vec<(String, String)>,
    /// Where the next page starts.
    cursor: Option<ArrivalCursor>,
}

async fn read_page(
    store: Store,
    options: SourceOptions,
    after: Option<ArrivalCursor>,
    page: usize,
) -> anyhow::Result<Page> {
    let deliveries = store.stored_deliveries(after.as_ref(), page).await?;
    let last = deliveries.last().map(|d| match d {
        Ok(stored) => (stored.received_at.nanos(), stored.id.clone()),
        Err(unreadable) => (unreadable.received_at.nanos(), unreadable.id.clone()),
    });
    let cursor = last.or(after);
    let read = deliveries.len();
    // Parsing is CPU work: off the async threads, beside the writer.
    let (items, failures) = tokio::task::spawn_blocking(move || {
        let mut items = Vec::with_capacity(deliveries.len());
        let mut failures = Vec::new();
        for delivery in deliveries {
            match delivery {
                Ok(stored) => {
                    let id = stored.id.clone();
                    match parse(stored, &options) {
                        Ok(item) => items.push(item),
                        Err(reason) => failures.push((id, format!("it no longer parses: {reason}"))),
                    }
                }
                Err(unreadable) => failures.push((unreadable.id, unreadable.reason)),
            }
        }
        (items, failures)
    })
    .await
    .context("parsing stored deliveries failed")?;
    Ok(Page { read, items, failures, cursor })
}

/// A stored delivery parsed by this version, under the id it is stored as.
fn parse(stored: StoredDelivery, options: &SourceOptions) -> Result<Applicable, String> {
    let source = sources::by_name(&stored.source).ok_or_else(|| format!("unknown source `{}`", stored.source))?;
    let delivery = Delivery::new(source.name(), stored.headers, stored.body, stored.received_at);
    let mut item = reparse(source, delivery, options).map_err(|e| e.to_string())?;
    // The stored row keeps its id (and its body): only what is derived is new.
    item.id = stored.id;
    Ok(item)
}
