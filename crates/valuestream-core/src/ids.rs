//! Deterministic ids (linking.md, "Identity"): the same span key gives the same
//! ids on every machine, so replays and replicas agree without talking.

use sha2::{Digest, Sha256};

/// `span_id` = first 8 bytes of SHA-256(`span:` + key), as 16 hex digits.
pub fn span_id(span_key: &str) -> String {
    let digest = Sha256::digest(format!("span:{span_key}").as_bytes());
    hex::encode(&digest[..8])
}

/// `trace_id` = first 16 bytes of SHA-256(`trace:` + root span key), as 32 hex digits.
pub fn trace_id(root_span_key: &str) -> String {
    let digest = Sha256::digest(format!("trace:{root_span_key}").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_of_the_right_length_and_depend_only_on_the_key() {
        let key = "github:octo-org/hello-world:issue:27";
        assert_eq!(span_id(key).len(), 16);
        assert_eq!(trace_id(key).len(), 32);
        assert_eq!(span_id(key), span_id(key));
        assert_ne!(span_id(key), span_id("github:octo-org/hello-world:issue:28"));
        // Known values, computed outside Rust with `printf 'span:KEY' | sha256sum`.
        assert_eq!(span_id(key), "0bb673855bed6022");
        assert_eq!(trace_id(key), "df02fb137098248449fdadbf967df76e");
    }
}
