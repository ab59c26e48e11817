//! "No input panics" (docs/operations.md): random bytes and
//! mutated versions of every vendored GitHub payload (tests/data/github) go
//! through `GitHub.parse` under every event type, and through the reference
//! finders of `link`; each call must return (Ok or Err), never panic or
//! overflow the stack. A few hand-made bad bodies must each give an error whose
//! message names the problem.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use std::sync::LazyLock;
use valuestream_core::delivery::Delivery;
use valuestream_core::link::{find_closing_mentions, find_trace_refs};
use valuestream_core::sources::{ParseError, Parsed, Source, SourceOptions, github::GitHub};
use valuestream_core::span::{SpanEvent, fold};
use valuestream_core::time::Timestamp;

/// Every event type the GitHub parser is called with (each vendored payload
/// is thrown at every one of them, mutated).
const EVENTS: &[&str] = &[
    "issues",
    "pull_request",
    "pull_request_review",
    "ping",
    "push",
    "workflow_run",
    "workflow_job",
    "deployment",
    "deployment_status",
];

/// Nested arrays or objects this deep must be refused by the document depth
/// limit of 128 levels (checked over the whole body), never recursed into.
const DEEP: usize = 10_000;

/// One vendored payload: file name, raw bytes and parsed value.
struct Payload {
    name: String,
    bytes: Vec<u8>,
    value: Value,
}

static PAYLOADS: LazyLock<Vec<Payload>> = LazyLock::new(|| {
    let dir = format!("{}/tests/data/github", env!("CARGO_MANIFEST_DIR"));
    let mut payloads: Vec<Payload> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let bytes = std::fs::read(&path).expect("payload file");
            let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Payload { name: path.file_name().unwrap().to_string_lossy().into_owned(), bytes, value }
        })
        .collect();
    payloads.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(payloads.len() > 50, "expected the vendored payloads in {dir}");
    payloads
});

fn delivery(event: &str, body: &[u8], content_type: &str) -> Delivery {
    Delivery::new(
        "github",
        [
            ("X-GitHub-Event".to_string(), event.to_string()),
            ("X-GitHub-Delivery".to_string(), "robustness-1".to_string()),
            ("Content-Type".to_string(), content_type.to_string()),
        ],
        body.to_vec(),
        Timestamp(0),
    )
}

fn parse(event: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    GitHub.parse(&delivery(event, body, "application/json"), "github:robustness-1", &SourceOptions::default())
}

/// Checks what a successful parse hands on: the store keeps span events as
/// JSON and folds them back, so they must round-trip and fold without panicking.
fn check_events(events: &[SpanEvent]) {
    for event in events {
        let text = serde_json::to_string(event).expect("span events serialize");
        let back: SpanEvent =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("span event does not read back ({e}): {text}"));
        assert_eq!(&back, event, "span event changed through JSON");
    }
    let _ = fold(events);
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// Throws `body`, sent as each of `content_types`, at the parser under every
/// event type and at the reference finders; returns the number of Ok parses.
fn throw(body: &[u8], content_types: &[&str]) -> usize {
    let mut ok = 0;
    for event in EVENTS {
        for &content_type in content_types {
            let result =
                GitHub.parse(&delivery(event, body, content_type), "github:robustness-1", &SourceOptions::default());
            match result {
                Ok(Parsed::Spans(events)) => {
                    check_events(&events);
                    ok += 1;
                }
                Ok(_) => ok += 1,
                Err(error) => {
                    assert!(!error.to_string().trim().is_empty(), "empty error message for {event}: {error:?}")
                }
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let _ = find_trace_refs(&text);
    let _ = find_closing_mentions(&text);
    ok
}

// ---------------------------------------------------------------- mutations

/// A value put in place of another, of a different JSON type where possible.
/// Raw replacements are JSON text `serde_json::Value` cannot hold.
#[derive(Clone, Debug)]
enum Replacement {
    Null,
    Bool(bool),
    Int(i64),
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
            value_paths(&payload.value, &mut Vec::new(), &mut paths);
            let keys: Vec<&Vec<Seg>> = paths.iter().filter(|p| matches!(p.last(), Some(Seg::Key(_)))).collect();
            let mut value = payload.value.clone();
            let path = keys[at.index(keys.len())];
            let (Seg::Key(key), parent) = path.split_last().unwrap() else { unreachable!() };
            get_mut(&mut value, parent).as_object_mut().unwrap().remove(key);
            serde_json::to_vec(&value).unwrap()
        }
        Mutation::Replace(at, with) => {
            let mut paths = Vec::new();
            value_paths(&payload.value, &mut Vec::new(), &mut paths);
            let mut value = payload.value.clone();
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

    /// Random bytes (almost never JSON) under every event type.
    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        throw(&body, &[JSON, FORM]);
    }

    /// Random JSON-looking text: brackets, quotes, numbers and keys the parser knows.
    #[test]
    fn random_json_like_text_never_panics(
        body in r#"(\{|\}|\[|\]|"|:|,|-?[0-9]{1,30}(\.[0-9]+)?(e[+-]?[0-9]{1,4})?|null|true|\\u[0-9a-fA-F]{4}|"(action|issue|number|state|pull_request|repository|full_name|name|created_at|head|ref|sha|review)"| ){0,200}"#
    ) {
        throw(body.as_bytes(), &[JSON, FORM]);
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

proptest! {
    // Each case mutates all ~66 payloads and parses each under 6 event types
    // (about 0.15 s per case in a debug build).
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// Every vendored payload, mutated the same way, under every event type.
    #[test]
    fn mutated_payloads_never_panic(mutation in mutation(), form in any::<bool>()) {
        for payload in PAYLOADS.iter() {
            let body = mutate(payload, &mutation);
            throw(&body, &[if form { FORM } else { JSON }]);
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

fn fixture(name: &str) -> Value {
    PAYLOADS
        .iter()
        .find(|p| p.name == format!("{name}.json"))
        .unwrap_or_else(|| panic!("no payload {name}"))
        .value
        .clone()
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
fn the_unmutated_payloads_parse() {
    for payload in PAYLOADS.iter() {
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
    for payload in PAYLOADS.iter() {
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
            &delivery("issues", body, "application/x-www-form-urlencoded"),
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
