//! The built-in dashboard (`GET /`), against the real server on port 0 with
//! a store filled by signed real-shaped GitHub deliveries.
//!
//! Without a browser: the pages and assets come from the binary with the
//! right content types, no asset names a URL off this site, the hover text
//! is docs/metrics.md's, and the API token's cookie flow.
//!
//! In a real headless Chromium (Debian's `chromium`; `#[ignore]`d, run by
//! `.ci/run`'s `cargo test -- --ignored`, failing when Chromium is missing):
//! the DORA tiles show `/api/v1/dora`'s numbers for the URL's filters, the
//! trace page draws the trace's tree, a deep link selects its span, the other
//! pages render, and a `?token=` signs the browser in. Screenshots at
//! 1280×800 and 390×844 go to `$VS_SCREENSHOT_DIR` (default: a folder in the
//! cargo target directory).

mod support;

use regex::Regex;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use valuestream::config::TracerBackend;
use valuestream::dashboard::{ASSETS, TOKEN_COOKIE, VERSION};
use valuestream_core::ids;

const TOKEN: &str = "dash token; with = odd chars";
const SINCE: &str = "2026-11-15T00:00:00Z";
const UNTIL: &str = "2026-11-29T00:00:00Z";
const DEPLOY_991: &str = "github:octo-org/hello-world:deploy:991";
const OPEN_ISSUE: &str = "github:octo-org/hello-world:issue:28";

async fn seeded(api_token: Option<&str>) -> App {
    let token = api_token.map(str::to_string);
    let app = spawn_app(move |db| {
        let mut c = config(db, TracerBackend::None, None, &[SECRET]);
        c.api_token = token;
        c
    })
    .await;
    for (i, (event, body)) in delivery_scenario().iter().enumerate() {
        let (status, answer) = app.github(event, &format!("dash-{i}"), body).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{event}: {answer}");
    }
    app
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn window() -> String {
    format!("since={SINCE}&until={UNTIL}")
}

// ---------------------------------------------------------------- without a browser

#[tokio::test]
async fn every_page_is_the_shell_and_every_asset_comes_from_the_binary() {
    let app = seeded(None).await;
    let trace_id = ids::trace_id(ISSUE_KEY);
    for path in ["/", "/?since=7d", "/kinds", "/open", "/traces", &format!("/traces/{trace_id}?span=abc")] {
        let response = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8", "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
        let html = response.text().await.unwrap();
        assert!(html.contains(&format!("src=\"/assets/{}/js/app.js\"", *VERSION)), "{html}");
        assert!(html.contains(&format!("href=\"/assets/{}/style.css\"", *VERSION)), "{html}");
        assert!(!html.contains("{{"), "every placeholder filled: {html}");
    }

    for asset in ASSETS {
        let url = format!("{}/assets/{}/{}", app.base, *VERSION, asset.path);
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", asset.path);
        let expected_type = match asset.path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "json" => "application/json",
            _ => "text/plain; charset=utf-8",
        };
        assert_eq!(response.headers()["content-type"], expected_type, "{}", asset.path);
        assert_eq!(response.headers()["cache-control"], "public, max-age=31536000, immutable", "{}", asset.path);
        assert_eq!(response.bytes().await.unwrap().as_ref(), asset.body, "{}", asset.path);
    }
    // Gzip for a browser that takes it.
    let script = ASSETS.iter().find(|a| a.path == "vendor/uplot/uPlot.iife.min.js").unwrap();
    let gzipped = app
        .client
        .get(format!("{}/assets/{}/{}", app.base, *VERSION, script.path))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["content-type"], "text/javascript; charset=utf-8");
    let compressed = gzipped.bytes().await.unwrap();
    assert!(compressed.len() < script.body.len() / 2, "{} of {} bytes", compressed.len(), script.body.len());
    // The whole dashboard's scripts and styles stay small.
    let code: usize =
        ASSETS.iter().filter(|a| a.path.ends_with(".js") || a.path.ends_with(".css")).map(|a| a.body.len()).sum();
    assert!(code < 300_000, "JavaScript and CSS: {code} bytes");

    // The vendored chart library ships with its licence, in the binary too.
    let licence = ASSETS.iter().find(|a| a.path == "vendor/uplot/LICENSE").expect("uPlot's licence is served");
    assert!(std::str::from_utf8(licence.body).unwrap().contains("The MIT License"));

    // Another build's URL is served but not cached for good; an unknown file is 404.
    let old = app.client.get(format!("{}/assets/0000/js/app.js", app.base)).send().await.unwrap();
    assert_eq!((old.status().as_u16(), old.headers()["cache-control"].to_str().unwrap()), (200, "no-cache"));
    let (status, body) = app.get(&format!("/assets/{}/js/missing.js", *VERSION)).await;
    assert_eq!(status, 404, "{body}");
    // Every module a script imports is an asset the server has.
    let import = Regex::new(r#"from '\./([a-z]+\.js)'"#).unwrap();
    for asset in ASSETS.iter().filter(|a| a.path.starts_with("js/")) {
        for found in import.captures_iter(std::str::from_utf8(asset.body).unwrap()) {
            let wanted = format!("js/{}", &found[1]);
            assert!(ASSETS.iter().any(|a| a.path == wanted), "{} imports {wanted}, which is not embedded", asset.path);
        }
    }
    app.stop().await;
}

#[test]
fn no_asset_points_off_this_site() {
    // Where a page can load from: src/href/url()/import/fetch with an absolute URL.
    let loads = Regex::new(r#"(?i)(src|href|action)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|import\s*\(?\s*["'](https?:)?//|fetch\(\s*["'](https?:)?//|new\s+(WebSocket|EventSource)\("#).unwrap();
    let html = [include_str!("../web/index.html"), include_str!("../web/sign-in.html")];
    let bodies = ASSETS.iter().map(|a| (a.path, std::str::from_utf8(a.body).unwrap())).chain(html.map(|h| ("html", h)));
    let absolute = Regex::new(r"https?://[^\s'`)]+").unwrap();
    for (path, text) in bodies {
        assert!(!loads.is_match(text), "{path} loads something from another site: {:?}", loads.find(text));
        // Any other absolute URL is only the vendored library's banner or its licence.
        for found in absolute.find_iter(text) {
            let allowed = path.starts_with("vendor/uplot/") && found.as_str() == "https://github.com/leeoniya/uPlot";
            assert!(allowed, "{path} names {}", found.as_str());
        }
    }
}

#[test]
fn the_hover_text_is_the_text_of_docs_metrics_md() {
    let docs = std::fs::read_to_string(format!("{}/../../docs/metrics.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let asset = ASSETS.iter().find(|a| a.path == "definitions.json").unwrap();
    let definitions: Value = serde_json::from_slice(asset.body).unwrap();
    let mut checked = 0;
    let mut check = |text: &str| {
        assert!(docs.contains(text), "docs/metrics.md does not say {text:?}");
        checked += 1;
    };
    for (_, key) in definitions["dora"].as_object().unwrap() {
        check(key["definition"].as_str().unwrap());
        check(key["bands"].as_str().unwrap());
    }
    for section in ["breakdown", "summary"] {
        for (_, text) in definitions[section].as_object().unwrap() {
            check(text.as_str().unwrap());
        }
    }
    assert_eq!(checked, 12 + 4 + 7);
}

#[tokio::test]
async fn with_a_token_pages_ask_for_it_once_and_a_cookie_opens_the_api() {
    let app = seeded(Some(TOKEN)).await;
    let client = no_redirects();
    let get = |path: String, cookie: Option<String>| {
        let mut request = client.get(format!("{}{path}", app.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    // No token: the page is the sign-in form, the API is 401.
    let page = get("/kinds?since=7d".into(), None).await.unwrap();
    assert_eq!(page.status(), 401);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let form = page.text().await.unwrap();
    assert!(form.contains("action=\"/sign-in\"") && form.contains("value=\"/kinds?since=7d\""), "{form}");
    assert!(!form.contains("js/app.js"), "the app is not served before signing in");
    assert_eq!(get("/api/v1/dora".into(), None).await.unwrap().status(), 401);
    // Assets hold no data and are served to the sign-in page.
    assert_eq!(get(format!("/assets/{}/style.css", *VERSION), None).await.unwrap().status(), 200);

    // A wrong ?token= is refused.
    let wrong = get("/?token=nope".into(), None).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    // The right one once: a redirect to the same view without it, and the cookie.
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("since", "7d")
        .append_pair("token", TOKEN)
        .append_pair("repo", "octo-org/hello-world")
        .finish();
    let signed = get(format!("/traces?{query}"), None).await.unwrap();
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], "/traces?since=7d&repo=octo-org%2Fhello-world");
    let set_cookie = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.starts_with(&format!("{TOKEN_COOKIE}=")), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie} lacks {attribute}");
    }
    assert!(!set_cookie.contains(TOKEN) && !set_cookie.contains("dash"), "the cookie is no copy of the token");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // The cookie opens the pages and the API; Bearer still works; a bad cookie does not.
    assert_eq!(get("/".into(), Some(cookie.clone())).await.unwrap().status(), 200);
    let dora = get(format!("/api/v1/dora?{}", window()), Some(cookie.clone())).await.unwrap();
    assert_eq!(dora.status(), 200);
    let bearer = client.get(format!("{}/api/v1/dora?{}", app.base, window())).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    let forged = format!("{TOKEN_COOKIE}={}", "0".repeat(64));
    assert_eq!(get("/api/v1/spans".into(), Some(forged.clone())).await.unwrap().status(), 401);
    assert_eq!(get("/".into(), Some(forged)).await.unwrap().status(), 401);

    // The form: a right token signs in and goes on to `next`, only on this site.
    let post = |token: &str, next: &str| {
        client.post(format!("{}/sign-in", app.base)).form(&[("token", token), ("next", next)]).send()
    };
    let ok = post(TOKEN, "/open?since=90d").await.unwrap();
    assert_eq!((ok.status().as_u16(), ok.headers()["location"].to_str().unwrap()), (303, "/open?since=90d"));
    assert!(ok.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly"));
    let away = post(TOKEN, "//evil.example/").await.unwrap();
    assert_eq!(away.headers()["location"], "/", "never a redirect off the site");
    let bad = post("nope", "/").await.unwrap();
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    app.stop().await;
}

#[tokio::test]
async fn the_search_box_finds_a_trace_by_sha_and_spans_filter_by_environment_and_outcome() {
    let app = seeded(None).await;
    let trace_id = ids::trace_id(ISSUE_KEY);
    // The merge commit, whole and as a short prefix, and the key and reference as typed.
    for reference in
        [MERGE_SHA, &MERGE_SHA[..10], "GITHUB:octo-org/hello-world:pull_request:42", "vstrace-github-hello-world-27"]
    {
        let (status, trace) = app.get(&format!("/api/v1/traces?ref={}", urlencode(reference))).await;
        assert_eq!((status, trace["trace_id"].as_str()), (200, Some(trace_id.as_str())), "{reference}: {trace}");
    }
    let (status, _) = app.get("/api/v1/traces?ref=abcdef0").await;
    assert_eq!(status, 404, "a sha no span has");

    let (status, failed) = app.get("/api/v1/spans?kind=deploy&environment=production&outcome=failure").await;
    assert_eq!(status, 200, "{failed}");
    let keys: Vec<&str> = failed["spans"].as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["github:octo-org/hello-world:deploy:992"]);
    let (_, staging) = app.get("/api/v1/spans?kind=deploy&environment=staging").await;
    assert_eq!(staging["spans"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn meta_lists_the_names_seen_each_sources_last_delivery_and_the_spans_waiting_for_a_parent() {
    let app = seeded(None).await;
    let (status, meta) = app.get("/api/v1/meta").await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["repos"], json!(["octo-org/hello-world"]));
    assert_eq!(meta["projects"], json!(["hello-world"]));
    assert_eq!(meta["environments"], json!(["production"]));
    assert_eq!(meta["kinds"], json!(["build", "deploy", "incident", "issue", "job", "pull_request"]));
    assert_eq!(meta["sources"], json!(["github"]));
    // Received just now, by this test: a time, and only GitHub's.
    let last = meta["last_delivery"].as_object().unwrap();
    assert_eq!(last.keys().collect::<Vec<_>>(), vec!["github"]);
    assert!(last["github"].as_str().unwrap().starts_with("20"), "{meta}");
    assert_eq!(meta["waiting_references"], 0, "every span of the scenario found its parent");
    assert_eq!(meta["trace_url"], Value::Null, "no trace backend link configured");

    // A pull request that names an issue nobody has sent yet waits for it.
    let mut waiting = pull_request("opened", "open", "2026-11-26T10:00:00Z", None);
    waiting["number"] = json!(77);
    waiting["pull_request"]["number"] = json!(77);
    waiting["pull_request"]["head"]["ref"] = json!("feature/vstrace-github-hello-world-99/x");
    assert_eq!(app.github("pull_request", "waiting-1", &waiting).await.0, 200);
    assert_eq!(app.get("/api/v1/meta").await.1["waiting_references"], 1);
    // Its trace says what it waits for; the scenario's trace waits for nothing.
    let key = "github:octo-org/hello-world:pull_request:77";
    let (_, trace) = app.get(&format!("/api/v1/traces/{}", ids::trace_id(key))).await;
    let waiting = trace["waiting"].as_array().unwrap();
    assert!(waiting.iter().all(|w| w["span_key"] == key), "{trace}");
    assert_eq!(waiting[0]["ref"], "vstrace-github-hello-world-99", "the best reference first: {trace}");
    let (_, scenario) = app.get(&format!("/api/v1/traces/{}", ids::trace_id(ISSUE_KEY))).await;
    assert_eq!(scenario["waiting"], json!([]));
    let (status, error) = app.get("/api/v1/meta?repo=x").await;
    assert_eq!((status, error["error"].as_str()), (400, Some("unknown parameter `repo`")));
    app.stop().await;
}

#[tokio::test]
async fn dora_takes_a_bucket_and_answers_a_series_of_the_same_objects() {
    let app = seeded(None).await;
    let (status, weekly) = app.get(&format!("/api/v1/dora?{}&bucket=week", window())).await;
    assert_eq!(status, 200, "{weekly}");
    let (_, plain) = app.get(&format!("/api/v1/dora?{}", window())).await;
    assert!(plain.get("series").is_none(), "no series without bucket=");
    let mut total = weekly.clone();
    total.as_object_mut().unwrap().remove("series");
    assert_eq!(total, plain);
    // 11-15 is a Sunday: that day alone, then the weeks from Mondays 11-16 and 11-23.
    let starts: Vec<&str> = weekly["series"].as_array().unwrap().iter().map(|b| b["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-11-15T00:00:00Z", "2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z"]);
    let week = &weekly["series"][1];
    assert_eq!(week["end"], "2026-11-23T00:00:00Z");
    assert_eq!(week["deployment_frequency"]["deployments"], 2, "991 and 993: {week}");
    assert_eq!(week["change_failure_rate"]["failed"], 2, "{week}");
    for bad in ["hour", "WEEK"] {
        let (status, answer) = app.get(&format!("/api/v1/dora?bucket={bad}")).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("`bucket`"), "{answer}");
    }
    let (status, answer) = app.get("/api/v1/dora?since=2000-01-01T00:00:00Z&bucket=day").await;
    assert_eq!(status, 400, "too many buckets: {answer}");
    app.stop().await;
}

/// `/api/v1/dora/items`: for each key, as many rows as `/api/v1/dora`
/// counts for the same filters, each opening a trace the API knows; the
/// same rows as CSV; and 400s that say what is wrong.
#[tokio::test]
async fn dora_items_list_as_many_rows_as_the_key_counts_as_json_and_csv() {
    let app = seeded(None).await;
    let (_, keys) = app.get(&format!("/api/v1/dora?{}", window())).await;
    let counts = [
        ("deployments", &keys["deployment_frequency"]["deployments"]),
        ("changes", &keys["lead_time_for_changes"]["changes"]),
        ("failed", &keys["change_failure_rate"]["failed"]),
        ("incidents", &keys["time_to_restore"]["incidents"]),
        ("failures", &keys["failed_deployment_recovery_time"]["failures"]),
        ("rework", &keys["deployment_rework_rate"]["rework"]),
    ];
    let mut rows = 0;
    for (key, count) in counts {
        let (status, answer) = app.get(&format!("/api/v1/dora/items?key={key}&{}", window())).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["key"], key);
        let items = answer["items"].as_array().unwrap();
        assert_eq!(&json!(items.len()), count, "{key}: {answer}");
        assert_eq!(answer["count"], json!(items.len()));
        // `limit` cuts the rows, not the count.
        let (_, first) = app.get(&format!("/api/v1/dora/items?key={key}&limit=1&{}", window())).await;
        assert_eq!(first["count"], json!(items.len()), "{key}: {first}");
        assert_eq!(first["items"].as_array().unwrap().len(), items.len().min(1), "{key}");
        if let Some(newest) = items.first() {
            assert_eq!(&first["items"][0], newest, "{key}: the newest row first");
        }
        for item in items {
            let trace = item["trace_id"].as_str().unwrap();
            let (status, found) = app.get(&format!("/api/v1/traces/{trace}")).await;
            assert_eq!(status, 200, "{key}: {item}");
            let spans = found["spans"].as_array().unwrap();
            assert!(spans.iter().any(|s| s["key"] == item["span_key"]), "{key}: {item} is in its trace");
            assert!(item["reason"].is_string(), "{key}: every row says why: {item}");
        }
        let response = app
            .client
            .get(format!("{}/api/v1/dora/items?key={key}&format=csv&{}", app.base, window()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
        assert!(
            response.headers()["content-disposition"].to_str().unwrap().contains(&format!("valuestream-{key}.csv"))
        );
        let csv = response.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("time,span_key,trace_id,"), "{csv}");
        assert_eq!(lines.len(), items.len() + 1, "a header and one line per row: {csv}");
        rows += items.len();
    }
    assert!(rows > 5, "the scenario has rows behind its numbers");
    let (_, weekly) = app.get(&format!("/api/v1/dora/items?key=deployments&bucket=week&{}", window())).await;
    assert!(weekly["items"].as_array().unwrap().iter().all(|i| i["bucket"].is_string()), "{weekly}");
    for (query, says) in [
        ("", "`key` is required"),
        ("key=deploys", "`key` must be one of deployments, changes"),
        ("key=failed&format=xml", "`format` must be json or csv"),
        ("key=failed&bucket=hour", "`bucket`"),
        ("key=failed&colour=red", "unknown parameter `colour`"),
        ("key=failed&limit=0", "`limit` must be a whole number above 0"),
    ] {
        let (status, answer) = app.get(&format!("/api/v1/dora/items?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{query}: {answer}");
    }
    app.stop().await;
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

// ---------------------------------------------------------------- in a real browser

/// Debian's Chromium (or `$VS_CHROMIUM`); a missing browser fails the test.
fn chromium() -> PathBuf {
    let candidates = std::env::var_os("VS_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "Chromium is not installed: the dashboard's browser tests need it \
         (apt-get install -y --no-install-recommends chromium chromium-driver, as .ci/run does)"
    );
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("VS_SCREENSHOT_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        target.join("dashboard-screenshots")
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One browser at a time: the machine has two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one headless Chromium run printed.
struct Browser {
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium on `url` with `extra` flags (after the page's
/// scripts ran: `--virtual-time-budget` waits for its requests).
async fn browse(url: String, extra: Vec<String>) -> Browser {
    let binary = chromium();
    let _one = ONE_BROWSER.lock().await;
    tokio::task::spawn_blocking(move || {
        let profile = TempDir::new();
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=15000",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .args(&extra)
            .arg(&url)
            .env("TZ", "Europe/Berlin")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("Chromium did not finish {url} within 90 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "Chromium failed on {url}: {}", String::from_utf8_lossy(&output.stderr));
        Browser {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// The page's DOM once its scripts ran; fails on a console error or an
/// error the page shows.
async fn page_dom(url: String) -> String {
    let browser = browse(url.clone(), vec!["--dump-dom".into()]).await;
    let console: Vec<&str> = browser
        .stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Failed to load"))
        .collect();
    assert!(console.is_empty(), "console output on {url}:\n{}", console.join("\n"));
    let dom = browser.stdout;
    assert!(dom.contains("data-ready=\"true\""), "the page finished drawing {url}:\n{dom}");
    assert!(!dom.contains("class=\"error\""), "the page shows an error on {url}:\n{dom}");
    dom
}

/// Screenshots of `url` at the desktop and phone sizes, named
/// `{name}-{width}.png`, and the desktop's whole page (`{name}-full.png`).
async fn screenshots(url: &str, name: &str) {
    for (width, height, suffix) in [(1280, 800, "1280"), (390, 844, "390"), (1280, 1600, "full")] {
        let file = screenshot_dir().join(format!("{name}-{suffix}.png"));
        let _ = std::fs::remove_file(&file);
        browse(
            url.to_string(),
            vec![format!("--screenshot={}", file.display()), format!("--window-size={width},{height}")],
        )
        .await;
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is a real picture ({size} bytes)", file.display());
    }
}

/// The attributes of each element carrying `data-{marker}`, in document order.
fn elements_with(dom: &str, marker: &str) -> Vec<BTreeMap<String, String>> {
    let tag = Regex::new(&format!(r#"<[a-z]+\b[^>]*\sdata-{marker}="[^"]*"[^>]*>"#)).unwrap();
    let attribute = Regex::new(r#"\s([a-z-]+)="([^"]*)""#).unwrap();
    tag.find_iter(dom)
        .map(|m| {
            attribute
                .captures_iter(m.as_str())
                .map(|c| (c[1].to_string(), c[2].replace("&amp;", "&").replace("&quot;", "\"")))
                .collect()
        })
        .collect()
}

/// The text of the first element after `from` in `dom` with class `class` (tags stripped).
fn text_after(dom: &str, from: &str, class: &str) -> String {
    let start = dom.find(from).unwrap_or_else(|| panic!("{from} not in the page"));
    let rest = &dom[start..];
    let open = rest.find(&format!("class=\"{class}")).unwrap_or_else(|| panic!("no .{class} after {from}"));
    let body = &rest[open..];
    let body = &body[body.find('>').unwrap() + 1..];
    let end = body.find("</p>").unwrap_or(body.len());
    Regex::new("<[^>]+>").unwrap().replace_all(&body[..end], "").into_owned()
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn browser_the_trace_page_links_the_trace_in_the_configured_backend() {
    let template = "https://jaeger.example/trace/{trace_id}?uiFind=x";
    let app = spawn_app(|db| {
        let mut c = config(db, TracerBackend::None, None, &[SECRET]);
        c.trace_url = Some(template.to_string());
        c
    })
    .await;
    for (i, (event, body)) in delivery_scenario().iter().enumerate() {
        assert_eq!(app.github(event, &format!("dash-{i}"), body).await.0, 200);
    }
    let (_, meta) = app.get("/api/v1/meta").await;
    assert_eq!(meta["trace_url"], template);
    let trace_id = ids::trace_id(ISSUE_KEY);
    let dom = page_dom(format!("{}/traces/{trace_id}", app.base)).await;
    let link = Regex::new(r#"<a class="backend" href="([^"]+)""#).unwrap().captures(&dom).expect("the backend link")[1]
        .replace("&amp;", "&");
    assert_eq!(link, format!("https://jaeger.example/trace/{trace_id}?uiFind=x"));
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn browser_the_coverage_strip_names_incidents_attributed_to_no_deploy() {
    let app = seeded(None).await;
    let dom = page_dom(format!("{}/?{}", app.base, window())).await;
    assert!(elements_with(&dom, "unattributed").is_empty(), "every incident of the scenario has its deploy");

    // An incident of a repository no deploy came from: attributed to none.
    let mut body = issue("closed", "closed", "2026-11-24T12:00:00Z", Some("2026-11-24T12:00:00Z"));
    body["repository"]["full_name"] = json!("octo-org/quiet");
    body["repository"]["name"] = json!("quiet");
    body["issue"]["labels"] = json!([{"name": "incident"}]);
    let (status, answer) = app.github("issues", "quiet-incident", &body).await;
    assert_eq!(status, 200, "{answer}");
    let (_, api) = app.get(&format!("/api/v1/dora?{}", window())).await;
    assert_eq!(api["time_to_restore"]["unattributed_incidents"], 1, "{api}");
    let dom = page_dom(format!("{}/?{}", app.base, window())).await;
    let notes = elements_with(&dom, "unattributed");
    assert_eq!(notes.len(), 1, "one note");
    assert_eq!(notes[0]["data-unattributed"], "1");
    let note = &dom[dom.find("data-unattributed").unwrap()..];
    let text =
        Regex::new("<[^>]+>").unwrap().replace_all(&note[note.find('>').unwrap() + 1..note.find("</p>").unwrap()], "");
    assert!(text.contains("1 incident closed in this window is attributed to no deploy"), "{text}");
    assert!(dom.contains("href=\"/dora/time_to_restore?"), "the note opens the incidents' drawer");

    // Its repository alone: the note follows the filters.
    let dom = page_dom(format!("{}/?{}&repo=octo-org/hello-world", app.base, window())).await;
    assert!(elements_with(&dom, "unattributed").is_empty());
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn browser_delivery_tiles_show_the_api_numbers_for_the_url_filters() {
    let app = seeded(None).await;
    let filters = format!("{}&repo=octo-org%2Fhello-world", window());
    let (status, api) = app.get(&format!("/api/v1/dora?{filters}")).await;
    assert_eq!(status, 200, "{api}");
    let dom = page_dom(format!("{}/?{filters}", app.base)).await;

    // Recent production deploys: the newest successful and failed ones, newest first.
    // Beside each successful one, the API's median lead time of its changes
    // and its flags (an incident attributed to it, rework).
    let recent: Vec<(String, String, String)> = elements_with(&dom, "recent")
        .iter()
        .map(|r| (r["data-recent"].clone(), r["data-median-lead"].clone(), r["data-flags"].clone()))
        .collect();
    let mut expected: Vec<(String, (String, String, String))> = Vec::new();
    for key in ["deployments", "failures"] {
        let (_, items) = app.get(&format!("/api/v1/dora/items?key={key}&{filters}")).await;
        for item in items["items"].as_array().unwrap() {
            let lead = match item["median_lead_time_seconds"].as_f64() {
                Some(seconds) if key == "deployments" => seconds.to_string(),
                _ => "none".to_string(),
            };
            let mut flags = Vec::new();
            if !item["incident_key"].is_null() && key == "deployments" {
                flags.push("incident");
            }
            if item["rework"] == true {
                flags.push("rework");
            }
            let row = (item["span_key"].as_str().unwrap().to_string(), lead, flags.join(" "));
            expected.push((item["time"].as_str().unwrap().to_string(), row));
        }
    }
    expected.sort_by(|a, b| b.0.cmp(&a.0));
    let expected: Vec<_> = expected.into_iter().take(10).map(|(_, row)| row).collect();
    assert!(!expected.is_empty(), "the scenario deploys to production");
    assert_eq!(recent, expected, "the recent deploys panel");
    assert!(recent.iter().any(|(_, lead, _)| lead != "none"), "a deploy shipped changes: {recent:?}");

    let tiles = elements_with(&dom, "key");
    let tiles: Vec<_> = tiles.iter().filter(|t| t.get("class").is_some_and(|c| c.starts_with("tile"))).collect();
    let keys: Vec<&str> = tiles.iter().map(|t| t["data-key"].as_str()).collect();
    assert_eq!(
        keys,
        [
            "deployment_frequency",
            "lead_time_for_changes",
            "change_failure_rate",
            "time_to_restore",
            "failed_deployment_recovery_time",
            "deployment_rework_rate"
        ]
    );
    let value_of = |key: &str| -> (&Value, &Value) {
        let object = &api[key];
        match key {
            "deployment_frequency" => (&object["per_day"], &object["deployments"]),
            "lead_time_for_changes" => (&object["median_seconds"], &object["changes"]),
            "time_to_restore" => (&object["median_seconds"], &object["incidents"]),
            "failed_deployment_recovery_time" => (&object["median_seconds"], &object["failures"]),
            _ => (&object["ratio"], &object["deployments"]),
        }
    };
    for tile in &tiles {
        let key = tile["data-key"].as_str();
        let (value, n) = value_of(key);
        let shown = &tile["data-value"];
        match value.as_f64() {
            Some(expected) => assert_eq!(shown.parse::<f64>().ok(), Some(expected), "{key}: {tile:?} vs {}", api[key]),
            None => assert_eq!(shown, "null", "{key}"),
        }
        assert_eq!(tile["data-n"], n.to_string(), "{key}");
        let level = api[key]["level"].as_str().unwrap_or("unrated");
        assert_eq!(tile["data-level"], level, "{key}");
        let title = &tile["title"];
        assert!(title.contains("Bands:"), "{key}: the band edges on hover: {title}");
    }

    // What a person reads, for numbers worked out by hand: deploys 991 and 993
    // succeeded, 992 failed and incident #90 is attributed to 993: 2 of 3 failed.
    assert_eq!(api["deployment_frequency"]["deployments"], 2);
    assert_eq!(api["change_failure_rate"]["failed"], 2);
    assert_eq!(text_after(&dom, "data-key=\"change_failure_rate\"", "value"), "66.7 %");
    assert_eq!(text_after(&dom, "data-key=\"change_failure_rate\"", "pill"), "level: low");
    assert_eq!(text_after(&dom, "data-key=\"change_failure_rate\"", "n"), "2 of 3 deploys failed");
    // Lead time of the one change: deploy end 11-21 17:20 − PR opened 11-20 10:00 = 31h 20m.
    assert_eq!(api["lead_time_for_changes"]["median_seconds"], 112800.0);
    assert_eq!(text_after(&dom, "data-key=\"lead_time_for_changes\"", "value"), "1d 7h median");
    assert_eq!(text_after(&dom, "data-key=\"deployment_rework_rate\"", "pill"), "no level (a ratio)");
    // The previous 14 days had nothing: said in words, no made-up change.
    assert!(text_after(&dom, "data-key=\"deployment_frequency\"", "delta").contains("nothing to compare with"));
    // The breakdown shows the API's medians, stage by stage.
    let stages = elements_with(&dom, "stage");
    let breakdown = &api["lead_time_for_changes"]["breakdown"];
    assert_eq!(stages.len(), 4);
    for stage in &stages {
        let expected = &breakdown[stage["data-stage"].as_str()];
        match expected.as_f64() {
            Some(expected) => assert_eq!(stage["data-value"].parse::<f64>().ok(), Some(expected), "{stage:?}"),
            None => assert_eq!(stage["data-value"], "null", "{stage:?}"),
        }
    }

    // A shorter window changes every tile: the same page for 11-22 only.
    let day = "since=2026-11-22T00:00:00Z&until=2026-11-23T00:00:00Z";
    let (_, api_day) = app.get(&format!("/api/v1/dora?{day}")).await;
    let day_dom = page_dom(format!("{}/?{day}", app.base)).await;
    let freq = elements_with(&day_dom, "key").into_iter().find(|t| t["data-key"] == "deployment_frequency").unwrap();
    assert_eq!(freq["data-value"].parse::<f64>().ok(), api_day["deployment_frequency"]["per_day"].as_f64());
    assert_eq!(freq["data-n"], "1");

    screenshots(&format!("{}/?{filters}", app.base), "delivery").await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn browser_trace_page_draws_the_tree_and_a_deep_link_selects_its_span() {
    let app = seeded(None).await;
    let trace_id = ids::trace_id(ISSUE_KEY);
    let (_, trace) = app.get(&format!("/api/v1/traces/{trace_id}")).await;
    let spans = trace["spans"].as_array().unwrap();

    let dom = page_dom(format!("{}/traces/{trace_id}", app.base)).await;
    let rows = elements_with(&dom, "span-id");
    let rows: Vec<_> = rows.iter().filter(|r| r.get("role").is_some_and(|r| r == "treeitem")).collect();
    assert_eq!(rows.len(), spans.len(), "one row per span of the trace");
    let order: Vec<&str> = rows.iter().map(|r| r["data-key"].as_str()).collect();
    // A tree by parent: the issue, its pull request, then the pull request's
    // children by start (the CI run and its job, the deploys, the incident under 993).
    assert_eq!(order[0], ISSUE_KEY);
    assert_eq!(order[1], PR_KEY);
    let position =
        |key: &str| order.iter().position(|k| *k == key).unwrap_or_else(|| panic!("{key} not drawn: {order:?}"));
    let run = spans.iter().find(|s| s["kind"] == "build").unwrap()["key"].as_str().unwrap();
    let job = spans.iter().find(|s| s["kind"] == "job").unwrap()["key"].as_str().unwrap();
    let incident = "github:octo-org/hello-world:issue:90";
    assert!(position(run) < position(job) && position(job) < position(DEPLOY_991), "{order:?}");
    assert_eq!(position(incident), position("github:octo-org/hello-world:deploy:993") + 1, "{order:?}");
    let level = |key: &str| rows[position(key)]["aria-level"].parse::<u32>().unwrap();
    assert_eq!((level(ISSUE_KEY), level(PR_KEY), level(run), level(job)), (1, 2, 3, 4));
    // A failure is red and says so in words.
    let failed_job = rows[position(job)];
    assert!(failed_job["class"].contains("failed"), "{failed_job:?}");
    assert!(dom.contains("class=\"outcome bad\">failure<"), "the word failure on the row");
    // The ruler has dates.
    assert!(Regex::new(r#"class="tick"[^>]*>Nov \d+"#).unwrap().is_match(&dom), "dated ticks on the ruler");
    assert!(dom.contains("Select a span"), "nothing selected without ?span=");

    // Idle stretches, compressed: a stretch in which nothing happened (no
    // span started or ended, no first review), longer than a tenth of the
    // trace and an hour (the six longest).
    let millis = |v: &Value| v.as_str().map(|t| (nanos(t) / 1_000_000) as i64);
    let mut events: Vec<i64> = spans
        .iter()
        .flat_map(|s| [millis(&s["start"]), millis(&s["end"]), millis(&s["attributes"]["valuestream.first_review_at"])])
        .flatten()
        .collect();
    events.sort();
    let total = events.last().unwrap() - events.first().unwrap();
    let mut idle: Vec<i64> = events
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|gap| *gap > (total / 10).max(3_600_000))
        .map(|gap| (gap as f64 / 1000.0).round() as i64)
        .collect();
    idle.sort();
    let mut drawn: Vec<i64> = elements_with(&dom, "idle").iter().map(|e| e["data-idle"].parse().unwrap()).collect();
    drawn.sort();
    assert!(!idle.is_empty(), "the scenario waits a day for its review");
    assert_eq!(drawn, idle, "one label per idle stretch");
    assert!(dom.contains("⋯ 1d 4h idle"), "the review's wait, in words");
    // A row with links says how many.
    let links_marker = Regex::new(r#"data-links="(\d+)""#).unwrap();
    for span in spans {
        let links = span["links"].as_array().map_or(0, Vec::len);
        let row = rows[position(span["key"].as_str().unwrap())];
        // The row's label: from the row's tag to its lane.
        let from = dom.find(&format!("data-span-id=\"{}\"", row["data-span-id"])).unwrap();
        let label = &dom[from..from + dom[from..].find("class=\"lane\"").unwrap()];
        let shown = links_marker.captures(label).map(|c| c[1].parse::<usize>().unwrap());
        assert_eq!(shown.unwrap_or(0), links, "{}: ↗ links", span["key"]);
    }
    // The pull request's lead-time stages: those the drill-down's change row knows.
    let (_, changes) =
        app.get("/api/v1/dora/items?key=changes&since=2026-01-01T00:00:00Z&until=2027-01-01T00:00:00Z").await;
    let change = changes["items"].as_array().unwrap().iter().find(|c| c["span_key"] == PR_KEY).expect("the PR shipped");
    let known: Vec<&str> = ["coding", "pickup", "review", "deploy"]
        .into_iter()
        .filter(|stage| !change[format!("{stage}_seconds")].is_null())
        .collect();
    let stages: Vec<String> = elements_with(&dom, "lead-stage").iter().map(|e| e["data-lead-stage"].clone()).collect();
    assert_eq!(stages, known, "stages drawn on the pull request row");
    // The trace downloads as CSV: a header and a line per span.
    let csv =
        Regex::new(r#"href="(/api/v1/spans\?[^"]*format=csv[^"]*)""#).unwrap().captures(&dom).expect("a CSV link")[1]
            .replace("&amp;", "&");
    let body = app.client.get(format!("{}{csv}", app.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(body.lines().count(), spans.len() + 1, "{body}");
    assert!(body.starts_with("key,kind,"), "{body}");

    // The deep link selects the pull request and shows its details, links clickable.
    let pr_span = ids::span_id(PR_KEY);
    let deep = format!("{}/traces/{trace_id}?span={pr_span}", app.base);
    let dom = page_dom(deep.clone()).await;
    let selected: Vec<_> = elements_with(&dom, "span-id")
        .into_iter()
        .filter(|r| r.get("aria-selected").is_some_and(|s| s == "true"))
        .collect();
    assert_eq!(selected.len(), 1, "one selected row");
    assert_eq!(selected[0]["data-span-id"], pr_span);
    let detail =
        elements_with(&dom, "key").into_iter().find(|e| e.get("aria-label").is_some_and(|l| l == "span details"));
    assert_eq!(detail.expect("the detail panel")["data-key"], PR_KEY);
    assert!(dom.contains("vcs.ref.head.name"), "attributes listed");
    assert!(
        Regex::new(r#"<a href="https://github\.com/[^"]+" target="_blank" rel="noopener noreferrer">"#)
            .unwrap()
            .is_match(&dom),
        "a URL attribute is a link"
    );
    screenshots(&deep, "trace").await;

    // An open span is drawn to now: issue #28's own trace.
    let open_trace = ids::trace_id(OPEN_ISSUE);
    let dom = page_dom(format!("{}/traces/{open_trace}?span={}", app.base, ids::span_id(OPEN_ISSUE))).await;
    assert!(Regex::new(r#"class="bar kind-issue  open""#).unwrap().is_match(&dom), "the open bar");
    assert!(dom.contains("so far"), "its duration grows with now");

    // A span waiting for a parent nobody sent: its trace says so.
    let mut waiting = pull_request("opened", "open", "2026-11-26T10:00:00Z", None);
    waiting["number"] = json!(77);
    waiting["pull_request"]["number"] = json!(77);
    waiting["pull_request"]["head"]["ref"] = json!("feature/vstrace-github-hello-world-99/x");
    assert_eq!(app.github("pull_request", "waiting-1", &waiting).await.0, 200);
    let key = "github:octo-org/hello-world:pull_request:77";
    let (_, api) = app.get(&format!("/api/v1/traces/{}", ids::trace_id(key))).await;
    let dom = page_dom(format!("{}/traces/{}", app.base, ids::trace_id(key))).await;
    let badge = elements_with(&dom, "waiting");
    assert_eq!(badge.len(), 1, "the waiting badge");
    assert_eq!(badge[0]["data-waiting"], api["waiting"].as_array().unwrap().len().to_string());
    assert!(dom.contains("reference waiting") || dom.contains("references waiting"));

    // The search box: a sha finds the trace and selects the span that names it.
    let dom = page_dom(format!("{}/traces?q={}", app.base, &MERGE_SHA[..12])).await;
    assert!(dom.contains(&format!("data-span-id=\"{}\"", ids::span_id(ISSUE_KEY))), "the trace of the sha is drawn");
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn browser_traces_page_lists_the_windows_traces_and_text_finds_them() {
    let app = seeded(None).await;
    let (_, api) = app.get(&format!("/api/v1/traces?{}&limit=200", window())).await;
    let wanted: Vec<&str> = api["traces"].as_array().unwrap().iter().map(|t| t["trace_id"].as_str().unwrap()).collect();
    assert!(wanted.len() > 1, "{api}");
    let dom = page_dom(format!("{}/traces?{}", app.base, window())).await;
    let rows: Vec<String> = elements_with(&dom, "trace-id").into_iter().map(|r| r["data-trace-id"].clone()).collect();
    assert_eq!(rows, wanted, "one row per trace, newest first");
    for id in &wanted {
        assert!(dom.contains(&format!("href=\"/traces/{id}?")), "{id} links to its trace");
    }
    assert!(dom.contains("class=\"chart scatter\""), "the scatter is drawn");
    assert!(dom.contains("u-over"), "uPlot drew into it");
    // Only traces with an error: the API's list for has_error=true.
    let (_, errors) = app.get(&format!("/api/v1/traces?{}&has_error=true", window())).await;
    let dom = page_dom(format!("{}/traces?{}&errors=1", app.base, window())).await;
    assert_eq!(elements_with(&dom, "trace-id").len(), errors["traces"].as_array().unwrap().len());
    // Text that names no span exactly falls back to the names and keys holding it.
    let dom = page_dom(format!("{}/traces?{}&q=hello-world%2328", app.base, window())).await;
    assert!(dom.contains("No span answers to"), "{dom}");
    let (_, named) = app.get(&format!("/api/v1/traces?{}&q=hello-world%2328", window())).await;
    let named = named["traces"].as_array().unwrap().len();
    assert!(named >= 1);
    assert_eq!(elements_with(&dom, "trace-id").len(), named);
    screenshots(&format!("{}/traces?{}", app.base, window()), "traces").await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn browser_distributions_and_open_work_show_the_summary() {
    let app = seeded(None).await;
    let (_, summary) = app.get(&format!("/api/v1/summary?group_by=kind,repo&{}", window())).await;
    let url = format!("{}/kinds?{}&group_by=repo", app.base, window());
    let dom = page_dom(url.clone()).await;
    let rows = elements_with(&dom, "closed");
    let groups = summary["groups"].as_array().unwrap();
    assert_eq!(rows.len(), groups.len(), "one row per summary group");
    for group in groups {
        let row = rows.iter().find(|r| r["data-kind"] == group["kind"].as_str().unwrap()).unwrap();
        assert_eq!(row["data-closed"], group["closed"].to_string(), "{group}");
    }
    // A box-whisker per group that has a median.
    let boxes = elements_with(&dom, "box");
    let medians = groups.iter().filter(|g| !g["duration_seconds"]["p50"].is_null()).count();
    assert!(medians > 0);
    assert_eq!(boxes.len(), medians, "one box per group with closed spans");
    screenshots(&url, "distributions").await;

    // A row's spans: the deploys of the repository.
    let dom =
        page_dom(format!("{}/kinds?{}&group_by=repo&kind=deploy&value=octo-org%2Fhello-world", app.base, window()))
            .await;
    for id in [991, 992, 993] {
        assert!(dom.contains(&format!("data-key=\"github:octo-org/hello-world:deploy:{id}\"")), "deploy {id} listed");
    }
    // The kind's histogram: each bucket the API's count, and a bucket lists its spans.
    let (_, by_outcome) =
        app.get(&format!("/api/v1/summary?group_by=kind,outcome&kind=deploy&histogram=true&{}", window())).await;
    let deploys: Vec<&Value> =
        by_outcome["groups"].as_array().unwrap().iter().filter(|g| g["kind"] == "deploy").collect();
    let first_bucket: u64 = deploys.iter().map(|g| g["histogram"]["counts"][0].as_u64().unwrap()).sum();
    let closed: u64 = deploys.iter().map(|g| g["closed"].as_u64().unwrap()).sum();
    assert!(first_bucket > 0, "{by_outcome}");
    let dom = page_dom(format!("{}/kinds?{}&kind=deploy&hist=0", app.base, window())).await;
    let bars = elements_with(&dom, "bucket");
    assert_eq!(bars.len(), 12, "eleven bounds and the bucket beyond them");
    assert_eq!(bars[0]["data-count"], first_bucket.to_string());
    let drawn: u64 = bars.iter().map(|b| b["data-count"].parse::<u64>().unwrap()).sum();
    assert_eq!(drawn, closed, "every closed deploy is in one bucket");
    let listed = dom.matches("data-key=\"github:octo-org/hello-world:deploy:").count();
    assert_eq!(listed as u64, first_bucket, "the bucket lists its deploys");
    screenshots(&format!("{}/kinds?{}&kind=deploy&hist=0", app.base, window()), "histogram").await;
    // The kind's p50 per bucket: the API's series, drawn.
    let trend = elements_with(&dom, "medians").into_iter().next().expect("the trend chart");
    let (_, series) = app
        .get(&format!("/api/v1/summary?group_by=kind&kind=deploy&bucket={}&{}", trend["data-trend-bucket"], window()))
        .await;
    let p50: Vec<Value> = series["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["groups"].as_array().unwrap().first().map_or(Value::Null, |g| g["duration_seconds"]["p50"].clone()))
        .collect();
    assert!(p50.iter().any(|v| !v.is_null()), "{series}");
    let drawn: Vec<Value> = serde_json::from_str(&trend["data-medians"]).unwrap();
    let seconds = |values: &[Value]| values.iter().map(Value::as_f64).collect::<Vec<_>>();
    assert_eq!(seconds(&drawn), seconds(&p50), "the trend's p50 per {}", trend["data-trend-bucket"]);
    assert!(dom.contains("class=\"uplot"), "the trend is drawn");

    // Open work: the open issue, with its age against finished issues, and
    // a pull request nobody has reviewed yet, which says so.
    let mut unreviewed = pull_request("opened", "open", "2026-11-27T10:00:00Z", None);
    unreviewed["number"] = json!(51);
    unreviewed["pull_request"]["number"] = json!(51);
    unreviewed["pull_request"]["head"]["ref"] = json!("feature/unreviewed");
    assert_eq!(app.github("pull_request", "unreviewed-51", &unreviewed).await.0, 200);
    let url = format!("{}/open?{}", app.base, window());
    let dom = page_dom(url.clone()).await;
    assert!(dom.contains(&format!("data-key=\"{OPEN_ISSUE}\"")), "the open issue is listed");
    assert!(dom.contains("finished issues"), "compared with finished issues");
    let substates: Vec<String> = elements_with(&dom, "substate").iter().map(|e| e["data-substate"].clone()).collect();
    assert!(substates.contains(&"waiting for its first review".to_string()), "{substates:?}");
    let (_, issue) = app.get(&format!("/api/v1/spans?key={OPEN_ISSUE}")).await;
    let source_url = issue["spans"][0]["attributes"]["valuestream.url"].as_str().expect("the issue's page").to_string();
    assert!(dom.contains(&format!("<a href=\"{source_url}\" target=\"_blank\"")), "a link to the issue on GitHub");
    // The aging chart: the API's open-age buckets, every span open at the range's end in one.
    let (_, aged) = app.get(&format!("/api/v1/summary?group_by=kind&histogram=true&{}", window())).await;
    let open: u64 = aged["groups"].as_array().unwrap().iter().map(|g| g["open"].as_u64().unwrap()).sum();
    let under_a_day: u64 =
        aged["groups"].as_array().unwrap().iter().map(|g| g["open_age_histogram"]["counts"][0].as_u64().unwrap()).sum();
    let ages = elements_with(&dom, "age");
    assert_eq!(ages.len(), 6, "< 1 d … > 4 w");
    assert_eq!(ages[0]["data-count"], under_a_day.to_string());
    let drawn: u64 = ages.iter().map(|a| a["data-count"].parse::<u64>().unwrap()).sum();
    assert!(open > 0);
    assert_eq!(drawn, open, "every open span is in one age bucket");
    // Work in progress: per kind, what the summary's series says was open at each bucket's end.
    let wip = elements_with(&dom, "wip").into_iter().next().expect("the work in progress chart");
    let drawn: BTreeMap<String, Vec<u64>> = serde_json::from_str(&wip["data-wip"]).unwrap();
    let (_, series) =
        app.get(&format!("/api/v1/summary?group_by=kind&bucket={}&{}", wip["data-wip-bucket"], window())).await;
    let buckets = series["series"].as_array().unwrap();
    assert!(drawn.contains_key("issue"), "the open issue is work in progress: {drawn:?}");
    for (kind, values) in &drawn {
        let expected: Vec<u64> = buckets
            .iter()
            .map(|b| {
                let groups = b["groups"].as_array().unwrap();
                groups.iter().find(|g| g["kind"] == kind.as_str()).map_or(0, |g| g["open"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(values, &expected, "{kind}");
    }
    assert!(dom.contains("class=\"uplot"), "the chart is drawn");
    screenshots(&url, "open").await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium); .ci/run runs it"]
async fn browser_signs_in_with_the_token_once() {
    let app = seeded(Some(TOKEN)).await;
    let (_, api) = {
        let response =
            app.client.get(format!("{}/api/v1/dora?{}", app.base, window())).bearer_auth(TOKEN).send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    // Without the token: the form, not the numbers.
    let browser = browse(format!("{}/?{}", app.base, window()), vec!["--dump-dom".into()]).await;
    assert!(browser.stdout.contains("action=\"/sign-in\""), "{}", browser.stdout);
    // With ?token= once: the cookie, then the page's API calls pass.
    let dom = page_dom(format!("{}/?{}&token={}", app.base, window(), urlencode(TOKEN))).await;
    let tiles = elements_with(&dom, "key");
    let frequency = tiles.iter().find(|t| t["data-key"] == "deployment_frequency").expect("the tiles are drawn");
    assert_eq!(frequency["data-n"], api["deployment_frequency"]["deployments"].to_string());
    // A drawer behind the token: its rows come through the cookie too.
    let dom = page_dom(format!("{}/dora/failed?{}&token={}", app.base, window(), urlencode(TOKEN))).await;
    let n = elements_with(&dom, "n").into_iter().find(|e| e["class"] == "drawer-n").expect("the drawer is drawn");
    assert_eq!(n["data-n"], api["change_failure_rate"]["failed"].to_string());
    app.stop().await;
}

// ---------------------------------------------------------------- driving the browser (WebDriver)

/// A headless Chromium driven through Debian's chromedriver, over the
/// WebDriver protocol's JSON (a few commands; no client library needed).
struct Driver {
    process: std::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
    _one: tokio::sync::MutexGuard<'static, ()>,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    async fn start(width: u32, height: u32) -> Driver {
        let binary = chromium();
        let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("chromedriver is not installed (apt-get install -y chromium-driver, as .ci/run does)")
            });
        let one = ONE_BROWSER.lock().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, so the browser it starts goes with it (Drop).
        let process = Command::new(&driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TempDir::new();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            },
        }}});
        let answer: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session =
            answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_string();
        Driver { process, base, session, http, _profile: profile, _one: one }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let answer: Value = self.http.request(method, &url).json(&body).send().await.unwrap().json().await.unwrap();
        assert!(answer["value"].get("error").is_none(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, body).await
    }

    async fn go(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn run(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).await
    }

    async fn renders(&self) -> u64 {
        self.run("return Number(document.body.dataset.renders || 0)").await.as_u64().unwrap_or(0)
    }

    /// Waits until the page has drawn more than `after` views.
    async fn drawn_after(&self, after: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.renders().await <= after {
            assert!(Instant::now() < deadline, "the page did not draw a new view");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self.post("/element", json!({"using": "css selector", "value": css})).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_string()
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    /// Sends WebDriver key codes to the focused element.
    async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.post("/actions", json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})).await;
    }

    async fn tile(&self, key: &str) -> String {
        let script = format!("return document.querySelector('.tile[data-key=\"{key}\"]').dataset.n");
        self.run(&script).await.as_str().unwrap().to_string()
    }

    /// Console messages at warning or worse since the last call.
    async fn console_problems(&self) -> Vec<String> {
        let logs = self.post("/se/log", json!({"type": "browser"})).await;
        logs.as_array()
            .unwrap()
            .iter()
            .filter(|l| l["level"] != "INFO" && l["level"] != "DEBUG")
            .map(|l| l["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn stop(self) {
        let _ = self.command(reqwest::Method::DELETE, "", json!({})).await;
    }
}

impl Drop for Driver {
    /// Ends chromedriver and the browser it started, also when a test fails midway.
    fn drop(&mut self) {
        let group = format!("-{}", self.process.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Each tile opens its drawer: as many rows as the tile counts (and as
/// `/api/v1/dora/items`), every row's link opens a trace the API knows, the
/// CSV link downloads a header and the same rows, Escape closes it and back
/// opens it again; a bar of the deploys chart opens that bucket's deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver (apt-get install chromium chromium-driver); .ci/run runs it"]
async fn browser_each_tile_opens_a_drawer_of_exactly_its_rows_and_each_row_its_trace() {
    let app = seeded(None).await;
    let driver = Driver::start(1280, 800).await;
    let home = format!("{}/?{}", app.base, window());
    driver.go(&home).await;
    driver.drawn_after(0).await;
    let mut listed = 0;
    for (tile, key) in [
        ("deployment_frequency", "deployments"),
        ("lead_time_for_changes", "changes"),
        ("change_failure_rate", "failed"),
        ("time_to_restore", "incidents"),
        ("failed_deployment_recovery_time", "failures"),
        ("deployment_rework_rate", "rework"),
    ] {
        let rows_script = format!("return document.querySelector('.tile[data-key=\"{tile}\"]').dataset.rows");
        let on_tile: usize = driver.run(&rows_script).await.as_str().unwrap().parse().unwrap();
        let before = driver.renders().await;
        driver.click(&format!(".tile[data-key=\"{tile}\"] a.drill")).await;
        driver.drawn_after(before).await;
        let path = driver.run("return location.pathname").await;
        assert_eq!(path, format!("/dora/{key}").as_str(), "{tile} opens its drawer");
        let (_, api) = app.get(&format!("/api/v1/dora/items?key={key}&{}", window())).await;
        let n: usize =
            driver.run("return document.querySelector('.drawer-n').dataset.n").await.as_str().unwrap().parse().unwrap();
        let rows =
            driver.run("return document.querySelectorAll('table.items tbody tr').length").await.as_u64().unwrap_or(0);
        assert_eq!((n, rows as usize, api["items"].as_array().unwrap().len()), (on_tile, on_tile, on_tile), "{key}");
        // Every row's link is a trace page of a trace the API has, with its span selected.
        let links = driver
            .run("return [...document.querySelectorAll('table.items tbody tr td:first-child a')].map((a) => a.getAttribute('href'))")
            .await;
        let links: Vec<String> = links.as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
        assert_eq!(links.len(), on_tile, "{key}: one trace link per row");
        for link in &links {
            let trace = link.strip_prefix("/traces/").and_then(|rest| rest.split('?').next()).unwrap();
            let (status, found) = app.get(&format!("/api/v1/traces/{trace}")).await;
            assert_eq!(status, 200, "{key}: {link}");
            let span = link.split("span=").nth(1).unwrap().split('&').next().unwrap();
            assert!(found["spans"].as_array().unwrap().iter().any(|s| s["span_id"] == span), "{key}: {link}");
        }
        // The CSV link: a header and one line per row.
        let csv = driver.run("return document.querySelector('.drawer a.csv').getAttribute('href')").await;
        let csv = app.client.get(format!("{}{}", app.base, csv.as_str().unwrap())).send().await.unwrap();
        let text = csv.text().await.unwrap();
        assert_eq!(text.lines().count(), on_tile + 1, "{key}: {text}");
        assert!(text.starts_with("time,span_key,"), "{key}: {text}");
        let text = driver.run("return document.querySelector('.drawer').innerText").await;
        assert!(!text.as_str().unwrap().lines().any(|line| line.trim() == "null"), "{key}: a stray null: {text}");
        if key == "deployments" {
            // The per-day strip: a cell per day of the window, adding up to n.
            let cells = driver
                .run(
                    "return [...document.querySelectorAll('.day-strip .day')].map((c) => Number(c.dataset.dayDeploys))",
                )
                .await;
            let cells: Vec<u64> = cells.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
            let (_, by_day) = app.get(&format!("/api/v1/dora?bucket=day&{}", window())).await;
            let expected: Vec<u64> = by_day["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["deployment_frequency"]["deployments"].as_u64().unwrap())
                .collect();
            assert_eq!(cells, expected, "one cell per day, each the day's deploys");
            assert_eq!(cells.iter().sum::<u64>() as usize, on_tile, "the days add up to n");
            screenshot(&driver, "drawer-deploys").await;
        }
        if key == "failed" {
            // 992 failed; 993 caused incident #90: reasons in words.
            let drawer_text = driver.run("return document.querySelector('.drawer').innerText").await;
            let drawer_text = drawer_text.as_str().unwrap();
            assert!(drawer_text.contains("the deploy failed"), "{drawer_text}");
            assert!(drawer_text.contains("caused github:octo-org/hello-world:issue:90"), "{drawer_text}");
            screenshot(&driver, "drawer").await;
        }
        listed += on_tile;
        // Escape closes the drawer (a new history entry); back opens it again.
        let before = driver.renders().await;
        driver.keys(ESCAPE).await;
        driver.drawn_after(before).await;
        assert_eq!(driver.run("return location.pathname").await, "/");
        assert_eq!(driver.run("return document.querySelectorAll('.drawer').length").await, 0);
        let before = driver.renders().await;
        driver.post("/back", json!({})).await;
        driver.drawn_after(before).await;
        assert_eq!(driver.run("return location.pathname").await, format!("/dora/{key}").as_str());
        driver.go(&home).await;
        driver.drawn_after(0).await;
    }
    assert!(listed >= 6, "the scenario has rows to list");

    // A click on the week of 11-16's bar opens that week's deploys: 991 and 993.
    driver.go(&format!("{}/?{}&bucket=week", app.base, window())).await;
    driver.drawn_after(0).await;
    let before = driver.renders().await;
    // A real pointer over the middle of the chart (the middle bucket of three), then a click.
    driver.run("document.querySelector('.chart .u-over').scrollIntoView({ block: 'center' })").await;
    let over = driver.element(".chart .u-over").await;
    let pointer = json!([{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
        {"type": "pointerMove", "origin": {ELEMENT: over}, "x": 0, "y": 0},
        {"type": "pointerMove", "origin": {ELEMENT: over}, "x": 1, "y": 1},
        {"type": "pointerDown", "button": 0},
        {"type": "pointerUp", "button": 0},
    ]}]);
    driver.post("/actions", json!({"actions": pointer})).await;
    driver.drawn_after(before).await;
    let search = driver.run("return location.pathname + decodeURIComponent(location.search)").await;
    assert_eq!(search, format!("/dora/deployments?{}&bucket=week&at=2026-11-16T00:00:00Z", window()).as_str());
    let n = driver.run("return document.querySelector('.drawer-n').dataset.n").await;
    assert_eq!(n, "2", "the week's two successful deploys");

    let problems = driver.console_problems().await;
    assert!(problems.is_empty(), "console: {problems:?}");
    driver.stop().await;
    app.stop().await;
}

/// A screenshot of what the driver shows, as `{name}-1280.png`.
async fn screenshot(driver: &Driver, name: &str) {
    use base64::Engine as _;
    let url = format!("{}/session/{}/screenshot", driver.base, driver.session);
    let answer: Value = driver.http.get(url).send().await.unwrap().json().await.unwrap();
    let png = answer["value"].as_str().unwrap_or_else(|| panic!("no screenshot: {answer}"));
    let bytes = base64::engine::general_purpose::STANDARD.decode(png).unwrap();
    let file = screenshot_dir().join(format!("{name}-1280.png"));
    std::fs::write(&file, &bytes).unwrap();
    assert!(bytes.len() > 10_000, "{} is a real picture", file.display());
}

const ESCAPE: &str = "\u{E00C}";
const ARROW_UP: &str = "\u{E013}";
const ARROW_DOWN: &str = "\u{E015}";
const ARROW_LEFT: &str = "\u{E012}";
const ARROW_RIGHT: &str = "\u{E014}";
const ENTER: &str = "\u{E007}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver (apt-get install chromium chromium-driver); .ci/run runs it"]
async fn browser_filters_live_in_the_url_back_and_reload_work_and_the_waterfall_takes_the_keyboard() {
    let app = seeded(None).await;
    let driver = Driver::start(1280, 800).await;
    let (_, seven_days) = app.get("/api/v1/dora?since=7d").await;

    // The explicit window: two successful deploys.
    driver.go(&format!("{}/?{}", app.base, window())).await;
    driver.drawn_after(0).await;
    assert_eq!(driver.tile("deployment_frequency").await, "2");

    // "last 7d" changes the URL and every tile; back and reload restore the view.
    let before = driver.renders().await;
    driver.click("button.range:nth-child(1)").await;
    driver.drawn_after(before).await;
    assert_eq!(driver.run("return location.search").await, "?since=7d");
    assert_eq!(
        driver.tile("deployment_frequency").await,
        seven_days["deployment_frequency"]["deployments"].to_string()
    );
    assert_eq!(driver.tile("change_failure_rate").await, seven_days["change_failure_rate"]["deployments"].to_string());

    let before = driver.renders().await;
    driver.post("/back", json!({})).await;
    driver.drawn_after(before).await;
    assert_eq!(driver.run("return decodeURIComponent(location.search)").await, format!("?{}", window()));
    assert_eq!(driver.tile("deployment_frequency").await, "2", "back restores the previous view");

    driver.post("/refresh", json!({})).await;
    driver.drawn_after(0).await;
    assert_eq!(driver.tile("deployment_frequency").await, "2", "a reload keeps the filters");

    // The repository picker lists the repositories seen; checking one and
    // applying puts it in the URL, and the tiles follow.
    driver.click(".picker[data-filter='repo'] summary").await;
    let offered = driver.run("return [...document.querySelectorAll(\".picker[data-filter='repo'] input[type=checkbox]\")].map((c) => c.value)").await;
    assert_eq!(offered, json!(["octo-org/hello-world"]), "the repositories of /api/v1/meta");
    screenshot(&driver, "picker").await;
    driver.click(".picker[data-filter='repo'] input[value='octo-org/hello-world']").await;
    let before = driver.renders().await;
    driver.click(".picker[data-filter='repo'] .actions button").await;
    driver.drawn_after(before).await;
    let here = driver.run("return new URLSearchParams(location.search).get('repo')").await;
    assert_eq!(here, "octo-org/hello-world");
    assert_eq!(driver.tile("deployment_frequency").await, "2");
    // Several, comma-separated: the caption counts them and the tiles are the API's.
    let several = format!("{}&repo=octo-org/hello-world,octo-org/elsewhere", window());
    let (_, api) = app.get(&format!("/api/v1/dora?{several}")).await;
    driver.go(&format!("{}/?{several}", app.base)).await;
    driver.drawn_after(0).await;
    let caption =
        driver.run("return document.querySelector(\".picker[data-filter='repo'] summary\").textContent").await;
    assert_eq!(caption, "2 repositories");
    assert_eq!(driver.tile("deployment_frequency").await, api["deployment_frequency"]["deployments"].to_string());
    assert_eq!(api["deployment_frequency"]["deployments"], 2, "the deploys of the one repository that has them");
    driver.go(&format!("{}/?{}", app.base, window())).await;
    driver.drawn_after(0).await;

    // A tab keeps the filters.
    let before = driver.renders().await;
    driver.click("nav.tabs a[href^='/traces']").await;
    driver.drawn_after(before).await;
    let here = driver.run("return location.pathname + decodeURIComponent(location.search)").await;
    assert_eq!(here, format!("/traces?{}", window()));

    // The waterfall: ↓ moves down, Enter selects (the URL says which), ← folds a subtree.
    let trace_id = ids::trace_id(ISSUE_KEY);
    driver.go(&format!("{}/traces/{trace_id}?span={}", app.base, ids::span_id(PR_KEY))).await;
    driver.drawn_after(0).await;
    let focused = "return document.activeElement.dataset.key || null";
    driver.run("document.querySelector('[aria-selected=\"true\"]').focus()").await;
    assert_eq!(driver.run(focused).await, PR_KEY);
    driver.keys(ARROW_DOWN).await;
    let run_key = driver.run(focused).await.as_str().unwrap().to_string();
    assert!(run_key.contains(":build:"), "↓ from the pull request is its CI run: {run_key}");
    let before = driver.renders().await;
    driver.keys(ENTER).await;
    driver.drawn_after(before).await;
    let span = driver.run("return new URLSearchParams(location.search).get('span')").await;
    assert_eq!(span, ids::span_id(&run_key), "Enter selects the row");
    let detail = driver.run("return document.querySelector('aside.detail').dataset.key").await;
    assert_eq!(detail, run_key.as_str());

    driver.run("document.querySelector('[aria-selected=\"true\"]').focus()").await;
    driver.keys(ARROW_UP).await;
    assert_eq!(driver.run(focused).await, PR_KEY, "↑ goes back up");
    let rows = "return document.querySelectorAll('[role=\"treeitem\"]').length";
    let all = driver.run(rows).await.as_u64().unwrap();
    driver.keys(ARROW_LEFT).await;
    let folded = driver.run(rows).await.as_u64().unwrap();
    assert_eq!(folded, 2, "← on the pull request folds everything under it ({all} rows before)");
    let expanded = driver.run("return document.activeElement.getAttribute('aria-expanded')").await;
    assert_eq!(expanded, "false");

    // Find in trace: the matching rows and the rows above them stay.
    driver.keys(ARROW_RIGHT).await;
    let visible = "return [...document.querySelectorAll('[role=\"treeitem\"]')].filter((r) => !r.hidden).map((r) => r.dataset.key)";
    let everything = driver.run(visible).await;
    driver.run("const f = document.querySelector('input.find'); f.value = 'deploy produc'; f.dispatchEvent(new Event('input'))").await;
    let shown: Vec<String> = serde_json::from_value(driver.run(visible).await).unwrap();
    let (_, trace) = app.get(&format!("/api/v1/traces/{trace_id}")).await;
    let deploys: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().to_lowercase().contains("deploy produc"))
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert!(deploys.len() >= 3, "{deploys:?}");
    let mut expected: Vec<&str> = vec![ISSUE_KEY, PR_KEY];
    expected.extend(&deploys);
    let mut sorted = shown.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "the deploys and their ancestors, of {everything}");
    let matches = driver.run("return document.querySelector('.found').dataset.matches").await;
    assert_eq!(matches, deploys.len().to_string());
    driver
        .run("const f = document.querySelector('input.find'); f.value = ''; f.dispatchEvent(new Event('input'))")
        .await;
    assert_eq!(driver.run(visible).await, everything, "clearing the box shows every row");

    // The minimap: a drag across its first half zooms the waterfall there.
    let strip = driver.element(".mini-strip").await;
    let width = driver
        .run("return document.querySelector('.mini-strip').getBoundingClientRect().width")
        .await
        .as_f64()
        .unwrap();
    let origin = json!({ELEMENT: strip});
    let before = driver.renders().await;
    let first_tick = "return document.querySelector('.ruler .tick').title";
    let whole = driver.run(first_tick).await;
    driver
        .post(
            "/actions",
            json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
                {"type": "pointerMove", "origin": origin, "x": (-width / 2.0 + 2.0) as i64, "y": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerMove", "origin": origin, "x": 0, "y": 0, "duration": 100},
                {"type": "pointerUp", "button": 0}
            ]}]}),
        )
        .await;
    let zoomed = driver.run("return !!document.querySelector('.trace-tools button')").await;
    assert_eq!(zoomed, true, "a way back to the whole trace (renders {before})");
    let bars_cut =
        driver.run("return [...document.querySelectorAll('.waterfall .bar')].length").await.as_u64().unwrap();
    assert!(bars_cut < everything.as_array().unwrap().len() as u64, "spans after the zoomed half have no bar");
    driver.click(".trace-tools button").await;
    assert_eq!(driver.run(first_tick).await, whole, "the whole trace again");

    let problems = driver.console_problems().await;
    assert!(problems.is_empty(), "console: {problems:?}");
    driver.stop().await;
    app.stop().await;
}
