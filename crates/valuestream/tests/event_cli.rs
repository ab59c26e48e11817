//! `valuestream event start|end` against a real `valuestream serve`: one
//! closed customhttp span per start/end pair, its parent resolved, and the
//! server's reason on stderr when the signature is wrong.

use std::process::{Command, Output, Stdio};

mod support;

use support::{TempDir, http_request as request, valuestream, wait_until_listening};
const SECRET: &str = "event-cli-s3cret";

/// A running `serve`, stopped with SIGTERM when dropped.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on a free port with the customhttp secret set.
fn start_server(dir: &TempDir) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = valuestream()
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("VS_DATABASE_URL", dir.database())
        .env("VS_CUSTOMHTTP_SECRET", SECRET)
        .env("VS_TRACER_BACKEND", "none")
        .env("VS_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("127.0.0.1:{port}");
    wait_until_listening(&base);
    Server { child, base }
}

fn spans(base: &str) -> Vec<serde_json::Value> {
    let response = request(base, "GET", "/api/v1/spans?source=customhttp", &[], "");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    answer["spans"].as_array().unwrap().clone()
}

fn event(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = valuestream();
    command.arg("event").args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn start_then_end_gives_one_closed_span_with_its_parent() {
    let dir = TempDir::new();
    let server = start_server(&dir);
    let url = format!("http://{}", server.base);
    let signed = [("VS_CUSTOMHTTP_SECRET", SECRET)];

    let start = event(
        &[
            "start",
            "--type",
            "deploy",
            "--namespace",
            "payments",
            "--parent",
            "vstrace-github-hello-world-27",
            "--url",
            &url,
        ],
        &signed,
    );
    assert!(start.status.success(), "{}", text(&start.stderr));
    let id = text(&start.stdout).trim().to_string();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "start prints the new id: {id:?}");

    let open = spans(&server.base);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["state"], "open");

    // VS_URL instead of --url.
    let end = event(
        &["end", "--id", &id, "--type", "deploy", "--namespace", "payments"],
        &[("VS_CUSTOMHTTP_SECRET", SECRET), ("VS_URL", url.as_str())],
    );
    assert!(end.status.success(), "{}", text(&end.stderr));
    assert_eq!(text(&end.stdout), "", "end prints nothing");

    let closed = spans(&server.base);
    assert_eq!(closed.len(), 1, "{closed:?}");
    let span = &closed[0];
    assert_eq!(span["key"], format!("customhttp:payments:deploy:{id}"));
    assert_eq!(span["kind"], "deploy");
    assert_eq!(span["state"], "closed");
    assert_eq!(span["outcome"], "success");
    assert!(span["end"].as_str().unwrap() >= span["start"].as_str().unwrap());
    let reference = format!("vstrace-customhttp-deploy-payments-{id}");
    assert!(span["trace_refs"].as_array().unwrap().iter().any(|r| r == reference.as_str()), "{span}");
    assert_eq!(span["parent_key"], serde_json::Value::Null, "no span answers to …-27 yet");

    // A parent that exists: a GitHub issue answering to vstrace-github-hello-world-1.
    let issue = std::fs::read_to_string(format!(
        "{}/../valuestream-core/tests/data/github/issues.opened.plain.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let posted = request(
        &server.base,
        "POST",
        "/webhooks/github",
        &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "event-cli-1"), ("Content-Type", "application/json")],
        &issue,
    );
    assert!(posted.starts_with("HTTP/1.1 200"), "{posted}");
    let start = event(
        &[
            "start",
            "--type",
            "build",
            "--namespace",
            "payments",
            "--parent",
            "vstrace-github-hello-world-1",
            "--tag",
            "step=compile",
            "--url",
            &url,
        ],
        &signed,
    );
    assert!(start.status.success(), "{}", text(&start.stderr));
    let build_id = text(&start.stdout).trim().to_string();
    let end = event(
        &["end", "--id", &build_id, "--type", "build", "--namespace", "payments", "--error", "--url", &url],
        &signed,
    );
    assert!(end.status.success(), "{}", text(&end.stderr));
    let build = spans(&server.base)
        .into_iter()
        .find(|s| s["key"] == format!("customhttp:payments:build:{build_id}"))
        .expect("the build span");
    assert_eq!((build["state"].as_str(), build["outcome"].as_str()), (Some("closed"), Some("failure")));
    assert_eq!(build["parent_key"], "github:Codertocat/Hello-World:issue:1");
    assert_eq!(build["attributes"]["valuestream.metadata.step"], "compile");
}

#[test]
fn a_wrong_or_missing_secret_fails_with_the_servers_reason() {
    let dir = TempDir::new();
    let server = start_server(&dir);
    let url = format!("http://{}", server.base);
    let args = ["start", "--type", "deploy", "--namespace", "payments", "--url", url.as_str()];

    let wrong = event(&args, &[("VS_CUSTOMHTTP_SECRET", "not-the-secret")]);
    assert_eq!(wrong.status.code(), Some(1));
    let stderr = text(&wrong.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("X-VS-Signature does not match any configured secret"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(text(&wrong.stdout), "", "no id for an event that was refused");

    let unsigned = event(&args, &[]);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(text(&unsigned.stderr).contains("missing X-VS-Signature header"), "{}", text(&unsigned.stderr));
    assert!(spans(&server.base).is_empty());
}

#[test]
fn usage_errors_exit_2_and_an_unreachable_server_exits_1() {
    let missing_id = event(&["end", "--type", "deploy", "--namespace", "payments"], &[]);
    assert_eq!(missing_id.status.code(), Some(2), "end needs --id");
    assert!(text(&missing_id.stderr).contains("--id"));
    let bad_tag = event(&["start", "--type", "deploy", "--namespace", "p", "--tag", "novalue"], &[]);
    assert_eq!(bad_tag.status.code(), Some(2));
    let no_type = event(&["start", "--namespace", "p"], &[]);
    assert_eq!(no_type.status.code(), Some(2));

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let down = event(&["start", "--type", "deploy", "--namespace", "p", "--url", &url], &[]);
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down.stderr).contains("cannot send the event"), "{}", text(&down.stderr));
    // A --url that is no URL is bad usage, like any other wrong flag.
    let bad_url = event(&["start", "--type", "deploy", "--namespace", "p", "--url", "not a url"], &[]);
    assert_eq!(bad_url.status.code(), Some(2));
    assert!(text(&bad_url.stderr).contains("--url / VS_URL"), "{}", text(&bad_url.stderr));
}

#[test]
fn help_documents_every_flag() {
    for command in ["start", "end"] {
        let output = valuestream().args(["event", command, "--help"]).output().unwrap();
        assert!(output.status.success());
        let help = text(&output.stdout);
        for flag in ["--type", "--namespace", "--parent", "--tag", "--url", "VS_URL", "--id", "VS_CUSTOMHTTP_SECRET"] {
            assert!(help.contains(flag), "event {command} --help lacks {flag}:\n{help}");
        }
        let has_error_flag = help.lines().any(|line| line.trim_start().starts_with("--error"));
        assert_eq!(has_error_flag, command == "end", "{help}");
    }
}
