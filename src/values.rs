//! Protocol values shared by the client records and the OAuth rules: client ids (RFC 6749
//! Appendix A), scope tokens (§3.3) and resource URIs (RFC 8707 §2). A value of these types
//! was checked when it was made ([`ClientId::parse`], [`ScopeToken::parse`],
//! [`ResourceUri::parse`]), so code holding one need not check again. A leaf: it imports
//! nothing of the crate, so `clients` and `oauth` both use it without depending on each other.

use std::fmt;

/// Longest client id accepted (RFC 6749 sets no bound; a bound keeps keys and logs small).
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Whether `id` is a client id: RFC 6749 Appendix A `VSCHAR` (here without space), 1 to
/// [`MAX_CLIENT_ID_LEN`] characters.
fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Whether `s` is one RFC 6749 §3.3 scope-token: `1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether `s` is an absolute URI without a fragment (RFC 8707 §2, RFC 3986 §4.3): a scheme,
/// a colon and a non-empty rest, no `#`, no whitespace or control characters.
fn is_resource_uri(s: &str) -> bool {
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

/// Why a text is not the value it was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not RFC 6749 Appendix A `VSCHAR` without space, or empty, or too long.
    #[error("a client id is 1 to {MAX_CLIENT_ID_LEN} visible ASCII characters")]
    ClientId,
    /// Not an RFC 6749 §3.3 scope-token.
    #[error("a scope token is visible ASCII without space, '\"' or '\\'")]
    ScopeToken,
    /// Not an absolute URI without a fragment.
    #[error("a resource is an absolute URI without a fragment")]
    ResourceUri,
}

/// A text checked once to be a value of its kind: `parse`, then `as_str` (and `Display`,
/// `AsRef<str>`, comparison with `str`).
macro_rules! checked_text {
    ($(#[doc = $doc:literal])* $name:ident, $check:ident, $error:ident) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The value, if `text` is one.
            pub fn parse(text: impl Into<String>) -> Result<Self, ValueError> {
                let text = text.into();
                if $check(&text) {
                    Ok(Self(text))
                } else {
                    Err(ValueError::$error)
                }
            }

            /// The value's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

checked_text!(
    /// A client id (RFC 6749 Appendix A `VSCHAR` without space, at most [`MAX_CLIENT_ID_LEN`]).
    ClientId, is_client_id, ClientId
);
checked_text!(
    /// One scope token (RFC 6749 §3.3).
    ScopeToken, is_scope_token, ScopeToken
);
checked_text!(
    /// A resource indicator (RFC 8707 §2): an absolute URI without a fragment.
    ResourceUri, is_resource_uri, ResourceUri
);

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

    #[test]
    fn values_are_made_only_from_valid_text() {
        assert_eq!(ClientId::parse("demo").unwrap(), "demo");
        assert_eq!(ClientId::parse("has space"), Err(ValueError::ClientId));
        assert_eq!(ScopeToken::parse("api.read").unwrap().as_str(), "api.read");
        assert_eq!(ScopeToken::parse("a\\b"), Err(ValueError::ScopeToken));
        let uri = ResourceUri::parse("https://api.example.com").unwrap();
        assert_eq!(uri.to_string(), "https://api.example.com");
        assert_eq!(
            ResourceUri::parse("https://a#f"),
            Err(ValueError::ResourceUri)
        );
    }
}
