//! Custom HTTP (sources.md, "Custom HTTP"): the original ValueStream's
//! generic start/end events, sent by scripts and by `valuestream event`.
//!
//! `{"id":"42","action":"start"|"end","type":"deploy","namespace":"payments",
//! "parent_id":"vstrace-github-hello-world-27","error":false,
//! "timestamp":"2026-11-27T10:00:00Z","metadata":{"k":"v"}}`
//!
//! A start and an end of the same `namespace`/`type`/`id` are one span, in
//! whatever order they arrive. An end carries no start time of its own: its
//! change says `start: None`, so `fold` takes the span's start from the start
//! event when there is one and otherwise from the earliest event time, which
//! for a lone end is its own `timestamp` (start = end, a zero-length span
//! until the start arrives).

use super::{ParseError, Parsed, Source, SourceOptions, parse_json};
use crate::delivery::Delivery;
use crate::link::{deployed_alias, find_trace_refs, generic_ref, sha_alias};
use crate::span::{Attributes, Change, SpanEvent};
use crate::time::Timestamp;
use crate::verify::{AuthError, verify_hmac_sha256};
use crate::vocab::{action, attr};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

pub struct CustomHttp;

/// `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-VS-Signature";

impl Source for CustomHttp {
    fn name(&self) -> &'static str {
        "customhttp"
    }

    fn secret_variable(&self) -> &'static str {
        "VS_CUSTOMHTTP_SECRET"
    }

    fn secret_help(&self) -> &'static str {
        "HMAC secret of customhttp events (X-VS-Signature: sha256=…), also used by `valuestream event`"
    }

    fn credential_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn authenticate(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), AuthError> {
        verify_hmac_sha256(secrets, &delivery.body, SIGNATURE_HEADER, delivery.header(SIGNATURE_HEADER))
    }

    /// The format has no delivery id: the store uses the SHA-256 of the body,
    /// so the same event sent twice is a duplicate.
    fn delivery_id(&self, _delivery: &Delivery) -> Option<String> {
        None
    }

    fn event_type(&self, delivery: &Delivery) -> String {
        #[derive(Deserialize)]
        struct Peek {
            action: Option<String>,
        }
        let peeked = delivery.json_body().ok().and_then(|body| serde_json::from_slice::<Peek>(&body).ok());
        match peeked.and_then(|p| p.action).map(|a| a.trim().to_ascii_lowercase()) {
            Some(action) if action == "start" || action == "end" => action,
            Some(_) => "other".to_string(),
            None => "missing".to_string(),
        }
    }

    fn event_types(&self) -> Vec<&'static str> {
        vec!["start", "end", "other", "missing"]
    }

    /// `type` is free text.
    fn span_kinds(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn parse(&self, delivery: &Delivery, delivery_id: &str, _options: &SourceOptions) -> Result<Parsed, ParseError> {
        let body = delivery.json_body().map_err(ParseError::Body)?;
        let event: Event = parse_json(&body)?;
        event_span(event, delivery, delivery_id)
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(deserialize_with = "id_string")]
    id: String,
    action: String,
    #[serde(rename = "type")]
    kind: String,
    namespace: String,
    #[serde(default, alias = "ParentID")]
    parent_id: Option<String>,
    #[serde(default)]
    error: Option<bool>,
    #[serde(default)]
    timestamp: Option<Timestamp>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

fn event_span(event: Event, delivery: &Delivery, delivery_id: &str) -> Result<Parsed, ParseError> {
    let action = event.action.trim().to_ascii_lowercase();
    if action != "start" && action != "end" {
        let shown: String = action.chars().take(32).collect();
        return Ok(Parsed::Ignored { reason: format!("customhttp action `{shown}` is not `start` or `end`") });
    }
    let id = key_part(&event.id, "id", false)?;
    let kind = key_part(&event.kind, "type", true)?;
    let namespace = key_part(&event.namespace, "namespace", true)?;
    let at = event.timestamp.unwrap_or(delivery.received_at);
    let change = if action == "start" {
        Change::Start { start: at }
    } else {
        let outcome = if event.error.unwrap_or(false) { "failure" } else { "success" };
        Change::End { start: None, end: at, outcome: outcome.into() }
    };

    let metadata = event.metadata.unwrap_or_default();
    let mut attributes = Attributes::new();
    attributes.insert("valuestream.namespace".into(), json!(namespace));
    for (name, value) in &metadata {
        if matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            attributes.insert(format!("valuestream.metadata.{name}"), value.clone());
        }
    }

    if kind.eq_ignore_ascii_case(crate::vocab::kind::BUILD) {
        // A custom build is a pipeline run: its namespace names the pipeline,
        // its id the run, and `metadata.url` (when sent) the run's page.
        attributes.insert(attr::PIPELINE_ACTION.into(), json!(action::RUN));
        attributes.insert(attr::PIPELINE_NAME.into(), json!(namespace));
        attributes.insert("cicd.pipeline.run.id".into(), json!(id));
        if let Some(url) = metadata_text(&metadata, "url") {
            attributes.insert("cicd.pipeline.run.url.full".into(), json!(url));
        }
        if let Change::End { outcome, .. } = &change {
            attributes.insert("cicd.pipeline.result".into(), json!(outcome));
        }
    }

    let mut repo = None;
    let mut trace_refs = vec![generic_ref("customhttp", kind, namespace, id)];
    let mut link_refs = Vec::new();
    if kind.eq_ignore_ascii_case("deploy") {
        let text = |name: &str| metadata_text(&metadata, name);
        if let Some(environment) = text("environment") {
            attributes.insert("deployment.environment.name".into(), json!(environment));
        }
        if let Some(sha) = text("sha") {
            attributes.insert("vcs.ref.head.revision".into(), json!(sha));
        }
        if let Some(name) = text("repo") {
            attributes.insert("valuestream.repo".into(), json!(name));
            repo = Some(name);
        }
        // The pull requests that carried the deployed commit answer to its sha.
        if let (Some(name), Some(sha)) = (&repo, text("sha")) {
            let vcs = text("source").map(|s| s.to_ascii_lowercase()).unwrap_or_else(|| "github".to_string());
            link_refs.push(sha_alias(&vcs, name, &sha));
            trace_refs.push(deployed_alias(&vcs, name, &sha));
        }
    }

    // `parent_id` is a trace reference or a span key; every reading of a
    // reference, most specific first, then the value itself.
    let mut parent_refs = Vec::new();
    if let Some(parent) = event.parent_id.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        parent_refs.extend(find_trace_refs(parent));
        let whole = parent.to_ascii_lowercase();
        if !parent_refs.contains(&whole) {
            parent_refs.push(whole);
        }
    }

    Ok(Parsed::Spans(vec![SpanEvent {
        key: format!("customhttp:{namespace}:{kind}:{id}"),
        source: "customhttp".into(),
        kind: kind.to_string(),
        name: format!("{namespace}#{id}"),
        repo,
        project: Some(namespace.to_string()),
        at,
        delivery_id: delivery_id.to_string(),
        change,
        attributes,
        first_times: BTreeMap::new(),
        parent_refs,
        trace_refs,
        link_refs,
        tentative: false,
    }]))
}

/// A part of the span key: trimmed, not empty, no control characters; the
/// namespace and type may not contain `:`, which separates the key's parts.
fn key_part<'a>(value: &'a str, path: &str, no_colon: bool) -> Result<&'a str, ParseError> {
    let value = value.trim();
    let problem = if value.is_empty() {
        Some("must not be empty")
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if no_colon && value.contains(':') {
        Some("must not contain `:`")
    } else {
        None
    };
    match problem {
        Some(message) => Err(ParseError::Field { path: path.to_string(), message: message.to_string() }),
        None => Ok(value),
    }
}

/// A metadata value as text (strings, numbers and booleans), when not blank.
fn metadata_text(metadata: &Map<String, Value>, name: &str) -> Option<String> {
    let text = match metadata.get(name)? {
        Value::String(text) => text.trim().to_string(),
        Value::Number(number) => number.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// The event id: a string, or an integer written as text.
fn id_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Id;
    impl<'de> Visitor<'de> for Id {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_string())
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<String, E> {
            Ok(n.to_string())
        }
    }
    deserializer.deserialize_any(Id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_refuse_what_would_make_keys_ambiguous() {
        assert_eq!(key_part(" payments ", "namespace", true), Ok("payments"));
        assert_eq!(key_part("a:b", "id", false), Ok("a:b"));
        let error = key_part("a:b", "namespace", true).unwrap_err();
        assert_eq!(error.to_string(), "invalid payload at `namespace`: must not contain `:`");
        assert!(key_part("  ", "type", true).unwrap_err().to_string().contains("`type`: must not be empty"));
        assert!(key_part("a\u{1}", "id", false).is_err());
    }
}
