//! The keys of the used-ids store (DESIGN.md "Used ids"): client assertion `jti`s (RFC 7523
//! §3 item 7) and DPoP proof `jti`s (RFC 9449 §11.1) share one replay cache, and this is the
//! one place that spells a key of it. The two forms never meet: an assertion's key starts with
//! a digit, a proof's with `dpop#`.

use aws_lc_rs::digest::{SHA256, digest};

use crate::encoding::b64url;

/// The key of a client assertion: client id and `jti`, unambiguous whatever characters either
/// holds (the length prefix ends the client id).
pub fn client_assertion(client_id: &str, jti: &str) -> String {
    format!("{}:{client_id}:{jti}", client_id.len())
}

/// The key of a DPoP proof: the proof key's thumbprint (base64url, so without `#`) and the
/// SHA-256 of its `jti`, so that one client's ids never collide with another's and a key has
/// a fixed length whatever the `jti`.
pub fn dpop_proof(jkt: &str, jti: &str) -> String {
    format!(
        "dpop#{jkt}#{}",
        b64url(digest(&SHA256, jti.as_bytes()).as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_and_proof_keys_never_meet() {
        assert_eq!(client_assertion("a:b", "c"), "3:a:b:c");
        let proof = dpop_proof("jkt", "c");
        assert!(proof.starts_with("dpop#jkt#"));
        assert_eq!(proof.len(), "dpop#jkt#".len() + 43);
        assert_ne!(dpop_proof("jkt", "c"), dpop_proof("jkt", "d"));
        assert_ne!(dpop_proof("jkt", "c"), dpop_proof("jku", "c"));
    }
}
