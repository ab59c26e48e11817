//! The command line: `serve` (the default), `report`, `replay`, `rebuild`,
//! `migrate` and `event`. Exit status 0 on success; 2 on bad usage (a flag, an environment
//! variable or a config file key that is wrong, whatever the command), 1 on
//! failure; either way with one line on stderr saying why.

use crate::config::{CommonArgs, ServeArgs, ServeConfig, UsageError, database_url, redact_url};
use crate::logging::{init_logging, load_and_log};
use crate::opening::open_store;
use crate::store::OpenMode;
use crate::store::StoreError;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::process::ExitCode;
use valuestream_core::sources;

/// `--help`'s list of webhook secrets: one line per source, from the sources.
fn secrets_help() -> String {
    let mut text = String::from(
        "Webhook secrets are read from the environment only (several comma-separated values are all accepted, for rotation):",
    );
    let width = sources::SOURCES.iter().map(|s| s.secret_variable().len()).max().unwrap_or(0);
    for source in sources::SOURCES {
        text.push_str(&format!("\n  {:<width$}  {}", source.secret_variable(), source.secret_help()));
    }
    text.push_str(
        "
Logging: VS_LOG_LEVEL = error | warn | info | debug | trace, any case (default info).
OTLP export reads the standard OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, default, or grpc).",
    );
    text
}

#[derive(Debug, Parser)]
#[command(
    name = "valuestream",
    version,
    about = "Turns delivery webhooks (issues, pull requests, builds, deploys) into OpenTelemetry traces and delivery metrics.",
    args_conflicts_with_subcommands = true,
    after_help = secrets_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `valuestream` alone runs `serve` with these options.
    #[command(flatten)]
    pub serve: ServeCommand,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default command).
    #[command(after_help = secrets_help())]
    Serve(ServeCommand),
    /// Feed recorded deliveries (JSON Lines files or folders of them) through the pipeline.
    Replay(crate::replay::ReplayCommand),
    /// Print the summary statistics and the DORA keys from the database (no server needed).
    Report(crate::report::ReportCommand),
    /// Derive every span, link and change set again from the deliveries the database keeps (stop serve first).
    Rebuild(crate::rebuild::RebuildCommand),
    /// Apply database migrations (serve also applies them at start).
    Migrate(CommonArgs),
    /// Send a customhttp event (start or end) to a running ValueStream.
    Event(crate::event::EventCommand),
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeCommand {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub args: ServeArgs,
}

/// Whether `error` is bad usage: a [`UsageError`] or a database URL of no
/// known kind, anywhere in its chain.
fn is_usage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UsageError>() || matches!(cause.downcast_ref::<StoreError>(), Some(StoreError::UnsupportedUrl(_)))
    })
}

/// clap's error as one line: its message and tips without the usage block,
/// then where to read more (`valuestream serve --help`). Help and version
/// requests print as clap prints them.
fn usage_line(error: &clap::Error, args: &[String]) -> String {
    let path = command_path(args);
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let mut command = Cli::command();
        for name in path.split(' ').skip(1) {
            command = command.find_subcommand(name).cloned().unwrap_or(command);
        }
        let names: Vec<&str> = command.get_subcommands().map(|sub| sub.get_name()).collect();
        return format!("`{path}` needs a command: {} (see `{path} --help`)", names.join(" or "));
    }
    let rendered = error.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    format!("{} (see `{path} --help`)", parts.join(" "))
}

/// The (sub)command the arguments name, e.g. `valuestream event start`.
fn command_path(args: &[String]) -> String {
    let mut command = Cli::command();
    let mut path = vec![command.get_name().to_string()];
    for arg in args.iter().skip(1) {
        let Some(sub) = command.find_subcommand(arg).cloned() else { continue };
        path.push(sub.get_name().to_string());
        command = sub;
    }
    path.join(" ")
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    crate::body::map_large_allocations();
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help, --version
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("valuestream: {}", usage_line(&error, &args));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(anyhow::anyhow!("cannot start the async runtime: {error}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(command)) => serve(command).await,
            Some(Command::Replay(command)) => crate::replay::run(command).await,
            Some(Command::Report(command)) => crate::report::run(command).await,
            Some(Command::Rebuild(command)) => crate::rebuild::run(command).await,
            Some(Command::Migrate(common)) => migrate(common).await,
            Some(Command::Event(command)) => crate::event::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_usage(&error) => {
            eprintln!("valuestream: {}", one_line(&error));
            ExitCode::from(2)
        }
        Err(error) => fail(error),
    }
}

/// The error and its causes, joined on one line.
fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("valuestream: {}", one_line(&error));
    ExitCode::FAILURE
}

async fn serve(command: ServeCommand) -> anyhow::Result<()> {
    let config = ServeConfig::resolve(&command.common, &command.args).map_err(UsageError::from_config)?;
    init_logging(config.log_format, &config.log_level);
    // A host name is resolved now, at bind, not when the flag is read.
    let cannot_listen = |e: std::io::Error| anyhow::anyhow!("cannot listen on {}: {e}", config.addr);
    let addrs = config.addr.resolve().await.map_err(cannot_listen)?;
    let listener = tokio::net::TcpListener::bind(&addrs[..]).await.map_err(cannot_listen)?;
    // Checked on the address actually bound: nothing is accepted before run().
    let unsigned = config.check_safe_default(listener.local_addr()?)?;
    if !unsigned.is_empty() {
        let names: Vec<&str> = unsigned.iter().map(|source| source.name()).collect();
        let variables: Vec<&str> = unsigned.iter().map(|source| source.secret_variable()).collect();
        tracing::warn!(
            addr = %config.addr,
            unsigned = names.join(", "),
            set = variables.join(", "),
            "Listening beyond loopback with --allow-unsigned: these sources accept deliveries nobody signed."
        );
    }
    crate::server::run(config, listener, shutdown_signal()).await
}

async fn migrate(common: CommonArgs) -> anyhow::Result<()> {
    let file = load_and_log(&common)?;
    let url = database_url(&common, &file);
    let production = file.production_environments.clone().unwrap_or_default();
    let store = open_store(&url, OpenMode::Create, &production).await?;
    store.close().await;
    eprintln!("valuestream: migrations applied to {}", redact_url(&url));
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed by this call,
/// not when the future is first polled (axum polls it from a task of its
/// own, maybe only after the first request): a SIGTERM right after start then
/// still stops cleanly instead of killing the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = received(interrupt) => {}
            _ = received(terminate) => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Shutting down: no new deliveries, finishing those in flight.");
    }
}

/// Resolves when `signal` arrives (never, when its handler could not be installed).
#[cfg(unix)]
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        usage_line(&Cli::try_parse_from(&args).unwrap_err(), &args)
    }

    #[test]
    fn clap_errors_become_one_line_naming_the_command_to_ask_for_help() {
        assert_eq!(
            usage(&["valuestream", "serve", "--adr", "x"]),
            "unexpected argument '--adr' found tip: a similar argument exists: '--addr' (see `valuestream serve --help`)"
        );
        assert_eq!(
            usage(&["valuestream", "event", "start", "--namespace", "p"]),
            "the following required arguments were not provided: --type <TYPE> (see `valuestream event start --help`)"
        );
        assert_eq!(
            usage(&["valuestream", "report", "--since"]),
            "a value is required for '--since <TIME>' but none was supplied (see `valuestream report --help`)"
        );
        assert_eq!(
            usage(&["valuestream", "event"]),
            "`valuestream event` needs a command: start or end (see `valuestream event --help`)"
        );
    }
}
