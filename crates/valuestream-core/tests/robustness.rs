//! "No input panics" (docs/operations.md), for every source in
//! `sources::SOURCES`: random bytes, random JSON-like text, and mutated
//! versions of every vendored payload of the source (every `*.json` under
//! `tests/data/{source}/`) go through the source's `parse`, each sent with
//! every header set of `tests/data/{source}/headers.json` (the headers a
//! source reads its event from; one empty set when the file is absent), and
//! through the reference finders of `link`. Each call must return (Ok or
//! Err), never panic or overflow the stack; an error has a message; span
//! events read back from their JSON and fold. A new source is covered by
//! putting its payloads (and, if it reads headers, a `headers.json`) in its
//! test-data folder: no test code. A few hand-made bad GitHub bodies must each
//! give an error whose message names the problem.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use valuestream_core::delivery::Delivery;
use valuestream_core::link::{find_closing_mentions, find_trace_refs};
use valuestream_core::sources::{ParseError, Parsed, SOURCES, Source, SourceOptions, github::GitHub};
use valuestream_core::span::{SpanEvent, fold};
use valuestream_core::time::Timestamp;

/// Nested arrays or objects this deep must be refused by the document depth
/// limit of 128 levels (checked over the whole body), never recursed into.
const DEEP: usize = 10_000;

/// One vendored payload: its source, file (below the source's folder), raw
/// bytes and parsed value (`None` for a file kept as a bad-input case because
/// it is not valid JSON: only its bytes are mutated).
struct Payload {
    source: &'static dyn Source,
    name: String,
    /// Headers the file recorded with it (a `{"headers": …, "payload": …}` file).
    headers: Vec<(String, String)>,
    bytes: Vec<u8>,
    value: Option<Value>,
}

/// A file's body and headers: a recorded delivery (`{"payload": {…}}`, with
/// `"headers": {…}` or not) gives both, any other file is the body alone.
fn recorded(bytes: Vec<u8>, value: Option<Value>) -> (Vec<(String, String)>, Vec<u8>, Option<Value>) {
    if let Some(Value::Object(file)) = &value
        && let Some(payload) = file.get("payload")
        && file.keys().all(|key| key == "headers" || key == "payload")
    {
        let headers = file.get("headers").and_then(Value::as_object).into_iter().flatten();
        let headers = headers.map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
        return (headers, serde_json::to_vec(payload).unwrap(), Some(payload.clone()));
    }
    (Vec::new(), bytes, value)
}

fn data_dir(source: &dyn Source) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(source.name())
}

/// Every `*.json` below `dir` but `headers.json`, sorted.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json") && !path.ends_with("headers.json") {
            out.push(path);
        }
    }
    out.sort();
}

static PAYLOADS: LazyLock<Vec<Payload>> = LazyLock::new(|| {
    let mut payloads = Vec::new();
    for &source in SOURCES {
        let mut files = Vec::new();
        json_files(&data_dir(source), &mut files);
        assert!(!files.is_empty(), "no vendored payloads for {} in {}", source.name(), data_dir(source).display());
        for path in files {
            let bytes = std::fs::read(&path).expect("payload file");
            let value = serde_json::from_slice(&bytes).ok();
            let (headers, bytes, value) = recorded(bytes, value);
            let name = path.strip_prefix(data_dir(source)).unwrap().display().to_string();
            payloads.push(Payload { source, name, headers, bytes, value });
        }
    }
    payloads
});

/// The header sets a source's payloads are sent with.
type HeaderSets = Vec<Vec<(String, String)>>;

/// Each source's header sets (`headers.json`: an array of objects), or one empty set.
static HEADERS: LazyLock<BTreeMap<&'static str, HeaderSets>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|source| {
            let path = data_dir(*source).join("headers.json");
            let sets = match std::fs::read(&path) {
                Ok(bytes) => {
                    let sets: Vec<BTreeMap<String, String>> =
                        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    sets.into_iter().map(|set| set.into_iter().collect()).collect()
                }
                Err(_) => vec![Vec::new()],
            };
            assert!(!sets.is_empty(), "{}: headers.json lists no header set", source.name());
            (source.name(), sets)
        })
        .collect()
});

fn delivery(source: &dyn Source, headers: &[(String, String)], body: &[u8], content_type: &str) -> Delivery {
    let mut all = headers.to_vec();
    all.push(("Content-Type".to_string(), content_type.to_string()));
    Delivery::new(source.name(), all, body.to_vec(), Timestamp(0))
}

/// GitHub's `X-GitHub-Event: {event}`, for the hand-made cases below.
fn github(event: &str, body: &[u8], content_type: &str) -> Delivery {
    delivery(&GitHub, &[("X-GitHub-Event".to_string(), event.to_string())], body, content_type)
}

fn parse(event: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    GitHub.parse(&github(event, body, "application/json"), "github:robustness-1", &SourceOptions::default())
}

/// Checks what a successful parse hands on: the store keeps span events as
/// JSON and folds them back, so they must round-trip and fold without panicking.
fn check_events(events: &[SpanEvent]) {
    for event in events {
        let text = serde_json::to_string(event).expect("span events serialize");
        let back: SpanEvent =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("span event does not read back ({e}): {text}"));
        assert_eq!(&with_floats_of(back, event), event, "span event changed through JSON");
    }
    let _ = fold(events);
}

/// `back` with each non-integer attribute number taken from `original` when
/// the two differ by at most a rounding error: without serde_json's
/// `float_roundtrip` feature, reading a float back from its own JSON text may
/// be off by one unit in the last place. Everything else must round-trip exactly.
fn with_floats_of(mut back: SpanEvent, original: &SpanEvent) -> SpanEvent {
    for (name, value) in back.attributes.iter_mut() {
        if let (Some(a), Some(Some(b))) = (value.as_f64(), original.attributes.get(name).map(Value::as_f64)) {
            let close = (a - b).abs() <= f64::EPSILON * 4.0 * a.abs().max(b.abs()) || (a - b).abs() < f64::MIN_POSITIVE;
            if value.is_f64() && a != b && close {
                *value = original.attributes[name].clone();
            }
        }
    }
    back
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// Throws `body`, sent as each of `content_types`, at `source` under each of
/// its header sets (after the `recorded` ones) and at the reference finders;
/// returns how many parses gave spans, a push or a ping (not `ignored`).
fn throw(
    source: &dyn Source,
    recorded: &[(String, String)],
    body: &[u8],
    content_types: &[&str],
    options: &SourceOptions,
) -> usize {
    let mut ok = 0;
    for set in &HEADERS[source.name()] {
        let headers: Vec<(String, String)> = recorded.iter().chain(set).cloned().collect();
        for &content_type in content_types {
            let delivery = delivery(source, &headers, body, content_type);
            let _ = source.event_type(&delivery);
            let _ = source.delivery_id(&delivery);
            match source.parse(&delivery, "robustness-1", options) {
                Ok(Parsed::Spans(events)) => {
                    check_events(&events);
                    ok += 1;
                }
                Ok(Parsed::Push(_) | Parsed::Pong) => ok += 1,
                // An event the source does not handle says nothing of the body.
                Ok(Parsed::Ignored { .. }) => {}
                Err(error) => {
                    let name = source.name();
                    assert!(
                        !error.to_string().trim().is_empty(),
                        "{name}: empty error message for {headers:?}: {error:?}"
                    )
                }
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let _ = find_trace_refs(&text);
    let _ = find_closing_mentions(&text);
    ok
}

/// [`throw`] at every source.
fn throw_everywhere(body: &[u8], content_types: &[&str]) {
    for &source in SOURCES {
        throw(source, &[], body, content_types, &SourceOptions::default());
    }
}

// ---------------------------------------------------------------- mutations

/// A value put in place of another, of a different JSON type where possible.
/// Raw replacements are JSON text `serde_json::Value` cannot hold.
#[derive(Clone, Debug)]
enum Replacement {
    Null,
    Bool(bool),
    Int(i64),
    /// Any u64 (ids and numbers past i64), put in place of any value, numbers too.
    Unsigned(u64),
    /// A string the sources read in a special way, put in place of any value, strings too.
    Odd(&'static str),
    Float(f64),
    Str(String),
    Array,
    Object,
    Raw(RawText),
}

#[derive(Clone, Debug)]
enum RawText {
    /// `1e400`, `-1e400`, `18446744073709551616`, … (outside f64 / u64 / i64).
    HugeNumber(&'static str),
    /// `[[[[…]]]]`, `DEEP` levels.
    DeepArrays,
    /// `{"a":{"a":…1…}}`, `DEEP` levels.
    DeepObjects,
}

/// Times, refs, names and states of the sources' own vocabulary, with odd
/// values of each: what a mutation puts in place of a string that matters.
const ODD_STRINGS: &[&str] = &[
    "2019-11-20 01:33:22 +9999",
    "9999-12-31T23:59:59Z",
    "0000-00-00T00:00:00Z",
    "2026-11-27T10:00:00+25:00",
    "refs/merge-requests/99999999999999999999/head",
    "refs/heads/",
    "origin/",
    "git@github.com:a/b.git",
    "https://gitlab.com/a/b/c",
    "job/a/job/b/",
    "STARTED",
    "COMPLETED",
    "FINALIZED",
    "SUCCESS",
    "ABORTED",
    "deploy:",
    "deploy-",
    "vstrace-github-a-1",
    "jira:issue_updated",
    "sprint_started",
    "start",
    "end",
    "%2F",
    "-1",
    "",
    " ",
    "\u{0}",
    "é",
];

const HUGE_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890123456789012345678901234567890",
    "1e-400",
    "-0",
];

impl RawText {
    fn text(&self) -> String {
        match self {
            RawText::HugeNumber(text) => text.to_string(),
            RawText::DeepArrays => format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP)),
            RawText::DeepObjects => format!("{}1{}", "{\"a\":".repeat(DEEP), "}".repeat(DEEP)),
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR bytes at some positions with a non-zero mask.
    FlipBytes(Vec<(Index, u8)>),
    /// Keep only a prefix of the body.
    Truncate(Index),
    /// Remove one key (anywhere) from its object.
    RemoveKey(Index),
    /// Replace one value (anywhere, the root included).
    Replace(Index, Replacement),
}

fn replacement() -> impl Strategy<Value = Replacement> {
    prop_oneof![
        Just(Replacement::Null),
        any::<bool>().prop_map(Replacement::Bool),
        any::<i64>().prop_map(Replacement::Int),
        any::<u64>().prop_map(Replacement::Unsigned),
        prop::sample::select(ODD_STRINGS).prop_map(Replacement::Odd),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Replacement::Float),
        ".{0,40}".prop_map(Replacement::Str),
        Just(Replacement::Array),
        Just(Replacement::Object),
        prop::sample::select(HUGE_NUMBERS).prop_map(|text| Replacement::Raw(RawText::HugeNumber(text))),
        Just(Replacement::Raw(RawText::DeepArrays)),
        Just(Replacement::Raw(RawText::DeepObjects)),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec((any::<Index>(), 1u8..=255), 1..8).prop_map(Mutation::FlipBytes),
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::RemoveKey),
        (any::<Index>(), replacement()).prop_map(|(at, with)| Mutation::Replace(at, with)),
    ]
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    At(usize),
}

/// Paths of every value in `value` (the root is the empty path).
fn value_paths(value: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                here.push(Seg::Key(key.clone()));
                value_paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Seg::At(i));
                value_paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'v>(value: &'v mut Value, path: &[Seg]) -> &'v mut Value {
    path.iter().fold(value, |value, seg| match seg {
        Seg::Key(key) => value.get_mut(key.as_str()).expect("path exists"),
        Seg::At(i) => value.get_mut(*i).expect("path exists"),
    })
}

fn same_type(a: &Value, b: &Replacement) -> bool {
    matches!(
        (a, b),
        (Value::Null, Replacement::Null)
            | (Value::Bool(_), Replacement::Bool(_))
            | (Value::Number(_), Replacement::Int(_) | Replacement::Float(_))
            | (Value::String(_), Replacement::Str(_))
            | (Value::Array(_), Replacement::Array)
            | (Value::Object(_), Replacement::Object)
    )
}

/// The body `mutation` makes of `payload`.
fn mutate(payload: &Payload, mutation: &Mutation) -> Vec<u8> {
    let Some(payload_value) = &payload.value else {
        // Not JSON: only its bytes can be changed.
        return match mutation {
            Mutation::Truncate(at) => payload.bytes[..at.index(payload.bytes.len())].to_vec(),
            _ => payload.bytes.iter().rev().copied().collect(),
        };
    };
    match mutation {
        Mutation::FlipBytes(flips) => {
            let mut bytes = payload.bytes.clone();
            for (at, mask) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            bytes
        }
        Mutation::Truncate(at) => payload.bytes[..at.index(payload.bytes.len())].to_vec(),
        Mutation::RemoveKey(at) => {
            let mut paths = Vec::new();
            value_paths(payload_value, &mut Vec::new(), &mut paths);
            let keys: Vec<&Vec<Seg>> = paths.iter().filter(|p| matches!(p.last(), Some(Seg::Key(_)))).collect();
            let mut value = payload_value.clone();
            let path = keys[at.index(keys.len())];
            let (Seg::Key(key), parent) = path.split_last().unwrap() else { unreachable!() };
            get_mut(&mut value, parent).as_object_mut().unwrap().remove(key);
            serde_json::to_vec(&value).unwrap()
        }
        Mutation::Replace(at, with) => {
            let mut paths = Vec::new();
            value_paths(payload_value, &mut Vec::new(), &mut paths);
            let mut value = payload_value.clone();
            let target = get_mut(&mut value, &paths[at.index(paths.len())]);
            // Same type as before is no type change: use null (or a number for null).
            let with = if same_type(target, with) {
                if target.is_null() { &Replacement::Int(27) } else { &Replacement::Null }
            } else {
                with
            };
            const MARKER: &str = "\u{1}robustness-raw-marker\u{1}";
            *target = match with {
                Replacement::Null => Value::Null,
                Replacement::Bool(b) => Value::Bool(*b),
                Replacement::Int(n) => Value::from(*n),
                Replacement::Unsigned(n) => Value::from(*n),
                Replacement::Odd(text) => Value::String(text.to_string()),
                Replacement::Float(f) => Value::from(*f),
                Replacement::Str(s) => Value::String(s.clone()),
                Replacement::Array => serde_json::json!([1, "two", null]),
                Replacement::Object => serde_json::json!({"unexpected": true}),
                Replacement::Raw(_) => Value::String(MARKER.into()),
            };
            let text = serde_json::to_string(&value).unwrap();
            match with {
                Replacement::Raw(raw) => {
                    let marker = serde_json::to_string(MARKER).unwrap();
                    assert!(text.contains(&marker));
                    text.replacen(&marker, &raw.text(), 1).into_bytes()
                }
                _ => text.into_bytes(),
            }
        }
    }
}

// ---------------------------------------------------------------- properties

/// `PROPTEST_CASES` when set (for a longer run), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Random bytes (almost never JSON) at every source, under every header set.
    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        throw_everywhere(&body, &[JSON, FORM]);
    }

    /// Random JSON-looking text: brackets, quotes, numbers and keys the parsers know.
    #[test]
    fn random_json_like_text_never_panics(body in json_like()) {
        throw_everywhere(body.as_bytes(), &[JSON, FORM]);
    }

    /// Random text through the reference finders, plus text built from their
    /// own vocabulary so the interesting branches run.
    #[test]
    fn link_finders_never_panic(
        text in any::<String>(),
        shaped in r"((?i)vstrace-|fix(es|ed)?|close[sd]?|resolve[sd]?|implement(s|ed)?|https?://|/issues/|/-/| |:|#|[0-9]{1,25}|[a-zA-Z._/-]{1,6}|é|\u{10FFFF}|\n){0,60}",
    ) {
        for text in [text.as_str(), shaped.as_str()] {
            let refs = find_trace_refs(text);
            for reference in &refs {
                prop_assert!(reference.starts_with("vstrace-"), "{reference:?}");
                prop_assert_eq!(reference, &reference.to_ascii_lowercase());
            }
            let _ = find_closing_mentions(text);
        }
    }

}

/// JSON-looking text: brackets, quotes, numbers, and keys and values the
/// sources read (GitHub, GitLab, Jenkins, Jira, customhttp).
fn json_like() -> impl Strategy<Value = String> {
    let keys = "action|issue|number|state|pull_request|repository|full_name|name|created_at|head|ref|sha|review\
        |object_kind|object_attributes|project|path_with_namespace|iid|updated_at|status|build_id|pipeline_id\
        |commits|timestamp|environment|deployment_id|build|phase|duration|parameters|scm|url|fullJobName|jobName\
        |result|startTime|endTime|scmInfo|branch|commit|value|webhookEvent|jira:issue_updated|sprint_started\
        |self|key|fields|created|statusCategory|changelog|items|sprint|id|start|end|type|namespace|parent_id|error";
    let pattern = format!(
        r#"(\{{|\}}|\[|\]|"|:|,|-?[0-9]{{1,30}}(\.[0-9]+)?(e[+-]?[0-9]{{1,4}})?|null|true|\\u[0-9a-fA-F]{{4}}|"({keys})"| ){{0,200}}"#
    );
    proptest::string::string_regex(&pattern).expect("a valid pattern")
}

proptest! {
    // Each case mutates every vendored payload (~110) and parses each under
    // its source's header sets (about 0.2 s per case in a debug build).
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// Every vendored payload of every source, mutated the same way, under
    /// each of its source's header sets, with and without the options a
    /// configuration may set (a deploy-job pattern, another default branch).
    #[test]
    fn mutated_payloads_never_panic(
        mutation in mutation(),
        form in any::<bool>(),
        pattern in prop::option::of("[a-z(|*^$.-]{0,8}"),
    ) {
        let options = SourceOptions { deploy_job_pattern: pattern, default_branch: "master".into(), ..SourceOptions::default() };
        for payload in PAYLOADS.iter() {
            let body = mutate(payload, &mutation);
            let headers = &payload.headers;
            throw(payload.source, headers, &body, &[if form { FORM } else { JSON }], &SourceOptions::default());
            throw(payload.source, headers, &body, &[JSON], &options);
        }
    }
}

// ---------------------------------------------------------------- named cases

fn err(event: &str, body: &[u8]) -> String {
    match parse(event, body) {
        Err(error) => {
            let message = error.to_string();
            assert!(!message.trim().is_empty(), "{event}: empty message");
            message
        }
        Ok(parsed) => panic!(
            "{event}: expected an error for {:?}, got {parsed:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    }
}

/// GitHub's vendored payloads (the hand-made cases below are GitHub's).
fn github_payloads() -> impl Iterator<Item = &'static Payload> {
    PAYLOADS.iter().filter(|p| p.source.name() == GitHub.name())
}

fn fixture(name: &str) -> Value {
    github_payloads()
        .find(|p| p.name == format!("{name}.json"))
        .unwrap_or_else(|| panic!("no payload {name}"))
        .value
        .clone()
        .expect("GitHub's payloads are JSON")
}

/// The payloads the tracked event types read, as (event, fixture, object key).
const TRACKED: &[(&str, &str, &str)] = &[
    ("issues", "issues.opened.org", "issue"),
    ("pull_request", "pull_request.opened.org.installation", "pull_request"),
    ("pull_request_review", "pull_request_review.submitted.org.installation", "pull_request"),
];

/// `payload` serialised with `field` of `object` replaced by raw JSON text.
fn with_raw(mut payload: Value, object: &str, field: &str, raw: &str) -> Vec<u8> {
    const MARKER: &str = "robustness-raw-marker";
    payload[object][field] = Value::String(MARKER.into());
    let text = serde_json::to_string(&payload).unwrap();
    let marker = format!("\"{MARKER}\"");
    assert!(text.contains(&marker));
    text.replacen(&marker, raw, 1).into_bytes()
}

#[test]
fn every_vendored_payload_parses_under_one_of_its_sources_header_sets() {
    // Per source: payloads that parse without an error under some header
    // set, and those that give spans, a push or a ping under one (so a
    // misspelt header, which only ever gives `ignored`, cannot pass).
    let mut parsed: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for payload in PAYLOADS.iter().filter(|p| p.value.is_some()) {
        let (mut without_error, mut meaningful) = (false, false);
        for set in &HEADERS[payload.source.name()] {
            let headers: Vec<(String, String)> = payload.headers.iter().chain(set).cloned().collect();
            let delivery = delivery(payload.source, &headers, &payload.bytes, JSON);
            match payload.source.parse(&delivery, "robustness-1", &SourceOptions::default()) {
                Ok(Parsed::Ignored { .. }) => without_error = true,
                Ok(_) => (without_error, meaningful) = (true, true),
                Err(_) => {}
            }
        }
        assert!(without_error, "{} {}: every header set gives an error", payload.source.name(), payload.name);
        let counts = parsed.entry(payload.source.name()).or_default();
        counts.0 += 1;
        counts.1 += usize::from(meaningful);
    }
    for source in SOURCES {
        let (payloads, meaningful) = parsed.get(source.name()).copied().unwrap_or_default();
        assert!(meaningful * 2 > payloads, "{}: only {meaningful} of {payloads} payloads give spans", source.name());
    }
    assert!(github_payloads().count() > 50, "GitHub's vendored payloads are read");
}

#[test]
fn the_unmutated_github_payloads_parse_under_the_event_their_name_gives() {
    for payload in github_payloads() {
        let event = payload.name.split('.').next().unwrap();
        let result = parse(event, &payload.bytes);
        assert!(result.is_ok(), "{}: {result:?}", payload.name);
    }
}

#[test]
fn empty_and_blank_bodies_are_errors() {
    for event in ["issues", "pull_request", "pull_request_review", "ping"] {
        for body in [&b""[..], b"   \n"] {
            let message = err(event, body);
            assert!(message.contains("not valid JSON"), "{event}: {message}");
            assert!(message.contains("EOF"), "{event}: {message}");
        }
    }
}

#[test]
fn a_body_that_is_not_an_object_is_an_error() {
    for &(event, _, _) in TRACKED {
        for body in [&b"[]"[..], b"[{\"action\":\"opened\"}]", b"null", b"27", b"\"text\""] {
            let message = err(event, body);
            // serde would read a struct from an array of its fields; the
            // document check refuses anything but an object first.
            assert!(message.contains("must be a JSON object"), "{event} {}: {message}", String::from_utf8_lossy(body));
        }
    }
}

/// serde_json deserialises a struct from a JSON array of its fields in order,
/// so `["opened", {issue}, {repository}]` is read as an `issues` payload.
/// GitHub never sends that; docs/operations.md wants wrong types refused.
#[test]
fn an_array_body_in_field_order_is_an_error() {
    let issue = fixture("issues.opened.org");
    let body = serde_json::to_vec(&serde_json::json!([issue["action"], issue["issue"], issue["repository"]])).unwrap();
    err("issues", &body);
}

#[test]
fn huge_or_wrong_numbers_are_errors_naming_the_field() {
    for &(event, fixture_name, object) in TRACKED {
        for raw in
            ["1e400", "-1e400", "18446744073709551616", "123456789012345678901234567890", "-1", "1.5", "\"27\"", "null"]
        {
            let body = with_raw(fixture(fixture_name), object, "number", raw);
            let message = err(event, &body);
            let path = format!("{object}.number");
            // An out-of-range number is a syntax error to serde_json; everything
            // else is a type error at the field's path.
            assert!(
                message.contains(&path) || message.contains("number out of range"),
                "{event} number={raw}: {message}"
            );
        }
    }
}

#[test]
fn invalid_utf8_in_a_read_string_is_an_error() {
    for &(event, fixture_name, object) in TRACKED {
        let field = if object == "issue" { "title" } else { "body" };
        // Raw text: a control character U+0001 inside the string, unescaped.
        let body = with_raw(fixture(fixture_name), object, field, "\"ok \u{1}\"");
        // A raw control character, then the same place with bytes that are not UTF-8.
        assert!(err(event, &body).contains("control character"));
        let mut invalid = body.clone();
        let at = invalid.iter().position(|b| *b == 1).unwrap();
        invalid.splice(at..at + 1, [0xff, 0xfe, 0xc3]);
        let message = err(event, &invalid);
        assert!(
            message.to_ascii_lowercase().contains("unicode") || message.to_ascii_lowercase().contains("utf-8"),
            "{event}: {message}"
        );
    }
    // ping reads the whole document.
    let message = err("ping", b"{\"zen\": \"\xff\xfe\"}");
    assert!(message.contains("UTF-8"), "{message}");
}

/// docs/operations.md lists invalid UTF-8 among the bad inputs that get a 4xx naming
/// the problem; a body that is not UTF-8 is not JSON (RFC 8259 §8.1).
#[test]
fn invalid_utf8_in_an_ignored_string_is_an_error() {
    for &(event, fixture_name, _) in TRACKED {
        let mut invalid = with_raw(fixture(fixture_name), "repository", "description", "\"ok \u{1}\"");
        let at = invalid.iter().position(|b| *b == 1).unwrap();
        invalid.splice(at..at + 1, [0xff, 0xfe, 0xc3]);
        err(event, &invalid);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let arrays = RawText::DeepArrays.text();
    let objects = RawText::DeepObjects.text();
    for raw in [&arrays, &objects] {
        // As the whole body.
        for event in ["issues", "pull_request", "pull_request_review", "ping"] {
            let message = err(event, raw.as_bytes());
            // Refused by the document check before any typed parse.
            assert!(
                message.contains("nested deeper than 128 levels") || message.contains("must be a JSON object"),
                "{event}: {message}"
            );
        }
        let message = err("ping", raw.as_bytes());
        assert!(message.contains("nested deeper") || message.contains("must be a JSON object"), "{message}");
        // Inside fields the parser reads.
        for &(event, fixture_name, object) in TRACKED {
            for (object, field) in [(object, "user"), (object, "labels"), (object, "title")] {
                let body = with_raw(fixture(fixture_name), object, field, raw);
                let message = err(event, &body);
                assert!(message.contains("nested deeper than 128 levels"), "{event} {object}.{field}: {message}");
            }
            // Inside a field it skips: refused too (see the test below).
            let body = with_raw(fixture(fixture_name), "repository", "owner", raw);
            assert!(err(event, &body).contains("nested deeper"));
        }
        // ping reads any JSON: deep nesting anywhere in it is refused.
        let body = with_raw(fixture("ping.repository-hook"), "hook", "config", raw);
        assert!(err("ping", &body).contains("nested deeper than 128 levels"));
    }
}

#[test]
fn truncated_payloads_are_errors() {
    for payload in github_payloads() {
        let event = payload.name.split('.').next().unwrap();
        if !["issues", "pull_request", "pull_request_review", "ping"].contains(&event) {
            continue;
        }
        let trimmed = payload.bytes.trim_ascii_end();
        for cut in [1, trimmed.len() / 2, trimmed.len() - 1] {
            let message = err(event, &trimmed[..cut]);
            assert!(message.contains("EOF"), "{} cut at {cut}: {message}", payload.name);
        }
    }
}

#[test]
fn a_form_body_without_payload_is_an_error() {
    for body in [&b"a=b&c=d"[..], b"", b"payload", b"%zz=%"] {
        let result = GitHub.parse(
            &github("issues", body, "application/x-www-form-urlencoded"),
            "github:robustness-1",
            &SourceOptions::default(),
        );
        let message = result.expect_err("a form body without JSON").to_string();
        assert!(!message.is_empty());
    }
}

/// docs/operations.md lists deep nesting among the bad inputs that get a 4xx. serde_json
/// skips unknown fields without a depth limit, so the document check counts
/// depth over the whole body, skipped fields included.
#[test]
fn deep_nesting_in_a_skipped_field_is_an_error() {
    for &(event, fixture_name, _) in TRACKED {
        let body = with_raw(fixture(fixture_name), "repository", "owner", &RawText::DeepArrays.text());
        let message = err(event, &body);
        assert!(message.contains("nested deeper than 128 levels"), "{event}: {message}");
    }
}
