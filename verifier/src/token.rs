//! A verified access token: its registered claims typed (RFC 9068 §2.2), the rest kept as
//! JSON for the API to read.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;

/// The claims this crate reads itself; everything else is an extra claim.
const REGISTERED: [&str; 10] = [
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
];

/// An access token whose signature, type, issuer, audience and lifetime have been checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// `iss`: the issuer, equal to the configured one.
    pub issuer: String,
    /// `sub`, when present (for client credentials tokens the client itself).
    pub subject: Option<String>,
    /// `client_id` (RFC 9068 §2.2; RFC 8693 §4.3): the client the token was issued to.
    pub client_id: String,
    /// `scope`, split on spaces (RFC 6749 §3.3); empty when the token has none.
    pub scopes: Vec<String>,
    /// `aud`, always as a list.
    pub audiences: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// `iat`, when present.
    pub issued_at: Option<i64>,
    /// `nbf`, when present.
    pub not_before: Option<i64>,
    /// `jti`: the token's unique id.
    pub jti: String,
    /// `cnf.jkt` (RFC 9449 §6.1): the RFC 7638 thumbprint of the key the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_thumbprint: Option<String>,
    /// The claims beyond the registered ones above (per-client claims such as a tenant).
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl VerifiedToken {
    /// Reads the typed claims out of a claims set whose signature, `exp`, `nbf`, `iss` and
    /// `aud` the caller has checked.
    pub(crate) fn from_claims(mut claims: Map<String, Value>) -> Result<Self, Error> {
        let issuer = string(&mut claims, "iss")?.ok_or(Error::MissingClaim("iss"))?;
        let subject = string(&mut claims, "sub")?;
        let client_id =
            string(&mut claims, "client_id")?.ok_or(Error::MissingClaim("client_id"))?;
        let jti = string(&mut claims, "jti")?.ok_or(Error::MissingClaim("jti"))?;
        let expires_at = number(&mut claims, "exp")?.ok_or(Error::MissingClaim("exp"))?;
        let issued_at = number(&mut claims, "iat")?;
        let not_before = number(&mut claims, "nbf")?;
        let scopes = string(&mut claims, "scope")?
            .map(|s| {
                s.split(' ')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let audiences = match claims.remove("aud") {
            Some(Value::String(aud)) => vec![aud],
            Some(Value::Array(list)) => list
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(Error::Malformed(
                        "aud is not a string or an array of strings",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(Error::Malformed(
                    "aud is not a string or an array of strings",
                ));
            }
            None => return Err(Error::MissingClaim("aud")),
        };
        let key_thumbprint = match claims.remove("cnf") {
            None => None,
            Some(Value::Object(mut cnf)) => match cnf.remove("jkt") {
                Some(Value::String(jkt)) => Some(jkt),
                None => None,
                Some(_) => return Err(Error::Malformed("cnf.jkt is not a string")),
            },
            Some(_) => return Err(Error::Malformed("cnf is not an object")),
        };
        debug_assert!(REGISTERED.iter().all(|name| !claims.contains_key(*name)));
        Ok(Self {
            issuer,
            subject,
            client_id,
            scopes,
            audiences,
            expires_at,
            issued_at,
            not_before,
            jti,
            key_thumbprint,
            extra: claims,
        })
    }

    /// An extra claim (one beyond `iss sub aud exp nbf iat jti client_id scope cnf`) as `T`:
    /// `Ok(None)` when the token does not have it, [`Error::ClaimType`] when it has it with
    /// another JSON type. The registered claims are the fields of this struct.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        match self.extra.get(name) {
            None => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|_| Error::ClaimType {
                    name: name.to_owned(),
                }),
        }
    }

    /// The claims beyond `iss sub aud exp nbf iat jti client_id scope cnf`.
    pub fn extra_claims(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// Whether the token was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Ok` when the token was granted `scope`, else [`Error::InsufficientScope`] (answered
    /// `403` with `error="insufficient_scope"`, RFC 6750 §3.1).
    pub fn require_scope(&self, scope: &str) -> Result<(), Error> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(Error::InsufficientScope {
                required: scope.to_owned(),
            })
        }
    }
}

fn string(claims: &mut Map<String, Value>, name: &'static str) -> Result<Option<String>, Error> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::Malformed(match name {
            "iss" => "iss is not a string",
            "sub" => "sub is not a string",
            "client_id" => "client_id is not a string",
            "jti" => "jti is not a string",
            _ => "scope is not a string",
        })),
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; truncated to whole seconds.
fn number(claims: &mut Map<String, Value>, name: &'static str) -> Result<Option<i64>, Error> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(Error::Malformed("a time claim is not a NumericDate")),
        Some(_) => Err(Error::Malformed("a time claim is not a NumericDate")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(extra: Value) -> VerifiedToken {
        let mut claims = json!({
            "iss": "https://issuer.example", "sub": "c1", "client_id": "c1",
            "aud": ["https://api.example", "other"], "exp": 2000000000, "iat": 1999999000,
            "jti": "j", "scope": "api.read  api.write",
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        VerifiedToken::from_claims(claims.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn registered_claims_are_typed_and_the_rest_is_extra() {
        let t = token(json!({"tenant": "acme", "plan": {"seats": 5}, "cnf": {"jkt": "x"}}));
        assert_eq!(t.scopes, ["api.read", "api.write"]);
        assert_eq!(t.audiences, ["https://api.example", "other"]);
        assert_eq!(t.key_thumbprint.as_deref(), Some("x"));
        assert_eq!(t.extra_claims().len(), 2);
        assert_eq!(
            t.claim::<String>("tenant").unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(t.claim::<String>("absent").unwrap(), None);
        assert_eq!(
            t.claim::<u32>("tenant"),
            Err(Error::ClaimType {
                name: "tenant".into()
            })
        );
    }

    #[test]
    fn scope_checks() {
        let t = token(json!({}));
        assert!(t.has_scope("api.read"));
        assert!(!t.has_scope("api"));
        assert!(t.require_scope("api.write").is_ok());
        assert_eq!(
            t.require_scope("admin"),
            Err(Error::InsufficientScope {
                required: "admin".into()
            })
        );
    }

    #[test]
    fn a_missing_client_id_or_jti_is_refused() {
        let base = json!({"iss": "i", "aud": "a", "exp": 1, "jti": "j", "client_id": "c"});
        for name in ["client_id", "jti", "aud", "exp"] {
            let mut c = base.as_object().unwrap().clone();
            c.remove(name);
            assert!(
                matches!(VerifiedToken::from_claims(c), Err(Error::MissingClaim(n)) if n == name)
            );
        }
    }
}
