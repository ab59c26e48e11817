//! Jenkins (sources.md, "Jenkins"): builds and deploys, from either of two
//! plugins, told apart by their fields:
//!
//! - the Statistics Gatherer plugin's build JSON (`jobName`, `fullJobName`,
//!   `number`, `result` = `INPROGRESS` while running, `startTime`, `endTime`,
//!   `duration`, `parameters`, `scmInfo`, `buildUrl`), the shape the original
//!   ValueStream read. The plugin sends one message when a build starts and one
//!   when it is finalized; the second carries neither the build's start time
//!   (its `startTime` is when the message was made) nor its parameters.
//! - the Notification plugin's JSON (`name`, `url`, `build{full_url, number,
//!   phase, status, timestamp, duration, parameters, scm}`), sent per phase:
//!   `QUEUED` and `STARTED` when the build starts (`timestamp` = queue entry and
//!   start), `COMPLETED` (`timestamp` = start + duration, the end) and
//!   `FINALIZED` (`timestamp` = when it was finalized). While `STARTED`, `status`
//!   may be the previous build's, so the phase alone says running or finished.
//!
//! Either way a build is one span, keyed `jenkins:{fullJobName}:{kind}:{number}`:
//! the running message starts it at the build's start, the finished one ends it
//! at the build's end, and the events sort by those payload times, so their
//! arrival order does not matter.

use super::{ParseError, Parsed, Source, SourceOptions, dedup_in_order, field_error, insert_opt, parse_json};
use crate::delivery::Delivery;
use crate::link::{ParentRef, branch_alias, deployed_alias, find_trace_refs, generic_ref, sha_alias};
use crate::span::{Attributes, Change, SpanEvent};
use crate::time::Timestamp;
use crate::verify::{AuthError, verify_token};
use crate::vocab::{action, attr};
use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

pub struct Jenkins;

/// Where the token is looked for, as authentication errors name it.
const TOKEN: &str = "Authorization (or ?token=)";

/// The parameter that names a build's parent explicitly (the original's name).
const TRACE_ID_PARAMETER: &str = "vstrace-trace-id";

/// The deploy environment when the build does not name one.
const DEFAULT_ENVIRONMENT: &str = "production";

impl Source for Jenkins {
    fn name(&self) -> &'static str {
        "jenkins"
    }

    fn secret_variable(&self) -> &'static str {
        "VS_JENKINS_TOKEN"
    }

    fn secret_help(&self) -> &'static str {
        "token of Jenkins notifications (Authorization: Bearer <token>, or ?token=<token>)"
    }

    /// `Authorization: Bearer …` (the `?token=` query parameter is never stored either).
    fn credential_headers(&self) -> &'static [&'static str] {
        &["Authorization"]
    }

    /// The token of `Authorization: Bearer …`, else of the `?token=` query parameter.
    fn authenticate(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), AuthError> {
        let token = delivery
            .header("Authorization")
            .and_then(bearer_token)
            .map(str::to_string)
            .or_else(|| delivery.query_param("token"));
        verify_token(secrets, TOKEN, token.as_deref())
    }

    /// Jenkins sends no delivery id; the store uses the content hash.
    fn delivery_id(&self, _delivery: &Delivery) -> Option<String> {
        None
    }

    fn event_type(&self, delivery: &Delivery) -> String {
        let shape = delivery.json_body().ok().and_then(|body| Shape::of(&body).ok());
        match shape {
            Some(Shape::Statistics) => "build",
            Some(Shape::Notification) => "notification",
            Some(Shape::Other) | None => "other",
        }
        .to_string()
    }

    fn event_types(&self) -> Vec<&'static str> {
        vec!["build", "notification", "other"]
    }

    fn span_kinds(&self) -> Option<&'static [&'static str]> {
        Some(&["build", "deploy"])
    }

    fn parse(&self, delivery: &Delivery, delivery_id: &str, options: &SourceOptions) -> Result<Parsed, ParseError> {
        let body = delivery.json_body().map_err(ParseError::Body)?;
        let received_at = delivery.received_at;
        let build = match Shape::of(&body)? {
            Shape::Statistics => parse_json::<StatisticsBuild>(&body)?.into_build(received_at)?,
            Shape::Notification => match parse_json::<Notification>(&body)?.into_build(received_at)? {
                Ok(build) => build,
                Err(reason) => return Ok(Parsed::Ignored { reason: reason.to_string() }),
            },
            Shape::Other => {
                return Ok(Parsed::Ignored {
                    reason: "not a Jenkins build message (neither the Statistics Gatherer's build JSON nor the Notification plugin's)".into(),
                });
            }
        };
        // The Statistics Gatherer's completion message carries no parameters,
        // so a job that is a deploy only by its `type=deploy` parameter cannot
        // be told from a build. Then the message goes to both keys,
        // tentatively: it applies to whichever span the started message made.
        let uncertain = !build.names_parents && !build.is_deploy(options);
        let event = build.span_event(delivery_id, options);
        if !uncertain {
            return Ok(Parsed::Spans(vec![event]));
        }
        let mut as_build = event;
        as_build.tentative = true;
        let mut as_deploy = as_build.clone();
        as_deploy.key = as_build.key.replacen(":build:", ":deploy:", 1);
        as_deploy.kind = "deploy".into();
        as_deploy.trace_refs.clear();
        Ok(Parsed::Spans(vec![as_build, as_deploy]))
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

// ---------------------------------------------------------------- shapes

/// Which plugin's JSON a body is.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    /// The Statistics Gatherer's build JSON.
    Statistics,
    /// The Notification plugin's job state.
    Notification,
    /// Anything else (the Statistics Gatherer's queue or job JSON, for example).
    Other,
}

/// The top-level fields that tell the shapes apart.
#[derive(Deserialize)]
struct Probe {
    build: Option<IgnoredAny>,
    #[serde(rename = "fullJobName")]
    full_job_name: Option<IgnoredAny>,
    #[serde(rename = "buildUrl")]
    build_url: Option<IgnoredAny>,
    number: Option<IgnoredAny>,
    result: Option<IgnoredAny>,
}

impl Shape {
    /// The Notification plugin nests the build under `build`; the Statistics
    /// Gatherer's build JSON is flat. Its queue JSON (`jobName`, `status`,
    /// `entryTime` …) has none of the build's fields and is `Other`.
    fn of(body: &[u8]) -> Result<Shape, ParseError> {
        let probe: Probe = parse_json(body)?;
        Ok(if probe.build.is_some() {
            Shape::Notification
        } else if probe.full_job_name.is_some()
            || probe.build_url.is_some()
            || probe.number.is_some()
            || probe.result.is_some()
        {
            Shape::Statistics
        } else {
            Shape::Other
        })
    }
}

#[derive(Deserialize, Default)]
struct Scm {
    url: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
}

/// The Statistics Gatherer plugin's build JSON (`BuildStats`, serialised by
/// Jackson: times are milliseconds since the epoch).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatisticsBuild {
    job_name: Option<String>,
    full_job_name: Option<String>,
    number: u64,
    result: String,
    start_time: Option<i64>,
    end_time: Option<i64>,
    duration: Option<i64>,
    #[serde(default)]
    parameters: Parameters,
    scm_info: Option<Scm>,
    build_url: Option<String>,
    ci_url: Option<String>,
}

impl StatisticsBuild {
    fn into_build(self, received_at: Timestamp) -> Result<Build, ParseError> {
        let job_name = non_empty(self.job_name);
        let full_name = non_empty(self.full_job_name)
            .or_else(|| job_name.clone())
            .ok_or_else(|| field_error("fullJobName", "missing (and no `jobName`)"))?;
        let short_name = job_name.unwrap_or_else(|| last_segment(&full_name).to_string());
        let start_time = jenkins_time(self.start_time, "startTime")?;
        let end_time = jenkins_time(self.end_time, "endTime")?;
        let duration = duration_nanos(self.duration, "duration")?;
        let state = if self.result.trim().eq_ignore_ascii_case("INPROGRESS") {
            // `endTime` and `duration` of a running build are placeholders.
            State::Running { start: start_time.unwrap_or(received_at) }
        } else {
            // The finalized message's `startTime` is when the message was made,
            // so the start is the end less the duration (or an earlier `startTime`).
            let end = match (end_time, start_time, duration) {
                (Some(end), _, _) => end,
                (None, Some(start), Some(duration)) => add(start, duration, "duration")?,
                _ => received_at,
            };
            let from_duration = duration.map(|d| subtract(end, d, "duration")).transpose()?;
            let start = match (from_duration, start_time) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            State::Finished { start, end, result: Some(self.result) }
        };
        let url = non_empty(self.build_url).map(|build_url| match non_empty(self.ci_url) {
            Some(ci_url) if !build_url.contains("://") => {
                format!("{}/{}", ci_url.trim_end_matches('/'), build_url.trim_start_matches('/'))
            }
            _ => build_url,
        });
        // The plugin's finalized message carries no parameters: parent
        // references from it alone would replace the started message's
        // (`vstrace-trace-id`) when the span is folded, so it names none.
        let names_parents = matches!(state, State::Running { .. }) || !self.parameters.0.is_empty();
        let mut build = Build::new(full_name, short_name, self.number, self.parameters, self.scm_info, url, state);
        build.names_parents = names_parents;
        Ok(build)
    }
}

/// The Notification plugin's `JobState` (serialised by Gson with lower-case
/// underscored names; absent values are left out).
#[derive(Deserialize)]
struct Notification {
    name: Option<String>,
    url: Option<String>,
    build: NotificationBuild,
}

#[derive(Deserialize)]
struct NotificationBuild {
    full_url: Option<String>,
    number: u64,
    phase: String,
    status: Option<String>,
    timestamp: Option<i64>,
    duration: Option<i64>,
    url: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    scm: Option<Scm>,
}

impl Notification {
    /// The build this message describes, or why it is not tracked.
    fn into_build(self, received_at: Timestamp) -> Result<Result<Build, &'static str>, ParseError> {
        let Notification { name, url, build } = self;
        let timestamp = jenkins_time(build.timestamp, "build.timestamp")?;
        let duration = duration_nanos(build.duration, "build.duration")?;
        let state = match build.phase.trim().to_ascii_uppercase().as_str() {
            "QUEUED" => {
                return Ok(Err("Jenkins Notification phase QUEUED: the build has not started (STARTED follows)"));
            }
            "STARTED" => State::Running { start: timestamp.unwrap_or(received_at) },
            // COMPLETED: timestamp = start + duration; FINALIZED: the time it was finalized.
            "COMPLETED" | "FINALIZED" => {
                let end = timestamp.unwrap_or(received_at);
                let start = duration.map(|d| subtract(end, d, "build.duration")).transpose()?;
                State::Finished { start, end, result: build.status }
            }
            _ => {
                return Ok(Err(
                    "Jenkins Notification phase is not tracked (only QUEUED, STARTED, COMPLETED and FINALIZED are known)",
                ));
            }
        };
        // `url` is the job's (`job/team-a/job/service/`): it gives the full name of folder jobs.
        let name = non_empty(name);
        let full_name = [&url, &build.url, &build.full_url]
            .into_iter()
            .find_map(|url| url.as_deref().and_then(job_path))
            .or_else(|| name.clone())
            .ok_or_else(|| field_error("name", "missing (and no job `url`)"))?;
        let short_name = name.unwrap_or_else(|| last_segment(&full_name).to_string());
        let build_url = non_empty(build.full_url).or(non_empty(build.url));
        Ok(Ok(Build::new(full_name, short_name, build.number, build.parameters, build.scm, build_url, state)))
    }
}

// ---------------------------------------------------------------- parameters

/// Build parameters in the order sent: a JSON object `{name: value}` (both
/// plugins) or a list of `{name, value}` (Jenkins' remote API). Values may be
/// strings, numbers, booleans or null (left out).
#[derive(Default, Debug)]
struct Parameters(Vec<(String, String)>);

impl Parameters {
    /// The value of parameter `name`: the exact name first, else any case.
    fn get(&self, name: &str) -> Option<&str> {
        let exact = self.0.iter().find(|(n, _)| n == name);
        let any_case = || self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        exact.or_else(any_case).map(|(_, value)| value.as_str())
    }
}

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParametersVisitor)
    }
}

struct ParametersVisitor;

impl<'de> Visitor<'de> for ParametersVisitor {
    type Value = Parameters;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of parameter values or a list of {name, value}")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Parameters, E> {
        Ok(Parameters::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<Parameters, E> {
        Ok(Parameters::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parameters, A::Error> {
        let mut parameters = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if let ParameterValue(Some(value)) = map.next_value()? {
                parameters.push((name, value));
            }
        }
        Ok(Parameters(parameters))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parameters, A::Error> {
        let mut parameters = Vec::new();
        while let Some(NamedParameter { name, value }) = seq.next_element()? {
            if let ParameterValue(Some(value)) = value {
                parameters.push((name, value));
            }
        }
        Ok(Parameters(parameters))
    }
}

#[derive(Deserialize)]
struct NamedParameter {
    name: String,
    #[serde(default)]
    value: ParameterValue,
}

/// One parameter's value as text; `None` for null.
#[derive(Default)]
struct ParameterValue(Option<String>);

impl<'de> Deserialize<'de> for ParameterValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParameterValueVisitor)
    }
}

struct ParameterValueVisitor;

impl Visitor<'_> for ParameterValueVisitor {
    type Value = ParameterValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ParameterValue, E> {
        Ok(ParameterValue(Some(value.to_string())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<ParameterValue, E> {
        Ok(ParameterValue(Some(value)))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<ParameterValue, E> {
        Ok(ParameterValue(Some(value.to_string())))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<ParameterValue, E> {
        Ok(ParameterValue(Some(value.to_string())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<ParameterValue, E> {
        Ok(ParameterValue(Some(value.to_string())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<ParameterValue, E> {
        Ok(ParameterValue(Some(value.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<ParameterValue, E> {
        Ok(ParameterValue(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<ParameterValue, E> {
        Ok(ParameterValue(None))
    }
}

// ---------------------------------------------------------------- the build

/// Whether a message reports the build running or finished, with its times.
enum State {
    Running { start: Timestamp },
    Finished { start: Option<Timestamp>, end: Timestamp, result: Option<String> },
}

/// What either plugin says about one build.
struct Build {
    /// `team-a/service` for a job in folder `team-a`.
    full_name: String,
    /// `service`.
    short_name: String,
    number: u64,
    parameters: Parameters,
    scm_url: Option<String>,
    /// Without `origin/`.
    branch: Option<String>,
    commit: Option<String>,
    url: Option<String>,
    state: State,
    /// Whether the message knows enough to say where the build looks for its parent.
    names_parents: bool,
}

impl Build {
    fn new(
        full_name: String,
        short_name: String,
        number: u64,
        parameters: Parameters,
        scm: Option<Scm>,
        url: Option<String>,
        state: State,
    ) -> Build {
        let scm = scm.unwrap_or_default();
        Build {
            full_name,
            short_name,
            number,
            parameters,
            scm_url: non_empty(scm.url),
            branch: non_empty(scm.branch.map(|b| strip_remote(&b).to_string())),
            commit: non_empty(scm.commit),
            url,
            state,
            names_parents: true,
        }
    }

    /// sources.md: a deploy when the job name starts with `deploy:` or
    /// `deploy-`, its parameter `type` is `deploy`, or its full name matches
    /// the configured pattern.
    fn is_deploy(&self, options: &SourceOptions) -> bool {
        let prefixed = |name: &str| {
            let name = name.trim_start().to_ascii_lowercase();
            name.starts_with("deploy:") || name.starts_with("deploy-")
        };
        prefixed(&self.short_name)
            || prefixed(last_segment(&self.full_name))
            || self.parameters.get("type").is_some_and(|t| t.trim().eq_ignore_ascii_case("deploy"))
            || options.deploy_job_pattern.as_deref().is_some_and(|pattern| pattern_matches(pattern, &self.full_name))
    }

    fn environment(&self) -> String {
        self.parameters
            .get("environment")
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .unwrap_or(DEFAULT_ENVIRONMENT)
            .to_string()
    }

    fn span_event(self, delivery_id: &str, options: &SourceOptions) -> SpanEvent {
        let deploy = self.is_deploy(options);
        let kind = if deploy { "deploy" } else { "build" };
        let number = self.number.to_string();
        let repo = self.scm_url.as_deref().and_then(repo_of_url);

        // Builds and deploys alike are pipeline runs: Jenkins builds a job.
        let mut attributes = Attributes::new();
        attributes.insert(attr::PIPELINE_ACTION.into(), json!(action::BUILD));
        attributes.insert(attr::PIPELINE_NAME.into(), json!(self.full_name));
        attributes.insert("cicd.pipeline.run.id".into(), json!(number));
        if self.branch.is_some() {
            attributes.insert("vcs.ref.head.type".into(), json!("branch"));
        }
        insert_opt(&mut attributes, "vcs.ref.head.name", self.branch.clone());
        insert_opt(&mut attributes, "vcs.ref.head.revision", self.commit.clone());
        insert_opt(&mut attributes, "cicd.pipeline.run.url.full", self.url.clone());
        // The repository the SCM names (the same that links the build).
        if let Some((source, repo)) = &repo {
            attributes.insert("vcs.provider.name".into(), json!(source));
            let (owner, name) = repo.rsplit_once('/').unwrap_or(("", repo));
            attributes.insert("vcs.repository.name".into(), json!(name));
            if !owner.is_empty() {
                attributes.insert("vcs.owner.name".into(), json!(owner));
            }
            let page = self.scm_url.as_deref().and_then(repository_page);
            insert_opt(&mut attributes, "vcs.repository.url.full", page);
        }
        if deploy {
            attributes.insert("deployment.environment.name".into(), json!(self.environment()));
            attributes.insert("deployment.name".into(), json!(self.short_name));
        }

        let (change, at) = match self.state {
            State::Running { start } => (Change::Start { start }, start),
            State::Finished { start, end, ref result } => {
                let jenkins_result = result.as_deref().map(|r| r.trim().to_ascii_uppercase());
                let outcome = outcome(jenkins_result.as_deref());
                if let Some(result) = pipeline_result(outcome) {
                    attributes.insert("cicd.pipeline.result".into(), json!(result));
                }
                if let Some(result) = jenkins_result.filter(|r| JENKINS_RESULTS.contains(&r.as_str())) {
                    if result == "UNSTABLE" {
                        // More specific than `failure`: the build ran, its tests failed.
                        attributes.insert("error.type".into(), json!("unstable"));
                    }
                    attributes.insert("valuestream.jenkins.result".into(), json!(result));
                }
                // A finished message sorts after the running one of the same build.
                let at = end.max(start.unwrap_or(end));
                (Change::End { start, end, outcome: outcome.to_string() }, at)
            }
        };

        // linking.md, best first: the explicit parameter, references in any
        // parameter, references in the branch, then the pull request of the
        // deployed commit (deploys) and of the branch.
        let mut parent_refs: Vec<ParentRef> = Vec::new();
        if let Some(id) = self.parameters.get(TRACE_ID_PARAMETER).map(str::trim).filter(|id| !id.is_empty()) {
            parent_refs.push(id.to_ascii_lowercase());
        }
        for (_, value) in &self.parameters.0 {
            parent_refs.extend(find_trace_refs(value));
        }
        if let Some(branch) = &self.branch {
            parent_refs.extend(find_trace_refs(branch));
        }
        let mut trace_refs: Vec<String> = ref_names(&self.short_name, deploy)
            .into_iter()
            .map(|name| generic_ref("jenkins", kind, &name, &number))
            .collect();
        let mut link_refs = Vec::new();
        if let Some((source, repo)) = &repo {
            if let (true, Some(commit)) = (deploy, &self.commit) {
                parent_refs.push(sha_alias(source, repo, commit));
                trace_refs.push(deployed_alias(source, repo, commit));
                link_refs.push(sha_alias(source, repo, commit));
            }
            if let Some(branch) = &self.branch {
                parent_refs.push(branch_alias(source, repo, branch));
            }
        }
        if !self.names_parents {
            parent_refs.clear();
        }
        dedup_in_order(&mut parent_refs);
        dedup_in_order(&mut trace_refs);

        let project = match self.full_name.rsplit_once('/') {
            Some((folder, _)) if !folder.is_empty() => folder.to_string(),
            _ => self.full_name.clone(),
        };
        SpanEvent {
            key: format!("jenkins:{}:{kind}:{number}", self.full_name),
            source: "jenkins".into(),
            kind: kind.into(),
            name: format!("{}#{number}", self.short_name),
            repo: repo.map(|(_, repo)| repo),
            project: Some(project),
            at,
            delivery_id: delivery_id.to_string(),
            change,
            attributes,
            first_times: BTreeMap::new(),
            parent_refs,
            trace_refs,
            link_refs,
            tentative: false,
        }
    }
}

/// The results Jenkins reports for a finished build.
const JENKINS_RESULTS: &[&str] = &["SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED"];

/// sources.md: SUCCESS → success; FAILURE, UNSTABLE → failure; ABORTED → cancelled.
fn outcome(result: Option<&str>) -> &'static str {
    match result {
        Some("SUCCESS") => "success",
        Some("FAILURE" | "UNSTABLE") => "failure",
        Some("ABORTED") => "cancelled",
        Some("NOT_BUILT") => "skipped",
        _ => "unknown",
    }
}

/// OpenTelemetry's `cicd.pipeline.result` for an outcome (none when unknown).
fn pipeline_result(outcome: &str) -> Option<&'static str> {
    match outcome {
        "success" => Some("success"),
        "failure" => Some("failure"),
        "cancelled" => Some("cancellation"),
        "skipped" => Some("skip"),
        _ => None,
    }
}

// ---------------------------------------------------------------- helpers

/// Times at or above this are milliseconds (1973-03-03 as milliseconds, the
/// year 5138 as seconds); below it, seconds. Both plugins send milliseconds;
/// the original ValueStream's hand-written payloads carry seconds.
const MILLIS_FROM: i64 = 100_000_000_000;

/// A Jenkins epoch time; 0 and absent mean "not given".
fn jenkins_time(value: Option<i64>, path: &str) -> Result<Option<Timestamp>, ParseError> {
    match value {
        None | Some(0) => Ok(None),
        Some(v) if v < 0 => Err(field_error(path, "time before 1970")),
        Some(v) if v < MILLIS_FROM => Ok(Timestamp::from_unix_seconds(v)),
        Some(v) => Timestamp::from_unix_millis(v).map(Some).ok_or_else(|| field_error(path, "time out of range")),
    }
}

/// A duration in milliseconds, as nanoseconds.
fn duration_nanos(value: Option<i64>, path: &str) -> Result<Option<i64>, ParseError> {
    match value {
        None => Ok(None),
        Some(v) if v < 0 => Err(field_error(path, "negative duration")),
        Some(v) => v.checked_mul(1_000_000).map(Some).ok_or_else(|| field_error(path, "duration out of range")),
    }
}

fn add(time: Timestamp, nanos: i64, path: &str) -> Result<Timestamp, ParseError> {
    time.0.checked_add(nanos).map(Timestamp).ok_or_else(|| field_error(path, "duration out of range"))
}

fn subtract(time: Timestamp, nanos: i64, path: &str) -> Result<Timestamp, ParseError> {
    match time.0.checked_sub(nanos) {
        Some(start) if start >= 0 => Ok(Timestamp(start)),
        _ => Err(field_error(path, "duration is longer than the time since 1970")),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn last_segment(full_name: &str) -> &str {
    full_name.rsplit('/').next().unwrap_or(full_name)
}

/// A branch without its remote: `origin/main`, `refs/remotes/origin/main` and
/// `refs/heads/main` are all `main`.
fn strip_remote(branch: &str) -> &str {
    let branch = branch.trim();
    ["refs/remotes/origin/", "remotes/origin/", "origin/", "refs/heads/"]
        .iter()
        .find_map(|prefix| branch.strip_prefix(prefix))
        .unwrap_or(branch)
}

/// The full job name in a Jenkins job or build URL: `job/team-a/job/service/`
/// (or `https://ci/job/team-a/job/service/7/`) is `team-a/service`.
fn job_path(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let mut segments = path.split('/');
    let mut names = Vec::new();
    while let Some(segment) = segments.next() {
        if segment == "job" {
            match segments.next() {
                Some(name) if !name.is_empty() => names.push(percent_decode(name)),
                _ => break,
            }
        }
    }
    (!names.is_empty()).then(|| names.join("/"))
}

/// `%XX` escapes decoded once (Jenkins escapes job names in URLs).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The source and repository of a GitHub or GitLab remote URL:
/// `https://github.com/owner/repo(.git)`, `git@github.com:owner/repo.git`,
/// `ssh://git@gitlab.example.com:2222/group/sub/project.git`. GitHub names are
/// `owner/repo`; GitLab names are the whole namespace path. Other hosts: `None`.
fn repo_of_url(url: &str) -> Option<(&'static str, String)> {
    let url = url.trim();
    let (authority, path) = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?,
        // scp-like syntax: [user@]host:path
        None => url.split_once(':').filter(|(host, _)| !host.contains('/'))?,
    };
    let host = authority.rsplit('@').next()?.split(':').next()?.to_ascii_lowercase();
    let source = if host.contains("github") {
        "github"
    } else if host.contains("gitlab") {
        "gitlab"
    } else {
        return None;
    };
    let path = path.split(['?', '#']).next()?.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let segments = match source {
        "github" => segments.get(..2)?,
        _ if segments.len() >= 2 => &segments[..],
        _ => return None,
    };
    Some((source, segments.join("/")))
}

/// The web page of the repository of a GitHub or GitLab remote URL, without
/// credentials, port of an SSH remote or `.git`: `git@github.com:o/r.git` and
/// `https://bot:s3cret@github.com/o/r.git` are `https://github.com/o/r`.
fn repository_page(url: &str) -> Option<String> {
    let (_, repo) = repo_of_url(url)?;
    let url = url.trim();
    let (scheme, host) = match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split_once('/')?.0.rsplit('@').next()?;
            match scheme.to_ascii_lowercase().as_str() {
                web @ ("https" | "http") => (web.to_string(), host.to_ascii_lowercase()),
                _ => ("https".to_string(), host.split(':').next()?.to_ascii_lowercase()),
            }
        }
        None => ("https".to_string(), url.split_once(':')?.0.rsplit('@').next()?.to_ascii_lowercase()),
    };
    Some(format!("{scheme}://{host}/{repo}"))
}

/// The names a build answers to in `vstrace-jenkins-{kind}-{name}-{number}`:
/// its short job name with characters a reference cannot hold replaced by `-`,
/// and for deploys also without the `deploy:`/`deploy-` prefix
/// (`deploy-service` #7 answers to `vstrace-jenkins-deploy-service-7`).
fn ref_names(short_name: &str, deploy: bool) -> Vec<String> {
    let mut names = vec![reference_safe(short_name)];
    if deploy {
        let lower = short_name.trim().to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("deploy:").or_else(|| lower.strip_prefix("deploy-")) {
            names.push(reference_safe(rest));
        }
    }
    names.retain(|name| !name.is_empty());
    dedup_in_order(&mut names);
    names
}

/// `text` with runs of characters outside `[A-Za-z0-9._]` made one `-`, trimmed of `-`.
fn reference_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Whether the configured deploy pattern matches `full_name`. The compiled
/// pattern is kept per thread; a pattern that does not compile matches nothing
/// (the configuration check reports it).
fn pattern_matches(pattern: &str, full_name: &str) -> bool {
    thread_local! {
        static COMPILED: RefCell<Option<(String, Option<Regex>)>> = const { RefCell::new(None) };
    }
    COMPILED.with(|compiled| {
        let mut compiled = compiled.borrow_mut();
        if compiled.as_ref().is_none_or(|(known, _)| known != pattern) {
            *compiled = Some((pattern.to_string(), Regex::new(pattern).ok()));
        }
        compiled.as_ref().and_then(|(_, regex)| regex.as_ref()).is_some_and(|regex| regex.is_match(full_name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_remote_urls() {
        let check = |url: &str, expected: Option<(&str, &str)>| {
            assert_eq!(repo_of_url(url), expected.map(|(s, r)| (s, r.to_string())), "{url}");
        };
        check("https://github.com/octo-org/service.git", Some(("github", "octo-org/service")));
        check("https://github.com/octo-org/service", Some(("github", "octo-org/service")));
        check("https://github.com/octo-org/service/", Some(("github", "octo-org/service")));
        check("git@github.com:octo-org/service.git", Some(("github", "octo-org/service")));
        check("ssh://git@github.com:22/octo-org/service.git", Some(("github", "octo-org/service")));
        check("https://bot:s3cret@github.com/octo-org/service.git", Some(("github", "octo-org/service")));
        check("https://gitlab.com/acme/platform/service.git", Some(("gitlab", "acme/platform/service")));
        check("git@gitlab.example.com:acme/service.git", Some(("gitlab", "acme/service")));
        check("https://bitbucket.org/acme/service.git", None);
        check("aGithubUrl", None);
        check("https://github.com/octo-org", None);
        check("", None);
    }

    #[test]
    fn repository_pages_of_remote_urls() {
        let check = |url: &str, expected: Option<&str>| assert_eq!(repository_page(url).as_deref(), expected, "{url}");
        check("https://github.com/octo-org/service.git", Some("https://github.com/octo-org/service"));
        check("https://bot:s3cret@github.com/octo-org/service.git", Some("https://github.com/octo-org/service"));
        check("git@github.com:octo-org/service.git", Some("https://github.com/octo-org/service"));
        check(
            "ssh://git@gitlab.example.com:2222/acme/sub/service.git",
            Some("https://gitlab.example.com/acme/sub/service"),
        );
        check("http://gitlab.internal:8080/acme/service", Some("http://gitlab.internal:8080/acme/service"));
        check("https://bitbucket.org/acme/service.git", None);
    }

    #[test]
    fn job_paths_of_urls() {
        assert_eq!(job_path("job/team-a/job/service/"), Some("team-a/service".into()));
        assert_eq!(job_path("https://ci.example.com/job/team-a/job/service/7/"), Some("team-a/service".into()));
        assert_eq!(job_path("job/service/"), Some("service".into()));
        assert_eq!(job_path("job/org/job/repo/job/feature%252Flogin/"), Some("org/repo/feature%2Flogin".into()));
        assert_eq!(job_path("job/my%20job/"), Some("my job".into()));
        assert_eq!(job_path("aUrl"), None);
        assert_eq!(job_path("job/"), None);
    }

    #[test]
    fn branches_lose_their_remote() {
        assert_eq!(strip_remote("origin/main"), "main");
        assert_eq!(strip_remote("refs/remotes/origin/feature/x"), "feature/x");
        assert_eq!(strip_remote("refs/heads/main"), "main");
        assert_eq!(strip_remote("main"), "main");
        assert_eq!(strip_remote("upstream/main"), "upstream/main");
    }

    #[test]
    fn reference_names_are_reference_safe() {
        assert_eq!(ref_names("service", false), vec!["service"]);
        assert_eq!(ref_names("deploy-service", true), vec!["deploy-service", "service"]);
        assert_eq!(ref_names("deploy:jenkins_test", true), vec!["deploy-jenkins_test", "jenkins_test"]);
        assert_eq!(ref_names("My Job (nightly)", false), vec!["My-Job-nightly"]);
        assert!(ref_names("::", false).is_empty());
    }

    #[test]
    fn times_in_seconds_or_milliseconds() {
        let at = |v| jenkins_time(Some(v), "t").unwrap().unwrap().to_rfc3339();
        assert_eq!(at(1795168800000), "2026-11-20T10:00:00Z");
        assert_eq!(at(1469453903), "2016-07-25T13:38:23Z");
        assert_eq!(jenkins_time(Some(0), "t").unwrap(), None);
        assert!(jenkins_time(Some(-1), "t").is_err());
        assert!(jenkins_time(Some(i64::MAX), "t").is_err());
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic YWJj"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
