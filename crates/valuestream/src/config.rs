//! Configuration: flag, else environment variable, else the TOML file
//! (`--config` / `VS_CONFIG`), else the default (docs/configuration.md).
//! Bad configuration fails at start with a sentence naming what to change.

use crate::export::Protocol;
use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use valuestream_core::sources::{SOURCES, Source, SourceOptions};
use valuestream_core::verify::split_secrets;

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
pub const DEFAULT_DATABASE: &str = "sqlite://valuestream.db";
/// GitHub's own payload limit: 25 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 26_214_400;
/// How long a finished span must stay unchanged before it is exported.
pub const DEFAULT_EXPORT_DELAY: Duration = Duration::from_secs(10);

/// Longest wait for a request's headers (`--header-timeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a request's body once its headers arrived (`--body-timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle kept-alive connection stays open (`--idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Request bodies held in memory at once, in bytes (`--max-inflight-bytes`): 256 MiB.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 268_435_456;

/// The optional TOML file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub addr: Option<String>,
    pub database: Option<String>,
    pub tracer: Option<String>,
    pub tracer_access_token: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub api_token: Option<String>,
    pub allow_unsigned: Option<bool>,
    pub max_body_bytes: Option<usize>,
    /// Durations as text: `"10s"`, `"500ms"`, `"2m"`.
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_inflight_bytes: Option<usize>,
    /// The settle delay: `"10s"`, `"500ms"`, `"2m"`, or whole seconds.
    pub export_delay: Option<DelaySetting>,
    /// How long a span may stay open before it expires: `"90d"`, `"12h"`,
    /// `"off"` (the default).
    pub expire_open_after: Option<String>,
    /// Labels that make an issue an incident (default `["incident"]`).
    pub incident_labels: Option<Vec<String>>,
    /// A regular expression: CI jobs whose full name matches are deploys.
    pub deploy_job_pattern: Option<String>,
    /// The default branch when a payload does not say (default `main`).
    pub default_branch: Option<String>,
    /// Deploy environments that count as production for DORA (default
    /// `production`, `prod`, `live`).
    pub production_environments: Option<Vec<String>>,
    /// The dashboard's link to a trace in your trace backend: a URL with
    /// `{trace_id}` in it (`https://jaeger.internal/trace/{trace_id}`).
    pub trace_url: Option<String>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
    }

    /// The per-source options, checked: a bad pattern fails at start.
    pub fn source_options(&self) -> anyhow::Result<SourceOptions> {
        let mut options = SourceOptions::default();
        if let Some(labels) = &self.incident_labels {
            options.incident_labels = labels.clone();
        }
        if let Some(pattern) = &self.deploy_job_pattern {
            if let Err(error) = valuestream_core::sources::check_pattern(pattern) {
                bail!("deploy_job_pattern {pattern:?} in the config file is not a valid regular expression: {error}");
            }
            options.deploy_job_pattern = Some(pattern.clone());
        }
        if let Some(branch) = &self.default_branch {
            options.default_branch = branch.clone();
        }
        Ok(options)
    }
}

/// A delay in the TOML file: text with a unit, or whole seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DelaySetting {
    Seconds(u64),
    Text(String),
}

/// Reads a delay: `0`, `10` (seconds), `1.5s`, `500ms`, `2m`. At most a day:
/// a longer settle delay is a typo, not a setting.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a delay like 10s, 500ms or 2m");
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        _ => return Err(bad()),
    };
    let delay = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if delay > Duration::from_secs(86_400) {
        return Err(format!("{text:?} is longer than a day"));
    }
    Ok(delay)
}

/// Where finished spans go (`--tracer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TracerBackend {
    Logging,
    Otlp,
    Jaeger,
    Lightstep,
    Datadog,
    None,
}

impl TracerBackend {
    pub fn parse(value: &str) -> anyhow::Result<TracerBackend> {
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "logging" => TracerBackend::Logging,
            "otlp" => TracerBackend::Otlp,
            "jaeger" => TracerBackend::Jaeger,
            "lightstep" => TracerBackend::Lightstep,
            "datadog" => TracerBackend::Datadog,
            "none" => TracerBackend::None,
            _ => bail!(
                "--tracer / VS_TRACER_BACKEND / tracer: unknown tracer {value:?}: use logging, otlp, jaeger, lightstep, datadog or none"
            ),
        })
    }
}

/// Log line format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// What keeps slow and flooding senders from hurting the others
/// (docs/operations.md, "Limits and timeouts").
#[derive(Clone, Debug)]
pub struct Limits {
    /// From connecting, or from the first byte of the next request on a kept-alive
    /// connection, to the end of the request's headers; else the connection is closed.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body; else 408.
    pub body_timeout: Duration,
    /// Between requests on a kept-alive connection; else it is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    /// Request bodies held in memory at once, in bytes, from their arrival until
    /// their delivery is committed or refused; a body beyond is answered 503.
    pub max_inflight_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
        }
    }
}

impl Limits {
    /// Flags and environment (merged by clap) over the file and the defaults, checked.
    fn resolve(args: &ServeArgs, file: &FileConfig, max_body_bytes: usize) -> anyhow::Result<Limits> {
        let duration = |flag: &Option<String>, key: &Option<String>, names: &str, default: Duration| match flag
            .as_deref()
            .or(key.as_deref())
        {
            None => Ok(default),
            Some(text) => match parse_duration(text) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => bail!("{names} must be more than 0"),
                Err(error) => bail!("{names} {text:?} is not a duration: {error}"),
            },
        };
        let limits = Limits {
            header_timeout: duration(
                &args.header_timeout,
                &file.header_timeout,
                "--header-timeout / VS_HEADER_TIMEOUT / header_timeout",
                DEFAULT_HEADER_TIMEOUT,
            )?,
            body_timeout: duration(
                &args.body_timeout,
                &file.body_timeout,
                "--body-timeout / VS_BODY_TIMEOUT / body_timeout",
                DEFAULT_BODY_TIMEOUT,
            )?,
            idle_timeout: duration(
                &args.idle_timeout,
                &file.idle_timeout,
                "--idle-timeout / VS_IDLE_TIMEOUT / idle_timeout",
                DEFAULT_IDLE_TIMEOUT,
            )?,
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_inflight_bytes: args
                .max_inflight_bytes
                .or(file.max_inflight_bytes)
                .unwrap_or(DEFAULT_MAX_INFLIGHT_BYTES),
        };
        if limits.max_connections == 0 {
            bail!("--max-connections / VS_MAX_CONNECTIONS must be more than 0");
        }
        if limits.max_inflight_bytes < max_body_bytes {
            bail!(
                "--max-inflight-bytes / VS_MAX_INFLIGHT_BYTES ({}) must be at least --max-body-bytes ({max_body_bytes}), or no body of the largest accepted size could ever be read",
                limits.max_inflight_bytes
            );
        }
        Ok(limits)
    }
}

/// Parses a duration: a whole number with a unit (`500ms`, `10s`, `2m`, `1h`),
/// or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| "expected a number and a unit, like 10s or 500ms".to_string())?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| "too long".to_string())
}

/// The longest age `--expire-open-after` takes: 100 years (36,500 days).
const MAX_AGE: Duration = Duration::from_secs(36_500 * 86_400);

/// The forms an age (`--expire-open-after`) takes, for error messages.
const AGE_FORMS: &str = "use a whole number of days, hours, minutes, seconds or milliseconds \
     (90d, 12h, 30m, 45s, 500ms; a bare number is seconds), or off";

/// Reads an age: `90d`, and whatever [`parse_duration`] reads (`12h`, `30m`,
/// `45s`, `500ms`, bare seconds); `off` is no age (`None`). Zero is an error,
/// not "expire everything at once".
pub fn parse_age(text: &str) -> Result<Option<Duration>, String> {
    let trimmed = text.trim();
    let bad = || format!("{text:?} is not an age: {AGE_FORMS}");
    if trimmed.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let age = match trimmed.strip_suffix('d') {
        Some(days) if !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) => {
            let days: u64 = days.parse().map_err(|_| bad())?;
            days.checked_mul(86_400).map(Duration::from_secs).ok_or_else(bad)?
        }
        _ => parse_duration(trimmed).map_err(|_| bad())?,
    };
    if age.is_zero() {
        return Err(format!("{text:?} is no age at all (every open span would expire at once): {AGE_FORMS}"));
    }
    // A start plus the age must stay within the store's nanosecond times.
    if age > MAX_AGE {
        return Err(format!("{text:?} is longer than 100 years: {AGE_FORMS}"));
    }
    Ok(Some(age))
}

/// The file's `trace_url`, checked: an `http://` or `https://` URL holding
/// `{trace_id}`, which the dashboard replaces with a trace's id. Anything
/// else is bad usage (exit 2), so a typo shows at start, not as a dead link.
pub fn trace_url(value: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let web = value.starts_with("http://") || value.starts_with("https://");
    if !web || !value.contains("{trace_id}") || value.chars().any(char::is_whitespace) {
        return Err(anyhow::Error::new(UsageError(format!(
            "trace_url in the config file must be an http(s) URL with {{trace_id}} in it, \
             e.g. \"https://jaeger.internal/trace/{{trace_id}}\"; got {value:?}"
        ))));
    }
    Ok(Some(value.to_string()))
}

/// `--expire-open-after` / `VS_EXPIRE_OPEN_AFTER` (merged by clap), else the
/// file's `expire_open_after`, else off. A bad value is bad usage (exit 2).
pub fn expire_open_after(flag: Option<&String>, file: &FileConfig) -> anyhow::Result<Option<Duration>> {
    let usage = |message: String| anyhow::Error::new(UsageError(message));
    match (flag, &file.expire_open_after) {
        (Some(text), _) => {
            parse_age(text).map_err(|e| usage(format!("--expire-open-after / VS_EXPIRE_OPEN_AFTER {e}")))
        }
        (None, Some(text)) => parse_age(text).map_err(|e| usage(format!("expire_open_after in the config file: {e}"))),
        (None, None) => Ok(None),
    }
}

/// Everything `serve` needs, resolved.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: ListenAddr,
    pub database: String,
    pub tracer: TracerBackend,
    pub tracer_access_token: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub api_token: Option<String>,
    pub allow_unsigned: bool,
    pub max_body_bytes: usize,
    pub limits: Limits,
    /// Secrets per source name; empty means unsigned.
    pub secrets: BTreeMap<&'static str, Vec<String>>,
    pub source_options: SourceOptions,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (default) or `grpc`.
    pub otlp_protocol: Protocol,
    /// Where OTLP spans go: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces` over HTTP), else the tracer's default.
    pub otlp_endpoint: Option<String>,
    /// Production environment names for DORA (empty: the defaults).
    pub production_environments: Vec<String>,
    /// The file's `trace_url`: where the dashboard links a trace in the
    /// trace backend (checked by [`trace_url`]).
    pub trace_url: Option<String>,
    /// How long a finished span must stay unchanged before it is exported.
    pub export_delay: Duration,
    /// Open spans older than this (from their start) expire; `None`: never.
    pub expire_open_after: Option<Duration>,
}

impl ServeConfig {
    /// Resolves flags and environment (already merged by clap) over the file and defaults.
    pub fn resolve(common: &CommonArgs, args: &ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = FileConfig::load(common.config.as_deref())?;
        let addr_text = args.addr.clone().or(file.addr.clone()).unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let addr: ListenAddr =
            addr_text.parse().map_err(|e| anyhow::anyhow!("--addr / VS_ADDR {addr_text:?} is not an address: {e}"))?;
        let tracer = TracerBackend::parse(args.tracer.as_deref().or(file.tracer.as_deref()).unwrap_or("logging"))?;
        let tracer_access_token =
            args.tracer_access_token.clone().or(file.tracer_access_token.clone()).filter(|t| !t.is_empty());
        if tracer == TracerBackend::Lightstep && tracer_access_token.is_none() {
            bail!("--tracer lightstep needs --tracer-access-token / VS_TRACER_ACCESS_TOKEN / tracer_access_token");
        }
        let log_format = match args.log_format.as_deref().or(file.log_format.as_deref()).unwrap_or("json") {
            f if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            f if f.eq_ignore_ascii_case("text") => LogFormat::Text,
            other => bail!("--log-format / VS_LOG_FORMAT {other:?} is not json or text"),
        };
        let log_level = log_level(file.log_level.as_deref())?;
        let mut secrets = BTreeMap::new();
        for source in SOURCES {
            let value = std::env::var(source.secret_variable()).unwrap_or_default();
            secrets.insert(source.name(), split_secrets(&value));
        }
        let max_body_bytes = args.max_body_bytes.or(file.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            bail!("--max-body-bytes / VS_MAX_BODY_BYTES must be more than 0");
        }
        let limits = Limits::resolve(args, &file, max_body_bytes)?;
        let source_options = file.source_options()?;
        let database = database_url(common, &file);
        let otlp_protocol =
            Protocol::parse(&env("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_default()).map_err(anyhow::Error::msg)?;
        let otlp_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
            env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match otlp_protocol {
                Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                Protocol::Grpc => base,
            })
        });
        let production_environments = file.production_environments.clone().unwrap_or_default();
        let export_delay = match (&args.export_delay, &file.export_delay) {
            (Some(text), _) => {
                parse_delay(text).map_err(|e| anyhow::anyhow!("--export-delay / VS_EXPORT_DELAY {e}"))?
            }
            (None, Some(DelaySetting::Seconds(seconds))) => parse_delay(&seconds.to_string())
                .map_err(|e| anyhow::anyhow!("export_delay in the config file: {e}"))?,
            (None, Some(DelaySetting::Text(text))) => {
                parse_delay(text).map_err(|e| anyhow::anyhow!("export_delay in the config file: {e}"))?
            }
            (None, None) => DEFAULT_EXPORT_DELAY,
        };
        let expire_open_after = expire_open_after(args.expire_open_after.as_ref(), &file)?;
        let trace_url = trace_url(file.trace_url.as_deref())?;
        Ok(ServeConfig {
            trace_url,
            export_delay,
            expire_open_after,
            production_environments,
            otlp_protocol,
            otlp_endpoint,
            addr,
            database,
            tracer,
            tracer_access_token,
            log_format,
            log_level,
            api_token: args.api_token.clone().or(file.api_token).filter(|t| !t.is_empty()),
            allow_unsigned: args.allow_unsigned || file.allow_unsigned.unwrap_or(false),
            max_body_bytes,
            limits,
            secrets,
            source_options,
        })
    }

    /// docs/configuration.md, "Safe by default": beyond loopback (`bound` is where the
    /// listener was bound, a host name resolved) every source needs a secret,
    /// unless `--allow-unsigned`. Returns the sources accepted unsigned beyond
    /// loopback, for `serve` to warn about.
    pub fn check_safe_default(&self, bound: SocketAddr) -> anyhow::Result<Vec<&'static dyn Source>> {
        if bound.ip().is_loopback() {
            return Ok(Vec::new());
        }
        let unsigned: Vec<&'static dyn Source> = SOURCES
            .iter()
            .copied()
            .filter(|source| self.secrets.get(source.name()).is_none_or(|s| s.is_empty()))
            .collect();
        if unsigned.is_empty() || self.allow_unsigned {
            return Ok(unsigned);
        }
        let missing: Vec<&str> = unsigned.iter().map(|source| source.secret_variable()).collect();
        bail!(
            "refusing to listen on {} with unsigned sources: set {} (or pass --allow-unsigned to accept unsigned deliveries)",
            self.addr,
            missing.join(", ")
        )
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The database URL for any command: flag or `VS_DATABASE_URL`, else file, else default.
pub fn database_url(common: &CommonArgs, file: &FileConfig) -> String {
    common.database.clone().or(file.database.clone()).unwrap_or_else(|| DEFAULT_DATABASE.to_string())
}

/// `VS_LOG_LEVEL` (any case), else the file, else `info`.
pub fn log_level(file_level: Option<&str>) -> anyhow::Result<String> {
    let env = std::env::var("VS_LOG_LEVEL").ok().filter(|l| !l.is_empty());
    let (given, name) = match (&env, file_level) {
        (Some(level), _) => (level.as_str(), "VS_LOG_LEVEL"),
        (None, Some(level)) => (level, "log_level in the config file"),
        (None, None) => ("info", "the default"),
    };
    let level = given.trim().to_ascii_lowercase();
    match level.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => Ok(level),
        _ => bail!("{name} {given:?} is not a log level: use error, warn, info, debug or trace (any case)"),
    }
}

/// A listen address as given (`--addr`): an IP address or a host name, and a
/// port. A host name is resolved when `serve` binds ([`ListenAddr::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// An IP address (IPv6 without its brackets) or a host name.
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    /// `127.0.0.1:5000`, `localhost:5000`, `[::1]:5000`, `0.0.0.0:5000`.
    fn from_str(text: &str) -> Result<ListenAddr, String> {
        let text = text.trim();
        let like = "use HOST:PORT, like 127.0.0.1:5000, localhost:5000, [::1]:5000 or 0.0.0.0:5000 (every interface)";
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("no port: {like}"))?;
        let port: u16 = port.parse().map_err(|_| format!("the port {port:?} is not a number from 0 to 65535"))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(ip) if ip.parse::<std::net::Ipv6Addr>().is_ok() => ip,
            Some(_) => return Err(format!("{host} is not an IPv6 address: {like}")),
            None if host.contains(':') => return Err(format!("an IPv6 address needs brackets: {like}")),
            None => host,
        };
        let name_like = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
        if host.is_empty() {
            return Err(format!("no host before the port: {like}"));
        }
        if !(host.contains(':') || host.chars().all(name_like)) {
            return Err(format!("{host:?} is not a host name or an IP address: {like}"));
        }
        Ok(ListenAddr { host: host.to_string(), port })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl ListenAddr {
    /// The socket addresses to try, IPv4 first: `localhost` then listens on
    /// 127.0.0.1, which every client of `localhost` tries.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port)).await?.collect();
        addrs.sort_by_key(|addr| addr.is_ipv6());
        addrs.dedup();
        if addrs.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address"));
        }
        Ok(addrs)
    }
}

/// Bad usage: a flag, an environment variable or a config file key that is
/// wrong. `main` exits 2 for it (any other error exits 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    /// A configuration error (flags, environment, file) as a usage error.
    pub fn from_config(error: anyhow::Error) -> anyhow::Error {
        UsageError(format!("{error:#}")).into()
    }
}

/// A database URL without its password, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Options every command that reads the store takes.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Database URL: sqlite://PATH (embedded) or postgres://… [default: sqlite://valuestream.db]
    #[arg(long, env = "VS_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
    /// Optional TOML configuration file (flags and environment variables win over it).
    #[arg(long, env = "VS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Listen address [default: 127.0.0.1:5000]
    #[arg(long, env = "VS_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Where finished spans go: logging (JSON lines on stdout), otlp, jaeger, lightstep, datadog, none [default: logging]
    #[arg(long, env = "VS_TRACER_BACKEND", value_name = "BACKEND")]
    pub tracer: Option<String>,
    /// Access token for backends that need one (LightStep)
    #[arg(long, env = "VS_TRACER_ACCESS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub tracer_access_token: Option<String>,
    /// Log format: json or text [default: json]
    #[arg(long, env = "VS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// When set, /api/* requires `Authorization: Bearer <token>`
    #[arg(long, env = "VS_API_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Accept unsigned deliveries on a non-loopback address
    #[arg(long, env = "VS_ALLOW_UNSIGNED")]
    pub allow_unsigned: bool,
    /// Largest accepted webhook body, in bytes; larger ones get 413 [default: 26214400]
    #[arg(long, env = "VS_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Longest wait for a request's headers, from connecting or from the next request's first byte; then the connection is closed [default: 10s]
    #[arg(long, env = "VS_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Longest wait for a request's body once its headers arrived; slower bodies get 408 [default: 20s]
    #[arg(long, env = "VS_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,
    /// How long a kept-alive connection may stay idle between requests [default: 60s]
    #[arg(long, env = "VS_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Connections served at once; more get 503 with Retry-After [default: 512]
    #[arg(long, env = "VS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Request bodies held in memory at once, in bytes; a body beyond gets 503 with Retry-After [default: 268435456]
    #[arg(long, env = "VS_MAX_INFLIGHT_BYTES", value_name = "BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// How long a finished span must stay unchanged before it is exported (10s, 500ms, 0) [default: 10s]
    #[arg(long, env = "VS_EXPORT_DELAY", value_name = "DELAY")]
    pub export_delay: Option<String>,
    /// Expire spans still open this long after their start (a missed close webhook): 90d, 12h, 30m, 45s, or off [default: off]
    #[arg(long, env = "VS_EXPIRE_OPEN_AFTER", value_name = "AGE")]
    pub expire_open_after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_url_is_a_web_address_with_the_trace_id_in_it() {
        let good = "https://jaeger.internal/trace/{trace_id}";
        assert_eq!(trace_url(Some(good)).unwrap().as_deref(), Some(good));
        assert_eq!(trace_url(Some("  ")).unwrap(), None, "blank is unset");
        assert_eq!(trace_url(None).unwrap(), None);
        for bad in [
            "https://jaeger.internal/trace/",
            "javascript:alert({trace_id})",
            "jaeger/{trace_id}",
            "https://a b/{trace_id}",
        ] {
            let error = trace_url(Some(bad)).unwrap_err();
            assert!(error.downcast_ref::<UsageError>().is_some(), "{bad}: bad usage");
            assert!(error.to_string().contains("{trace_id}"), "{bad}: {error}");
        }
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        let check = |text: &str, expected: Result<Duration, &str>| {
            assert_eq!(
                parse_duration(text).map_err(|e| e.split(':').next().unwrap().to_string()),
                expected.map_err(String::from),
                "{text}"
            )
        };
        check("10s", Ok(Duration::from_secs(10)));
        check("500ms", Ok(Duration::from_millis(500)));
        check("2m", Ok(Duration::from_secs(120)));
        check("1h", Ok(Duration::from_secs(3600)));
        check(" 30 ", Ok(Duration::from_secs(30)));
        check("0s", Ok(Duration::ZERO));
        check("10 s", Ok(Duration::from_secs(10)));
        check("1.5s", Err("unknown unit \".5s\""));
        check("s", Err("expected a number and a unit, like 10s or 500ms"));
        check("10d", Err("unknown unit \"d\""));
    }

    #[test]
    fn limits_take_the_flag_else_the_file_else_the_default_and_are_checked() {
        let file: FileConfig = toml::from_str(
            "header_timeout = \"5s\"\nbody_timeout = \"1m\"\nmax_connections = 64\nmax_inflight_bytes = 100000000",
        )
        .unwrap();
        let args = ServeArgs { header_timeout: Some("750ms".into()), ..ServeArgs::default() };
        let limits = Limits::resolve(&args, &file, DEFAULT_MAX_BODY_BYTES).unwrap();
        assert_eq!(limits.header_timeout, Duration::from_millis(750), "the flag wins");
        assert_eq!(limits.body_timeout, Duration::from_secs(60), "the file");
        assert_eq!(limits.idle_timeout, DEFAULT_IDLE_TIMEOUT, "the default");
        assert_eq!((limits.max_connections, limits.max_inflight_bytes), (64, 100_000_000));

        let defaults = Limits::resolve(&ServeArgs::default(), &FileConfig::default(), DEFAULT_MAX_BODY_BYTES).unwrap();
        assert_eq!(defaults.max_inflight_bytes, 256 * 1024 * 1024);
        let error = |args: ServeArgs| {
            Limits::resolve(&args, &FileConfig::default(), DEFAULT_MAX_BODY_BYTES).unwrap_err().to_string()
        };
        let message = error(ServeArgs { body_timeout: Some("soon".into()), ..ServeArgs::default() });
        assert!(message.starts_with("--body-timeout / VS_BODY_TIMEOUT / body_timeout \"soon\""), "{message}");
        let message = error(ServeArgs { idle_timeout: Some("0s".into()), ..ServeArgs::default() });
        assert!(message.contains("--idle-timeout") && message.contains("more than 0"), "{message}");
        let message = error(ServeArgs { max_connections: Some(0), ..ServeArgs::default() });
        assert!(message.contains("--max-connections"), "{message}");
        let message = error(ServeArgs { max_inflight_bytes: Some(1_000_000), ..ServeArgs::default() });
        assert!(message.contains("--max-inflight-bytes") && message.contains("--max-body-bytes"), "{message}");
    }

    #[test]
    fn listen_addresses_are_an_ip_or_a_host_name_and_a_port() {
        let ok = |text: &str, host: &str, port: u16| {
            assert_eq!(text.parse::<ListenAddr>(), Ok(ListenAddr { host: host.into(), port }), "{text}")
        };
        ok("127.0.0.1:5000", "127.0.0.1", 5000);
        ok("localhost:5000", "localhost", 5000);
        ok("valuestream.internal.example.com:80", "valuestream.internal.example.com", 80);
        ok("0.0.0.0:0", "0.0.0.0", 0);
        ok("[::1]:5000", "::1", 5000);
        assert_eq!("[::1]:5000".parse::<ListenAddr>().unwrap().to_string(), "[::1]:5000");
        assert_eq!("localhost:5000".parse::<ListenAddr>().unwrap().to_string(), "localhost:5000");
        for bad in [
            "",
            "localhost",
            ":5000",
            "localhost:",
            "localhost:http",
            "host:65536",
            "::1:5000",
            "[nope]:1",
            "a b:1",
            "http://x:1",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback_ipv4_first() {
        let addrs = "localhost:5000".parse::<ListenAddr>().unwrap().resolve().await.unwrap();
        assert!(addrs[0].is_ipv4() && addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 5000), "{addrs:?}");
    }

    #[test]
    fn log_levels_take_any_case_and_a_wrong_one_names_the_accepted_values() {
        // The file's level (VS_LOG_LEVEL is not set in unit tests).
        if std::env::var_os("VS_LOG_LEVEL").is_some() {
            return;
        }
        assert_eq!(log_level(Some("DEBUG")).unwrap(), "debug");
        assert_eq!(log_level(None).unwrap(), "info");
        let error = log_level(Some("Verbose")).unwrap_err().to_string();
        assert_eq!(
            error,
            "log_level in the config file \"Verbose\" is not a log level: use error, warn, info, debug or trace (any case)"
        );
    }

    #[test]
    fn delays_read_with_or_without_a_unit() {
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("10", Duration::from_secs(10)),
            ("10s", Duration::from_secs(10)),
            (" 1.5s ", Duration::from_millis(1500)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
        ] {
            assert_eq!(parse_delay(text), Ok(expected), "{text:?}");
        }
        for bad in ["", "soon", "-1s", "10h", "1e3", "s", "2 days", "90000"] {
            assert!(parse_delay(bad).is_err(), "{bad:?}");
        }
    }

    fn resolve_with(toml: &str, flag: Option<&str>) -> anyhow::Result<ServeConfig> {
        resolve_args(toml, ServeArgs { export_delay: flag.map(str::to_string), ..ServeArgs::default() })
    }

    fn resolve_args(toml: &str, args: ServeArgs) -> anyhow::Result<ServeConfig> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vs-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("valuestream.toml");
        std::fs::write(&path, toml).unwrap();
        let common = CommonArgs { database: None, config: Some(path) };
        let resolved = ServeConfig::resolve(&common, &args);
        let _ = std::fs::remove_dir_all(&dir);
        resolved
    }

    #[test]
    fn the_export_delay_comes_from_the_flag_then_the_file_then_the_default() {
        assert_eq!(resolve_with("", None).unwrap().export_delay, DEFAULT_EXPORT_DELAY);
        assert_eq!(resolve_with("export_delay = \"250ms\"\n", None).unwrap().export_delay, Duration::from_millis(250));
        assert_eq!(resolve_with("export_delay = 3\n", None).unwrap().export_delay, Duration::from_secs(3));
        assert_eq!(resolve_with("export_delay = 3\n", Some("0")).unwrap().export_delay, Duration::ZERO);
        let error = resolve_with("export_delay = \"a while\"\n", None).unwrap_err().to_string();
        assert!(error.contains("export_delay in the config file"), "{error}");
    }

    #[test]
    fn ages_are_days_or_the_duration_units_and_off_is_off() {
        let day = Duration::from_secs(86_400);
        for (text, expected) in [
            ("90d", Some(90 * day)),
            (" 7d ", Some(7 * day)),
            ("12h", Some(Duration::from_secs(12 * 3_600))),
            ("30m", Some(Duration::from_secs(1_800))),
            ("2s", Some(Duration::from_secs(2))),
            ("1500ms", Some(Duration::from_millis(1_500))),
            ("45", Some(Duration::from_secs(45))),
            ("off", None),
            ("OFF", None),
        ] {
            assert_eq!(parse_age(text), Ok(expected), "{text:?}");
        }
        for bad in ["", "soon", "0", "0d", "0ms", "-1d", "1.5d", "10w", "d", "99999999999999999d"] {
            let error = parse_age(bad).unwrap_err();
            assert!(error.contains("90d") && error.contains("off"), "{bad:?}: the error names the forms: {error}");
        }
    }

    #[test]
    fn expiry_is_off_unless_set_and_the_flag_or_environment_wins_over_the_file() {
        let expire = |toml: &str, flag: Option<&str>| {
            resolve_args(toml, ServeArgs { expire_open_after: flag.map(str::to_string), ..ServeArgs::default() })
        };
        let day = Duration::from_secs(86_400);
        assert_eq!(expire("", None).unwrap().expire_open_after, None, "off by default");
        assert_eq!(expire("expire_open_after = \"90d\"\n", None).unwrap().expire_open_after, Some(90 * day));
        assert_eq!(
            expire("expire_open_after = \"90d\"\n", Some("2s")).unwrap().expire_open_after,
            Some(Duration::from_secs(2))
        );
        assert_eq!(expire("expire_open_after = \"90d\"\n", Some("off")).unwrap().expire_open_after, None);

        let error = expire("", Some("soon")).unwrap_err();
        assert!(error.downcast_ref::<UsageError>().is_some(), "bad usage (exit 2): {error}");
        let message = error.to_string();
        assert!(message.starts_with("--expire-open-after / VS_EXPIRE_OPEN_AFTER \"soon\""), "{message}");
        let error = expire("expire_open_after = \"a while\"\n", None).unwrap_err();
        assert!(error.downcast_ref::<UsageError>().is_some(), "{error}");
        assert!(error.to_string().starts_with("expire_open_after in the config file: \"a while\""), "{error}");
    }
}
