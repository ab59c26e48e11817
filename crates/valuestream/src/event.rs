//! `valuestream event start|end` (docs/configuration.md, "event start / event end"): sends a
//! `customhttp` event to a running ValueStream, as the original's `vscli` did.
//!
//! `start` prints the event's id on stdout; `end --id <that id>` (with the
//! same `--type` and `--namespace`) closes the same span. The body is signed
//! with `VS_CUSTOMHTTP_SECRET` when it is set; a non-2xx answer fails with the
//! server's `error` on stderr.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use valuestream_core::sources::customhttp::SIGNATURE_HEADER;
use valuestream_core::time::Timestamp;
use valuestream_core::verify::{hmac_sha256_hex, split_secrets};

const EVENT_HELP: &str = "The body is signed with VS_CUSTOMHTTP_SECRET (X-VS-Signature: sha256=…) when it is set
(with the first value when several are given). Example:
  id=$(valuestream event start --type deploy --namespace payments --parent vstrace-github-hello-world-27 \\
         --tag environment=production --tag repo=octo-org/hello-world --tag sha=$GIT_SHA)
  valuestream event end --id \"$id\" --type deploy --namespace payments [--error]
Repeat the tags on `end` to keep them on the span (the latest event's repository wins).";

/// Time allowed for the whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
#[command(after_help = EVENT_HELP)]
pub struct EventCommand {
    #[command(subcommand)]
    pub action: EventAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EventAction {
    /// Start an event (a span); prints its id on stdout.
    #[command(after_help = EVENT_HELP)]
    Start(StartArgs),
    /// End an event started earlier, by its id.
    #[command(after_help = EVENT_HELP)]
    End(EndArgs),
}

/// What `start` and `end` both take.
#[derive(Debug, Clone, Args)]
pub struct EventArgs {
    /// Event type, the span's kind: deploy, build, … (deploy and build count as such in metrics)
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: String,
    /// Namespace the event belongs to (a service, a team); with the type and id it names the span
    #[arg(long, value_name = "NAME")]
    pub namespace: String,
    /// Parent: a trace reference (vstrace-github-hello-world-27) or a span key
    #[arg(long, value_name = "REF")]
    pub parent: Option<String>,
    /// Metadata, repeatable; for deploys environment=, sha=, repo= (and source=, default github) link the deployed commit
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// ValueStream's base URL
    #[arg(long, env = "VS_URL", value_name = "URL", default_value = "http://127.0.0.1:5000")]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// The event's id [default: a new random id]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct EndArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// The id `start` printed
    #[arg(long, value_name = "ID", required = true)]
    pub id: String,
    /// The event failed (outcome failure instead of success)
    #[arg(long)]
    pub error: bool,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Runs `event start` or `event end`.
pub async fn run(command: EventCommand) -> anyhow::Result<()> {
    let secret = std::env::var("VS_CUSTOMHTTP_SECRET").ok().and_then(|value| split_secrets(&value).into_iter().next());
    let now = Timestamp::now();
    match command.action {
        EventAction::Start(args) => {
            let id = args.id.filter(|id| !id.trim().is_empty()).unwrap_or_else(new_id);
            let body = event_body(&id, "start", &args.event, false, now);
            send(&args.event.url, &body, secret.as_deref()).await?;
            println!("{id}");
        }
        EventAction::End(args) => {
            let body = event_body(&args.id, "end", &args.event, args.error, now);
            send(&args.event.url, &body, secret.as_deref()).await?;
        }
    }
    Ok(())
}

/// The customhttp body (sources.md, "Custom HTTP").
pub fn event_body(id: &str, action: &str, args: &EventArgs, error: bool, now: Timestamp) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("id".into(), json!(id));
    body.insert("action".into(), json!(action));
    body.insert("type".into(), json!(args.kind));
    body.insert("namespace".into(), json!(args.namespace));
    if let Some(parent) = &args.parent {
        body.insert("parent_id".into(), json!(parent));
    }
    if action == "end" {
        body.insert("error".into(), json!(error));
    }
    body.insert("timestamp".into(), json!(now.to_rfc3339()));
    if !args.tags.is_empty() {
        let metadata: Map<String, Value> = args.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        body.insert("metadata".into(), Value::Object(metadata));
    }
    serde_json::to_vec(&Value::Object(body)).expect("a JSON object serializes")
}

/// A new event id: 16 hex digits from the time, the process id and a counter.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = Timestamp::now().nanos();
    let seed = format!("{nanos}:{}:{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    hex::encode(&Sha256::digest(seed.as_bytes())[..8])
}

async fn send(base: &str, body: &[u8], secret: Option<&str>) -> anyhow::Result<()> {
    let base = base.trim().trim_end_matches('/');
    let endpoint = format!("{base}/webhooks/customhttp");
    let url = reqwest::Url::parse(&endpoint)
        .map_err(|e| crate::config::UsageError(format!("--url / VS_URL {base:?} is not a URL: {e}")))?;
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().context("cannot build an HTTP client")?;
    let mut request = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
    if let Some(secret) = secret {
        request = request.header(SIGNATURE_HEADER, format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), body)));
    }
    let response = request.send().await.with_context(|| format!("cannot send the event to {endpoint}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let answer: Option<Value> = serde_json::from_str(&text).ok();
    if !status.is_success() {
        let reason = answer
            .as_ref()
            .and_then(|a| a.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text.trim().chars().take(200).collect());
        bail!("{endpoint} answered {status}: {reason}");
    }
    if let Some(answer) = answer.filter(|a| a.get("status").and_then(Value::as_str) == Some("ignored")) {
        let reason = answer.get("reason").and_then(Value::as_str).unwrap_or("no reason given");
        eprintln!("valuestream: the server ignored the event: {reason}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tags: &[(&str, &str)], parent: Option<&str>) -> EventArgs {
        EventArgs {
            kind: "deploy".into(),
            namespace: "payments".into(),
            parent: parent.map(String::from),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            url: "http://127.0.0.1:5000".into(),
        }
    }

    #[test]
    fn bodies_follow_the_customhttp_format() {
        let now = Timestamp::parse_rfc3339("2026-11-27T10:00:00Z").unwrap();
        let body = |bytes: Vec<u8>| serde_json::from_slice::<Value>(&bytes).unwrap();
        let start =
            event_body("42", "start", &args(&[("repo", "o/r"), ("sha", "a=b")], Some("vstrace-x-y-1")), false, now);
        assert_eq!(
            body(start),
            json!({"id": "42", "action": "start", "type": "deploy", "namespace": "payments",
                   "parent_id": "vstrace-x-y-1", "timestamp": "2026-11-27T10:00:00Z",
                   "metadata": {"repo": "o/r", "sha": "a=b"}})
        );
        let end = event_body("42", "end", &args(&[], None), true, now);
        assert_eq!(
            body(end),
            json!({"id": "42", "action": "end", "type": "deploy", "namespace": "payments", "error": true,
                   "timestamp": "2026-11-27T10:00:00Z"})
        );
    }

    #[test]
    fn ids_are_16_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn tags_are_key_equals_value() {
        assert_eq!(parse_tag("env=prod=blue"), Ok(("env".into(), "prod=blue".into())));
        assert_eq!(parse_tag("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=x").is_err());
    }
}
