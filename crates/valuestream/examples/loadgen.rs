//! Load generator for the quality bars (docs/benchmarks.md).
//!
//! Two mixes of signed, real-shaped GitHub deliveries (vendored @octokit
//! payloads, `crates/valuestream-core/tests/data/github`), chosen with `--mix`:
//!
//! - `realistic` (the default, `loadgen/realistic.rs`): what GitHub sends for
//!   real units of work over `--repos` repositories (default 300): an issue,
//!   its pull request with pushes, updates and reviews, a workflow run and
//!   its jobs, the merge and its push to `main`, the deploy and its statuses,
//!   all with consistent ids, numbers, shas and forward-moving times, so the
//!   service links each unit into one trace. About 24 deliveries and 6 spans
//!   per unit, mean body about 14 KB.
//! - `simple` (`loadgen/simple.rs`): the first mix, `issues` and
//!   `pull_request` opened/closed snapshots only; keeps earlier figures
//!   comparable.
//!
//! Modes:
//!
//! `loadgen http --url http://127.0.0.1:5000 --secret S [--rate N] [--seconds 20] [--connections 64]`
//!   sends the mix and reports throughput, latency percentiles and the
//!   answers that were not 2xx (by status, with the first body of each).
//!   `--rate 0` (the default) means as fast as the connections allow;
//!   otherwise a fixed rate per second. Bodies are made and signed before
//!   the clock starts (`--prepared` of them; the realistic default is
//!   enough for the whole run, the simple one cycles 4,000), so the
//!   generator's JSON work does not compete with the server for CPU; each
//!   request has its own delivery id (`load-N` from `--start`, default
//!   derived from the process id).
//! `loadgen file --out deliveries.jsonl [--count 100000]`
//!   writes a JSON Lines recording for `valuestream replay`.
//! `loadgen suite --bin target/release/valuestream [--seconds 60] [--rate 1000] [--count 100000] [--port 5070]`
//!   the whole ingest suite in one command: starts `valuestream serve` on a
//!   fresh SQLite store for each run, sends (a) as fast as `--connections`
//!   allow and (b) at the fixed `--rate`, each for `--seconds`, then (c)
//!   writes a file of `--count` deliveries and times `valuestream replay` of
//!   it into a fresh store, and prints one markdown table (loadgen/suite.rs).
//! `loadgen flood --url http://127.0.0.1:5000 --pid PID --senders 50 --mb 20`
//!   sends that many unsigned GitHub deliveries of that many MB (10^6 bytes) at
//!   once, each on its own connection, and reports their answers and the
//!   server's resident memory (`/proc/PID/status`) at its peak and after.
//!
//! `http` prints the mix (deliveries per event type and action, mean body,
//! events per span) before it starts; `file` prints it at the end.

// The crate root of an example looks for modules beside it: these live in loadgen/.
#[path = "loadgen/realistic.rs"]
mod realistic;
#[path = "loadgen/simple.rs"]
mod simple;
#[path = "loadgen/suite.rs"]
mod suite;

use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use valuestream_core::verify::hmac_sha256_hex;

/// One delivery of a mix.
pub struct Delivery {
    /// The `X-GitHub-Event` header.
    pub event: &'static str,
    /// What it is within its event type (its `action`, or which branch a push
    /// is to): for the counts printed, not sent.
    pub action: &'static str,
    /// The span it adds an event to, if any (pushes make none): for the
    /// events-per-span figure, not sent.
    pub span: Option<String>,
    pub body: Vec<u8>,
}

/// A vendored @octokit payload's bytes.
pub fn vendored_bytes(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../valuestream-core/tests/data/github");
    std::fs::read(format!("{dir}/{name}.json")).expect("vendored payload")
}

pub fn vendored(name: &str) -> serde_json::Value {
    serde_json::from_slice(&vendored_bytes(name)).unwrap()
}

/// The mix chosen with `--mix`.
pub enum Mix {
    /// Delivery n of the run is the simple mix's `offset + n`.
    Simple {
        mix: simple::Simple,
        offset: u64,
    },
    Realistic(Box<realistic::Realistic>),
}

impl Mix {
    /// `--mix` and `--repos` from `args`, planned for `count` deliveries.
    /// `offset` varies the simple mix from run to run (the realistic one is
    /// always the same work).
    pub fn from_args(args: &[String], count: u64, offset: u64) -> Mix {
        match arg(args, "--mix", "realistic").as_str() {
            "realistic" => {
                let repos: usize = arg(args, "--repos", "300").parse().expect("--repos N");
                Mix::Realistic(Box::new(realistic::Realistic::new(repos, count as usize)))
            }
            "simple" => Mix::Simple { mix: simple::Simple::new(), offset },
            other => {
                eprintln!("--mix must be realistic or simple, not {other:?}");
                std::process::exit(2);
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Mix::Simple { .. } => "simple",
            Mix::Realistic(_) => "realistic",
        }
    }

    pub fn delivery(&self, n: u64) -> Delivery {
        match self {
            Mix::Simple { mix, offset } => mix.delivery(offset + n),
            Mix::Realistic(mix) => mix.delivery(n as usize),
        }
    }

    /// How many distinct deliveries it has (the simple mix has no end).
    fn len(&self) -> u64 {
        match self {
            Mix::Simple { .. } => u64::MAX,
            Mix::Realistic(mix) => mix.len() as u64,
        }
    }
}

/// What a mix sent: deliveries and bytes per event type and action, and
/// events per span.
#[derive(Default)]
pub struct Tally {
    /// event → action → (deliveries, body bytes)
    kinds: BTreeMap<&'static str, BTreeMap<&'static str, (u64, u64)>>,
    spans: HashMap<String, u32>,
    deliveries: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, delivery: &Delivery) {
        let entry = self.kinds.entry(delivery.event).or_default().entry(delivery.action).or_default();
        entry.0 += 1;
        entry.1 += delivery.body.len() as u64;
        if let Some(span) = &delivery.span {
            *self.spans.entry(span.clone()).or_default() += 1;
        }
        self.deliveries += 1;
        self.bytes += delivery.body.len() as u64;
    }

    fn merge(&mut self, other: Tally) {
        for (event, actions) in other.kinds {
            for (action, (n, bytes)) in actions {
                let entry = self.kinds.entry(event).or_default().entry(action).or_default();
                entry.0 += n;
                entry.1 += bytes;
            }
        }
        for (span, n) in other.spans {
            *self.spans.entry(span).or_default() += n;
        }
        self.deliveries += other.deliveries;
        self.bytes += other.bytes;
    }

    pub fn mean_body(&self) -> u64 {
        self.bytes / self.deliveries.max(1)
    }

    pub fn print(&self, mix: &str) {
        let events = self.spans.values().map(|&n| n as u64).sum::<u64>();
        let (fewest, most) =
            (self.spans.values().min().copied().unwrap_or(0), self.spans.values().max().copied().unwrap_or(0));
        println!(
            "{mix} mix: {} deliveries, mean body {:.1} KB ({} bytes); {} spans, {:.1} events per span (min {fewest}, max {most})",
            thousands(self.deliveries),
            self.mean_body() as f64 / 1000.0,
            thousands(self.mean_body()),
            thousands(self.spans.len() as u64),
            events as f64 / self.spans.len().max(1) as f64,
        );
        println!("  {:<20} {:>9} {:>10}  actions", "event type", "count", "mean body");
        for (event, actions) in &self.kinds {
            let (n, bytes) = actions.values().fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2));
            let detail: Vec<String> = actions.iter().map(|(a, (n, _))| format!("{a} {}", thousands(*n))).collect();
            println!(
                "  {event:<20} {:>9} {:>8.1} KB  {}",
                thousands(n),
                bytes as f64 / n.max(1) as f64 / 1000.0,
                detail.join(", ")
            );
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("http") => http(&args).await,
        Some("file") => file(&args),
        Some("suite") => suite::run(&args).await,
        Some("flood") => flood(&args),
        _ => {
            eprintln!(
                "usage: loadgen http --url URL --secret S [--mix realistic|simple] [--repos N] [--rate N] [--seconds N] [--connections N] [--prepared N]\n       \
                 loadgen file --out PATH [--count N] [--mix realistic|simple] [--repos N]\n       \
                 loadgen suite --bin PATH [--port N] [--seconds N] [--rate N] [--count N] [--connections N] [--mix M] [--repos N] [--dir PATH] [--keep]\n       \
                 loadgen flood --url URL --pid PID [--senders N] [--mb N]"
            );
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------- file

fn file(args: &[String]) {
    let out = arg(args, "--out", "deliveries.jsonl");
    let count: u64 = arg(args, "--count", "100000").parse().unwrap();
    let mix = Mix::from_args(args, count, 0);
    let tally = write_file(&mix, count, std::path::Path::new(&out));
    println!("wrote {} deliveries ({} bytes of bodies) to {out}", thousands(tally.deliveries), thousands(tally.bytes));
    tally.print(mix.name());
}

/// Writes deliveries `0..count` of `mix` as a recording for `valuestream replay`.
pub fn write_file(mix: &Mix, count: u64, out: &std::path::Path) -> Tally {
    let mut writer = std::io::BufWriter::new(std::fs::File::create(out).expect("the output file"));
    let mut tally = Tally::default();
    for n in 0..count.min(mix.len()) {
        let delivery = mix.delivery(n);
        tally.add(&delivery);
        // The body is compact JSON already: it goes into the line as it is.
        let headers = json!({"X-GitHub-Event": delivery.event, "X-GitHub-Delivery": format!("load-{n}")});
        write!(writer, r#"{{"source":"github","headers":{headers},"body":"#).unwrap();
        writer.write_all(&delivery.body).unwrap();
        writer.write_all(b"}\n").unwrap();
    }
    writer.flush().unwrap();
    tally
}

// ---------------------------------------------------------------- http

/// A request ready to send: signed before the clock starts.
pub struct Prepared {
    event: &'static str,
    body: bytes::Bytes,
    signature: String,
}

/// Deliveries `0..count` of `mix`, signed with `secret`, made on every core
/// (before any measurement starts), and what they are.
pub fn prepare(mix: &Mix, count: u64, secret: &str) -> (Vec<Prepared>, Tally) {
    let count = count.min(mix.len());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = count.div_ceil(threads).max(1);
    let started = Instant::now();
    let parts: Vec<(Vec<Prepared>, Tally)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..count)
            .step_by(chunk as usize)
            .map(|first| {
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    let prepared = (first..(first + chunk).min(count))
                        .map(|n| {
                            let delivery = mix.delivery(n);
                            tally.add(&delivery);
                            let signature = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &delivery.body));
                            Prepared { event: delivery.event, body: delivery.body.into(), signature }
                        })
                        .collect();
                    (prepared, tally)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all = Vec::with_capacity(count as usize);
    let mut tally = Tally::default();
    for (prepared, part) in parts {
        all.extend(prepared);
        tally.merge(part);
    }
    eprintln!("prepared and signed {} deliveries in {:.1} s", thousands(count), started.elapsed().as_secs_f64());
    (all, tally)
}

/// The span of each throughput figure of a run.
const WINDOW: Duration = Duration::from_secs(10);

/// How a load is sent.
pub struct Load {
    /// `http://HOST:PORT` of the server.
    pub url: String,
    /// Deliveries per second; 0: as fast as the connections allow.
    pub rate: u64,
    pub seconds: u64,
    pub connections: usize,
    /// Delivery ids are `load-{start_at + n}`.
    pub start_at: u64,
}

/// What a load got back.
pub struct Outcome {
    /// Latencies of the 2xx answers, sorted.
    latencies: Vec<Duration>,
    /// 2xx answers in each 10 s of the run: whether the rate holds or falls
    /// as the store grows.
    per_window: Vec<u64>,
    /// Answers that were not 2xx, by what they were: count and the first body.
    errors: BTreeMap<String, (u64, String)>,
    elapsed: f64,
    /// Requests that re-sent a prepared body (the run outlasted `--prepared`).
    repeats: u64,
    /// At a fixed rate: how late the latest request started against its
    /// schedule. More than a little means the server did not keep up, and
    /// the latencies (timed from each request's start) understate the wait.
    behind: Duration,
}

impl Outcome {
    pub fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    pub fn throughput(&self) -> f64 {
        self.ok() as f64 / self.elapsed
    }

    /// The p-th latency (0..=1) in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    pub fn print(&self) {
        println!(
            "{} ok, {} errors in {:.1} s: {:.0} deliveries/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ok(),
            self.error_count(),
            self.elapsed,
            self.throughput(),
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(1.0)
        );
        let windows: Vec<String> =
            self.per_window.iter().map(|&n| format!("{}/s", thousands(n / WINDOW.as_secs()))).collect();
        println!("  by {} s: {}", WINDOW.as_secs(), windows.join(", "));
        for (what, (n, first)) in &self.errors {
            println!("  {n} × {what}; the first said: {first}");
        }
        if self.behind > Duration::from_millis(100) {
            println!(
                "  note: requests started up to {:.1} s behind the fixed rate's schedule (the server did not keep up)",
                self.behind.as_secs_f64()
            );
        }
        if self.repeats > 0 {
            println!(
                "  note: {} requests re-sent a prepared body under a new delivery id (raise --prepared)",
                self.repeats
            );
        }
    }
}

async fn http(args: &[String]) {
    let load = Load {
        url: arg(args, "--url", "http://127.0.0.1:5000"),
        rate: arg(args, "--rate", "0").parse().unwrap(),
        seconds: arg(args, "--seconds", "20").parse().unwrap(),
        connections: arg(args, "--connections", "64").parse().unwrap(),
        start_at: arg(args, "--start", &format!("{}", std::process::id() as u64 * 1_000_000)).parse().unwrap(),
    };
    let secret = arg(args, "--secret", "");
    let simple = arg(args, "--mix", "realistic") == "simple";
    let prepared: u64 = match args.iter().any(|a| a == "--prepared") {
        true => arg(args, "--prepared", "").parse().expect("--prepared N"),
        false if simple => 4_000,
        false => enough_for(&load),
    };
    let mix = Mix::from_args(args, prepared, load.start_at);
    let (bodies, tally) = prepare(&mix, prepared, &secret);
    tally.print(mix.name());
    let outcome = send(&load, Arc::new(bodies)).await;
    outcome.print();
}

/// Deliveries to prepare so that a realistic run never repeats one: the
/// fixed rate's count, or, as fast as possible, a rate above what the
/// service reaches today (a faster service will see repeats, and say so).
pub fn enough_for(load: &Load) -> u64 {
    let rate = if load.rate > 0 { load.rate } else { 5_000 };
    rate * load.seconds + load.connections as u64
}

/// Sends `bodies` (cycled, each time with a new delivery id) as `load` says.
pub async fn send(load: &Load, bodies: Arc<Vec<Prepared>>) -> Outcome {
    let url = format!("{}/webhooks/github", load.url);
    let (rate, connections, start_at) = (load.rate, load.connections, load.start_at);
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build().unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, (u64, String)>::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(load.seconds);
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (client, url, bodies, next, errors) =
            (client.clone(), url.clone(), bodies.clone(), next.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut answered_at = Vec::new();
            let mut behind = Duration::ZERO;
            let mut sent = 0u64;
            loop {
                if rate > 0 {
                    // Fixed rate: this worker's share, scheduled from the start time.
                    let due = started
                        + Duration::from_secs_f64((sent * connections as u64 + worker as u64) as f64 / rate as f64);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    behind = behind.max(Instant::now() - due);
                } else if Instant::now() >= deadline {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Prepared { event, body, signature } = &bodies[(n % bodies.len() as u64) as usize];
                let begin = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", *event)
                    .header("x-github-delivery", format!("load-{}", start_at + n))
                    .header("x-hub-signature-256", signature.as_str())
                    .body(body.clone())
                    .send()
                    .await;
                let failure = match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(begin.elapsed());
                        answered_at.push(started.elapsed());
                        None
                    }
                    Ok(r) => Some((format!("HTTP {}", r.status()), r.text().await.unwrap_or_default())),
                    Err(e) => Some((if e.is_timeout() { "timeout" } else { "connection error" }.into(), e.to_string())),
                };
                if let Some((what, text)) = failure {
                    let mut errors = errors.lock().unwrap();
                    let entry = errors.entry(what).or_insert((0, text.chars().take(300).collect()));
                    entry.0 += 1;
                }
                sent += 1;
            }
            (latencies, answered_at, behind)
        }));
    }
    let mut latencies = Vec::new();
    let mut per_window = Vec::new();
    let mut behind = Duration::ZERO;
    for worker in workers {
        let (own, answered_at, late) = worker.await.unwrap();
        latencies.extend(own);
        for at in answered_at {
            let window = (at.as_secs() / WINDOW.as_secs()) as usize;
            if per_window.len() <= window {
                per_window.resize(window + 1, 0);
            }
            per_window[window] += 1;
        }
        behind = behind.max(late);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Whole windows only: the last, partial one would read as a drop.
    per_window.truncate((elapsed / WINDOW.as_secs_f64()) as usize);
    latencies.sort();
    let requests = next.load(Ordering::Relaxed);
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    Outcome { latencies, per_window, errors, elapsed, repeats: requests.saturating_sub(bodies.len() as u64), behind }
}

// ---------------------------------------------------------------- flood

/// Resident memory and its peak, in MB, of process `pid`.
fn resident_mb(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc/PID/status");
    let kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let mb = |v: Option<u64>| v.unwrap_or(0) * 1024 / 1_000_000;
    (mb(kb("VmRSS:")), mb(kb("VmHWM:")))
}

fn flood(args: &[String]) {
    use std::io::Read;
    let url = arg(args, "--url", "http://127.0.0.1:5000");
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let pid = arg(args, "--pid", "");
    let senders: usize = arg(args, "--senders", "50").parse().unwrap();
    let size: usize = arg(args, "--mb", "20").parse::<usize>().unwrap() * 1_000_000;
    let mut body = simple::Simple::new().issue;
    body["issue"]["body"] = json!("");
    let shell = body.to_string();
    let body = Arc::new(shell.replacen(r#""body":"""#, &format!(r#""body":"{}""#, "x".repeat(size - shell.len())), 1));
    let (before, _) = resident_mb(&pid);
    let barrier = Arc::new(std::sync::Barrier::new(senders));
    let started = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|i| {
            let (address, body, barrier) = (address.clone(), body.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                let head = format!(
                    "POST /webhooks/github HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n\
                     X-GitHub-Event: issues\r\nX-GitHub-Delivery: flood-{}-{i}\r\nContent-Length: {}\r\n\r\n",
                    std::process::id(),
                    body.len()
                );
                barrier.wait();
                let mut answer = String::new();
                let sent = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
                match sent.and_then(|_| stream.read_to_string(&mut answer)) {
                    Ok(_) => answer.lines().next().unwrap_or("(no answer)").to_string(),
                    Err(error) => format!("error: {}", error.kind()),
                }
            })
        })
        .collect();
    let mut peak_sampled = 0;
    while threads.iter().any(|t| !t.is_finished()) {
        peak_sampled = peak_sampled.max(resident_mb(&pid).0);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for thread in threads {
        *answers.entry(thread.join().unwrap()).or_default() += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (after, peak) = resident_mb(&pid);
    std::thread::sleep(Duration::from_secs(3));
    let (later, _) = resident_mb(&pid);
    println!("{senders} senders of {} MB in {elapsed:.1} s: {answers:?}", size / 1_000_000);
    println!(
        "server resident memory: {before} MB before, peak {peak} MB (sampled {peak_sampled} MB), {after} MB right after, {later} MB 3 s later"
    );
}
