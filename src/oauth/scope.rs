//! Scopes (RFC 6749 §3.3): `scope = scope-token *( SP scope-token )`,
//! `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.

use crate::values::ScopeToken;

/// A set of scope tokens in request order, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(Vec<ScopeToken>);

impl ScopeSet {
    /// Parses a `scope` parameter strictly: single spaces between valid tokens, nothing else.
    /// A repeated token is kept once.
    pub fn parse(text: &str) -> Option<Self> {
        let mut tokens: Vec<ScopeToken> = Vec::new();
        for token in text.split(' ') {
            let token = ScopeToken::parse(token).ok()?;
            if !tokens.contains(&token) {
                tokens.push(token);
            }
        }
        Some(Self(tokens))
    }

    /// A set from a client's configured scopes, which were checked when the client was
    /// registered (`clients::validate_policy`); a token that is not one is left out.
    pub fn from_tokens(tokens: &[String]) -> Self {
        let mut set = Self::default();
        for t in tokens
            .iter()
            .filter_map(|t| ScopeToken::parse(t.as_str()).ok())
        {
            if !set.0.contains(&t) {
                set.0.push(t);
            }
        }
        set
    }

    /// Whether every token is in `allowed`.
    pub fn is_subset_of(&self, allowed: &[String]) -> bool {
        self.0.iter().all(|t| allowed.iter().any(|a| t == a))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens.
    pub fn tokens(&self) -> &[ScopeToken] {
        &self.0
    }

    /// The space-delimited form used in the token and the response.
    pub fn to_scope_string(&self) -> String {
        let tokens: Vec<&str> = self.0.iter().map(ScopeToken::as_str).collect();
        tokens.join(" ")
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
