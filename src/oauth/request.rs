//! Parsing a token request, once, at the boundary (RFC 6749 §2.3.1, §3.2, §4.4.2; RFC 8707).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode;

use super::error::OAuthError;
use super::scope::ScopeSet;
use crate::clients::secret::looks_like_secret;
use crate::values::{ClientId, ResourceUri};

/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// The only grant type served (RFC 6749 §4.4).
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// How the client sent its credentials (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic, id and secret form-urlencoded before base64.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A signed JWT in `client_assertion` (RFC 7523 §2.2); checked by [`super::assertion`].
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The method's RFC 8414 name, as the audit trail records it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// The credentials a client presented. The secret's `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The presented `client_id`.
    pub client_id: String,
    /// What proves the client's identity, byte for byte, as `method` names it: the secret
    /// (`client_secret_basic`, `client_secret_post`) or the client assertion
    /// (`private_key_jwt`).
    pub credential: Vec<u8>,
    /// Where they came from.
    pub method: AuthMethod,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("credential", &"[redacted]")
            .field("method", &self.method)
            .finish()
    }
}

/// A well-formed client credentials request, not yet authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The presented credentials.
    pub credentials: ClientCredentials,
    /// The requested scope, if any.
    pub scope: Option<ScopeSet>,
    /// The requested resources (RFC 8707), in order, without duplicates.
    pub resources: Vec<ResourceUri>,
    /// The `DPoP` header (RFC 9449 §4.1), checked by [`super::dpop`]; `Err` when it was sent
    /// more than once.
    pub dpop: Option<Result<String, ()>>,
}

impl TokenRequest {
    /// The client id the request names, when it may be recorded and counted
    /// ([`is_recordable_client_id`]).
    pub fn recordable_client_id(&self) -> Option<String> {
        let id = &self.credentials.client_id;
        is_recordable_client_id(id).then(|| id.clone())
    }
}

/// The recordable client id a raw request names: for the audit record of a request that ran
/// out of time before its own flow read it.
pub fn claimed_client_id(raw: RawRequest<'_>) -> Option<String> {
    parse(raw).ok()?.recordable_client_id()
}

/// The raw parts of an HTTP request that the token endpoint reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawRequest<'a> {
    /// `Content-Type` header value, if any (and if it was valid ASCII).
    pub content_type: Option<&'a str>,
    /// `Authorization` header value, if any.
    pub authorization: Option<&'a str>,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The `DPoP` header value, if any; `Err` when the header was sent more than once.
    pub dpop: Option<Result<&'a str, ()>>,
    /// The body.
    pub body: &'a [u8],
}

/// A rejected request, with the client id it claimed when one could be read (for the audit
/// trail; only ids of a valid form are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The error to answer with.
    pub error: OAuthError,
    /// The well-formed client id the request named, if any.
    pub client_id: Option<String>,
}

impl From<OAuthError> for Rejection {
    fn from(error: OAuthError) -> Self {
        Self {
            error,
            client_id: None,
        }
    }
}

fn is_form_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return false;
    }
    // Only a UTF-8 (or ASCII) charset parameter is acceptable; other parameters are ignored.
    parts.all(|p| match p.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let v = value.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("us-ascii")
        }
        _ => true,
    })
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space) to bytes.
fn form_decode(component: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = component
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced).collect()
}

/// The body's `name=value` pairs, split as the URL Standard's form parser splits them, with
/// each value kept as bytes. `form_urlencoded::parse` decodes values to UTF-8 lossily, which
/// would make `%FF` and `%FE` the same secret; a secret is compared as the exact bytes sent
/// (RFC 6749 §2.3.1). Names are only compared with ASCII ones, so a lossy name is harmless.
fn form_pairs(body: &[u8]) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = String::from_utf8_lossy(&form_decode(name)).into_owned();
            (name, form_decode(value))
        })
}

/// Whether a presented client id may be kept for the audit trail, logs and failure counters:
/// it has a valid form and is not one of the service's secrets (a client that swapped id and
/// secret must not have its secret recorded).
pub fn is_recordable_client_id(id: &str) -> bool {
    ClientId::parse(id).is_ok() && !looks_like_secret(id)
}

/// Reads `Authorization: Basic` credentials (RFC 6749 §2.3.1, RFC 7617).
/// `Ok(None)` when there is no Authorization header.
fn basic_credentials(header: Option<&str>) -> Result<Option<(String, Vec<u8>)>, OAuthError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let (scheme, encoded) = header.trim().split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        // An unsupported authentication scheme is a failed client authentication.
        return Err(OAuthError::InvalidClient);
    }
    let malformed = OAuthError::InvalidRequest("malformed Basic authorization header");
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed.clone())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed.clone())?;
    let (id, secret) = decoded.split_once(':').ok_or(malformed.clone())?;
    let id = String::from_utf8(form_decode(id.as_bytes())).map_err(|_| malformed)?;
    Ok(Some((id, form_decode(secret.as_bytes()))))
}

/// Whether a secret was presented, by header or in the body.
fn basic_or_secret_present(authorization: Option<&str>, seen: &[String]) -> bool {
    authorization.is_some() || seen.iter().any(|s| s == "client_secret")
}

/// The `private_key_jwt` credentials (RFC 7523 §2.2, RFC 7521 §4.2), if the request carries
/// an assertion. The client is the `client_id` parameter when present (the assertion's `sub`
/// must then match it), else the assertion's claimed `sub`.
fn client_assertion(
    kind: Option<String>,
    assertion: Option<String>,
    body_id: Option<&str>,
) -> Result<Option<ClientCredentials>, Rejection> {
    let assertion = match (kind.as_deref(), assertion) {
        (None, None) => return Ok(None),
        (Some(super::assertion::JWT_BEARER), Some(a)) => a,
        (Some(super::assertion::JWT_BEARER), None) | (None, Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "client_assertion and client_assertion_type go together",
            )
            .into());
        }
        (Some(_), _) => return Err(OAuthError::InvalidClient.into()),
    };
    let client_id = match body_id {
        Some(id) => id.to_owned(),
        None => super::assertion::claimed_subject(&assertion).unwrap_or_default(),
    };
    Ok(Some(ClientCredentials {
        client_id,
        credential: assertion.into_bytes(),
        method: AuthMethod::PrivateKeyJwt,
    }))
}

/// Parses and checks everything about a token request that needs no stored state.
pub fn parse(raw: RawRequest<'_>) -> Result<TokenRequest, Rejection> {
    if raw.query.is_some_and(|q| !q.is_empty()) {
        return Err(
            OAuthError::InvalidRequest("parameters must be sent in the request body").into(),
        );
    }
    if !raw.content_type.is_some_and(is_form_content_type) {
        return Err(OAuthError::InvalidRequest(
            "content type must be application/x-www-form-urlencoded",
        )
        .into());
    }

    let mut grant_type = None;
    let mut scope = None;
    let mut body_id = None;
    let mut body_secret = None;
    let mut assertion_type = None;
    let mut assertion = None;
    let mut resources: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_pairs(raw.body) {
        // RFC 6749 §3.2: a parameter sent without a value is treated as omitted.
        if value.is_empty() {
            continue;
        }
        if name == "client_secret" && seen.iter().all(|s| *s != name) {
            seen.push(name);
            body_secret = Some(value);
            continue;
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        if name == "resource" {
            if !resources.contains(&value) {
                resources.push(value);
            }
            continue;
        }
        if seen.contains(&name) {
            return Err(OAuthError::InvalidRequest("a request parameter is repeated").into());
        }
        match name.as_str() {
            "grant_type" => grant_type = Some(value),
            "scope" => scope = Some(value),
            "client_id" => body_id = Some(value),
            "client_assertion_type" => assertion_type = Some(value),
            "client_assertion" => assertion = Some(value),
            _ => {} // RFC 6749 §3.2: unknown parameters are ignored.
        }
        seen.push(name);
    }

    let basic = basic_credentials(raw.authorization).map_err(|error| Rejection {
        error,
        client_id: None,
    })?;
    let assertion = client_assertion(assertion_type, assertion, body_id.as_deref())?;
    let claimed = basic
        .as_ref()
        .map(|(id, _)| id.clone())
        .or_else(|| body_id.clone())
        .or_else(|| assertion.as_ref().map(|a| a.client_id.clone()))
        .filter(|id| is_recordable_client_id(id));
    let reject = |error: OAuthError| Rejection {
        error,
        client_id: claimed.clone(),
    };

    let credentials = match (basic, body_secret) {
        _ if assertion.is_some() && basic_or_secret_present(raw.authorization, &seen) => {
            return Err(reject(OAuthError::InvalidRequest(
                "more than one client authentication method was used",
            )));
        }
        (None, None) if assertion.is_some() => assertion.expect("checked just above"),
        (Some(_), Some(_)) => {
            return Err(reject(OAuthError::InvalidRequest(
                "more than one client authentication method was used",
            )));
        }
        (Some((id, secret)), None) => {
            if body_id.as_ref().is_some_and(|b| *b != id) {
                return Err(reject(OAuthError::InvalidRequest(
                    "client_id in the body differs from the authenticated client",
                )));
            }
            ClientCredentials {
                client_id: id,
                credential: secret,
                method: AuthMethod::ClientSecretBasic,
            }
        }
        (None, Some(secret)) => match body_id {
            Some(id) => ClientCredentials {
                client_id: id,
                credential: secret,
                method: AuthMethod::ClientSecretPost,
            },
            None => return Err(reject(OAuthError::InvalidClient)),
        },
        (None, None) => return Err(reject(OAuthError::InvalidClient)),
    };

    match grant_type.as_deref() {
        None => return Err(reject(OAuthError::InvalidRequest("grant_type is required"))),
        Some(GRANT_CLIENT_CREDENTIALS) => {}
        Some(_) => return Err(reject(OAuthError::UnsupportedGrantType)),
    }
    let scope = match scope {
        None => None,
        Some(text) => Some(
            ScopeSet::parse(&text)
                .ok_or_else(|| reject(OAuthError::InvalidScope("scope is malformed")))?,
        ),
    };
    let resources = resources
        .into_iter()
        .map(ResourceUri::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            reject(OAuthError::InvalidTarget(
                "resource must be an absolute URI without a fragment",
            ))
        })?;
    Ok(TokenRequest {
        credentials,
        scope,
        resources,
        dpop: raw.dpop.map(|h| h.map(str::to_owned)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn body(b: &str) -> RawRequest<'_> {
        RawRequest {
            content_type: FORM,
            body: b.as_bytes(),
            ..Default::default()
        }
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn post_credentials_are_read_from_the_body() {
        let r = parse(body(
            "grant_type=client_credentials&client_id=a&client_secret=s%2B1",
        ))
        .unwrap();
        assert_eq!(r.credentials.client_id, "a");
        assert_eq!(r.credentials.credential, b"s+1");
        assert_eq!(r.credentials.method, AuthMethod::ClientSecretPost);
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_inside_base64() {
        let auth = basic("my%3Aclient", "p%25w+d");
        let r = parse(RawRequest {
            authorization: Some(&auth),
            ..body("grant_type=client_credentials")
        })
        .unwrap();
        assert_eq!(r.credentials.client_id, "my:client");
        assert_eq!(r.credentials.credential, b"p%w d");
        assert_eq!(r.credentials.method, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn charset_parameter_is_allowed_but_other_media_types_are_not() {
        let ok = RawRequest {
            content_type: Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            ..body("grant_type=client_credentials&client_id=a&client_secret=s")
        };
        assert!(parse(ok).is_ok());
        for ct in [
            None,
            Some("application/json"),
            Some("application/x-www-form-urlencoded; charset=latin1"),
        ] {
            let r = parse(RawRequest {
                content_type: ct,
                ..body("grant_type=client_credentials&client_id=a&client_secret=s")
            });
            assert_eq!(r.unwrap_err().error.code(), "invalid_request", "{ct:?}");
        }
    }

    #[test]
    fn empty_values_count_as_omitted_and_do_not_make_duplicates() {
        let r = parse(body(
            "grant_type=client_credentials&scope=&scope=a&client_id=a&client_secret=s",
        ))
        .unwrap();
        assert_eq!(r.scope.unwrap().to_scope_string(), "a");
    }

    #[test]
    fn resource_may_repeat_and_is_deduplicated() {
        let r = parse(body(
            "grant_type=client_credentials&client_id=a&client_secret=s&resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&resource=https%3A%2F%2Fa",
        ))
        .unwrap();
        assert_eq!(r.resources, ["https://a", "https://b"]);
    }

    #[test]
    fn a_rejection_keeps_a_well_formed_claimed_client_id_only() {
        let e = parse(body("grant_type=password&client_id=abc&client_secret=s")).unwrap_err();
        assert_eq!(e.error, OAuthError::UnsupportedGrantType);
        assert_eq!(e.client_id.as_deref(), Some("abc"));
        let e = parse(body("grant_type=password&client_id=a%20b&client_secret=s")).unwrap_err();
        assert_eq!(e.client_id, None);
    }

    #[test]
    fn post_secrets_are_the_exact_bytes_sent() {
        // Lossy UTF-8 would read both as U+FFFD, one secret for many byte strings.
        let ff = parse(body(
            "grant_type=client_credentials&client_id=a&client_secret=%FF",
        ))
        .unwrap();
        let fe = parse(body(
            "grant_type=client_credentials&client_id=a&client_secret=%FE",
        ))
        .unwrap();
        assert_eq!(ff.credentials.credential, [0xff]);
        assert_eq!(fe.credentials.credential, [0xfe]);
        let raw = parse(RawRequest {
            body: b"grant_type=client_credentials&client_id=a&client_secret=s\xff+%2B",
            ..body("")
        })
        .unwrap();
        assert_eq!(raw.credentials.credential, b"s\xff +");
        assert_eq!(raw.credentials.client_id, "a");
    }

    #[test]
    fn a_client_id_that_is_a_secret_is_never_kept() {
        let secret = crate::clients::ClientSecret::generate();
        let text = format!(
            "grant_type=password&client_id={}&client_secret=s",
            secret.expose()
        );
        let e = parse(body(&text)).unwrap_err();
        assert_eq!(e.client_id, None);
        assert!(is_recordable_client_id("tks_short"));
        assert!(!is_recordable_client_id(secret.expose()));
    }
}
