//! OTLP export of spans rebuilt from past events. The SDK's tracer invents its
//! own ids and times, so we build `SpanData` ourselves (our trace, span and
//! parent ids; payload start and end times) and hand it to the OTLP exporter.
//! Endpoint and headers come from the standard `OTEL_EXPORTER_OTLP_*` variables.

use crate::store::ExportSpan;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use valuestream_core::export;

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl Protocol {
    /// Reads `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, default, or `grpc`).
    pub fn parse(value: &str) -> Result<Protocol, String> {
        match value.trim() {
            "" | "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(format!("OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use http/protobuf or grpc")),
        }
    }
}

/// What the OTLP exporter needs beyond the `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    pub protocol: Protocol,
    /// The full endpoint: `…/v1/traces` over HTTP, the collector's address over gRPC.
    pub endpoint: String,
    /// Extra headers, e.g. LightStep's access token.
    pub headers: HashMap<String, String>,
}

pub struct OtlpExporter {
    inner: opentelemetry_otlp::SpanExporter,
}

impl OtlpExporter {
    pub fn new(settings: &OtlpSettings) -> Result<OtlpExporter, String> {
        let timeout = Duration::from_secs(10);
        let inner = match settings.protocol {
            Protocol::HttpProtobuf => {
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(timeout)
                    .with_endpoint(settings.endpoint.clone());
                if !settings.headers.is_empty() {
                    builder = builder.with_headers(settings.headers.clone());
                }
                builder.build()
            }
            Protocol::Grpc => {
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout)
                    .with_endpoint(settings.endpoint.clone());
                if !settings.headers.is_empty() {
                    let mut metadata = tonic::metadata::MetadataMap::new();
                    for (name, value) in &settings.headers {
                        let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                            .map_err(|e| format!("header name {name:?}: {e}"))?;
                        let value = value.parse().map_err(|e| format!("header value for {name:?}: {e}"))?;
                        metadata.insert(name, value);
                    }
                    builder = builder.with_metadata(metadata);
                }
                builder.build()
            }
        }
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
        Ok(OtlpExporter { inner })
    }

    /// Sends `spans`, one resource per source (`service.name` = the source).
    pub async fn export(&mut self, spans: &[ExportSpan]) -> Result<(), String> {
        let mut by_source: BTreeMap<&str, Vec<SpanData>> = BTreeMap::new();
        for span in spans {
            by_source.entry(span.source.as_str()).or_default().push(span_data(span));
        }
        for (source, batch) in by_source {
            self.inner.set_resource(&resource(source));
            self.inner.export(batch).await.map_err(|e| format!("OTLP export failed: {e}"))?;
        }
        Ok(())
    }
}

/// The resource of `source`'s spans: the source as `service.name`, ValueStream
/// as its namespace and version, and the SDK's `telemetry.sdk.*`.
pub fn resource(source: &str) -> Resource {
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_service_name(source.to_string())
        .with_attributes([
            KeyValue::new("service.namespace", "valuestream"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build()
}

/// The OTLP status of a span: error with its `error.type`, else unset (never `Ok`).
pub fn status(span: &ExportSpan) -> Status {
    match export::error(&span.attributes) {
        Some(reason) => Status::error(reason),
        None => Status::Unset,
    }
}

fn system_time(t: valuestream_core::time::Timestamp) -> SystemTime {
    let nanos = t.nanos();
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

fn context(trace_id: &str, span_id: &str) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(trace_id).unwrap_or(TraceId::INVALID),
        SpanId::from_hex(span_id).unwrap_or(SpanId::INVALID),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

/// Converts one stored span to the SDK's export type, keeping our ids and times.
pub fn span_data(span: &ExportSpan) -> SpanData {
    let attributes = span
        .attributes
        .iter()
        .filter_map(|(name, value)| attribute_value(value).map(|v| KeyValue::new(name.clone(), v)))
        .collect();
    let links = span
        .links
        .iter()
        .map(|link| opentelemetry::trace::Link::with_context(context(&link.trace_id, &link.span_id)))
        .collect();
    let status = status(span);
    let mut span_links = SpanLinks::default();
    span_links.links = links;
    SpanData {
        span_context: context(&span.trace_id, &span.span_id),
        parent_span_id: span
            .parent_span_id
            .as_deref()
            .and_then(|id| SpanId::from_hex(id).ok())
            .unwrap_or(SpanId::INVALID),
        parent_span_is_remote: false,
        span_kind: match export::span_kind(&span.kind, &span.attributes) {
            export::SpanKind::Server => SpanKind::Server,
            export::SpanKind::Internal => SpanKind::Internal,
        },
        name: span.name.clone().into(),
        start_time: system_time(span.start),
        end_time: system_time(span.end),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: span_links,
        status,
        instrumentation_scope: scope(),
    }
}

/// The instrumentation scope of every exported span: ValueStream and its version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("valuestream").with_version(env!("CARGO_PKG_VERSION")).build()
}

fn attribute_value(value: &serde_json::Value) -> Option<Value> {
    Some(match value {
        serde_json::Value::String(s) => Value::from(s.clone()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64()?),
        },
        serde_json::Value::Array(items) => Value::Array(opentelemetry::Array::String(
            items.iter().map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_string).into()).collect(),
        )),
        serde_json::Value::Null => return None,
        serde_json::Value::Object(_) => Value::from(value.to_string()),
    })
}
