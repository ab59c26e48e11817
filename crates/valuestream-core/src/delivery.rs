//! A delivery: one webhook request as received. Deliveries are the raw input;
//! the store keeps them, and everything else can be rebuilt from them.

use crate::time::Timestamp;
use sha2::{Digest, Sha256};

/// One webhook request: which source it came to, its headers and its raw body.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub source: String,
    /// Header names are kept lowercased; lookups are case-insensitive.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the delivery reached us: only a fallback for payloads without times.
    pub received_at: Timestamp,
    /// The request's query string, if any (Jenkins may send `?token=`). Never stored.
    pub query: Option<String>,
}

impl Delivery {
    pub fn new(
        source: impl Into<String>,
        headers: impl IntoIterator<Item = (String, String)>,
        body: Vec<u8>,
        received_at: Timestamp,
    ) -> Delivery {
        let headers = headers.into_iter().map(|(name, value)| (name.to_ascii_lowercase(), value)).collect();
        Delivery { source: source.into(), headers, body, received_at, query: None }
    }

    /// The same delivery with the request's query string.
    pub fn with_query(mut self, query: Option<String>) -> Delivery {
        self.query = query;
        self
    }

    /// A query-string parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
    }

    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The id for a delivery whose sender gave none: SHA-256 of source + body.
    pub fn content_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.source.as_bytes());
        hasher.update(&self.body);
        hex::encode(hasher.finalize())
    }

    /// The JSON document of the body: the body itself, or the `payload=` field of
    /// a form-encoded body (GitHub's `application/x-www-form-urlencoded` option).
    pub fn json_body(&self) -> Result<std::borrow::Cow<'_, [u8]>, String> {
        let form = self
            .header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        // A JSON body sent with a form content type (curl's default) is still JSON.
        let looks_like_json =
            self.body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{' || *b == b'[');
        if !form || looks_like_json {
            return Ok(std::borrow::Cow::Borrowed(&self.body));
        }
        form_urlencoded::parse(&self.body)
            .find(|(name, _)| name == "payload")
            .map(|(_, value)| std::borrow::Cow::Owned(value.into_owned().into_bytes()))
            .ok_or_else(|| "form-encoded body has no `payload` field".to_string())
    }
}
