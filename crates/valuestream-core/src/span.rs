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
    /// Where the event sorts among a span's events: by time; at the same
    /// instant starts, then updates, then ends; then by delivery id.
    pub fn order_key(&self) -> (Timestamp, u8, &str) {
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
    Some(Folding::of(events)?.span())
}

/// A fold in progress: what [`fold`] keeps while it walks a span's events in
/// order. Kept beside the span, it lets the writer add an event that sorts
/// after every earlier one without reading those again, so the cost of an
/// event does not grow with the events a span already has. An event that
/// sorts earlier needs the whole fold again ([`Folding::push`] says so).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Folding {
    /// The order key of the latest event folded in: (at, rank, delivery id).
    last_at: Timestamp,
    last_rank: u8,
    last_delivery: String,
    /// The earliest event's time: the start of a span only ever seen through updates.
    first_at: Timestamp,
    /// Whether any event is not tentative (only then is there a span).
    firm: bool,
    key: String,
    source: String,
    kind: String,
    name: String,
    repo: Option<String>,
    project: Option<String>,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    state: SpanState,
    outcome: Option<String>,
    attributes: Attributes,
    first_times: BTreeMap<String, Timestamp>,
    parent_refs: Vec<ParentRef>,
    /// Sorted, without repeats.
    trace_refs: Vec<String>,
    link_refs: Vec<String>,
}

impl Folding {
    /// The fold of `events`, any order. `None` for no events.
    pub fn of(events: &[SpanEvent]) -> Option<Folding> {
        let mut ordered: Vec<&SpanEvent> = events.iter().collect();
        ordered.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let (first, rest) = ordered.split_first()?;
        let mut folding = Folding::new(first);
        for event in rest {
            folding.add(event);
        }
        Some(folding)
    }

    fn new(first: &SpanEvent) -> Folding {
        let mut folding = Folding {
            last_at: first.at,
            last_rank: first.change.rank(),
            last_delivery: first.delivery_id.clone(),
            first_at: first.at,
            firm: false,
            key: String::new(),
            source: String::new(),
            kind: String::new(),
            name: String::new(),
            repo: None,
            project: None,
            start: None,
            end: None,
            state: SpanState::Open,
            outcome: None,
            attributes: Attributes::new(),
            first_times: BTreeMap::new(),
            parent_refs: Vec::new(),
            trace_refs: Vec::new(),
            link_refs: Vec::new(),
        };
        folding.add(first);
        folding
    }

    /// Adds `event` when it sorts after every event folded in so far and
    /// returns true; else changes nothing and returns false (fold all the
    /// span's events again instead).
    pub fn push(&mut self, event: &SpanEvent) -> bool {
        let last = (self.last_at, self.last_rank, self.last_delivery.as_str());
        if event.order_key() <= last {
            return false;
        }
        self.add(event);
        true
    }

    /// Whether there is a span: some event is not tentative.
    pub fn is_firm(&self) -> bool {
        self.firm
    }

    fn add(&mut self, event: &SpanEvent) {
        self.last_at = event.at;
        self.last_rank = event.change.rank();
        self.last_delivery.clone_from(&event.delivery_id);
        self.firm |= !event.tentative;
        self.key.clone_from(&event.key);
        self.source.clone_from(&event.source);
        self.kind.clone_from(&event.kind);
        self.name.clone_from(&event.name);
        if let Some(s) = event.change.start() {
            self.start = Some(self.start.map_or(s, |known| known.min(s)));
        }
        match &event.change {
            Change::Start { .. } => {
                self.state = SpanState::Open;
                self.end = None;
                self.outcome = None;
            }
            Change::Update { .. } => {}
            Change::End { end, outcome, .. } => {
                self.state = SpanState::Closed;
                self.end = Some(*end);
                self.outcome = Some(outcome.clone());
            }
        }
        for (name, value) in &event.attributes {
            self.attributes.insert(name.clone(), value.clone());
        }
        for (name, time) in &event.first_times {
            let entry = self.first_times.entry(name.clone()).or_insert(*time);
            *entry = (*entry).min(*time);
        }
        if event.repo.is_some() {
            self.repo.clone_from(&event.repo);
        }
        if event.project.is_some() {
            self.project.clone_from(&event.project);
        }
        if !event.parent_refs.is_empty() {
            self.parent_refs.clone_from(&event.parent_refs);
        }
        for (references, new) in [(&mut self.trace_refs, &event.trace_refs), (&mut self.link_refs, &event.link_refs)] {
            for reference in new {
                if let Err(at) = references.binary_search(reference) {
                    references.insert(at, reference.clone());
                }
            }
        }
    }

    /// The start, end and outcome of [`Folding::span`], without building it:
    /// the writer checks a stored fold against its row before trusting it.
    pub fn bounds(&self) -> (Timestamp, Option<Timestamp>, Option<&str>) {
        let start = self.start.unwrap_or(self.first_at);
        (start, self.end.map(|e| e.max(start)), self.outcome.as_deref())
    }

    /// The span the events fold into.
    pub fn span(&self) -> Span {
        let mut attributes = self.attributes.clone();
        for (name, time) in &self.first_times {
            attributes.insert(name.clone(), serde_json::Value::String(time.to_rfc3339()));
        }
        // A span only ever seen through updates starts at its earliest event.
        let start = self.start.unwrap_or(self.first_at);
        Span {
            key: self.key.clone(),
            source: self.source.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            repo: self.repo.clone(),
            project: self.project.clone(),
            start,
            // An end reported before the creation time (clock skew) is clamped to it.
            end: self.end.map(|e| e.max(start)),
            state: self.state,
            outcome: self.outcome.clone(),
            attributes,
            parent_refs: self.parent_refs.clone(),
            trace_refs: self.trace_refs.clone(),
            link_refs: self.link_refs.clone(),
        }
    }
}

/// When an open span started at `start` is given up for lost under `age`
/// (`--expire-open-after`: its close webhook was missed; docs/operations.md,
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

    fn arbitrary_event() -> impl proptest::strategy::Strategy<Value = SpanEvent> {
        use proptest::prelude::*;
        (0i64..20, 0u8..3, 0u8..4, 0u8..3, any::<bool>(), 0u8..4).prop_map(
            |(at, op, id, attr, tentative, reference)| {
                let change = match op {
                    0 => Change::Start { start: Timestamp(at % 7) },
                    1 => Change::Update { start: (at % 2 == 0).then_some(Timestamp(at % 5)) },
                    _ => Change::End { start: None, end: Timestamp(at), outcome: format!("o{}", at % 3) },
                };
                let mut e = event(at, change, &format!("d{id}"));
                e.attributes.insert(format!("a{attr}"), serde_json::json!(at));
                if attr == 0 {
                    e.first_times.insert("f".into(), Timestamp(at));
                    e.repo = Some(format!("r{at}"));
                }
                e.trace_refs = vec![format!("t{reference}")];
                e.link_refs = vec![format!("l{}", reference % 2)];
                if reference == 3 {
                    e.parent_refs = vec![format!("p{at}")];
                }
                e.tentative = tentative;
                e
            },
        )
    }

    proptest::proptest! {
        /// Adding events one by one, each after the others in order, gives
        /// the fold of them all; an event that sorts earlier is refused.
        #[test]
        fn a_fold_grows_one_event_at_a_time(
            events in proptest::collection::vec(arbitrary_event(), 1..12),
            split in 1usize..12,
        ) {
            // One event per order key (a delivery says one thing per span and time).
            let mut sorted = events.clone();
            sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            sorted.dedup_by(|a, b| a.order_key() == b.order_key());
            let events = sorted.iter().rev().cloned().collect::<Vec<_>>();
            let split = split.min(sorted.len());
            let whole = Folding::of(&events).unwrap();
            let mut growing = Folding::of(&sorted[..split]).unwrap();
            for event in &sorted[split..] {
                proptest::prop_assert!(growing.push(event), "an event after the others is added");
            }
            if sorted.len() > 1 {
                let mut refused = growing.clone();
                proptest::prop_assert!(!refused.push(&sorted[0]), "an earlier event is refused");
                proptest::prop_assert_eq!(&refused, &growing);
            }
            proptest::prop_assert_eq!(growing.span(), whole.span());
            let span = whole.span();
            proptest::prop_assert_eq!(whole.bounds(), (span.start, span.end, span.outcome.as_deref()));
            proptest::prop_assert_eq!(growing.is_firm(), events.iter().any(|e| !e.tentative));
            proptest::prop_assert_eq!(fold(&sorted), Some(whole.span()));
        }
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
