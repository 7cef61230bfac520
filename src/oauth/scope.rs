//! Scopes (RFC 6749 §3.3): `scope = scope-token *( SP scope-token )`,
//! `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.

use crate::values::is_scope_token;

/// A set of scope tokens in request order, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// Parses a `scope` parameter strictly: single spaces between valid tokens, nothing else.
    /// A repeated token is kept once.
    pub fn parse(text: &str) -> Option<Self> {
        let mut tokens: Vec<String> = Vec::new();
        for token in text.split(' ') {
            if !is_scope_token(token) {
                return None;
            }
            if !tokens.iter().any(|t| t == token) {
                tokens.push(token.to_owned());
            }
        }
        Some(Self(tokens))
    }

    /// A set from tokens already validated (a client's configured scopes).
    pub fn from_tokens(tokens: &[String]) -> Self {
        let mut set = Self::default();
        for t in tokens {
            if !set.0.contains(t) {
                set.0.push(t.clone());
            }
        }
        set
    }

    /// Whether every token is in `allowed`.
    pub fn is_subset_of(&self, allowed: &[String]) -> bool {
        self.0.iter().all(|t| allowed.contains(t))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens.
    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    /// The space-delimited form used in the token and the response.
    pub fn to_scope_string(&self) -> String {
        self.0.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_syntax_follows_rfc6749_section_3_3() {
        assert_eq!(
            ScopeSet::parse("a b:c https://x/y").unwrap().tokens(),
            ["a", "b:c", "https://x/y"]
        );
        assert_eq!(ScopeSet::parse("a a b").unwrap().to_scope_string(), "a b");
        for bad in ["", " a", "a ", "a  b", "a\tb", "a\"b", "a\\b", "é"] {
            assert!(ScopeSet::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subset_is_exact_match_per_token() {
        let allowed = vec!["api.read".to_owned(), "api.write".to_owned()];
        assert!(ScopeSet::parse("api.read").unwrap().is_subset_of(&allowed));
        assert!(!ScopeSet::parse("api").unwrap().is_subset_of(&allowed));
        assert!(
            !ScopeSet::parse("api.read admin")
                .unwrap()
                .is_subset_of(&allowed)
        );
    }
}
