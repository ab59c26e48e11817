//! Load generator for the quality bars (docs/benchmarks.md).
//!
//! `cargo run --release --example loadgen -- http --url http://127.0.0.1:5000 --secret S --rate 0 --seconds 20`
//!   sends signed, real-shaped GitHub deliveries (vendored @octokit payloads
//!   with varied repository, number and title; `--prepared` distinct bodies,
//!   signed before the clock starts, cycled with a new delivery id each) and
//!   reports throughput and latency percentiles. `--rate 0`
//!   means as fast as `--connections` allow; otherwise a fixed rate per second.
//! `cargo run --release --example loadgen -- file --out deliveries.jsonl --count 100000`
//!   writes a JSON Lines recording for `valuestream replay`.
//! `cargo run --release --example loadgen -- flood --url http://127.0.0.1:5000 --pid PID --senders 50 --mb 20`
//!   sends that many unsigned GitHub deliveries of that many MB (10^6 bytes) at
//!   once, each on its own connection, and reports their answers and the
//!   server's resident memory (`/proc/PID/status`) at its peak and after.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use valuestream_core::verify::hmac_sha256_hex;

/// Distinct issues/pull requests the load spreads over (events per span = deliveries / SPANS).
const SPANS: u64 = 20_000;

struct Templates {
    issue: Value,
    pull_request: Value,
}

fn templates() -> Templates {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../valuestream-core/tests/data/github");
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(format!("{dir}/{name}.json")).expect("vendored payload")).unwrap()
    };
    Templates { issue: read("issues.opened.plain"), pull_request: read("pull_request.opened.installation") }
}

/// The n-th delivery: alternately an issue and a pull request event, spread
/// over `SPANS` spans in 200 repositories, times moving forward with n.
fn delivery(templates: &Templates, n: u64) -> (&'static str, Vec<u8>) {
    let span = n % SPANS;
    let repo = format!("repo-{}", span % 200);
    let number = span / 200 + 1;
    let minute = 60 * (n / SPANS) as i64;
    let time = |offset: i64| {
        chrono::DateTime::from_timestamp(1_790_000_000 + span as i64 * 60 + minute + offset, 0).unwrap().to_rfc3339()
    };
    let (event, mut body, object) = if n.is_multiple_of(2) {
        ("issues", templates.issue.clone(), "issue")
    } else {
        ("pull_request", templates.pull_request.clone(), "pull_request")
    };
    body["repository"]["name"] = json!(repo);
    body["repository"]["full_name"] = json!(format!("load-org/{repo}"));
    let closing = (n / SPANS) % 2 == 1;
    body["action"] = json!(if closing { "closed" } else { "opened" });
    let o = &mut body[object];
    o["number"] = json!(number);
    o["title"] = json!(format!("Change number {n} to the service"));
    o["created_at"] = json!(time(0));
    o["updated_at"] = json!(time(30));
    o["state"] = json!(if closing { "closed" } else { "open" });
    o["closed_at"] = if closing { json!(time(30)) } else { Value::Null };
    if object == "pull_request" {
        o["head"]["ref"] = json!(format!("feature/vstrace-github-{repo}-{number}/work"));
    }
    (event, serde_json::to_vec(&body).unwrap())
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("http") => http(&args).await,
        Some("file") => file(&args),
        Some("flood") => flood(&args),
        _ => {
            eprintln!(
                "usage: loadgen http --url URL --secret S [--rate N] [--seconds N] [--connections N]\n       loadgen file --out PATH [--count N]\n       loadgen flood --url URL --pid PID [--senders N] [--mb N]"
            );
            std::process::exit(2);
        }
    }
}

fn file(args: &[String]) {
    let out = arg(args, "--out", "deliveries.jsonl");
    let count: u64 = arg(args, "--count", "100000").parse().unwrap();
    let templates = templates();
    let mut writer = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    let mut bytes = 0;
    for n in 0..count {
        let (event, body) = delivery(&templates, n);
        bytes += body.len();
        let line = json!({
            "source": "github",
            "headers": {"X-GitHub-Event": event, "X-GitHub-Delivery": format!("load-{n}")},
            "body": serde_json::from_slice::<Value>(&body).unwrap(),
        });
        std::io::Write::write_all(&mut writer, format!("{line}\n").as_bytes()).unwrap();
    }
    eprintln!(
        "wrote {count} deliveries ({} bytes of bodies, mean {} bytes) to {out}",
        bytes,
        bytes as u64 / count.max(1)
    );
}

async fn http(args: &[String]) {
    let url = format!("{}/webhooks/github", arg(args, "--url", "http://127.0.0.1:5000"));
    let secret = arg(args, "--secret", "");
    let rate: u64 = arg(args, "--rate", "0").parse().unwrap();
    let seconds: u64 = arg(args, "--seconds", "20").parse().unwrap();
    let connections: usize = arg(args, "--connections", "64").parse().unwrap();
    let start_at: u64 = arg(args, "--start", &format!("{}", std::process::id() as u64 * 1_000_000)).parse().unwrap();

    // Bodies and signatures are made before the clock starts, so the
    // generator's own JSON work does not compete with the server for CPU.
    let prepared: u64 = arg(args, "--prepared", "4000").parse().unwrap();
    let templates = templates();
    let bodies: Arc<Vec<(&'static str, Vec<u8>, String)>> = Arc::new(
        (start_at..start_at + prepared)
            .map(|n| {
                let (event, body) = delivery(&templates, n);
                let signature = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &body));
                (event, body, signature)
            })
            .collect(),
    );
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build().unwrap();
    let next = Arc::new(AtomicU64::new(start_at));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (client, url, bodies, next, errors) =
            (client.clone(), url.clone(), bodies.clone(), next.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
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
                } else if Instant::now() >= deadline {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                let (event, body, signature) = &bodies[((n - start_at) % prepared) as usize];
                let begin = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", *event)
                    .header("x-github-delivery", format!("load-{n}"))
                    .header("x-hub-signature-256", signature.as_str())
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(begin.elapsed());
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{} ok, {} errors in {elapsed:.1} s: {:.0} deliveries/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        errors.load(Ordering::Relaxed),
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

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
    use std::io::{Read, Write};
    let url = arg(args, "--url", "http://127.0.0.1:5000");
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let pid = arg(args, "--pid", "");
    let senders: usize = arg(args, "--senders", "50").parse().unwrap();
    let size: usize = arg(args, "--mb", "20").parse::<usize>().unwrap() * 1_000_000;
    let mut body = templates().issue;
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
