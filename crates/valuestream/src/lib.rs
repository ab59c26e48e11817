//! ValueStream, the service: HTTP, the store, export and the command line,
//! around the pure core in `valuestream-core`.
//!
//! - [`cli`]: the `valuestream` command and its subcommands.
//! - [`config`]: flags, environment, TOML file and defaults, resolved once.
//! - [`server`]: wires the store, the writer, the exporter and HTTP for `serve`.
//! - [`http`]: webhook routes, the span/trace API, health checks.
//! - [`ingest`]: authenticate → parse → the single writer with group commit.
//! - [`store`]: deliveries, span events, spans, references, the export outbox.
//! - [`export`]: the outbox drain to the logging tracer or OTLP.
//! - [`replay`]: recorded deliveries (JSON Lines) through the same pipeline.

pub mod cli;
pub mod config;
pub mod export;
pub mod http;
pub mod ingest;
pub mod replay;
pub mod server;
pub mod store;
