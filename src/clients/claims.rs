//! A client's own token claims (tenant, organisation, plan): put at the top level of every
//! access token of the client, beside the registered claims, which they can never replace.

use serde_json::{Map, Value};

/// The extra claims of a client: a JSON object, values of any JSON type.
pub type ExtraClaims = Map<String, Value>;

/// Names a client's claims may never use: the claims the service sets itself (RFC 7519 §4.1,
/// RFC 9068 §2.2: `iss sub aud exp nbf iat jti client_id scope`), the proof-of-possession and
/// delegation claims (RFC 7800 §3.1 `cnf`, RFC 8693 §4.1 and §4.4 `act`, `may_act`), the
/// authentication claims of RFC 9068 §2.2.1 (`auth_time acr amr`), OpenID Connect's `azp`,
/// and `typ`, which RFC 9068 §2.1 gives the header. A later feature that sets a claim adds its
/// name here.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "cnf",
    "act",
    "may_act",
    "auth_time",
    "acr",
    "amr",
    "azp",
    "typ",
];

/// Longest claim name, in bytes.
pub const MAX_CLAIM_NAME_LEN: usize = 64;

/// Most bytes the claims may take as JSON: every token of the client carries them.
pub const MAX_CLAIMS_JSON_LEN: usize = 1024;

/// Deepest nesting of objects and arrays within one claim's value (a string or number is 0,
/// `{"a": 1}` is 1).
pub const MAX_CLAIM_DEPTH: usize = 4;

/// Why extra claims are refused. Nothing is written when any claim is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimError {
    /// The name is one the service sets or reserves.
    #[error("claim {0:?} is a registered claim name the service sets or reserves")]
    Reserved(String),
    /// The name is empty, too long or not printable ASCII.
    #[error(
        "claim name {0:?} must be 1 to {MAX_CLAIM_NAME_LEN} bytes of printable ASCII without spaces"
    )]
    InvalidName(String),
    /// The set is larger than [`MAX_CLAIMS_JSON_LEN`] as JSON.
    #[error("the claims take {0} bytes as JSON; at most {MAX_CLAIMS_JSON_LEN} are allowed")]
    TooLarge(usize),
    /// A value nests objects or arrays deeper than [`MAX_CLAIM_DEPTH`].
    #[error("claim {0:?} nests objects or arrays deeper than {MAX_CLAIM_DEPTH} levels")]
    TooDeep(String),
    /// `NAME=VALUE` without `=`.
    #[error("a claim is given as NAME=VALUE")]
    NotAssignment,
    /// A claims document that is not a JSON object.
    #[error("claims must be a JSON object of names and values: {0}")]
    NotAnObject(String),
    /// A claim to remove that the client does not have.
    #[error("the client has no claim {0:?}")]
    NoSuchClaim(String),
}

/// Whether `name` is one the service sets or reserves.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_CLAIMS.contains(&name)
}

/// A name as an error shows it: escaped by `{:?}`, and cut at a bound so that a long one does
/// not flood the message.
fn shown(name: &str) -> String {
    name.chars().take(MAX_CLAIM_NAME_LEN + 1).collect()
}

/// Checks a client's claims: names, size and nesting (used on every create and update).
pub fn validate(claims: &ExtraClaims) -> Result<(), ClaimError> {
    for (name, value) in claims {
        let printable = name.bytes().all(|b| b.is_ascii_graphic());
        if name.is_empty() || name.len() > MAX_CLAIM_NAME_LEN || !printable {
            return Err(ClaimError::InvalidName(shown(name)));
        }
        if is_reserved(name) {
            return Err(ClaimError::Reserved(name.clone()));
        }
        if exceeds_depth(value, MAX_CLAIM_DEPTH) {
            return Err(ClaimError::TooDeep(name.clone()));
        }
    }
    // Serialising a map of JSON values cannot fail; the length is what a token carries.
    let len = serde_json::to_vec(claims).map_or(usize::MAX, |v| v.len());
    if len > MAX_CLAIMS_JSON_LEN {
        return Err(ClaimError::TooLarge(len));
    }
    Ok(())
}

/// Whether `value` nests objects or arrays more than `allowed` levels deep. It looks no deeper
/// than `allowed + 1` levels.
fn exceeds_depth(value: &Value, allowed: usize) -> bool {
    match value {
        Value::Array(_) | Value::Object(_) if allowed == 0 => true,
        Value::Array(items) => items.iter().any(|v| exceeds_depth(v, allowed - 1)),
        Value::Object(members) => members.values().any(|v| exceeds_depth(v, allowed - 1)),
        _ => false,
    }
}

/// Parses `NAME=VALUE` (the first `=` separates them); the value is a string.
pub fn parse_assignment(text: &str) -> Result<(String, Value), ClaimError> {
    let (name, value) = text.split_once('=').ok_or(ClaimError::NotAssignment)?;
    Ok((name.to_owned(), Value::String(value.to_owned())))
}

/// Parses a claims document: a JSON object whose values may be of any JSON type.
pub fn parse_object(text: &str) -> Result<ExtraClaims, ClaimError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ClaimError::NotAnObject(
            "the document is not an object".to_owned(),
        )),
        // serde's message names a position (and may quote a little of the text, which the
        // operator wrote: no secret).
        Err(e) => Err(ClaimError::NotAnObject(e.to_string())),
    }
}

/// A change to a client's claims, applied in this order: replace the whole set, set names,
/// remove names. An empty edit changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimsEdit {
    /// The new whole set (`--claims-json`).
    pub replace: Option<ExtraClaims>,
    /// Names set to a value, the others kept (`--claim NAME=VALUE`).
    pub set: Vec<(String, Value)>,
    /// Names removed (`--remove-claim NAME`); each must be present.
    pub remove: Vec<String>,
}

impl ClaimsEdit {
    /// Whether the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.replace.is_none() && self.set.is_empty() && self.remove.is_empty()
    }

    /// Applies the edit to `claims`. The result is checked by [`validate`] with the rest of
    /// the client.
    pub fn apply(self, claims: &mut ExtraClaims) -> Result<(), ClaimError> {
        if let Some(all) = self.replace {
            *claims = all;
        }
        claims.extend(self.set);
        for name in self.remove {
            if claims.remove(&name).is_none() {
                return Err(ClaimError::NoSuchClaim(shown(&name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> ExtraClaims {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn typed_values_within_the_bounds_are_accepted() {
        let claims = object(json!({
            "tenant": "acme",
            "seats": 25,
            "beta": true,
            "regions": ["eu", "us"],
            "org": {"a": {"b": {"c": [1]}}},
            "x-ok_name.1~": null,
        }));
        assert_eq!(validate(&claims), Ok(()));
        assert_eq!(validate(&ExtraClaims::new()), Ok(()));
    }

    #[test]
    fn every_registered_name_is_refused() {
        for name in RESERVED_CLAIMS {
            let claims = object(json!({ *name: "x" }));
            assert_eq!(
                validate(&claims),
                Err(ClaimError::Reserved((*name).to_owned()))
            );
        }
    }

    #[test]
    fn names_are_short_printable_ascii() {
        let longest = "n".repeat(MAX_CLAIM_NAME_LEN);
        assert_eq!(validate(&object(json!({ longest: 1 }))), Ok(()));
        let long = "n".repeat(MAX_CLAIM_NAME_LEN + 1);
        for bad in ["", "has space", "tab\t", "é", "nul\0", long.as_str()] {
            let err = validate(&object(json!({ bad: 1 }))).unwrap_err();
            assert!(matches!(err, ClaimError::InvalidName(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn nesting_deeper_than_four_is_refused() {
        let four = json!({"a": {"b": {"c": {"d": 1}}}});
        assert_eq!(validate(&object(json!({ "x": four }))), Ok(()));
        let arrays = json!([[[[1]]]]);
        assert_eq!(validate(&object(json!({ "x": arrays }))), Ok(()));
        let five = json!({"a": {"b": {"c": {"d": {"e": 1}}}}});
        assert_eq!(
            validate(&object(json!({ "x": five }))),
            Err(ClaimError::TooDeep("x".to_owned()))
        );
        assert!(validate(&object(json!({ "x": [[[[[1]]]]] }))).is_err());
    }

    #[test]
    fn a_set_over_one_kib_is_refused() {
        // {"k":"..."} is 8 bytes around the value.
        let fits = object(json!({ "k": "v".repeat(MAX_CLAIMS_JSON_LEN - 8) }));
        assert_eq!(validate(&fits), Ok(()));
        let over = object(json!({ "k": "v".repeat(MAX_CLAIMS_JSON_LEN - 7) }));
        assert_eq!(
            validate(&over),
            Err(ClaimError::TooLarge(MAX_CLAIMS_JSON_LEN + 1))
        );
    }

    #[test]
    fn edits_replace_then_set_then_remove() {
        let mut claims = object(json!({"tenant": "acme", "plan": "free"}));
        let edit = ClaimsEdit {
            set: vec![("plan".to_owned(), json!("pro"))],
            ..Default::default()
        };
        edit.apply(&mut claims).unwrap();
        assert_eq!(
            Value::Object(claims.clone()),
            json!({"tenant": "acme", "plan": "pro"})
        );
        let edit = ClaimsEdit {
            replace: Some(object(json!({"seats": 3, "tenant": "beta"}))),
            set: vec![("plan".to_owned(), json!("team"))],
            remove: vec!["tenant".to_owned()],
        };
        edit.apply(&mut claims).unwrap();
        assert_eq!(
            Value::Object(claims.clone()),
            json!({"seats": 3, "plan": "team"})
        );
        let missing = ClaimsEdit {
            remove: vec!["nope".to_owned()],
            ..Default::default()
        };
        assert_eq!(
            missing.apply(&mut claims),
            Err(ClaimError::NoSuchClaim("nope".to_owned()))
        );
        assert!(ClaimsEdit::default().is_empty());
    }

    #[test]
    fn assignments_and_documents_parse() {
        assert_eq!(
            parse_assignment("tenant=a=b").unwrap(),
            ("tenant".to_owned(), json!("a=b"))
        );
        assert_eq!(
            parse_assignment("empty=").unwrap(),
            ("empty".to_owned(), json!(""))
        );
        assert_eq!(parse_assignment("novalue"), Err(ClaimError::NotAssignment));
        assert_eq!(
            Value::Object(parse_object(r#"{"n": 1.5, "s": "x"}"#).unwrap()),
            json!({"n": 1.5, "s": "x"})
        );
        for bad in ["[1]", "\"x\"", "{", ""] {
            assert!(
                matches!(parse_object(bad), Err(ClaimError::NotAnObject(_))),
                "{bad}"
            );
        }
    }
}
