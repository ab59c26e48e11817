//! Wiring for `serve`: open and migrate the store, start the writer and the
//! export task, serve HTTP until shutdown, then drain in order: stop accepting,
//! finish in-flight deliveries, join the writer, flush exports within a bound.

use crate::config::{ServeConfig, TracerBackend, redact_url};
use crate::export::{self, Exporter, OtlpExporter, OtlpSettings, Protocol};
use crate::http::{AppState, router};
use crate::ingest::Ingest;
use crate::opening::open_store;
use crate::store::OpenMode;
use crate::store::Store;
use crate::telemetry::Telemetry;
use anyhow::Context;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// How long shutdown waits for the exporter to flush.
const EXPORT_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// Runs the service on `listener` until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&config.database, OpenMode::Create, &config.production_environments).await?;
    if store.rebuild_unfinished().await? {
        anyhow::bail!(
            "a `valuestream rebuild` of {} began and did not finish: run it again before serving",
            redact_url(&config.database)
        );
    }
    serve(config, store, listener, shutdown).await
}

/// Runs the service on an opened and migrated `store` until `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = store.with_expire_open_after(config.expire_open_after);
    let exporter = build_exporter(&config)?;
    let telemetry = Telemetry::new();
    let nudge = Arc::new(Notify::new());
    let (stop_export, export_stopped) = watch::channel(false);
    let export_task = exporter.map(|exporter| {
        tokio::spawn(export::run(
            store.clone(),
            exporter,
            export::Settle { delay: config.export_delay },
            nudge.clone(),
            export_stopped,
            EXPORT_FLUSH_BOUND,
            telemetry.clone(),
        ))
    });
    let (ingest, writer) =
        Ingest::start(store.clone(), config.source_options.clone(), export_task.is_some(), nudge, telemetry.clone());

    let state = AppState::new(store.clone(), ingest, &config, telemetry);
    let app = router(state, config.max_body_bytes);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = %redact_url(&config.database), tracer = ?config.tracer, "ValueStream is listening.");
    crate::connections::serve(listener, app, config.limits.clone(), shutdown)
        .await
        .context("the HTTP server failed")?;

    // Every request has its answer; the writer commits what is still queued.
    writer.stop().await;
    let _ = stop_export.send(true);
    if let Some(task) = export_task {
        let _ = tokio::time::timeout(EXPORT_FLUSH_BOUND + Duration::from_secs(1), task).await;
    }
    store.close().await;
    tracing::info!("ValueStream stopped.");
    Ok(())
}

fn build_exporter(config: &ServeConfig) -> anyhow::Result<Option<Exporter>> {
    let protocol = config.otlp_protocol;
    let local = if protocol == Protocol::Grpc { "http://localhost:4317" } else { "http://localhost:4318/v1/traces" };
    let mut headers = HashMap::new();
    let preset_endpoint = match config.tracer {
        TracerBackend::None => return Ok(None),
        TracerBackend::Logging => return Ok(Some(Exporter::Logging)),
        // Jaeger and the Datadog agent both take OTLP on the standard local ports.
        TracerBackend::Otlp | TracerBackend::Jaeger | TracerBackend::Datadog => local.to_string(),
        TracerBackend::Lightstep => {
            let token = config
                .tracer_access_token
                .clone()
                .context("the lightstep tracer needs --tracer-access-token / VS_TRACER_ACCESS_TOKEN")?;
            headers.insert("lightstep-access-token".to_string(), token);
            if protocol == Protocol::Grpc {
                "https://ingest.lightstep.com:443"
            } else {
                "https://ingest.lightstep.com/traces/otlp/v0.9"
            }
            .to_string()
        }
    };
    let endpoint = config.otlp_endpoint.clone().unwrap_or(preset_endpoint);
    let settings = OtlpSettings { protocol, endpoint, headers };
    let exporter = OtlpExporter::new(&settings).map_err(anyhow::Error::msg)?;
    tracing::info!(endpoint = %settings.endpoint, ?protocol, "Exporting finished spans over OTLP.");
    Ok(Some(Exporter::Otlp(Box::new(exporter))))
}
