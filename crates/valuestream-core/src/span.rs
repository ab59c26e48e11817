//! Spans and their events. A source turns a delivery into [`SpanEvent`]s; the
//! store keeps every event of a span and [`fold`]s them into one [`Span`].
//!
//! Architecture Invariant: `fold` depends only on the *set* of events, never on
//! their arrival order, so redelivered, late or shuffled webhooks give the same span.

use crate::link::ParentRef;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Attribute values: strings, numbers, booleans and lists of strings (labels).
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// What one event says about the span's life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// The span is (again) open, since `start`.
    Start { start: Timestamp },
    /// Attributes only; `start` is the entity's creation time when the payload has it.
    Update { start: Option<Timestamp> },
    /// The span is finished at `end` with `outcome`.
    End { start: Option<Timestamp>, end: Timestamp, outcome: String },
}

impl Change {
    /// Among events at the same instant, starts sort before updates before ends.
    fn rank(&self) -> u8 {
        match self {
            Change::Start { .. } => 0,
            Change::Update { .. } => 1,
            Change::End { .. } => 2,
        }
    }

    fn start(&self) -> Option<Timestamp> {
        match self {
            Change::Start { start } => Some(*start),
            Change::Update { start } | Change::End { start, .. } => *start,
        }
    }
}

/// One thing a delivery says about one span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// The span's natural identity, e.g. `github:octo-org/hello-world:issue:27`.
    pub key: String,
    pub source: String,
    pub kind: String,
    /// Short name, e.g. `hello-world#27`; the exported name is `{kind} {name}`.
    pub name: String,
    pub repo: Option<String>,
    pub project: Option<String>,
    /// The payload time this event describes the span at; orders a span's events.
    pub at: Timestamp,
    /// Tie-break for events at the same `at`: the delivery id, so order is stable.
    #[serde(default)]
    pub delivery_id: String,
    pub change: Change,
    /// Attributes as of `at`; later events overwrite earlier ones key by key.
    #[serde(default)]
    pub attributes: Attributes,
    /// Times where the earliest wins whatever the order (first review, first approval).
    #[serde(default)]
    pub first_times: BTreeMap<String, Timestamp>,
    /// Where this span looks for its parent, best first (linking.md).
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// The trace references this span answers to (lowercase).
    #[serde(default)]
    pub trace_refs: Vec<String>,
    /// References whose spans this span links to, every match (a deploy's
    /// pull requests), lowercase.
    #[serde(default)]
    pub link_refs: Vec<String>,
    /// An event that alone does not make a span: it applies once another
    /// event of the same key exists (a message that cannot tell which of two
    /// keys it belongs to is sent to both, tentatively).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tentative: bool,
}

impl SpanEvent {
    fn order_key(&self) -> (Timestamp, u8, &str) {
        (self.at, self.change.rank(), self.delivery_id.as_str())
    }
}

/// Whether a span has finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanState {
    Open,
    Closed,
}

impl SpanState {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanState::Open => "open",
            SpanState::Closed => "closed",
        }
    }
}

/// A span as its events describe it (without the parent and ids, which the
/// store resolves across spans).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub key: String,
    pub source: String,
    pub kind: String,
    pub name: String,
    pub repo: Option<String>,
    pub project: Option<String>,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub state: SpanState,
    pub outcome: Option<String>,
    pub attributes: Attributes,
    pub parent_refs: Vec<ParentRef>,
    pub trace_refs: Vec<String>,
    pub link_refs: Vec<String>,
}

/// Folds all known events of one span into the span. Returns `None` for no events.
///
/// Events are applied in payload-time order (ties: start, update, end, then
/// delivery id), so the result is the same for any permutation of `events`:
/// - the latest start or end decides open/closed, the end time and the outcome;
/// - the start is the earliest creation time any event reports;
/// - attributes are overlaid in time order; `first_times` keep their minimum;
/// - the parent references, repository and project are those of the latest
///   event that names any;
/// - trace and link references are the union over all events.
pub fn fold(events: &[SpanEvent]) -> Option<Span> {
    let mut ordered: Vec<&SpanEvent> = events.iter().collect();
    ordered.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let last = *ordered.last()?;

    let mut start: Option<Timestamp> = None;
    let mut end = None;
    let mut state = SpanState::Open;
    let mut outcome = None;
    let mut attributes = Attributes::new();
    let mut first_times: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut parent_refs = Vec::new();
    let mut trace_refs: Vec<String> = Vec::new();
    let mut link_refs: Vec<String> = Vec::new();
    // The latest event that says which repository and project (an end may not).
    let mut repo: Option<String> = None;
    let mut project: Option<String> = None;

    for event in &ordered {
        if let Some(s) = event.change.start() {
            start = Some(start.map_or(s, |known| known.min(s)));
        }
        match &event.change {
            Change::Start { .. } => {
                state = SpanState::Open;
                end = None;
                outcome = None;
            }
            Change::Update { .. } => {}
            Change::End { end: e, outcome: o, .. } => {
                state = SpanState::Closed;
                end = Some(*e);
                outcome = Some(o.clone());
            }
        }
        for (name, value) in &event.attributes {
            attributes.insert(name.clone(), value.clone());
        }
        for (name, time) in &event.first_times {
            let entry = first_times.entry(name.clone()).or_insert(*time);
            *entry = (*entry).min(*time);
        }
        if event.repo.is_some() {
            repo = event.repo.clone();
        }
        if event.project.is_some() {
            project = event.project.clone();
        }
        if !event.parent_refs.is_empty() {
            parent_refs = event.parent_refs.clone();
        }
        for reference in &event.trace_refs {
            if !trace_refs.contains(reference) {
                trace_refs.push(reference.clone());
            }
        }
        for reference in &event.link_refs {
            if !link_refs.contains(reference) {
                link_refs.push(reference.clone());
            }
        }
    }
    trace_refs.sort();
    link_refs.sort();
    for (name, time) in first_times {
        attributes.insert(name, serde_json::Value::String(time.to_rfc3339()));
    }
    // A span only ever seen through updates starts at its earliest event.
    let start = start.unwrap_or(ordered[0].at);
    // An end reported before the creation time (clock skew) is clamped to it.
    let end = end.map(|e: Timestamp| e.max(start));

    Some(Span {
        key: last.key.clone(),
        source: last.source.clone(),
        kind: last.kind.clone(),
        name: last.name.clone(),
        repo,
        project,
        start,
        end,
        state,
        outcome,
        attributes,
        parent_refs,
        trace_refs,
        link_refs,
    })
}

/// When an open span started at `start` is given up for lost under `age`
/// (`--expire-open-after`: its close webhook was missed; quality.md,
/// "retention"): at `start + age`, once `now` has reached it. That is also
/// the end it is shown with. It depends only on the start and the age, never
/// on when the store noticed, so a late sweep changes nothing anyone sees.
pub fn expires_at(start: Timestamp, age: std::time::Duration, now: Timestamp) -> Option<Timestamp> {
    let age = i64::try_from(age.as_nanos()).ok()?;
    let at = Timestamp(start.nanos().checked_add(age)?);
    (at <= now).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: i64, change: Change, id: &str) -> SpanEvent {
        SpanEvent {
            key: "k".into(),
            source: "github".into(),
            kind: "issue".into(),
            name: "r#1".into(),
            repo: None,
            project: None,
            at: Timestamp(at),
            delivery_id: id.into(),
            change,
            attributes: Attributes::new(),
            first_times: BTreeMap::new(),
            parent_refs: vec![],
            trace_refs: vec![],
            link_refs: vec![],
            tentative: false,
        }
    }

    #[test]
    fn close_before_open_gives_the_same_closed_span() {
        let opened = event(10, Change::Start { start: Timestamp(10) }, "a");
        let closed =
            event(50, Change::End { start: Some(Timestamp(10)), end: Timestamp(50), outcome: "completed".into() }, "b");
        let in_order = fold(&[opened.clone(), closed.clone()]).unwrap();
        let reversed = fold(&[closed, opened]).unwrap();
        assert_eq!(in_order, reversed);
        assert_eq!(in_order.state, SpanState::Closed);
        assert_eq!(in_order.start, Timestamp(10));
        assert_eq!(in_order.end, Some(Timestamp(50)));
    }

    #[test]
    fn a_reopen_after_a_close_leaves_the_span_open() {
        let opened = event(10, Change::Start { start: Timestamp(10) }, "a");
        let closed =
            event(50, Change::End { start: Some(Timestamp(10)), end: Timestamp(50), outcome: "completed".into() }, "b");
        let reopened = event(70, Change::Start { start: Timestamp(10) }, "c");
        let span = fold(&[reopened, closed, opened]).unwrap();
        assert_eq!(span.state, SpanState::Open);
        assert_eq!(span.end, None);
        assert_eq!(span.outcome, None);
    }

    #[test]
    fn first_times_keep_the_earliest() {
        let mut a = event(30, Change::Update { start: None }, "a");
        a.first_times.insert("valuestream.first_review_at".into(), Timestamp(30));
        let mut b = event(20, Change::Update { start: None }, "b");
        b.first_times.insert("valuestream.first_review_at".into(), Timestamp(20));
        let span = fold(&[a, b]).unwrap();
        assert_eq!(span.attributes["valuestream.first_review_at"], Timestamp(20).to_rfc3339());
    }

    #[test]
    fn an_open_span_expires_at_its_start_plus_the_age_whenever_that_is_noticed() {
        let age = std::time::Duration::from_secs(90 * 86_400);
        let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let due = Timestamp::parse_rfc3339("2026-04-01T00:00:00Z").unwrap();
        assert_eq!(expires_at(start, age, Timestamp(due.nanos() - 1)), None, "younger than the age");
        assert_eq!(expires_at(start, age, due), Some(due), "exactly the age");
        let a_week_late = Timestamp(due.nanos() + 7 * 86_400 * 1_000_000_000);
        assert_eq!(expires_at(start, age, a_week_late), Some(due), "the end does not depend on when");
        assert_eq!(expires_at(start, std::time::Duration::MAX, a_week_late), None, "an age past the end of time");
    }
}
