//! Jira Cloud (sources.md, "Jira Cloud"): issues and sprints.
//!
//! Every issue payload carries the whole issue, so each event is a snapshot of
//! its span at the webhook's `timestamp` (when Jira raised the event), as for
//! GitHub: an issue whose status *category* is `done` ends the span, any other
//! category starts (or reopens) it. Status names are never read for decisions:
//! categories (`new`, `indeterminate`, `done`) hold for every workflow and
//! language.
//!
//! Work start (`valuestream.started_at`, earliest wins) is recorded from
//! snapshots whose current category is `indeterminate`. A changelog item names
//! the statuses it moved between but not their categories, so the time comes
//! from what the payload says about the *current* status:
//! - `fields.statuscategorychangedate`, when Jira sends it: the last time the
//!   category changed, which for an issue now in `indeterminate` is when it
//!   entered that category (it is also right for a move between two
//!   in-progress statuses, which the changelog would date too late);
//! - else, when the changelog shows a status change into the current status,
//!   the changelog's `created` or the webhook's `timestamp`.
//!
//! Since `first_times` keep their minimum, any order of deliveries gives the
//! first entry into `indeterminate` that any delivery reported.

use super::{ParseError, Parsed, Source, SourceOptions, dedup_in_order, field_error, insert_opt, parse_json};
use crate::delivery::Delivery;
use crate::link::generic_ref;
use crate::span::{Attributes, Change, SpanEvent};
use crate::time::Timestamp;
use crate::verify::{AuthError, verify_hmac_sha256};
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

pub struct Jira;

/// Jira's WebSub-style signature: `sha256=<hex HMAC-SHA256 of the body>`.
const SIGNATURE_HEADER: &str = "X-Hub-Signature";
/// Unique per delivery within a site and unchanged across retries.
const DELIVERY_HEADER: &str = "X-Atlassian-Webhook-Identifier";

const ISSUE_CREATED: &str = "jira:issue_created";
const ISSUE_UPDATED: &str = "jira:issue_updated";
const ISSUE_DELETED: &str = "jira:issue_deleted";
const SPRINT_STARTED: &str = "sprint_started";
const SPRINT_CLOSED: &str = "sprint_closed";

/// The `webhookEvent`s this module understands; any other is answered `ignored`.
const SUPPORTED: &[&str] = &[ISSUE_CREATED, ISSUE_UPDATED, ISSUE_DELETED, SPRINT_STARTED, SPRINT_CLOSED];

impl Source for Jira {
    fn name(&self) -> &'static str {
        "jira"
    }

    fn secret_variable(&self) -> &'static str {
        "VS_JIRA_SECRET"
    }

    fn secret_help(&self) -> &'static str {
        "HMAC secret of Jira Cloud webhooks (X-Hub-Signature: sha256=…)"
    }

    fn credential_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn authenticate(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), AuthError> {
        verify_hmac_sha256(secrets, &delivery.body, SIGNATURE_HEADER, delivery.header(SIGNATURE_HEADER))
    }

    fn delivery_id(&self, delivery: &Delivery) -> Option<String> {
        delivery.header(DELIVERY_HEADER).map(str::trim).filter(|id| !id.is_empty()).map(String::from)
    }

    fn event_type(&self, delivery: &Delivery) -> String {
        // Jira names the event in the body, not in a header.
        #[derive(Deserialize)]
        struct Peek {
            #[serde(rename = "webhookEvent")]
            webhook_event: Option<String>,
        }
        let peeked = delivery.json_body().ok().and_then(|body| serde_json::from_slice::<Peek>(&body).ok());
        match peeked.and_then(|p| p.webhook_event) {
            Some(event) if SUPPORTED.contains(&event.as_str()) => event,
            Some(_) => "other".to_string(),
            None => "missing".to_string(),
        }
    }

    fn event_types(&self) -> Vec<&'static str> {
        SUPPORTED.iter().copied().chain(["other", "missing"]).collect()
    }

    fn span_kinds(&self) -> Option<&'static [&'static str]> {
        Some(&["issue", "incident", "sprint"])
    }

    fn parse(&self, delivery: &Delivery, delivery_id: &str, options: &SourceOptions) -> Result<Parsed, ParseError> {
        let body = delivery.json_body().map_err(ParseError::Body)?;
        let envelope: Envelope = parse_json(&body)?;
        let context = Context { delivery, delivery_id, options };
        match envelope.webhook_event.as_str() {
            ISSUE_CREATED | ISSUE_UPDATED | ISSUE_DELETED => context.issue(parse_json(&body)?),
            SPRINT_STARTED | SPRINT_CLOSED => context.sprint(parse_json(&body)?),
            other => {
                let shown: String = other.chars().take(64).collect();
                Ok(Parsed::Ignored { reason: format!("Jira event `{shown}` is not tracked") })
            }
        }
    }
}

// ---------------------------------------------------------------- payloads

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "webhookEvent")]
    webhook_event: String,
}

#[derive(Deserialize)]
struct IssueEvent {
    #[serde(rename = "webhookEvent")]
    webhook_event: String,
    #[serde(default, deserialize_with = "millis_or_time")]
    timestamp: Option<Timestamp>,
    issue_event_type_name: Option<String>,
    issue: Issue,
    changelog: Option<Changelog>,
}

#[derive(Deserialize)]
struct Issue {
    #[serde(rename = "self")]
    self_url: String,
    key: String,
    fields: Fields,
}

#[derive(Deserialize)]
struct Fields {
    summary: Option<String>,
    created: JiraTime,
    #[serde(default, deserialize_with = "optional_time")]
    updated: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    resolutiondate: Option<Timestamp>,
    #[serde(default, deserialize_with = "optional_time")]
    statuscategorychangedate: Option<Timestamp>,
    status: Option<Status>,
    issuetype: Option<Named>,
    project: Option<Project>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    /// An object with a `name` in real deliveries, a bare string in Atlassian's example.
    priority: Option<Value>,
    reporter: Option<Person>,
    creator: Option<Person>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default, deserialize_with = "lenient_string")]
    id: Option<String>,
    name: Option<String>,
    #[serde(rename = "statusCategory")]
    status_category: Option<StatusCategory>,
}

#[derive(Deserialize)]
struct StatusCategory {
    key: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    key: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Person {
    #[serde(rename = "displayName")]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct Changelog {
    #[serde(default, deserialize_with = "optional_time")]
    created: Option<Timestamp>,
    #[serde(default)]
    items: Option<Vec<ChangeItem>>,
}

#[derive(Deserialize)]
struct ChangeItem {
    field: Option<String>,
    #[serde(rename = "fieldId")]
    field_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    to: Option<String>,
    #[serde(rename = "toString")]
    to_name: Option<String>,
}

impl ChangeItem {
    fn is_status(&self) -> bool {
        let named = |name: &Option<String>| name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case("status"));
        named(&self.field_id) || named(&self.field)
    }
}

#[derive(Deserialize)]
struct SprintEvent {
    #[serde(rename = "webhookEvent")]
    webhook_event: String,
    #[serde(default, deserialize_with = "millis_or_time")]
    timestamp: Option<Timestamp>,
    sprint: Sprint,
}

#[derive(Deserialize)]
struct Sprint {
    #[serde(deserialize_with = "required_lenient_string")]
    id: String,
    #[serde(rename = "self")]
    self_url: String,
    state: Option<String>,
    name: Option<String>,
    goal: Option<String>,
    #[serde(rename = "originBoardId")]
    origin_board_id: Option<u64>,
    #[serde(rename = "startDate", default, deserialize_with = "optional_time")]
    start_date: Option<Timestamp>,
    #[serde(rename = "endDate", default, deserialize_with = "optional_time")]
    end_date: Option<Timestamp>,
    #[serde(rename = "completeDate", default, deserialize_with = "optional_time")]
    complete_date: Option<Timestamp>,
}

// ---------------------------------------------------------------- events

struct Context<'a> {
    delivery: &'a Delivery,
    delivery_id: &'a str,
    options: &'a SourceOptions,
}

impl Context<'_> {
    fn issue(&self, event: IssueEvent) -> Result<Parsed, ParseError> {
        let IssueEvent { webhook_event, timestamp, issue_event_type_name, issue, changelog } = event;
        let (scheme, site) = site_of(&issue.self_url)
            .ok_or_else(|| field_error("issue.self", "expected an http(s) URL with a host name"))?;
        let key = issue.key.trim().to_string();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
            return Err(field_error("issue.key", "expected an issue key such as PAY-12"));
        }
        let fields = issue.fields;
        let created = fields.created.0;
        // When Jira raised the event; older payloads may lack it.
        let event_time = timestamp.or(fields.updated).unwrap_or(created);

        let status = fields.status.as_ref();
        let category = status
            .and_then(|s| s.status_category.as_ref())
            .and_then(|c| c.key.as_deref())
            .map(|k| k.trim().to_ascii_lowercase());
        // Did this event move the issue into its current status?
        let moved_here = changelog.as_ref().and_then(|c| c.items.as_ref()).is_some_and(|items| {
            items.iter().filter(|item| item.is_status()).any(|item| match (status, &item.to) {
                (Some(Status { id: Some(id), .. }), Some(to)) => id.trim() == to.trim(),
                (Some(Status { name: Some(name), .. }), _) => item.to_name.as_deref().is_some_and(|t| t == name),
                _ => false,
            })
        });
        let move_time = changelog.as_ref().and_then(|c| c.created).or(timestamp);
        let moved_at = if moved_here { move_time } else { None };

        let change = if webhook_event == ISSUE_DELETED {
            Change::End { start: Some(created), end: event_time, outcome: "deleted".into() }
        } else {
            match category.as_deref() {
                Some("done") => {
                    let end =
                        fields.resolutiondate.or(fields.statuscategorychangedate).or(moved_at).unwrap_or(event_time);
                    Change::End { start: Some(created), end, outcome: "completed".into() }
                }
                Some(_) => Change::Start { start: created },
                // No status in the payload (Atlassian's documented example has none):
                // a new issue is open; an update says nothing about open or closed.
                None if webhook_event == ISSUE_CREATED => Change::Start { start: created },
                None => Change::Update { start: Some(created) },
            }
        };
        let mut first_times = BTreeMap::new();
        let in_progress = webhook_event != ISSUE_DELETED && category.as_deref() == Some("indeterminate");
        if let (true, Some(started)) = (in_progress, fields.statuscategorychangedate.or(moved_at)) {
            first_times.insert("valuestream.started_at".to_string(), started);
        }
        let at = snapshot_time(&change, event_time);

        let labels: Vec<String> = fields.labels.unwrap_or_default();
        let issue_type = fields.issuetype.and_then(|t| t.name);
        // Jira Service Management names the type `Incident` (`[System] Incident` on some sites).
        let is_incident = issue_type
            .as_deref()
            .map(str::trim)
            .is_some_and(|t| t.eq_ignore_ascii_case("incident") || t.eq_ignore_ascii_case("[system] incident"))
            || labels
                .iter()
                .any(|label| self.options.incident_labels.iter().any(|incident| incident.eq_ignore_ascii_case(label)));
        let project_key = fields
            .project
            .as_ref()
            .and_then(|p| p.key.clone())
            .filter(|k| !k.trim().is_empty())
            .or_else(|| key.rsplit_once('-').map(|(project, _)| project.to_string()));

        let mut attributes = Attributes::new();
        attributes.insert("valuestream.jira.site".into(), json!(site));
        attributes.insert("valuestream.issue.key".into(), json!(key));
        attributes.insert("valuestream.url".into(), json!(format!("{scheme}://{site}/browse/{key}")));
        attributes.insert("valuestream.labels".into(), json!(labels));
        attributes.insert("valuestream.jira.event".into(), json!(webhook_event));
        insert_opt(&mut attributes, "valuestream.jira.issue_event_type", issue_event_type_name);
        insert_opt(&mut attributes, "valuestream.title", fields.summary);
        insert_opt(&mut attributes, "valuestream.jira.project", project_key.clone());
        insert_opt(&mut attributes, "valuestream.jira.project_name", fields.project.and_then(|p| p.name));
        insert_opt(&mut attributes, "valuestream.jira.issue_type", issue_type);
        insert_opt(&mut attributes, "valuestream.jira.status", status.and_then(|s| s.name.clone()));
        insert_opt(&mut attributes, "valuestream.jira.status_category", category);
        insert_opt(&mut attributes, "valuestream.jira.priority", fields.priority.as_ref().and_then(priority_name));
        let author = fields.reporter.and_then(|p| p.display_name).or(fields.creator.and_then(|p| p.display_name));
        insert_opt(&mut attributes, "valuestream.author", author);

        // linking.md: `vstrace-jira-PAY-12`, `vstrace-jiracloud-issue-PAY-12`, the bare key
        // (branches such as `PAY-12-fix-login`), and the form every span answers to.
        let mut trace_refs = vec![
            format!("vstrace-jira-{key}").to_ascii_lowercase(),
            format!("vstrace-jiracloud-issue-{key}").to_ascii_lowercase(),
            key.to_ascii_lowercase(),
        ];
        if let Some((project, number)) = key.rsplit_once('-') {
            trace_refs.push(generic_ref("jira", "issue", project, number));
        }
        dedup_in_order(&mut trace_refs);

        Ok(Parsed::Spans(vec![SpanEvent {
            key: format!("jira:{site}:issue:{key}"),
            source: "jira".into(),
            kind: if is_incident { "incident" } else { "issue" }.into(),
            name: key.clone(),
            repo: None,
            project: project_key,
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times,
            parent_refs: Vec::new(),
            trace_refs,
            link_refs: Vec::new(),
            tentative: false,
        }]))
    }

    fn sprint(&self, event: SprintEvent) -> Result<Parsed, ParseError> {
        let SprintEvent { webhook_event, timestamp, sprint } = event;
        let (_, site) = site_of(&sprint.self_url)
            .ok_or_else(|| field_error("sprint.self", "expected an http(s) URL with a host name"))?;
        let id = sprint.id.trim().to_string();
        if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(field_error("sprint.id", "expected a sprint id"));
        }
        let change = if webhook_event == SPRINT_STARTED {
            let start = sprint.start_date.or(timestamp).unwrap_or(self.delivery.received_at);
            Change::Start { start }
        } else {
            let end = sprint.complete_date.or(sprint.end_date).or(timestamp).unwrap_or(self.delivery.received_at);
            Change::End { start: sprint.start_date, end, outcome: "completed".into() }
        };
        let event_time = timestamp.unwrap_or(match &change {
            Change::Start { start } => *start,
            Change::Update { start } => start.unwrap_or(self.delivery.received_at),
            Change::End { end, .. } => *end,
        });
        let at = snapshot_time(&change, event_time);

        let mut attributes = Attributes::new();
        attributes.insert("valuestream.jira.site".into(), json!(site));
        attributes.insert("valuestream.jira.event".into(), json!(webhook_event));
        insert_opt(&mut attributes, "valuestream.sprint.name", sprint.name.clone());
        insert_opt(&mut attributes, "valuestream.sprint.state", sprint.state);
        insert_opt(&mut attributes, "valuestream.sprint.board", sprint.origin_board_id);
        insert_opt(&mut attributes, "valuestream.sprint.goal", sprint.goal.filter(|g| !g.trim().is_empty()));
        insert_opt(&mut attributes, "valuestream.sprint.planned_end", sprint.end_date.map(|t| t.to_rfc3339()));

        Ok(Parsed::Spans(vec![SpanEvent {
            key: format!("jira:{site}:sprint:{id}"),
            source: "jira".into(),
            kind: "sprint".into(),
            name: sprint.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| format!("sprint {id}")),
            repo: None,
            project: None,
            at,
            delivery_id: self.delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            parent_refs: Vec::new(),
            trace_refs: Vec::new(),
            link_refs: Vec::new(),
            tentative: false,
        }]))
    }
}

/// The time a snapshot describes: when Jira raised the event, never earlier
/// than the change it reports.
fn snapshot_time(change: &Change, event_time: Timestamp) -> Timestamp {
    let own = match change {
        Change::Start { start } => *start,
        Change::Update { start } => start.unwrap_or(event_time),
        Change::End { end, .. } => *end,
    };
    event_time.max(own)
}

/// The scheme and lowercase host of a URL such as `https://acme.atlassian.net/rest/api/2/issue/10002`.
fn site_of(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = host_port.split(':').next()?;
    let valid = !host.is_empty()
        && !host.starts_with(['.', '-'])
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    valid.then(|| (scheme, host.to_ascii_lowercase()))
}

fn priority_name(priority: &Value) -> Option<String> {
    match priority {
        Value::String(name) => Some(name.clone()),
        Value::Object(object) => object.get("name").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

// ---------------------------------------------------------------- times and lenient fields

/// Parses the times Jira sends: `2019-05-15T15:20:33.000+0000` (an offset
/// without a colon, as Jira writes it), RFC 3339 (`…Z`, `…+00:00`, as the
/// agile API writes sprint dates), with or without fractional seconds, `T` or
/// a space between date and time; a time without an offset is taken as UTC.
pub fn parse_jira_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if text.len() < 10 || text.len() > 64 {
        return None;
    }
    if let Some(time) = Timestamp::parse_rfc3339(text) {
        return Some(time);
    }
    let normalized: Cow<'_, str> = if text.as_bytes().get(10) == Some(&b' ') {
        Cow::Owned(format!("{}T{}", &text[..10], &text[11..]))
    } else {
        Cow::Borrowed(text)
    };
    if let Ok(time) = DateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return time.timestamp_nanos_opt().map(Timestamp);
    }
    if let Some(time) =
        normalized.strip_suffix(['Z', 'z']).and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok())
    {
        return time.and_utc().timestamp_nanos_opt().map(Timestamp);
    }
    NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .and_then(|time| time.and_utc().timestamp_nanos_opt())
        .map(Timestamp)
}

const TIME_EXPECTED: &str = "expected a time such as 2019-05-15T15:20:33.000+0000";

/// A required Jira time.
#[derive(Clone, Copy)]
struct JiraTime(Timestamp);

impl<'de> Deserialize<'de> for JiraTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        parse_jira_time(&text).map(JiraTime).ok_or_else(|| de::Error::custom(TIME_EXPECTED))
    }
}

/// An optional Jira time: absent, `null` and `""` are none.
fn optional_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    match <Option<Cow<'de, str>>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => parse_jira_time(&text).map(Some).ok_or_else(|| de::Error::custom(TIME_EXPECTED)),
    }
}

/// The webhook's `timestamp`: milliseconds since the epoch (Jira Cloud), or a
/// Jira time string (older Jira Server documentation shows one).
fn millis_or_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    struct Millis;
    impl<'de> Visitor<'de> for Millis {
        type Value = Option<Timestamp>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("milliseconds since the epoch or a time")
        }
        fn visit_i64<E: de::Error>(self, millis: i64) -> Result<Self::Value, E> {
            Timestamp::from_unix_millis(millis).map(Some).ok_or_else(|| E::custom("timestamp out of range"))
        }
        fn visit_u64<E: de::Error>(self, millis: u64) -> Result<Self::Value, E> {
            let millis = i64::try_from(millis).map_err(|_| E::custom("timestamp out of range"))?;
            self.visit_i64(millis)
        }
        fn visit_f64<E: de::Error>(self, millis: f64) -> Result<Self::Value, E> {
            if millis.is_finite() && millis.fract() == 0.0 && millis.abs() < 9.0e15 {
                self.visit_i64(millis as i64)
            } else {
                Err(E::custom("timestamp out of range"))
            }
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            parse_jira_time(text).map(Some).ok_or_else(|| E::custom(TIME_EXPECTED))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Millis)
}

/// A string, or a number written as text: ids are strings in some payloads
/// and numbers in others. `null` is none.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct Lenient;
    impl<'de> Visitor<'de> for Lenient {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(text.to_string()))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Lenient)
}

fn required_lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    lenient_string(deserializer)?.ok_or_else(|| de::Error::custom("expected a string or an integer, found null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<&str>) {
        assert_eq!(parse_jira_time(text).map(Timestamp::to_rfc3339).as_deref(), expected, "{text}");
    }

    #[test]
    fn parses_jira_and_rfc3339_times() {
        check("2019-05-15T15:20:33.000+0000", Some("2019-05-15T15:20:33Z"));
        check("2019-11-23T07:42:08.827-0500", Some("2019-11-23T12:42:08.827Z"));
        check("2019-05-15T15:20:33+0000", Some("2019-05-15T15:20:33Z"));
        check("2019-05-15T15:20:33.000+00:00", Some("2019-05-15T15:20:33Z"));
        check("2019-11-22T17:13:15.221Z", Some("2019-11-22T17:13:15.221Z"));
        check("2019-05-15 15:20:33.000+0530", Some("2019-05-15T09:50:33Z"));
        check(" 2019-05-15T15:20:33 ", Some("2019-05-15T15:20:33Z"));
        check("2019-05-15T15:20:33.5", Some("2019-05-15T15:20:33.500Z"));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in ["", "soon", "2019-05-15", "2019-13-15T15:20:33.000+0000", "2019-05-15T15:20:33.000+00", "é"] {
            check(text, None);
        }
        check(&"9".repeat(100), None);
        check("99999-05-15T15:20:33.000+0000", None);
    }

    #[test]
    fn finds_the_site_of_a_url() {
        let site = |url: &str| site_of(url).map(|(_, host)| host);
        assert_eq!(site("https://Acme.atlassian.net/rest/api/2/10002").as_deref(), Some("acme.atlassian.net"));
        assert_eq!(site("http://jira.local:8080/rest/api/2/issue/1").as_deref(), Some("jira.local"));
        assert_eq!(site("https://user@jira.example.com").as_deref(), Some("jira.example.com"));
        assert_eq!(site("acme.atlassian.net/rest"), None);
        assert_eq!(site("ftp://acme.atlassian.net/"), None);
        assert_eq!(site("https:///rest"), None);
        assert_eq!(site("https://a b/rest"), None);
    }
}
