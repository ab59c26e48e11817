//! Slow and flooding senders cannot hurt the others (issue 10, point 4): the
//! header and idle deadlines and the connection cap on the in-process server
//! with short configured limits.

mod support;

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
