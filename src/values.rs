//! Protocol values shared by the client records and the OAuth rules: client ids (RFC 6749
//! Appendix A), scope tokens (§3.3) and resource URIs (RFC 8707 §2). A leaf: it imports
//! nothing of the crate, so `clients` and `oauth` both use it without depending on each other.

/// Longest client id accepted (RFC 6749 sets no bound; a bound keeps keys and logs small).
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Whether `id` is a client id: RFC 6749 Appendix A `VSCHAR` (here without space), 1 to
/// [`MAX_CLIENT_ID_LEN`] characters.
pub fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Whether `s` is one RFC 6749 §3.3 scope-token: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether `s` is an absolute URI without a fragment (RFC 8707 §2, RFC 3986 §4.3): a scheme,
/// a colon and a non-empty rest, no `#`, no whitespace or control characters.
pub fn is_resource_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.contains('#')
        && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_visible_ascii_within_the_bound() {
        assert!(is_client_id("demo") && is_client_id("a-b_c.d~e!"));
        for bad in ["", "has space", "tab\t", "é"] {
            assert!(!is_client_id(bad), "{bad:?}");
        }
        assert!(is_client_id(&"x".repeat(MAX_CLIENT_ID_LEN)));
        assert!(!is_client_id(&"x".repeat(MAX_CLIENT_ID_LEN + 1)));
    }

    #[test]
    fn scope_tokens_follow_rfc6749_section_3_3() {
        assert!(is_scope_token("api.read") && is_scope_token("https://x/y"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn resource_uris_must_be_absolute_without_fragment() {
        assert!(is_resource_uri("https://api.example.com"));
        assert!(is_resource_uri("urn:example:api"));
        for bad in [
            "api.example.com",
            "/relative",
            "https://a#frag",
            "1http://a",
            "https:",
            "https://a b",
        ] {
            assert!(!is_resource_uri(bad), "{bad}");
        }
    }
}
