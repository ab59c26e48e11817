//! `valuestream report`: the summary and the DORA keys straight from the
//! database (no server needed), as a table or as the two API objects in JSON.

use crate::config::{CommonArgs, UsageError, database_url};
use crate::logging::load_and_log;
use crate::metrics::{self, DoraFilter, SpanScope, Window};
use crate::opening::open_store;
use crate::store::OpenMode;
use clap::Args;
use serde_json::{Value, json};
use std::fmt::Write;
use valuestream_core::time::Timestamp;

#[derive(Debug, Clone, Args)]
pub struct ReportCommand {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output: table (for people) or json (the /api/v1/summary and /api/v1/dora objects)
    #[arg(long, default_value = "table", value_name = "FORMAT")]
    pub format: String,
    /// Start of the window: RFC 3339 or a duration back from now (30d, 12h) [default: 30d]
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// End of the window: RFC 3339 or a duration back from now [default: now]
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this repository (owner/name), or these, comma-separated
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// Only this project, or these, comma-separated
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// Only this deploy environment (DORA default: production, prod, live)
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Summary groups, comma-separated: source, kind, repo, project, environment, outcome [default: source,kind]
    #[arg(long, value_name = "KEYS")]
    pub group_by: Option<String>,
}

pub async fn run(command: ReportCommand) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let window = Window::parse(command.since.as_deref(), command.until.as_deref(), ["--since", "--until"], now)
        .map_err(UsageError)?;
    let group_by =
        metrics::parse_group_by(command.group_by.as_deref()).map_err(|e| UsageError(format!("--group-by: {e}")))?;
    let json_format = match command.format.as_str() {
        "table" => false,
        "json" => true,
        other => return Err(UsageError(format!("--format must be table or json; got {other:?}")).into()),
    };

    let file = load_and_log(&command.common)?;
    let url = database_url(&command.common, &file);
    // Only reads: a mistyped path is an error, never a new empty database.
    let store = open_store(&url, OpenMode::Existing, &[]).await?;
    if store.rebuild_unfinished().await? {
        tracing::warn!("A `valuestream rebuild` began and did not finish: these numbers miss what it has not rebuilt.");
    }
    let scope = SpanScope {
        repo: command.repo.clone(),
        project: command.project.clone(),
        environment: command.environment.clone(),
        ..SpanScope::default()
    };
    let filter = DoraFilter {
        repo: command.repo.clone(),
        project: command.project.clone(),
        environment: command.environment.clone(),
        production: file.production_environments.clone().unwrap_or_default(),
    };
    // Two connections, two SQLite worker threads: the statements run side by side.
    let (summary, dora) =
        tokio::try_join!(metrics::summary(&store, window, &group_by, &scope), metrics::dora(&store, window, &filter))?;
    store.close().await;
    if json_format {
        println!("{}", serde_json::to_string_pretty(&json!({"summary": summary, "dora": dora}))?);
    } else {
        print!("{}", table(&summary, &dora, &group_by));
    }
    Ok(())
}

fn seconds(value: &Value) -> String {
    let Some(s) = value.as_f64() else { return "–".into() };
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7_200.0 {
        format!("{:.1}m", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1}h", s / 3_600.0)
    } else {
        format!("{:.1}d", s / 86_400.0)
    }
}

fn ratio(value: &Value) -> String {
    value.as_f64().map_or("–".into(), |r| format!("{:.0}%", r * 100.0))
}

/// The report as aligned text.
pub fn table(summary: &Value, dora: &Value, group_by: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ValueStream report, {} to {}",
        summary["since"].as_str().unwrap_or(""),
        summary["until"].as_str().unwrap_or("")
    );
    let _ = writeln!(out);
    let groups = summary["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        let _ = writeln!(
            out,
            "No spans in this window yet. Point a webhook at /webhooks/{{source}} (see the README), or widen --since."
        );
    } else {
        let mut header: Vec<String> = group_by.to_vec();
        header.extend(
            ["closed", "open", "per day", "mean", "p50", "p90", "max", "success", "merged", "open age p50"]
                .map(String::from),
        );
        let mut rows: Vec<Vec<String>> = vec![header];
        for group in &groups {
            let mut row: Vec<String> = group_by.iter().map(|k| group[k].as_str().unwrap_or("–").to_string()).collect();
            let d = &group["duration_seconds"];
            row.extend([
                group["closed"].to_string(),
                group["open"].to_string(),
                format!("{:.2}", group["per_day"].as_f64().unwrap_or(0.0)),
                seconds(&d["mean"]),
                seconds(&d["p50"]),
                seconds(&d["p90"]),
                seconds(&d["max"]),
                ratio(&group["success_ratio"]),
                ratio(&group["merge_ratio"]),
                seconds(&group["open_age_seconds"]["p50"]),
            ]);
            rows.push(row);
        }
        let widths: Vec<usize> =
            (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        for row in rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
    }
    let _ = writeln!(out);
    let f = &dora["deployment_frequency"];
    let l = &dora["lead_time_for_changes"];
    let c = &dora["change_failure_rate"];
    let t = &dora["time_to_restore"];
    let r = &dora["failed_deployment_recovery_time"];
    let w = &dora["deployment_rework_rate"];
    let level = |v: &Value| v["level"].as_str().unwrap_or("none").to_string();
    let _ = writeln!(out, "DORA keys ({} deploys)", dora["environment"].as_str().unwrap_or("production"));
    let _ = writeln!(
        out,
        "  deployment frequency        {} deploys, {:.2}/day  [{}]",
        f["deployments"],
        f["per_day"].as_f64().unwrap_or(0.0),
        level(f)
    );
    let _ = writeln!(
        out,
        "  lead time for changes       median {}, p90 {} over {} changes ({} deploys unmatched)  [{}]",
        seconds(&l["median_seconds"]),
        seconds(&l["p90_seconds"]),
        l["changes"],
        l["unmatched_deploys"],
        level(l)
    );
    let _ = writeln!(
        out,
        "  change failure rate         {} of {} deploys ({})  [{}]",
        c["failed"],
        c["deployments"],
        ratio(&c["ratio"]),
        level(c)
    );
    let _ = writeln!(
        out,
        "  time to restore service     median {} over {} incidents  [{}]",
        seconds(&t["median_seconds"]),
        t["incidents"],
        level(t)
    );
    let _ = writeln!(
        out,
        "  failed deploy recovery      median {} over {} failures  [{}]",
        seconds(&r["median_seconds"]),
        r["failures"],
        level(r)
    );
    let _ = writeln!(
        out,
        "  deployment rework rate      {} of {} deploys ({})",
        w["rework"],
        w["deployments"],
        ratio(&w["ratio"])
    );
    out
}
