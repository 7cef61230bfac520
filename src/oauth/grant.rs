//! The grant rules of the client credentials grant (RFC 6749 §4.4) as pure functions over a
//! client record: client-secret authentication, the scope and audience to grant, the token's
//! lifetime and its claims. No store, no clock, no randomness: the flow (`crate::issue`) reads
//! those and hands them in.

use time::OffsetDateTime;

use super::OAuthError;
use super::claims::{AccessTokenClaims, Audience};
use super::scope::ScopeSet;
use crate::clients::claims::is_reserved;
use crate::clients::{Client, ClientAuthMethod, SecretHash};

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenResponse {
    /// The signed JWT.
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a token bound to a proof key (RFC 9449 §5).
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The granted scope.
    pub scope: String,
}

impl TokenResponse {
    /// The response carrying a bearer token (RFC 6750) that lives `lifetime` seconds.
    pub fn bearer(access_token: String, lifetime: u64, scope: String) -> Self {
        Self {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime,
            scope,
        }
    }

    /// The response carrying a DPoP-bound token (RFC 9449 §5): `token_type` `DPoP`.
    pub fn dpop(access_token: String, lifetime: u64, scope: String) -> Self {
        Self {
            token_type: "DPoP",
            ..Self::bearer(access_token, lifetime, scope)
        }
    }
}

/// Client-secret authentication (RFC 6749 §2.3.1): the client if `secret` matches one of its
/// live secrets and the client is active and registered for secrets. Else `invalid_client`,
/// with the same answer and about the same work whatever the reason: an unknown client, a wrong
/// or expired secret, a disabled client, a client registered for `private_key_jwt`. Every
/// stored secret is compared in constant time; an unknown client is compared with a decoy.
pub fn authenticate(
    secret: &[u8],
    client: Option<Client>,
    now: OffsetDateTime,
) -> Result<Client, OAuthError> {
    let presented = SecretHash::of(secret);
    let matched = match &client {
        Some(c) => c.secrets.iter().fold(false, |found, s| {
            // No short-circuit: every stored secret is compared.
            found | (s.hash.matches(&presented) & s.is_live(now))
        }),
        None => {
            let _ = SecretHash::decoy().matches(&presented);
            false
        }
    };
    match client {
        Some(c) if matched && c.is_active() && c.auth_method == ClientAuthMethod::ClientSecret => {
            Ok(c)
        }
        _ => Err(OAuthError::InvalidClient),
    }
}

/// The scope to grant (RFC 6749 §3.3): the requested scopes if all are allowed, else
/// `invalid_scope` (never silently narrowed); the client's defaults when none is requested.
pub fn granted_scope(
    client: &Client,
    requested: Option<&ScopeSet>,
) -> Result<ScopeSet, OAuthError> {
    let scope = match requested {
        Some(s) => s.clone(),
        None => ScopeSet::from_tokens(&client.default_scopes),
    };
    if scope.is_empty() {
        return Err(OAuthError::InvalidScope(
            "no scope was requested and the client has no default scope",
        ));
    }
    if !scope.is_subset_of(&client.scopes) {
        return Err(OAuthError::InvalidScope(
            "a requested scope is not allowed for this client",
        ));
    }
    Ok(scope)
}

/// The audience to grant (RFC 8707 §2): the requested resources if all are allowed, else
/// `invalid_target`; the client's default audience when none is requested.
pub fn granted_audience(client: &Client, resources: Vec<String>) -> Result<Audience, OAuthError> {
    if resources.is_empty() {
        return Ok(Audience::One(client.default_audience.clone()));
    }
    if !resources.iter().all(|r| client.audiences.contains(r)) {
        return Err(OAuthError::InvalidTarget(
            "a requested resource is not allowed for this client",
        ));
    }
    Ok(Audience::from_list(resources))
}

/// The token lifetime in seconds: the client's own, else the service default, never above the
/// service maximum (DESIGN.md "Access token": lifetimes are set by the service only).
pub fn token_lifetime(client: &Client, default_ttl: u64, max_ttl: u64) -> u64 {
    client.token_ttl.unwrap_or(default_ttl).min(max_ttl)
}

/// What a granted token says, decided before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The scope granted.
    pub scope: ScopeSet,
    /// The audience granted.
    pub audience: Audience,
    /// Lifetime in seconds.
    pub lifetime: u64,
}

/// What `client` may be granted for what it asked: the scope, the audience and the lifetime
/// (its own, else `default_ttl`, capped by `max_ttl`).
pub fn authorize(
    client: &Client,
    scope: Option<&ScopeSet>,
    resources: Vec<String>,
    default_ttl: u64,
    max_ttl: u64,
) -> Result<Grant, OAuthError> {
    Ok(Grant {
        scope: granted_scope(client, scope)?,
        audience: granted_audience(client, resources)?,
        lifetime: token_lifetime(client, default_ttl, max_ttl),
    })
}

/// The claims of an access token for `client` (RFC 9068 §2.2): `sub` and `client_id` name the
/// client itself (client credentials grant), `nbf` = `iat` = `now`, `exp` after the granted
/// lifetime, `jti` as given (the caller draws it at random, RFC 9068 §2.2.1).
pub fn access_token_claims(
    issuer: &str,
    client: &Client,
    grant: &Grant,
    now: OffsetDateTime,
    jti: String,
) -> AccessTokenClaims {
    let iat = now.unix_timestamp();
    AccessTokenClaims {
        iss: issuer.to_owned(),
        sub: client.client_id.clone(),
        client_id: client.client_id.clone(),
        aud: grant.audience.clone(),
        iat,
        nbf: iat,
        exp: iat.saturating_add_unsigned(grant.lifetime),
        jti,
        scope: grant.scope.to_scope_string(),
        cnf: None,
        extra: extra_claims(client),
    }
}

/// The client's extra claims for its token. Admin refuses registered names; one written to the
/// store by other means is still never emitted, so it can neither shadow nor repeat a claim
/// the service sets.
fn extra_claims(client: &Client) -> serde_json::Map<String, serde_json::Value> {
    client
        .claims
        .iter()
        .filter(|(name, _)| !is_reserved(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::clients::{ClientSecret, ClientStatus, StoredSecret};

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
    }

    fn client_with(secret: &ClientSecret, expires_at: Option<OffsetDateTime>) -> Client {
        Client {
            client_id: "svc".to_owned(),
            name: "svc".to_owned(),
            status: ClientStatus::Active,
            scopes: vec!["read".to_owned(), "write".to_owned()],
            default_scopes: vec!["read".to_owned()],
            audiences: vec!["https://a.test/".to_owned(), "https://b.test/".to_owned()],
            default_audience: "https://a.test/".to_owned(),
            token_ttl: None,
            rate_limit: None,
            secrets: vec![StoredSecret {
                secret_id: "s1".to_owned(),
                hash: secret.hash(),
                created_at: at(0),
                expires_at,
            }],
            auth_method: ClientAuthMethod::ClientSecret,
            keys: Vec::new(),
            claims: Default::default(),
            dpop_bound: false,
            created_at: at(0),
            updated_at: at(0),
            version: 1,
        }
    }

    #[test]
    fn the_right_live_secret_of_an_active_secret_client_authenticates() {
        let secret = ClientSecret::generate();
        let client = client_with(&secret, Some(at(100)));
        let got = authenticate(secret.expose().as_bytes(), Some(client.clone()), at(99));
        assert_eq!(got, Ok(client));
    }

    #[test]
    fn every_failure_is_the_same_invalid_client() {
        let secret = ClientSecret::generate();
        let right = secret.expose().as_bytes();
        let live = client_with(&secret, None);
        let expired = client_with(&secret, Some(at(10)));
        let mut disabled = live.clone();
        disabled.status = ClientStatus::Disabled;
        let mut key_client = live.clone();
        key_client.auth_method = ClientAuthMethod::PrivateKeyJwt;
        let mut padded = right.to_vec();
        padded.push(0);
        let cases: [(&str, &[u8], Option<Client>); 6] = [
            ("unknown client", right, None),
            ("wrong secret", b"tks_wrong", Some(live.clone())),
            ("secret with a NUL appended", &padded, Some(live)),
            ("expired secret", right, Some(expired)),
            ("disabled client", right, Some(disabled)),
            ("private_key_jwt client", right, Some(key_client)),
        ];
        for (case, presented, client) in cases {
            assert_eq!(
                authenticate(presented, client, at(10)),
                Err(OAuthError::InvalidClient),
                "{case}"
            );
        }
    }

    #[test]
    fn omitted_scope_is_the_default_and_requested_scope_must_be_allowed() {
        let client = client_with(&ClientSecret::generate(), None);
        let granted = granted_scope(&client, None).unwrap();
        assert_eq!(granted.to_scope_string(), "read");
        let both = ScopeSet::parse("write read").unwrap();
        assert_eq!(granted_scope(&client, Some(&both)), Ok(both));
        let wider = ScopeSet::parse("read admin").unwrap();
        assert!(matches!(
            granted_scope(&client, Some(&wider)),
            Err(OAuthError::InvalidScope(_))
        ));
        let mut no_default = client.clone();
        no_default.default_scopes.clear();
        assert!(matches!(
            granted_scope(&no_default, None),
            Err(OAuthError::InvalidScope(_))
        ));
    }

    #[test]
    fn omitted_resource_is_the_default_audience_and_requested_ones_must_be_allowed() {
        let client = client_with(&ClientSecret::generate(), None);
        assert_eq!(
            granted_audience(&client, Vec::new()),
            Ok(Audience::One("https://a.test/".to_owned()))
        );
        let two = vec!["https://b.test/".to_owned(), "https://a.test/".to_owned()];
        assert_eq!(
            granted_audience(&client, two.clone()),
            Ok(Audience::Many(two))
        );
        let unknown = vec!["https://a.test/".to_owned(), "https://c.test/".to_owned()];
        assert!(matches!(
            granted_audience(&client, unknown),
            Err(OAuthError::InvalidTarget(_))
        ));
    }

    #[test]
    fn lifetime_is_the_clients_or_the_default_and_never_above_the_maximum() {
        let mut client = client_with(&ClientSecret::generate(), None);
        assert_eq!(token_lifetime(&client, 900, 3600), 900);
        client.token_ttl = Some(60);
        assert_eq!(token_lifetime(&client, 900, 3600), 60);
        client.token_ttl = Some(7200);
        assert_eq!(token_lifetime(&client, 900, 3600), 3600);
    }

    #[test]
    fn claims_name_the_client_and_run_for_the_granted_lifetime() {
        let client = client_with(&ClientSecret::generate(), None);
        let grant = Grant {
            scope: ScopeSet::parse("read write").unwrap(),
            audience: Audience::One("https://a.test/".to_owned()),
            lifetime: 300,
        };
        let now = at(5);
        let claims = access_token_claims("https://issuer.test", &client, &grant, now, "j".into());
        assert_eq!(claims.iss, "https://issuer.test");
        assert_eq!(
            (claims.sub.as_str(), claims.client_id.as_str()),
            ("svc", "svc")
        );
        assert_eq!(claims.aud, grant.audience);
        assert_eq!(
            (claims.iat, claims.nbf),
            (now.unix_timestamp(), now.unix_timestamp())
        );
        assert_eq!(claims.exp, (now + Duration::seconds(300)).unix_timestamp());
        assert_eq!(
            (claims.jti.as_str(), claims.scope.as_str()),
            ("j", "read write")
        );
    }

    fn grant() -> Grant {
        Grant {
            scope: ScopeSet::parse("read").unwrap(),
            audience: Audience::One("https://a.test/".to_owned()),
            lifetime: 300,
        }
    }

    #[test]
    fn a_client_without_claims_gets_exactly_the_registered_claims_in_order() {
        let client = client_with(&ClientSecret::generate(), None);
        let claims =
            access_token_claims("https://issuer.test", &client, &grant(), at(0), "j".into());
        let payload = serde_json::to_string(&claims).unwrap();
        assert_eq!(
            payload,
            r#"{"iss":"https://issuer.test","sub":"svc","client_id":"svc","aud":"https://a.test/","iat":1700000000,"nbf":1700000000,"exp":1700000300,"jti":"j","scope":"read"}"#
        );
    }

    #[test]
    fn extra_claims_follow_the_registered_ones_typed_and_never_replace_them() {
        let mut client = client_with(&ClientSecret::generate(), None);
        let extra = serde_json::json!({"tenant": "acme", "seats": 25, "org": {"id": [1, 2]}});
        client.claims = extra.as_object().unwrap().clone();
        // Written to the store by other means than admin, which refuses it.
        client
            .claims
            .insert("iss".to_owned(), "https://evil.test".into());
        let claims =
            access_token_claims("https://issuer.test", &client, &grant(), at(0), "j".into());
        let payload = serde_json::to_string(&claims).unwrap();
        assert_eq!(
            payload,
            r#"{"iss":"https://issuer.test","sub":"svc","client_id":"svc","aud":"https://a.test/","iat":1700000000,"nbf":1700000000,"exp":1700000300,"jti":"j","scope":"read","org":{"id":[1,2]},"seats":25,"tenant":"acme"}"#
        );
    }
}
