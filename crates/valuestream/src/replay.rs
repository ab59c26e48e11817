//! `valuestream replay`: recorded deliveries, one JSON object per line
//! (docs/configuration.md, "replay"), through the same parse → store path
//! as the server. Replay trusts its input (no signature checks) and is
//! idempotent: replaying a file twice changes nothing.

use crate::config::{CommonArgs, FileConfig, UsageError, database_url};
use crate::ingest::{Ingest, Queued, prepare};
use crate::logging::load_and_log;
use crate::opening::open_store;
use crate::store::OpenMode;
use crate::store::{Ack, AckStatus};
use crate::telemetry::Telemetry;
use anyhow::Context;
use base64::Engine;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{self, SourceOptions};
use valuestream_core::time::Timestamp;

/// Deliveries handed to the writer before waiting for the oldest (feeds group commit).
const IN_FLIGHT: usize = 1024;
/// Rejected lines reported one by one on stderr at most.
const REPORTED_REJECTIONS: usize = 20;

#[derive(Debug, Clone, Args)]
pub struct ReplayCommand {
    #[command(flatten)]
    pub common: CommonArgs,
    /// JSON Lines files of recorded deliveries, or folders holding them (*.jsonl, *.ndjson)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Exit 0 even when some lines were rejected (they are still counted and reported)
    #[arg(long)]
    pub best_effort: bool,
}

/// One line of a recording.
#[derive(Deserialize)]
pub struct RecordedDelivery<'a> {
    pub source: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(borrow, default)]
    pub body: Option<&'a RawValue>,
    #[serde(default)]
    pub body_base64: Option<String>,
    /// When it was received, if recorded; else the time of the replay.
    #[serde(default)]
    pub received_at: Option<Timestamp>,
}

/// Counts printed at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub ignored: u64,
    pub rejected: u64,
}

impl ReplayCounts {
    fn count(&mut self, ack: &Ack) {
        match ack.status {
            AckStatus::Accepted => self.accepted += 1,
            AckStatus::Duplicate => self.duplicate += 1,
            AckStatus::Ignored | AckStatus::Pong => self.ignored += 1,
        }
    }
}

/// Runs `valuestream replay`: prints the counts; fails (exit 1) when a line
/// was rejected, unless `--best-effort`.
pub async fn run(command: ReplayCommand) -> anyhow::Result<()> {
    let file_config = load_and_log(&command.common)?;
    let url = database_url(&command.common, &file_config);
    let counts = replay_paths(&url, &file_config, &command.paths, true).await?;
    let total = counts.accepted + counts.duplicate + counts.ignored + counts.rejected;
    println!(
        "replayed {total} deliveries: {} accepted, {} duplicate, {} ignored, {} rejected",
        counts.accepted, counts.duplicate, counts.ignored, counts.rejected
    );
    if counts.rejected > 0 && !command.best_effort {
        anyhow::bail!("{} of {total} deliveries were rejected (--best-effort exits 0 all the same)", counts.rejected);
    }
    Ok(())
}

/// Replays every file under `paths` into the store at `url`.
pub async fn replay_paths(
    url: &str,
    file_config: &FileConfig,
    paths: &[PathBuf],
    progress: bool,
) -> anyhow::Result<ReplayCounts> {
    let options = file_config.source_options().map_err(UsageError::from_config)?;
    let files = collect_files(paths)?;
    let total_bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    let production = file_config.production_environments.clone().unwrap_or_default();
    let store = open_store(url, OpenMode::Create, &production).await?;
    if store.rebuild_unfinished().await? {
        anyhow::bail!("a `valuestream rebuild` of this database began and did not finish: run it again first");
    }
    // Finished spans are queued in the outbox; the next `serve` exports them.
    let (ingest, writer) =
        Ingest::start(store.clone(), options.clone(), true, Arc::new(Notify::new()), Telemetry::new());

    let bar = if progress { ProgressBar::new(total_bytes) } else { ProgressBar::hidden() };
    let lines_read = Arc::new(AtomicU64::new(0));
    bar.set_style(progress_style(lines_read.clone()));
    let mut counts = ReplayCounts::default();
    let mut pending: VecDeque<Queued> = VecDeque::new();
    let mut reported = 0;
    for file in &files {
        let reader = std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        );
        for (index, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {}", file.display()))?;
            bar.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            lines_read.fetch_add(1, Ordering::Relaxed);
            match parse_line(&line, &options) {
                // In the file's order: a span's events then fold incrementally.
                Ok(item) => pending.push_back(ingest.enqueue(item).await?),
                Err(reason) => {
                    counts.rejected += 1;
                    if reported < REPORTED_REJECTIONS {
                        bar.suspend(|| eprintln!("{}:{}: rejected: {reason}", file.display(), index + 1));
                        reported += 1;
                    }
                }
            }
            while pending.len() >= IN_FLIGHT {
                settle(pending.pop_front().expect("not empty"), &mut counts).await?;
            }
            bar.set_message(format!(
                "{} accepted, {} duplicate, {} rejected",
                counts.accepted, counts.duplicate, counts.rejected
            ));
        }
    }
    while let Some(handle) = pending.pop_front() {
        settle(handle, &mut counts).await?;
    }
    bar.finish_and_clear();
    writer.stop().await;
    store.close().await;
    Ok(counts)
}

/// The bar: elapsed time, the bar over the recording's bytes, then
/// [`progress_text`] and the counts so far.
fn progress_style(deliveries: Arc<AtomicU64>) -> ProgressStyle {
    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {progress} {msg}")
        .expect("progress template is valid")
        .with_key("progress", move |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
            let text = progress_text(
                deliveries.load(Ordering::Relaxed),
                state.pos(),
                state.len().unwrap_or(0),
                state.elapsed(),
            );
            let _ = out.write_str(&text);
        })
}

/// `12000 deliveries (4000/s), 96.00 MiB of 200.00 MiB (32.00 MiB/s)`.
fn progress_text(deliveries: u64, bytes: u64, total_bytes: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let per_second = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
    format!(
        "{deliveries} deliveries ({:.0}/s), {} of {} ({}/s)",
        per_second(deliveries),
        indicatif::HumanBytes(bytes),
        indicatif::HumanBytes(total_bytes),
        indicatif::HumanBytes(per_second(bytes) as u64),
    )
}

async fn settle(queued: Queued, counts: &mut ReplayCounts) -> anyhow::Result<()> {
    let ack = queued.committed().await?;
    counts.count(&ack);
    Ok(())
}

/// Reads one recorded delivery and parses it as the server would.
pub fn parse_line(line: &str, options: &SourceOptions) -> Result<crate::store::Applicable, String> {
    let recorded: RecordedDelivery = serde_json::from_str(line).map_err(|e| format!("not a recorded delivery: {e}"))?;
    let source = sources::by_name(&recorded.source).ok_or_else(|| format!("unknown source `{}`", recorded.source))?;
    let body = match (recorded.body, recorded.body_base64) {
        (Some(raw), _) => raw.get().as_bytes().to_vec(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("body_base64 is not base64: {e}"))?,
        (None, None) => return Err("neither `body` nor `body_base64` is present".into()),
    };
    let received_at = recorded.received_at.unwrap_or_else(Timestamp::now);
    let delivery = Delivery::new(source.name(), recorded.headers, body, received_at);
    prepare(source, delivery, options).map_err(|e| e.to_string())
}

/// The files named, with folders expanded to their `*.jsonl`/`*.ndjson` files (sorted).
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "jsonl" || e == "ndjson") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_deliveries_per_second_and_bytes_with_units() {
        assert_eq!(
            progress_text(12_000, 96 * 1024 * 1024, 200 * 1024 * 1024, Duration::from_secs(3)),
            "12000 deliveries (4000/s), 96.00 MiB of 200.00 MiB (32.00 MiB/s)"
        );
        assert_eq!(progress_text(0, 0, 512, Duration::ZERO), "0 deliveries (0/s), 0 B of 512 B (0 B/s)");
    }
}
