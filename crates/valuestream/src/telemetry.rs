//! Prometheus metrics of ValueStream (`GET /metrics`): the original
//! ValueStream's `webhooks_event_*` series, kept name for name and label for
//! label so its Grafana dashboard keeps working, and the `valuestream_*` series.
//!
//! Every label value passes through a bounding function here, so no sha, run
//! id, branch or person ever becomes a label. Counters and histograms live in
//! process memory; the gauges (open and expired spans, export queue) are read from the
//! store at scrape time and handed to [`Telemetry::render`].

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use valuestream_core::sources;
use valuestream_core::vocab::{kind, outcome};

/// The `Content-Type` of [`Telemetry::render`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The label value for anything outside a label's known values.
const OTHER: &str = "other";
/// Span kinds that may appear as a label; `customhttp` kinds are free text.
const KNOWN_KINDS: &[&str] = kind::ALL;
/// Span outcomes that may appear as a label.
const KNOWN_OUTCOMES: &[&str] = outcome::ALL;
/// Delivery results that may appear as a label (`pong` is the answer to a ping).
const KNOWN_RESULTS: &[&str] = &["accepted", "duplicate", "ignored", "rejected", "pong"];
/// Longest event label kept, in characters; longer ones count as `other`.
const MAX_EVENT_LEN: usize = 40;
/// Distinct event labels kept per process; later new ones count as `other`.
/// The event type is read from the request before it is authenticated, so
/// without this cap a stranger could mint one series per request.
const MAX_EVENT_LABELS: usize = 256;

/// One hour, in milliseconds.
const HOUR_MS: f64 = 3_600_000.0;
/// One day, in milliseconds.
const DAY_MS: f64 = 24.0 * HOUR_MS;
/// One minute, in seconds.
const MINUTE_S: f64 = 60.0;
/// One hour, in seconds.
const HOUR_S: f64 = 3_600.0;
/// One day, in seconds.
const DAY_S: f64 = 86_400.0;

/// Upper bounds of `webhooks_event_duration`, in milliseconds: the original's
/// 30 min, 1 h, 3 h, 6 h, 12 h, 24 h, 3 d, 7 d, 14 d, 21 d, 30 d.
pub const ORIGINAL_DURATION_BUCKETS_MS: [f64; 11] = [
    HOUR_MS / 2.0,
    HOUR_MS,
    3.0 * HOUR_MS,
    6.0 * HOUR_MS,
    12.0 * HOUR_MS,
    DAY_MS,
    3.0 * DAY_MS,
    7.0 * DAY_MS,
    14.0 * DAY_MS,
    21.0 * DAY_MS,
    30.0 * DAY_MS,
];

/// Upper bounds of `valuestream_span_duration_seconds`, in seconds: from a
/// one-minute job to a month-long issue (1, 5, 10, 30 min; 1, 3, 6, 12 h;
/// 1, 2, 3, 7, 14, 30 d).
pub const SPAN_DURATION_BUCKETS_SECONDS: [f64; 14] = [
    MINUTE_S,
    5.0 * MINUTE_S,
    10.0 * MINUTE_S,
    30.0 * MINUTE_S,
    HOUR_S,
    3.0 * HOUR_S,
    6.0 * HOUR_S,
    12.0 * HOUR_S,
    DAY_S,
    2.0 * DAY_S,
    3.0 * DAY_S,
    7.0 * DAY_S,
    14.0 * DAY_S,
    30.0 * DAY_S,
];

/// Upper bounds of `valuestream_store_commit_seconds`, in seconds: 0.5 ms to
/// 10 s, dense around the 20 ms p99 ingest bar.
pub const STORE_COMMIT_BUCKETS_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginalLabels {
    event_source: &'static str,
    event_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginalEndLabels {
    event_source: &'static str,
    event_type: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    source: &'static str,
    event: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpanLabels {
    source: &'static str,
    kind: &'static str,
    outcome: &'static str,
}

/// The labels of the span-count gauges (open, expired).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    source: &'static str,
    kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn original_duration_histogram() -> Histogram {
    Histogram::new(ORIGINAL_DURATION_BUCKETS_MS)
}

fn span_duration_histogram() -> Histogram {
    Histogram::new(SPAN_DURATION_BUCKETS_SECONDS)
}

/// Process-wide metrics; cheap to clone (Arc inside).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Metrics>,
}

struct Metrics {
    registry: Registry,
    event_start: Family<OriginalLabels, Counter>,
    event_end: Family<OriginalEndLabels, Counter>,
    event_duration: HistogramFamily<OriginalLabels>,
    deliveries: Family<DeliveryLabels, Counter>,
    span_duration: HistogramFamily<SpanLabels>,
    export_failures: Counter,
    export_failed_spans: Counter,
    exported_spans: Counter,
    reexported_spans: Counter,
    store_commit: Histogram,
    /// Event labels handed out so far (at most [`MAX_EVENT_LABELS`]).
    events: Mutex<HashSet<String>>,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let mut registry = Registry::default();
        let event_start = Family::<OriginalLabels, Counter>::default();
        let event_end = Family::<OriginalEndLabels, Counter>::default();
        let event_duration: HistogramFamily<OriginalLabels> =
            Family::new_with_constructor(original_duration_histogram as fn() -> Histogram);
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let span_duration: HistogramFamily<SpanLabels> =
            Family::new_with_constructor(span_duration_histogram as fn() -> Histogram);
        let export_failures = Counter::default();
        let export_failed_spans = Counter::default();
        let exported_spans = Counter::default();
        let reexported_spans = Counter::default();
        let store_commit = Histogram::new(STORE_COMMIT_BUCKETS_SECONDS);

        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "webhooks_event_start",
            "Spans started (first seen open, or reopened), by source and span kind (the original ValueStream's series)",
            event_start.clone(),
        );
        registry.register(
            "webhooks_event_end",
            "Spans ended, by source, span kind and whether the outcome is failure (the original ValueStream's series)",
            event_end.clone(),
        );
        registry.register(
            "webhooks_event_duration",
            "Span durations in milliseconds from payload times, by source and span kind \
             (the original ValueStream's series)",
            event_duration.clone(),
        );
        registry.register(
            "valuestream_deliveries",
            "Webhook deliveries answered, by source, event and result",
            deliveries.clone(),
        );
        registry.register(
            "valuestream_span_duration_seconds",
            "Span durations in seconds from payload times (end - start), by source, kind and outcome",
            span_duration.clone(),
        );
        registry.register("valuestream_export_failures", "Failed export attempts", export_failures.clone());
        registry.register(
            "valuestream_export_failed_spans",
            "Spans in failed export attempts (they stay queued and are retried)",
            export_failed_spans.clone(),
        );
        registry.register(
            "valuestream_exported_spans",
            "Finished spans the trace backend acknowledged",
            exported_spans.clone(),
        );
        registry.register(
            "valuestream_export_reexported_spans",
            "Spans exported again because their end or outcome changed after the backend had them",
            reexported_spans.clone(),
        );
        registry.register(
            "valuestream_store_commit_seconds",
            "Time one store transaction (group commit) took, in seconds",
            store_commit.clone(),
        );

        let telemetry = Telemetry {
            inner: Arc::new(Metrics {
                registry,
                event_start,
                event_end,
                event_duration,
                deliveries,
                span_duration,
                export_failures,
                export_failed_spans,
                exported_spans,
                reexported_spans,
                store_commit,
                events: Mutex::new(HashSet::new()),
            }),
        };
        telemetry.publish_label_space();
        telemetry
    }

    /// Creates every series of the bounded label spaces at 0, so the first
    /// event of each is a step from 0 that `rate()` and `increase()` see
    /// (a series born at 1 looks to Prometheus as if it had always been 1).
    fn publish_label_space(&self) {
        let metrics = &self.inner;
        for (source, kind, free_text) in kind_space() {
            let _ = metrics.event_start.get_or_create(&OriginalLabels { event_source: source, event_type: kind });
            let _ = metrics.event_duration.get_or_create(&OriginalLabels { event_source: source, event_type: kind });
            let outcomes = outcome_space(kind, free_text);
            for error in ["false", "true"] {
                if error == "false" || outcomes.contains(&FAILURE) {
                    let labels = OriginalEndLabels { event_source: source, event_type: kind, error };
                    let _ = metrics.event_end.get_or_create(&labels);
                }
            }
            for outcome in outcomes {
                let _ = metrics.span_duration.get_or_create(&SpanLabels { source, kind, outcome });
            }
        }
        for source in sources::SOURCES {
            for event in source.event_types() {
                let event = self.event_label(event);
                // `pong` answers a ping only; it appears with the first one.
                for result in KNOWN_RESULTS.iter().copied().filter(|r| *r != "pong") {
                    let labels = DeliveryLabels { source: source_label(source.name()), event: event.clone(), result };
                    let _ = metrics.deliveries.get_or_create(&labels);
                }
            }
        }
    }

    /// One delivery answered: result is "accepted" | "duplicate" | "ignored" | "rejected".
    pub fn delivery(&self, source: &str, event_type: &str, result: &str) {
        let labels = DeliveryLabels {
            source: source_label(source),
            event: self.event_label(event_type),
            result: known(result, KNOWN_RESULTS),
        };
        self.inner.deliveries.get_or_create(&labels).inc();
    }

    /// A span started (first seen open, or reopened).
    pub fn span_started(&self, source: &str, kind: &str) {
        let labels = OriginalLabels { event_source: source_label(source), event_type: known(kind, KNOWN_KINDS) };
        self.inner.event_start.get_or_create(&labels).inc();
    }

    /// A span ended with `outcome` after `duration_seconds` (payload times: end − start).
    /// A negative duration counts as 0; a non-finite one is counted but not observed.
    pub fn span_ended(&self, source: &str, kind: &str, outcome: &str, duration_seconds: f64) {
        let source = source_label(source);
        let kind = known(kind, KNOWN_KINDS);
        let outcome = known(outcome, KNOWN_OUTCOMES);
        let error = if outcome == FAILURE { "true" } else { "false" };
        self.inner.event_end.get_or_create(&OriginalEndLabels { event_source: source, event_type: kind, error }).inc();
        if !duration_seconds.is_finite() {
            return;
        }
        let seconds = duration_seconds.max(0.0);
        self.inner
            .event_duration
            .get_or_create(&OriginalLabels { event_source: source, event_type: kind })
            .observe(seconds * 1000.0);
        self.inner.span_duration.get_or_create(&SpanLabels { source, kind, outcome }).observe(seconds);
    }

    /// A failed export attempt of `spans` spans.
    pub fn export_failed(&self, spans: usize) {
        self.inner.export_failures.inc();
        self.inner.export_failed_spans.inc_by(spans as u64);
    }

    /// The backend acknowledged `sent` spans, `resent` of which it had received before.
    pub fn exported(&self, sent: usize, resent: usize) {
        self.inner.exported_spans.inc_by(sent as u64);
        self.inner.reexported_spans.inc_by(resent as u64);
    }

    /// How long one store transaction (group commit) took.
    pub fn store_commit(&self, seconds: f64) {
        if seconds.is_finite() {
            self.inner.store_commit.observe(seconds.max(0.0));
        }
    }

    /// The text exposition, given gauges read from the store at scrape time:
    /// open and expired spans by (source, kind) and the export queue length.
    pub fn render(
        &self,
        open_spans: &[(String, String, i64)],
        expired_spans: &[(String, String, i64)],
        export_queue: i64,
    ) -> String {
        // The gauges get a registry of their own per scrape: no stale series,
        // and concurrent scrapes do not see each other's values.
        let mut scrape = Registry::default();
        scrape.register("valuestream_open_spans", "Spans not ended yet, by source and kind", by_kind(open_spans));
        scrape.register(
            "valuestream_expired_spans",
            "Spans given up for lost: still open --expire-open-after after their start, by source and kind",
            by_kind(expired_spans),
        );
        let queue = Gauge::<i64>::default();
        queue.set(export_queue);
        scrape.register("valuestream_export_queue_spans", "Finished spans waiting for export (the outbox)", queue);

        let mut text = String::new();
        for registry in [&self.inner.registry, &scrape] {
            if let Err(error) = prometheus_text::encode(&mut text, registry) {
                tracing::warn!(%error, "Could not encode the metrics.");
            }
        }
        text
    }

    /// `event` as a bounded label: lowercase, with spaces, `-`, `.`, `:` and
    /// `/` as `_` (`Merge Request Hook` → `merge_request_hook`); `other` when
    /// it is empty, longer than [`MAX_EVENT_LEN`], has any other character, or
    /// would be a new label beyond [`MAX_EVENT_LABELS`].
    fn event_label(&self, event: &str) -> String {
        let Some(label) = normalize_event(event) else {
            return OTHER.to_string();
        };
        let mut seen = self.inner.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(&label) {
            return label;
        }
        if seen.len() >= MAX_EVENT_LABELS {
            return OTHER.to_string();
        }
        seen.insert(label.clone());
        label
    }
}

fn normalize_event(event: &str) -> Option<String> {
    let event = event.trim();
    // Every kept character is ASCII, so the byte length is the label's length.
    if event.is_empty() || event.len() > MAX_EVENT_LEN {
        return None;
    }
    event
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' | '-' | '.' | ':' | '/' => Some('_'),
            _ => None,
        })
        .collect()
}

/// A gauge of span counts by (source, kind): every pair at 0 unless `rows`
/// count some (a gauge that vanished would leave a gap, not a zero line);
/// rows whose labels bound to the same values are added up.
fn by_kind(rows: &[(String, String, i64)]) -> Family<OpenLabels, Gauge> {
    let mut counts: BTreeMap<(&'static str, &'static str), i64> =
        kind_space().into_iter().map(|(source, kind, _)| ((source, kind), 0)).collect();
    for (source, kind, count) in rows {
        *counts.entry((source_label(source), known(kind, KNOWN_KINDS))).or_default() += count;
    }
    let family = Family::<OpenLabels, Gauge>::default();
    for ((source, kind), count) in counts {
        family.get_or_create(&OpenLabels { source, kind }).set(count);
    }
    family
}

/// The outcome that sets the original series' `error="true"`.
const FAILURE: &str = outcome::FAILURE;

/// The (source, kind) label pairs that can occur, and whether the source's
/// kinds are free text: each source's own kinds, or for a source whose kinds
/// are free text (customhttp) every known kind and `other`.
fn kind_space() -> Vec<(&'static str, &'static str, bool)> {
    let mut space = Vec::new();
    for source in sources::SOURCES {
        let (kinds, free_text): (Vec<&'static str>, bool) = match source.span_kinds() {
            Some(kinds) => (kinds.iter().map(|kind| known(kind, KNOWN_KINDS)).collect(), false),
            None => (KNOWN_KINDS.iter().copied().chain([OTHER]).collect(), true),
        };
        for kind in kinds {
            if !space.iter().any(|(s, k, _)| (*s, *k) == (source_label(source.name()), kind)) {
                space.push((source_label(source.name()), kind, free_text));
            }
        }
    }
    space
}

/// The outcome labels a span of `kind` can end with; a free-text source's
/// events end in `success` or `failure` whatever their kind.
fn outcome_space(kind: &str, free_text: bool) -> Vec<&'static str> {
    let mut outcomes: Vec<&'static str> = outcome::of_kind(kind).to_vec();
    if [kind::BUILD, kind::JOB, kind::DEPLOY].contains(&kind) {
        // A pipeline's other results (`timed_out`, `action_required`, …).
        outcomes.push(OTHER);
    }
    if free_text {
        for outcome in [outcome::SUCCESS, FAILURE] {
            if !outcomes.contains(&outcome) {
                outcomes.push(outcome);
            }
        }
    }
    outcomes
}

/// `source` when it names a source ValueStream knows, else `other`.
fn source_label(source: &str) -> &'static str {
    sources::SOURCES.iter().map(|s| s.name()).find(|known| known.eq_ignore_ascii_case(source)).unwrap_or(OTHER)
}

/// The entry of `values` equal to `value` (ignoring ASCII case), else `other`.
fn known(value: &str, values: &[&'static str]) -> &'static str {
    values.iter().copied().find(|known| known.eq_ignore_ascii_case(value)).unwrap_or(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample whose name and labels are exactly `series`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// The `le` bounds of the histogram samples starting with `prefix`.
    fn bucket_bounds(text: &str, prefix: &str) -> Vec<f64> {
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .map(|line| {
                let le = line.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
                if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }
            })
            .collect()
    }

    fn busy() -> Telemetry {
        let telemetry = Telemetry::new();
        telemetry.delivery("github", "pull_request", "accepted");
        telemetry.span_started("github", "pull_request");
        telemetry.span_ended("github", "pull_request", "merged", 5_400.0);
        telemetry.export_failed(3);
        telemetry.exported(4, 1);
        telemetry.store_commit(0.004);
        telemetry
    }

    #[test]
    fn render_has_every_series_with_its_type() {
        let text = busy().render(&[("github".into(), "issue".into(), 4)], &[("github".into(), "deploy".into(), 2)], 7);
        for (name, kind) in [
            ("webhooks_event_start_total", "counter"),
            ("webhooks_event_end_total", "counter"),
            ("webhooks_event_duration", "histogram"),
            ("valuestream_deliveries_total", "counter"),
            ("valuestream_span_duration_seconds", "histogram"),
            ("valuestream_open_spans", "gauge"),
            ("valuestream_expired_spans", "gauge"),
            ("valuestream_export_queue_spans", "gauge"),
            ("valuestream_export_failures_total", "counter"),
            ("valuestream_export_failed_spans_total", "counter"),
            ("valuestream_exported_spans_total", "counter"),
            ("valuestream_export_reexported_spans_total", "counter"),
            ("valuestream_store_commit_seconds", "histogram"),
        ] {
            assert!(text.contains(&format!("\n# TYPE {name} {kind}\n")), "no TYPE line for {name}:\n{text}");
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP line for {name}");
        }
        assert_eq!(sample(&text, r#"valuestream_open_spans{source="github",kind="issue"}"#), Some(4.0));
        assert_eq!(sample(&text, r#"valuestream_expired_spans{source="github",kind="deploy"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"valuestream_expired_spans{source="github",kind="issue"}"#), Some(0.0));
        assert_eq!(sample(&text, "valuestream_export_queue_spans"), Some(7.0));
        assert_eq!(sample(&text, "valuestream_exported_spans_total"), Some(4.0));
        assert_eq!(sample(&text, "valuestream_export_reexported_spans_total"), Some(1.0));
        assert!(!text.contains("# EOF"), "Prometheus text format has no EOF marker");
    }

    #[test]
    fn original_series_keep_their_names_and_labels() {
        let telemetry = busy();
        telemetry.span_ended("jenkins", "deploy", "failure", 60.0);
        telemetry.span_ended("jenkins", "deploy", "cancelled", 60.0);
        let text = telemetry.render(&[], &[], 0);
        assert_eq!(
            sample(&text, r#"webhooks_event_start_total{event_source="github",event_type="pull_request"}"#),
            Some(1.0)
        );
        for (labels, count) in [
            (r#"{event_source="github",event_type="pull_request",error="false"}"#, 1.0),
            (r#"{event_source="jenkins",event_type="deploy",error="true"}"#, 1.0),
            (r#"{event_source="jenkins",event_type="deploy",error="false"}"#, 1.0),
        ] {
            assert_eq!(sample(&text, &format!("webhooks_event_end_total{labels}")), Some(count), "{labels}");
        }
        let pr = r#"{event_source="github",event_type="pull_request"}"#;
        assert_eq!(sample(&text, &format!("webhooks_event_duration_count{pr}")), Some(1.0));
        assert_eq!(sample(&text, &format!("webhooks_event_duration_sum{pr}")), Some(5_400_000.0));
    }

    #[test]
    fn original_duration_buckets_are_the_listed_milliseconds() {
        let text = busy().render(&[], &[], 0);
        let prefix = r#"webhooks_event_duration_bucket{event_source="github",event_type="pull_request","#;
        let minute = 60_000.0;
        let (hour, day) = (60.0 * minute, 24.0 * 60.0 * minute);
        let expected = [
            30.0 * minute,
            hour,
            3.0 * hour,
            6.0 * hour,
            12.0 * hour,
            24.0 * hour,
            3.0 * day,
            7.0 * day,
            14.0 * day,
            21.0 * day,
            30.0 * day,
            f64::INFINITY,
        ];
        assert_eq!(bucket_bounds(&text, prefix), expected);
        // 90 minutes: above the 1 h bound, within the 3 h one.
        assert_eq!(sample(&text, &format!(r#"{prefix}le="3.6e+06"}}"#)), Some(0.0));
        assert_eq!(sample(&text, &format!(r#"{prefix}le="1.08e+07"}}"#)), Some(1.0));
    }

    #[test]
    fn span_duration_buckets_run_from_a_minute_to_thirty_days_in_seconds() {
        let text = busy().render(&[], &[], 0);
        let bounds = bucket_bounds(
            &text,
            r#"valuestream_span_duration_seconds_bucket{source="github",kind="pull_request",outcome="merged","#,
        );
        assert_eq!(bounds.first(), Some(&60.0));
        assert_eq!(bounds[bounds.len() - 2], 30.0 * 86_400.0);
        assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        let merged = r#"valuestream_span_duration_seconds_sum{source="github",kind="pull_request",outcome="merged"}"#;
        assert_eq!(sample(&text, merged), Some(5_400.0));
    }

    #[test]
    fn unknown_labels_are_bounded_to_other() {
        let telemetry = Telemetry::new();
        telemetry.delivery("evil", "Merge Request Hook", "weird");
        telemetry.delivery("github", "<script>", "rejected");
        telemetry.delivery("github", &"a".repeat(MAX_EVENT_LEN + 1), "rejected");
        telemetry.delivery("github", "", "accepted");
        telemetry.span_started("customhttp", "feature/login-1a2b3c4");
        telemetry.span_ended("jira", "Deploy", "1a2b3c4d5e6f", 1.0);
        let text = telemetry.render(&[("octocat".into(), "release v1.2".into(), 2)], &[], 0);

        assert_eq!(
            sample(&text, r#"valuestream_deliveries_total{source="other",event="merge_request_hook",result="other"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"valuestream_deliveries_total{source="github",event="other",result="rejected"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"valuestream_deliveries_total{source="github",event="other",result="accepted"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"webhooks_event_start_total{event_source="customhttp",event_type="other"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"valuestream_span_duration_seconds_count{source="jira",kind="deploy",outcome="other"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&text, r#"valuestream_open_spans{source="other",kind="other"}"#), Some(2.0));
        for raw in ["evil", "script", "aaaa", "feature", "1a2b3c4", "octocat", "release", "weird"] {
            assert!(!text.contains(raw), "{raw:?} became a label:\n{text}");
        }
    }

    #[test]
    fn event_labels_are_capped_in_number() {
        let telemetry = Telemetry::new();
        let own = telemetry.inner.events.lock().unwrap().len();
        for i in 0..MAX_EVENT_LABELS + 50 {
            telemetry.delivery("github", &format!("event_{i}"), "rejected");
        }
        telemetry.delivery("github", "event_0", "rejected");
        let text = telemetry.render(&[], &[], 0);
        // The sources' own event types count towards the cap too.
        let labels: HashSet<&str> = text
            .lines()
            .filter(|line| line.starts_with("valuestream_deliveries_total{"))
            .map(|line| line.split("event=\"").nth(1).unwrap().split('"').next().unwrap())
            .collect();
        assert_eq!(labels.len(), MAX_EVENT_LABELS, "the cap, `other` (a source's own event type) among them");
        assert!(labels.contains("pull_request") && labels.contains("jira_issue_updated"));
        assert_eq!(
            sample(&text, r#"valuestream_deliveries_total{source="github",event="other",result="rejected"}"#),
            Some((50 + own) as f64),
            "beyond the cap, less the sources' own event types"
        );
        assert_eq!(
            sample(&text, r#"valuestream_deliveries_total{source="github",event="event_0",result="rejected"}"#),
            Some(2.0)
        );
    }

    #[test]
    fn counts_increase_and_clones_share_them() {
        let telemetry = busy();
        let clone = telemetry.clone();
        clone.delivery("github", "pull_request", "accepted");
        clone.span_started("github", "pull_request");
        clone.span_ended("github", "pull_request", "closed", 60.0);
        clone.export_failed(2);
        clone.store_commit(0.5);
        let text = telemetry.render(&[], &[], 0);
        let pr = r#"{event_source="github",event_type="pull_request"}"#;
        assert_eq!(
            sample(&text, r#"valuestream_deliveries_total{source="github",event="pull_request",result="accepted"}"#),
            Some(2.0)
        );
        assert_eq!(sample(&text, &format!("webhooks_event_start_total{pr}")), Some(2.0));
        assert_eq!(sample(&text, &format!("webhooks_event_duration_count{pr}")), Some(2.0));
        assert_eq!(sample(&text, "valuestream_export_failures_total"), Some(2.0));
        assert_eq!(sample(&text, "valuestream_export_failed_spans_total"), Some(5.0));
        assert_eq!(sample(&text, "valuestream_store_commit_seconds_count"), Some(2.0));
        assert_eq!(sample(&text, "valuestream_store_commit_seconds_sum"), Some(0.504));
    }

    #[test]
    fn gauges_come_from_the_latest_scrape_only() {
        let telemetry = Telemetry::new();
        let rows = [("github".to_string(), "issue".to_string(), 3), ("jira".to_string(), "issue".to_string(), 1)];
        let first = telemetry.render(&rows, &rows[1..], 5);
        assert_eq!(sample(&first, r#"valuestream_open_spans{source="jira",kind="issue"}"#), Some(1.0));
        assert_eq!(sample(&first, r#"valuestream_expired_spans{source="jira",kind="issue"}"#), Some(1.0));
        let second = telemetry.render(&rows[..1], &[], 0);
        assert_eq!(sample(&second, r#"valuestream_open_spans{source="github",kind="issue"}"#), Some(3.0));
        assert_eq!(
            sample(&second, r#"valuestream_open_spans{source="jira",kind="issue"}"#),
            Some(0.0),
            "a gauge that went to 0 stays at 0"
        );
        assert_eq!(sample(&second, "valuestream_export_queue_spans"), Some(0.0));
        assert_eq!(sample(&second, r#"valuestream_expired_spans{source="jira",kind="issue"}"#), Some(0.0));
    }

    #[test]
    fn odd_durations_do_not_poison_the_histograms() {
        let telemetry = Telemetry::new();
        telemetry.span_ended("github", "build", "success", -5.0);
        telemetry.span_ended("github", "build", "success", f64::NAN);
        telemetry.store_commit(f64::INFINITY);
        let text = telemetry.render(&[], &[], 0);
        let build = r#"{source="github",kind="build",outcome="success"}"#;
        assert_eq!(sample(&text, &format!("valuestream_span_duration_seconds_count{build}")), Some(1.0));
        assert_eq!(sample(&text, &format!("valuestream_span_duration_seconds_sum{build}")), Some(0.0));
        assert_eq!(
            sample(&text, r#"webhooks_event_end_total{event_source="github",event_type="build",error="false"}"#),
            Some(2.0)
        );
        assert!(!text.contains("NaN"));
    }

    #[test]
    fn label_bounding_rules() {
        assert_eq!(source_label("gitlab"), "gitlab");
        assert_eq!(source_label("jenkins"), "jenkins");
        assert_eq!(source_label("bitbucket"), "other");
        assert_eq!(known("pull_request", KNOWN_KINDS), "pull_request");
        assert_eq!(known("not_planned", KNOWN_OUTCOMES), "not_planned");
        assert_eq!(known("timed_out", KNOWN_OUTCOMES), "other");
        assert_eq!(normalize_event("jira:issue_updated").as_deref(), Some("jira_issue_updated"));
        assert_eq!(normalize_event("workflow_run").as_deref(), Some("workflow_run"));
        assert_eq!(normalize_event(&"x".repeat(MAX_EVENT_LEN)).map(|e| e.len()), Some(MAX_EVENT_LEN));
        assert_eq!(normalize_event("héllo"), None);
    }
}
