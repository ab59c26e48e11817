//! The built-in dashboard (`GET /`): its pages, its assets and its sign-in.
//!
//! Every asset is compiled into the binary (`web/`): nothing is fetched from
//! the network and nothing is built at run time. Pages are one HTML shell;
//! the page's script reads the API, so every number on screen comes from the
//! same code as `/api/v1/*`. This module computes no metric.
//!
//! With `--api-token`, a page asks for the token (a form, or `?token=` once)
//! and keeps it in an HttpOnly, SameSite=Strict cookie, which `/api/*`
//! accepts as well as `Authorization: Bearer` ([`token_of_request`]).

use axum::extract::{Form, FromRef, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::LazyLock;
use subtle::ConstantTimeEq;

/// One embedded file of the dashboard.
pub struct Asset {
    /// Path under `/assets/{version}/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("../web/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the dashboard serves besides its HTML shell.
pub const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("definitions.json", "application/json"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/filters.js", JS),
    asset!("js/delivery.js", JS),
    asset!("js/drawer.js", JS),
    asset!("js/kinds.js", JS),
    asset!("js/open.js", JS),
    asset!("js/traces.js", JS),
    asset!("js/tracelist.js", JS),
    asset!("js/timeline.js", JS),
    asset!("js/charts.js", JS),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

const INDEX_HTML: &str = include_str!("../web/index.html");
const SIGN_IN_HTML: &str = include_str!("../web/sign-in.html");

/// The cookie that carries the dashboard's proof of the API token.
pub const TOKEN_COOKIE: &str = "valuestream_token";

/// How long the browser keeps the token cookie, in seconds (30 days).
const TOKEN_COOKIE_MAX_AGE: u64 = 30 * 86_400;

/// A hash of every asset: part of their URLs, so a new build is a new URL
/// and the old ones can be cached for good.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for asset in ASSETS {
        hash.update(asset.path.as_bytes());
        hash.update(asset.body);
    }
    hash.update(INDEX_HTML.as_bytes());
    hex::encode(&hash.finalize()[..6])
});

/// What the pages need of the server's state: the API token, when one is set.
#[derive(Clone, Debug, Default)]
pub struct SignIn {
    pub api_token: Option<std::sync::Arc<str>>,
}

/// The pages and assets, merged beside the API in `http::router` (whose
/// state gives a [`SignIn`]).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    SignIn: FromRef<S>,
{
    Router::new()
        .route("/", get(page))
        .route("/dora/{key}", get(page))
        .route("/kinds", get(page))
        .route("/open", get(page))
        .route("/traces", get(page))
        .route("/traces/{trace_id}", get(page))
        .route("/sign-in", post(sign_in))
        .route(
            "/assets/{version}/{*path}",
            // Gzip when the browser asks for it: the scripts shrink to about a third.
            get(asset).layer(tower_http::compression::CompressionLayer::new().gzip(true)),
        )
}

/// What the page's own headers say: only same-origin scripts, styles,
/// images and requests (principle: nothing from the network).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // A `?token=` must not leave in a Referer.
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// Any page: the shell, or the sign-in form while a token is needed.
async fn page(State(state): State<SignIn>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(expected) = state.api_token.as_deref() {
        let (token, rest) = split_token(uri.query());
        let next = match rest {
            Some(query) => format!("{}?{query}", uri.path()),
            None => uri.path().to_string(),
        };
        match token {
            Some(given) if same(&given, expected) => return signed_in(expected, &next),
            Some(_) => return sign_in_page(&next, "That token is not the one this server was started with."),
            None if !cookie_matches(&headers, expected) => return sign_in_page(&next, ""),
            None => {}
        }
    }
    html(StatusCode::OK, INDEX_HTML.replace("{{VERSION}}", &VERSION))
}

/// `POST /sign-in` from the form: `token` and `next` (a path of this site).
async fn sign_in(State(state): State<SignIn>, Form(form): Form<HashMap<String, String>>) -> Response {
    let next = safe_next(form.get("next").map(String::as_str).unwrap_or("/"));
    let Some(expected) = state.api_token.as_deref() else {
        return redirect(&next, None);
    };
    match form.get("token") {
        Some(given) if same(given.trim(), expected) => signed_in(expected, &next),
        _ => sign_in_page(&next, "That token is not the one this server was started with."),
    }
}

fn same(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Only a path on this site (`/…`, not `//host` or `/\host`) is followed after signing in.
fn safe_next(next: &str) -> String {
    let bad = !next.starts_with('/') || next.starts_with("//") || next.contains('\\') || next.contains(['\r', '\n']);
    if bad { "/".to_string() } else { next.to_string() }
}

/// The `token` parameter of a query, and the query without it.
fn split_token(query: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(query) = query else { return (None, None) };
    let mut token = None;
    let mut kept = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "token" {
            token = Some(value.into_owned());
        } else {
            kept.append_pair(&name, &value);
            any = true;
        }
    }
    (token, any.then(|| kept.finish()))
}

/// The cookie's value: a hash of the token, so the cookie is no copy of it
/// and needs no quoting whatever characters the token has.
pub fn cookie_value(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"valuestream dashboard cookie\0");
    hash.update(token.as_bytes());
    hex::encode(hash.finalize())
}

/// Whether the request carries the token cookie for `expected`.
pub fn cookie_matches(headers: &HeaderMap, expected: &str) -> bool {
    let wanted = cookie_value(expected);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == TOKEN_COOKIE && bool::from(value.as_bytes().ct_eq(wanted.as_bytes())))
}

/// The token a request offers: `Authorization: Bearer …`, else the cookie
/// (checked against `expected`, since the cookie holds only a hash).
pub fn token_of_request(headers: &HeaderMap, expected: &str) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    same(bearer, expected) || cookie_matches(headers, expected)
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, location);
    } else {
        headers.insert(LOCATION, HeaderValue::from_static("/"));
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(SET_COOKIE, cookie);
    }
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

fn signed_in(token: &str, next: &str) -> Response {
    let cookie = format!(
        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={TOKEN_COOKIE_MAX_AGE}",
        cookie_value(token)
    );
    redirect(next, Some(cookie))
}

fn sign_in_page(next: &str, message: &str) -> Response {
    let body = SIGN_IN_HTML
        .replace("{{VERSION}}", &VERSION)
        .replace("{{NEXT}}", &escape(next))
        .replace("{{MESSAGE}}", &escape(message));
    html(StatusCode::UNAUTHORIZED, body)
}

/// HTML-escapes text for an attribute or an element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /assets/{version}/{path}`: kept for a year when the version is this
/// build's (the URL changes with the content), else not cached.
async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        let error = serde_json::json!({"error": format!("no dashboard asset {path:?}")});
        return (StatusCode::NOT_FOUND, Json(error)).into_response();
    };
    let cache = if version == *VERSION { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/traces/ab?span=cd"), "/traces/ab?span=cd");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/x\r\nSet-Cookie: a=b"), "/");
    }

    #[test]
    fn the_token_leaves_the_query_and_the_rest_stays() {
        assert_eq!(
            split_token(Some("since=7d&token=t%20k&repo=a%2Fb")),
            (Some("t k".into()), Some("since=7d&repo=a%2Fb".into()))
        );
        assert_eq!(split_token(Some("token=x")), (Some("x".into()), None));
        assert_eq!(split_token(None), (None, None));
    }

    #[test]
    fn the_cookie_is_a_hash_of_the_token_and_is_checked_in_full() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("a=b; {TOKEN_COOKIE}={}", cookie_value("t"))).unwrap());
        assert!(cookie_matches(&headers, "t"));
        assert!(!cookie_matches(&headers, "u"));
        assert_ne!(cookie_value("t"), "t");
    }
}
