//! `loadgen suite`: the ingest benchmarks of docs/benchmarks.md in one
//! command, each on a fresh SQLite store in its own folder:
//!
//! - (a) `valuestream serve`, then as fast as `--connections` (64) allow for
//!   `--seconds` (60);
//! - (b) `valuestream serve`, then a fixed `--rate` (1,000/s) for as long;
//! - (c) a recording of `--count` (100,000) deliveries written by `file`,
//!   then `valuestream replay` of it, timed (writing the file is not).
//!
//! (a) and (b) send the same prepared deliveries, signed before any clock
//! starts. It prints one markdown table: throughput, latency percentiles
//! (of the 2xx answers) and the store's size (database + WAL) per stored
//! delivery, then the answers that were not 2xx. The folders are removed
//! at the end unless `--keep`.

use super::{Load, Mix, Outcome, arg, enough_for, prepare, send, thousands, write_file};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The webhook secret the suite's servers check.
const SECRET: &str = "loadgen-suite-secret";

/// One line of the table.
struct Row {
    what: String,
    throughput: String,
    /// p50, p90, p99, max in ms, when there are latencies.
    latencies: Option<[f64; 4]>,
    stored_per_delivery: u64,
}

impl Row {
    fn http(what: String, outcome: &Outcome, stored: u64) -> Row {
        let mut throughput = format!("{}/s", thousands(outcome.throughput().round() as u64));
        if outcome.behind > Duration::from_millis(100) {
            throughput += &format!(" (fell {:.1} s behind)", outcome.behind.as_secs_f64());
        }
        Row {
            what,
            throughput,
            latencies: Some([0.5, 0.9, 0.99, 1.0].map(|p| outcome.percentile(p))),
            stored_per_delivery: stored / outcome.ok().max(1),
        }
    }
}

pub async fn run(args: &[String]) {
    let bin = PathBuf::from(arg(args, "--bin", ""));
    if !bin.is_file() {
        eprintln!("suite needs --bin PATH of the valuestream binary (target/release/valuestream)");
        std::process::exit(2);
    }
    let port: u16 = arg(args, "--port", "5070").parse().expect("--port N");
    let seconds: u64 = arg(args, "--seconds", "60").parse().expect("--seconds N");
    let rate: u64 = arg(args, "--rate", "1000").parse().expect("--rate N");
    let count: u64 = arg(args, "--count", "100000").parse().expect("--count N");
    let connections: usize = arg(args, "--connections", "64").parse().expect("--connections N");
    let dir = PathBuf::from(arg(
        args,
        "--dir",
        &std::env::temp_dir().join(format!("valuestream-suite-{}", std::process::id())).display().to_string(),
    ));
    let keep = args.iter().any(|a| a == "--keep");
    let url = format!("http://127.0.0.1:{port}");
    let fast = Load { url: url.clone(), rate: 0, seconds, connections, start_at: 0 };
    let fixed = Load { url: url.clone(), rate, seconds, connections, start_at: 0 };

    // Enough for whichever run needs more; the fixed rate sends a prefix of it.
    let needed = enough_for(&fast).max(enough_for(&fixed));
    let mix = Mix::from_args(args, needed, 0);
    let (bodies, tally) = prepare(&mix, needed, SECRET);
    tally.print(mix.name());
    let bodies = Arc::new(bodies);
    drop(mix);

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (what, load, folder) in [
        (format!("HTTP, as fast as {connections} connections allow, {seconds} s"), &fast, "a-fast"),
        (format!("HTTP at a fixed {}/s, {seconds} s", thousands(rate)), &fixed, "b-rate"),
    ] {
        let server = Server::start(&bin, &dir.join(folder), port).await;
        eprintln!("({folder}) {what} …");
        let outcome = send(load, bodies.clone()).await;
        outcome.print();
        let stored = server.stored_bytes();
        server.stop();
        notes.push(format!("{what}: {} answered 2xx, {} not", thousands(outcome.ok()), outcome.error_count()));
        for (kind, (n, first)) in &outcome.errors {
            notes.push(format!("  {n} × {kind}; the first said: {first}"));
        }
        rows.push(Row::http(what, &outcome, stored));
    }
    drop(bodies);

    // (c) replay: the recording is written first, outside the timing.
    let folder = dir.join("c-replay");
    std::fs::create_dir_all(&folder).unwrap();
    let recording = folder.join("deliveries.jsonl");
    let mix = Mix::from_args(args, count, 0);
    let tally = write_file(&mix, count, &recording);
    drop(mix);
    eprintln!("(c-replay) replay of {} deliveries …", thousands(tally.deliveries));
    let database = folder.join("vs.db");
    let started = Instant::now();
    let output = clean_command(&bin)
        .arg("replay")
        .arg(&recording)
        .arg("--database")
        .arg(format!("sqlite://{}", database.display()))
        .output()
        .expect("valuestream replay runs");
    let elapsed = started.elapsed().as_secs_f64();
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        notes.push(format!("replay failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    notes.push(format!("replay: {said}"));
    rows.push(Row {
        what: format!("`valuestream replay` of {} deliveries ({:.1} s)", thousands(tally.deliveries), elapsed),
        throughput: format!("{}/s", thousands((tally.deliveries as f64 / elapsed).round() as u64)),
        latencies: None,
        stored_per_delivery: store_size(&database) / tally.deliveries.max(1),
    });

    println!();
    println!("| what | throughput | p50 | p90 | p99 | max | stored bytes per delivery |");
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        let latencies = match row.latencies {
            Some(l) => l.map(|ms| format!("{ms:.1} ms")),
            None => ["–".to_string(), "–".to_string(), "–".to_string(), "–".to_string()],
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.what,
            row.throughput,
            latencies[0],
            latencies[1],
            latencies[2],
            latencies[3],
            thousands(row.stored_per_delivery)
        );
    }
    println!();
    for note in notes {
        println!("{note}");
    }
    if keep {
        println!("stores kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A `valuestream` command without the caller's `VS_*` settings (a
/// `VS_CONFIG` or `VS_DATABASE_URL` of the shell would change what runs),
/// logging warnings only.
fn clean_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars() {
        if name.starts_with("VS_") {
            command.env_remove(name);
        }
    }
    command.env("VS_LOG_LEVEL", "warn");
    command
}

/// Size of a SQLite store: the database and its WAL.
fn store_size(database: &Path) -> u64 {
    let size = |path: PathBuf| std::fs::metadata(path).map_or(0, |m| m.len());
    size(database.to_path_buf()) + size(PathBuf::from(format!("{}-wal", database.display())))
}

/// A `valuestream serve` this suite started.
struct Server {
    child: Child,
    database: PathBuf,
}

impl Server {
    /// Starts `serve` on a fresh store in `folder` (its log goes to
    /// `folder/serve.log`) and waits until `/readyz` answers 200.
    async fn start(bin: &Path, folder: &Path, port: u16) -> Server {
        let _ = std::fs::remove_dir_all(folder);
        std::fs::create_dir_all(folder).unwrap();
        // Another server on the port would answer our requests: refuse to start.
        if let Err(error) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            eprintln!("port {port} is not free ({error}): pass another --port");
            std::process::exit(1);
        }
        let database = folder.join("vs.db");
        let log = std::fs::File::create(folder.join("serve.log")).unwrap();
        let mut child = clean_command(bin)
            .arg("serve")
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tracer")
            .arg("none")
            .arg("--database")
            .arg(format!("sqlite://{}", database.display()))
            .env("VS_GITHUB_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("valuestream serve starts");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("valuestream serve exited ({status}); its log: {}", folder.join("serve.log").display());
                std::process::exit(1);
            }
            let ready = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                eprintln!("valuestream serve was not ready within 60 s");
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Server { child, database }
    }

    fn stored_bytes(&self) -> u64 {
        store_size(&self.database)
    }

    /// Stops the server as an operator would (SIGTERM, so it finishes its
    /// group and closes the store); after 30 s, kills it.
    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
