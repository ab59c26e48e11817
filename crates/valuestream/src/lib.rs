//! ValueStream, the service: HTTP, the store, export and the command line,
//! around the pure core in `valuestream-core`.
//!
//! - [`cli`]: the `valuestream` command and its subcommands.
//! - [`config`]: flags, environment, TOML file and defaults, resolved once; usage errors.
//! - [`logging`]: log lines on stderr, set up from the configuration.
//! - [`event`]: `valuestream event start|end`, a customhttp event sent to a running server.
//! - [`server`]: wires the store, the writer, the exporter and HTTP for `serve`.
//! - [`connections`]: HTTP connections within the limits (connection cap, header and idle timeouts).
//! - [`http`]: webhook routes, the span/trace API, health checks.
//! - [`dashboard`]: the built-in dashboard's pages, embedded assets and sign-in.
//! - [`body`]: reading a webhook's body within its size, its deadline and the in-flight budget.
//! - [`csv`]: CSV downloads of the API (`format=csv`).
//! - [`ingest`]: authenticate → parse → the single writer with group commit.
//! - [`store`]: deliveries, span events, spans, references, the export outbox.
//! - [`export`]: the outbox drain to the logging tracer or OTLP.
//! - [`metrics`]: the summary statistics and the DORA keys (metrics.md).
//! - [`opening`]: opening a command's store the one way (error, production names, migrations).
//! - [`report`]: `valuestream report`, the metrics as a table or JSON.
//! - [`replay`]: recorded deliveries (JSON Lines) through the same pipeline.
//! - [`rebuild`]: every span, link and change set derived again from the stored deliveries.

pub mod body;
pub mod cli;
pub mod config;
pub mod connections;
pub mod csv;
pub mod dashboard;
pub mod event;
pub mod export;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod opening;
pub mod rebuild;
pub mod replay;
pub mod report;
pub mod server;
pub mod store;
pub mod telemetry;
