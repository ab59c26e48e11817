//! Slow and flooding senders cannot hurt the others (issue 10, point 4): the
//! header, body and idle deadlines and the connection cap on the in-process
//! server with short configured limits, and the in-flight budget on the real
//! binary, whose resident memory is read from /proc.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use valuestream::config::{Limits, TracerBackend};

/// Starts the in-process server with `limits` changed as the test needs.
async fn app_with(change: impl FnOnce(&mut Limits)) -> App {
    spawn_app(|db| {
        let mut c = config(db, TracerBackend::None, None, &[]);
        change(&mut c.limits);
        c
    })
    .await
}

fn address(app: &App) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or resets it); what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&received).to_string()
}

/// Reads one response whose body has a Content-Length; returns its head and body.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "closed mid-response: {text}");
        received.extend_from_slice(&buffer[..n]);
    }
}

#[tokio::test]
async fn headers_sent_a_byte_a_second_are_cut_off_at_the_header_timeout() {
    let app = app_with(|l| l.header_timeout = Duration::from_secs(2)).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let began = Instant::now();
    let request = b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: issues\r\n";
    let trickle = async {
        for byte in request {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await
    };
    let closed = async {
        let mut buffer = [0u8; 256];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = trickle => unreachable!(),
        _ = closed => {}
        _ = tokio::time::sleep(Duration::from_secs(15)) => panic!("the connection is still open after 15 s"),
    }
    let after = began.elapsed();
    assert!(after >= Duration::from_millis(1900), "not before the header timeout: {after:?}");
    assert!(after < Duration::from_secs(8), "closed {after:?} after connecting, header timeout 2 s");
    app.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_is_answered_408() {
    let app = app_with(|l| l.body_timeout = Duration::from_secs(2)).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: issues\r\nContent-Length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let began = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for _ in 0..99 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let answer = tokio::select! {
        _ = trickle => unreachable!(),
        answer = async {
            let mut received = Vec::new();
            let mut buffer = [0u8; 1024];
            while !String::from_utf8_lossy(&received).contains("}") {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buffer[..n]),
                }
            }
            String::from_utf8_lossy(&received).to_string()
        } => answer,
        _ = tokio::time::sleep(Duration::from_secs(15)) => panic!("no answer after 15 s"),
    };
    let after = began.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--body-timeout"), "the answer says which limit: {answer}");
    assert!(after < Duration::from_secs(8), "answered {after:?} after the headers, body timeout 2 s");
    app.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_idle_timeout_not_the_header_timeout() {
    let app = app_with(|l| {
        l.header_timeout = Duration::from_secs(1);
        l.idle_timeout = Duration::from_secs(4);
    })
    .await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(get).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: still open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stream.write_all(get).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"), "kept alive past the header timeout");
    let idle_since = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(15), read_until_closed(&mut stream))
        .await
        .expect("the idle connection is still open after 15 s");
    assert_eq!(rest, "", "nothing more was sent");
    let after = idle_since.elapsed();
    assert!(after >= Duration::from_millis(3900), "not before the idle timeout: {after:?}");
    assert!(after < Duration::from_secs(10), "closed {after:?} after going idle, idle timeout 4 s");
    app.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_and_served_again_once_one_closes() {
    let app = app_with(|l| l.max_connections = 2).await;
    let first = TcpStream::connect(address(&app)).await.unwrap();
    let _second = TcpStream::connect(address(&app)).await.unwrap();
    let mut third = TcpStream::connect(address(&app)).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
    assert!(answer.contains("--max-connections"), "{answer}");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut next = TcpStream::connect(address(&app)).await.unwrap();
        next.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = read_until_closed(&mut next).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "a closed connection's place is never given back: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

// ---------------------------------------------------------------- the in-flight budget, on the binary

/// Resident memory of a process, and its peak, in bytes (`/proc/PID/status`).
fn resident(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_flood_of_large_bodies_stays_within_the_inflight_budget_and_the_excess_gets_503() {
    const MIB: u64 = 1024 * 1024;
    const BUDGET: u64 = 64 * MIB;
    /// What the process holds besides the budgeted bodies, whatever the number
    /// of senders: its baseline (about 30 MB), the store's copies of the one
    /// body it is writing (three), the text parsed out of bodies being parsed,
    /// the connections' buffers. Measured on 2 cores: about 80 MiB.
    const OVERHEAD: u64 = 160 * MIB;
    const SENDERS: usize = 32;
    const BODY: usize = 16 * MIB as usize;

    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = valuestream();
    let child = command
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--tracer", "none"])
        .args(["--max-inflight-bytes", &BUDGET.to_string(), "--body-timeout", "60s"])
        .env("VS_DATABASE_URL", format!("sqlite://{}", dir.0.join("vs.db").display()))
        .env("VS_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("127.0.0.1:{port}");
    wait_until_listening(&base);

    // One real issues payload whose body text makes it 16 MiB, sent as many deliveries at once.
    let mut payload = fixture("issues.opened.plain");
    payload["issue"]["body"] = serde_json::json!("");
    let shell = payload.to_string();
    let padding = BODY - shell.len();
    let body = Arc::new(shell.replacen(r#""body":"""#, &format!(r#""body":"{}""#, "x".repeat(padding)), 1));
    assert_eq!(body.len(), BODY);
    let barrier = Arc::new(std::sync::Barrier::new(SENDERS));
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let (base, body, barrier) = (base.clone(), body.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&base).unwrap();
                let head = format!(
                    "POST /webhooks/github HTTP/1.1\r\nHost: {base}\r\nConnection: close\r\nContent-Type: application/json\r\n\
                     X-GitHub-Event: issues\r\nX-GitHub-Delivery: flood-{i}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                barrier.wait();
                let sent = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
                let mut answer = String::new();
                let read = stream.read_to_string(&mut answer);
                match (sent, read) {
                    (Ok(()), Ok(_)) => answer,
                    (sent, read) => format!("error: {sent:?} {read:?} {answer}"),
                }
            })
        })
        .collect();
    let answers: Vec<String> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let (after, peak) = resident(child.id());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();

    let accepted = answers.iter().filter(|a| a.starts_with("HTTP/1.1 200") && a.contains("accepted")).count();
    let refused: Vec<&String> = answers.iter().filter(|a| a.starts_with("HTTP/1.1 503")).collect();
    let summary = format!(
        "{accepted} accepted, {} refused of {SENDERS}; peak resident {} MiB, after {} MiB",
        refused.len(),
        peak / MIB,
        after / MIB
    );
    eprintln!("{summary}");
    assert_eq!(accepted + refused.len(), SENDERS, "every sender got 200 or 503: {summary}; {answers:?}");
    assert!(accepted > 0 && !refused.is_empty(), "{summary}");
    for answer in refused {
        assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
        assert!(answer.contains("--max-inflight-bytes"), "{answer}");
    }
    let logs = String::from_utf8_lossy(&output.stderr);
    let refusal = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["kind"] == "server full")
        .unwrap_or_else(|| panic!("no refusal logged: {logs}"));
    assert_eq!(refusal["fields"]["message"], "Delivery rejected.");
    assert!(refusal["fields"]["delivery"].as_str().unwrap().starts_with("github:flood-"), "{refusal}");
    assert!(refusal["fields"]["reason"].as_str().unwrap().contains("--max-inflight-bytes"), "{refusal}");
    assert!(
        peak < BUDGET + OVERHEAD,
        "peak resident memory {} MiB is over the budget ({} MiB) plus {} MiB: {summary}\n{}",
        peak / MIB,
        BUDGET / MIB,
        OVERHEAD / MIB,
        logs
    );
}
