//! Nothing acknowledged is ever lost (issue 10): the real server on a store
//! that fails — a disk that fills up, a COMMIT that fails, a locked database —
//! answers 503 and never a 2xx it cannot keep, tells the truth on `/readyz`,
//! and recovers by itself once the cause goes away.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::Notify;
use valuestream::config::TracerBackend;
use valuestream::http::{AppState, router};
use valuestream::ingest::{Ingest, IngestError, Writer, prepare};
use valuestream::store::{AckStatus, Applicable, Store};
use valuestream::telemetry::Telemetry;
use valuestream_core::delivery::Delivery;
use valuestream_core::sources::{self, SourceOptions};
use valuestream_core::time::Timestamp;
use valuestream_core::verify::hmac_sha256_hex;

/// A real `issues` payload for issue `number`, its description `padding` bytes long.
/// These tests hold SQLite's write lock or fill the writer's queue and rely on
/// the writer waiting within its busy window meanwhile; run side by side on
/// a loaded 2-core machine they starved each other. One at a time, they don't.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn issue_numbered(number: u64, padding: usize) -> Value {
    let mut body = issue("opened", "open", "2026-11-20T09:00:00Z", None);
    body["issue"]["number"] = json!(number);
    body["issue"]["body"] = json!(noise(number, padding));
    body
}

/// `len` letters and digits that compress little (bodies are stored
/// compressed, and these tests fill the disk with them).
fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            ALPHABET[(state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 58) as usize] as char
        })
        .collect()
}

/// Bodies of three sizes, so a full disk strikes different statements.
fn padding_of(number: u64) -> usize {
    [200, 3_000, 12_000][(number % 3) as usize]
}

/// A fresh store in `dir`, migrated, as `serve` would open it.
async fn fresh_store(dir: &TempDir) -> (Store, String) {
    let database = format!("sqlite://{}", dir.0.join("vs.db").display());
    let store = Store::open(&database).await.unwrap();
    store.migrate().await.unwrap();
    (store, database)
}

async fn start(store: &Store, database: &str) -> App {
    spawn_app_with_store(
        store.clone(),
        database.to_string(),
        None,
        config(database, TracerBackend::None, None, &[SECRET]),
    )
    .await
}

/// The delivery ids in the database file, read by a new connection after the server stopped.
async fn stored_ids(database: &str) -> HashSet<String> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(database).await.unwrap();
    let rows = sqlx::query("SELECT id FROM deliveries").fetch_all(&mut conn).await.unwrap();
    rows.iter().map(|row| sqlx::Row::get::<String, _>(row, 0)).collect()
}

/// Sends issue `number` and returns the status.
async fn send(app: &App, number: u64) -> u16 {
    let (status, answer) =
        app.github("issues", &format!("fd-{number}"), &issue_numbered(number, padding_of(number))).await;
    assert!(status == 200 || status == 503, "delivery {number}: {status} {answer}");
    if status == 200 {
        assert_eq!(answer["status"], "accepted", "{answer}");
    }
    status
}

/// Polls `/readyz` until it answers `want` (the writer checks the store about once a second).
async fn wait_for_readiness(app: &App, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = app.get("/readyz").await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status} ({answer}), expected {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filling_up_under_a_stream_answers_503_keeps_every_2xx_and_recovers_when_room_is_made() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let app = start(&store, &database).await;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for number in 1..=10 {
        assert_eq!(send(&app, number).await, 200);
        acknowledged.push(number);
    }
    // The disk fills up: a few dozen pages left, then "database or disk is full".
    store.limit_growth(Some(40)).await.unwrap();
    for number in 11..=150 {
        match send(&app, number).await {
            200 => acknowledged.push(number),
            _ => refused += 1,
        }
    }
    assert!(refused >= 50, "the full disk refused only {refused} of 140 deliveries");
    // Room again: deliveries succeed without a restart.
    store.limit_growth(None).await.unwrap();
    for number in 151..=180 {
        assert_eq!(send(&app, number).await, 200, "delivery {number} after room was made");
        acknowledged.push(number);
    }
    app.stop().await;
    store.close().await;

    let stored = stored_ids(&database).await;
    let lost: Vec<u64> = acknowledged.iter().copied().filter(|n| !stored.contains(&format!("github:fd-{n}"))).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries are not in the store: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_commit_answers_503_and_no_later_2xx_is_lost() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let app = start(&store, &database).await;
    let mut acknowledged = Vec::new();
    for number in 1..=5 {
        assert_eq!(send(&app, number).await, 200);
        acknowledged.push(number);
    }
    // COMMIT fails, the transaction already rolled back by the database (and
    // again if the writer retries the delivery on its own).
    store.fail_commits(2);
    assert_eq!(send(&app, 6).await, 503, "a failed COMMIT is a 503");
    // Later writes go on, through every pooled connection, and one more
    // failure (a full disk) strikes while they do.
    for number in 7..=30 {
        if send(&app, number).await == 200 {
            acknowledged.push(number);
        }
    }
    store.limit_growth(Some(40)).await.unwrap();
    for number in 31..=60 {
        if send(&app, number).await == 200 {
            acknowledged.push(number);
        }
    }
    store.limit_growth(None).await.unwrap();
    for number in 61..=90 {
        assert_eq!(send(&app, number).await, 200, "delivery {number} after the faults");
        acknowledged.push(number);
    }
    app.stop().await;
    store.close().await;

    let stored = stored_ids(&database).await;
    assert!(!stored.contains("github:fd-6"), "the delivery whose COMMIT failed is not stored");
    let lost: Vec<u64> = acknowledged.iter().copied().filter(|n| !stored.contains(&format!("github:fd-{n}"))).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries are not in the store: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_while_the_writer_cannot_commit_and_200_once_it_can() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let app = start(&store, &database).await;
    assert_eq!(send(&app, 1).await, 200);
    assert_eq!(app.get("/readyz").await.0, 200);

    store.limit_growth(Some(0)).await.unwrap();
    assert_eq!(send(&app, 2).await, 503);
    let (status, answer) = app.get("/readyz").await;
    assert_eq!(status, 503, "not ready while the disk is full: {answer}");
    assert!(answer["reason"].as_str().unwrap_or("").contains("commit"), "{answer}");
    // Still not ready a while later: nothing committed since.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.get("/readyz").await.0, 503);

    // Room again: the writer notices by itself, with no delivery arriving.
    store.limit_growth(None).await.unwrap();
    wait_for_readiness(&app, 200).await;
    assert_eq!(send(&app, 3).await, 200);
    app.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_answered_503_within_5_seconds_never_408_and_recovers() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let app = start(&store, &database).await;
    assert_eq!(send(&app, 1).await, 200);

    // Another process holds SQLite's write lock.
    let mut holder = <sqlx::AnyConnection as sqlx::Connection>::connect(&database).await.unwrap();
    sqlx::Executor::execute(&mut holder, "BEGIN IMMEDIATE").await.unwrap();
    let began = Instant::now();
    let (status, answer) = app.github("issues", "fd-2", &issue_numbered(2, 10)).await;
    let waited = began.elapsed();
    assert_eq!(status, 503, "{answer}");
    assert!(waited < Duration::from_secs(5), "the 503 took {waited:?}");
    wait_for_readiness(&app, 503).await;

    sqlx::Executor::execute(&mut holder, "ROLLBACK").await.unwrap();
    wait_for_readiness(&app, 200).await;
    let (status, answer) = app.github("issues", "fd-2", &issue_numbered(2, 10)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["status"] == "accepted" || answer["status"] == "duplicate", "{answer}");
    app.stop().await;
    store.close().await;
}

// ---------------------------------------------------------------- the writer itself

/// Issue `number` as the writer takes it (parsed, not yet stored).
fn applicable(number: u64, padding: usize) -> Applicable {
    let body = serde_json::to_vec(&issue_numbered(number, padding)).unwrap();
    let headers = vec![
        ("x-github-event".to_string(), "issues".to_string()),
        ("x-github-delivery".to_string(), format!("fd-{number}")),
    ];
    let delivery = Delivery::new("github", headers, body, Timestamp(0));
    prepare(sources::by_name("github").unwrap(), delivery, &SourceOptions::default()).unwrap()
}

fn start_writer(store: &Store, queue: usize) -> (Ingest, Writer) {
    Ingest::start_with_queue(
        store.clone(),
        SourceOptions::default(),
        false,
        Arc::new(Notify::new()),
        Telemetry::new(),
        queue,
    )
}

/// Another process's write transaction on the database: the writer waits for it.
async fn hold_write_lock(database: &str) -> sqlx::AnyConnection {
    let mut holder = <sqlx::AnyConnection as sqlx::Connection>::connect(database).await.unwrap();
    sqlx::Executor::execute(&mut holder, "BEGIN IMMEDIATE").await.unwrap();
    holder
}

/// Waits until the writer has taken the one delivery just sent, so that its
/// group is closed (and it waits in its transaction on the held lock): the
/// next deliveries then queue behind it instead of joining its group. An
/// empty queue would not tell: it is empty before the delivery arrives too.
async fn writer_took_it(ingest: &Ingest) {
    let mut taken = ingest.taken();
    tokio::time::timeout(Duration::from_secs(20), taken.wait_for(|&taken| taken >= 1))
        .await
        .expect("the writer did not take the delivery within 20 s")
        .expect("the writer stopped");
}

/// Waits until `count` deliveries wait in the writer's queue.
async fn wait_for_queue(ingest: &Ingest, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ingest.queued() != count {
        assert!(Instant::now() < deadline, "the queue holds {} deliveries, expected {count}", ingest.queued());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_one_delivery_that_cannot_be_stored_commits_the_others_one_by_one() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let (ingest, writer) = start_writer(&store, 64);

    // The writer waits in its first group while three deliveries queue up
    // behind it, so they are taken as one group.
    let holder = hold_write_lock(&database).await;
    let first = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.apply(applicable(1, 10)).await }
    });
    writer_took_it(&ingest).await;
    let mut group = Vec::new();
    // Room for small deliveries, not for a 2 MB one.
    for (number, padding) in [(2, 10), (3, 2_000_000), (4, 10)] {
        let sender = ingest.clone();
        group.push(tokio::spawn(async move { sender.apply(applicable(number, padding)).await }));
        wait_for_queue(&ingest, group.len()).await;
    }
    store.limit_growth(Some(100)).await.unwrap();
    drop(holder);

    let first = first.await.unwrap();
    assert!(first.is_ok(), "{first:?}");
    let answers: Vec<_> = futures::future::join_all(group).await.into_iter().map(|a| a.unwrap()).collect();
    assert_eq!(answers[0].as_ref().unwrap().status, AckStatus::Accepted, "{answers:?}");
    assert!(
        matches!(&answers[1], Err(IngestError::Unavailable(reason)) if reason.contains("full")),
        "the 2 MB delivery does not fit: {:?}",
        answers[1]
    );
    assert_eq!(answers[2].as_ref().unwrap().status, AckStatus::Accepted, "{answers:?}");
    writer.stop().await;
    store.close().await;

    let stored = stored_ids(&database).await;
    for number in [1, 2, 4] {
        assert!(stored.contains(&format!("github:fd-{number}")), "delivery {number} is stored");
    }
    assert!(!stored.contains("github:fd-3"), "the delivery that did not fit left nothing behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_writer_commits_every_queued_delivery_first() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let (ingest, writer) = start_writer(&store, 64);
    let holder = hold_write_lock(&database).await;
    let mut waiting = Vec::new();
    for number in 1..=20 {
        let sender = ingest.clone();
        waiting.push(tokio::spawn(async move { sender.apply(applicable(number, 10)).await }));
        if number == 1 {
            writer_took_it(&ingest).await;
        }
    }
    wait_for_queue(&ingest, 19).await;
    drop(holder);
    writer.stop().await;
    for (number, answer) in (1..).zip(futures::future::join_all(waiting).await) {
        assert!(answer.unwrap().is_ok(), "delivery {number} was committed before the writer stopped");
    }
    assert!(ingest.readiness().is_err(), "a stopped writer is not ready");
    store.close().await;
    assert_eq!(stored_ids(&database).await.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_panics_answers_503_is_not_ready_and_restarts_without_losing_anything() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let app = start(&store, &database).await;
    assert_eq!(send(&app, 1).await, 200);

    store.panic_in_writer(1);
    let (status, answer) = app.github("issues", "fd-2", &issue_numbered(2, 10)).await;
    assert_eq!(status, 503, "{answer}");
    let (status, readiness) = app.get("/readyz").await;
    assert_eq!(status, 503, "not ready while the writer restarts: {readiness}");
    assert!(readiness["reason"].as_str().unwrap().contains("restarting"), "{readiness}");

    wait_for_readiness(&app, 200).await;
    // The panic left no transaction or lock behind: the same delivery again, and more.
    let (status, answer) = app.github("issues", "fd-2", &issue_numbered(2, 10)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
    for number in 3..=10 {
        assert_eq!(send(&app, number).await, 200);
    }
    app.stop().await;
    store.close().await;
    assert_eq!(stored_ids(&database).await.len(), 10);
}

// ---------------------------------------------------------------- fast answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_answers_503_with_retry_after_at_once() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = TempDir::new();
    let (store, database) = fresh_store(&dir).await;
    let config = config(&database, TracerBackend::None, None, &[SECRET]);
    let (ingest, writer) = start_writer(&store, 2);
    let state = AppState::new(store.clone(), ingest.clone(), &config, Telemetry::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, router(state, config.max_body_bytes)).into_future());
    let client = reqwest::Client::new();
    let post = |number: u64| {
        let body = serde_json::to_vec(&issue_numbered(number, 10)).unwrap();
        let signature = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &body));
        client
            .post(format!("{base}/webhooks/github"))
            .header("x-github-event", "issues")
            .header("x-github-delivery", format!("fd-{number}"))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
    };

    // The writer waits on a lock with one delivery; two more fill its queue.
    let holder = hold_write_lock(&database).await;
    let first = tokio::spawn(post(1));
    // Not "the queue is empty", which it is before the request arrives too
    // (CI caught that race): the writer counts it as taken.
    writer_took_it(&ingest).await;
    let queued = [tokio::spawn(post(2)), tokio::spawn(post(3))];
    wait_for_queue(&ingest, 2).await;

    let response = post(4).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let answer: Value = response.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("wait for the store"), "{answer}");

    drop(holder);
    let _ = first.await;
    for request in queued {
        let _ = request.await;
    }
    server.abort();
    writer.stop().await;
    store.close().await;
}

// ---------------------------------------------------------------- a store outage

/// What the proxy in front of PostgreSQL lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Up,
    /// Connections are reset and new ones closed at once (the server is gone).
    Cut,
    /// Nothing passes and nothing closes (a network that stopped answering).
    Frozen,
}

/// A TCP proxy to PostgreSQL whose link the test cuts or freezes.
struct Proxy {
    addr: std::net::SocketAddr,
    link: tokio::sync::watch::Sender<Link>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, watching) = tokio::sync::watch::channel(Link::Up);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                if *watching.borrow() == Link::Cut {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                connections.spawn(pipe(client_read, server_write, watching.clone()));
                connections.spawn(pipe(server_read, client_write, watching.clone()));
            }
        });
        Proxy { addr, link, task }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes one way while the link is up; drops both ends when it is cut.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: tokio::sync::watch::Receiver<Link>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let Ok(state) = link.wait_for(|state| *state != Link::Frozen).await.map(|s| *s) else { return };
        if state == Link::Cut {
            return;
        }
        tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            },
            _ = link.changed() => {}
        }
    }
}

/// Sends issue `number` and checks the answer came within 5 s and was 200 or 503.
async fn send_timed(app: &App, number: u64) -> u16 {
    let began = Instant::now();
    let status = send(app, number).await;
    assert!(began.elapsed() < Duration::from_secs(5), "delivery {number} took {:?}", began.elapsed());
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn a_postgres_outage_is_answered_503_within_5_seconds_and_the_service_recovers_by_itself() {
    let _one_at_a_time = SERIAL.lock().await;
    let db = PostgresDb::create().await;
    let upstream = db.url.split_once('@').unwrap().1.split_once('/').unwrap().0.to_string();
    let proxy = Proxy::start(upstream.clone()).await;
    let url = db.url.replacen(&upstream, &proxy.addr.to_string(), 1);
    let store = Store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let app = start(&store, &url).await;
    let mut acknowledged = vec![];
    for number in 1..=5 {
        assert_eq!(send_timed(&app, number).await, 200);
        acknowledged.push(number);
    }

    for (outage, numbers) in [(Link::Cut, 100..=103), (Link::Frozen, 200..=203)] {
        proxy.set(outage);
        for number in numbers {
            assert_eq!(send_timed(&app, number).await, 503, "{outage:?}: delivery {number}");
        }
        let began = Instant::now();
        wait_for_readiness(&app, 503).await;
        assert!(began.elapsed() < Duration::from_secs(10), "{outage:?}: /readyz took {:?} to tell", began.elapsed());

        proxy.set(Link::Up);
        wait_for_readiness(&app, 200).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut number = 1000 * acknowledged.len() as u64;
        while send_timed(&app, number).await != 200 {
            assert!(Instant::now() < deadline, "{outage:?}: deliveries still fail after the store came back");
            number += 1;
        }
        acknowledged.push(number);
    }
    app.stop().await;
    store.close().await;

    let stored = stored_ids(&db.url).await;
    let lost: Vec<_> = acknowledged.iter().filter(|n| !stored.contains(&format!("github:fd-{n}"))).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    drop(proxy);
    db.drop_database().await;
}
