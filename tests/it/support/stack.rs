//! Shared set-up for the integration tests: an embedded stack on a temporary SQLite file,
//! requests through the real router, and an independent token verifier.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use time::OffsetDateTime;
use token_service::admin::{Admin, NewClient};
use token_service::clients::Client;
use token_service::clock::ManualClock;
use token_service::config::ServiceConfig;
use token_service::oauth::claims::AccessTokenClaims;
use token_service::shapes::embedded::Embedded;
use tower::ServiceExt as _;

pub const AUDIENCE: &str = "https://api.example.com";
pub const FORM: &str = "application/x-www-form-urlencoded";

/// An embedded stack on a fresh temporary database with a manual clock.
pub struct Stack {
    /// Keeps the database's temporary directory alive.
    pub _dir: tempfile::TempDir,
    pub embedded: Embedded,
    pub clock: Arc<ManualClock>,
    pub router: Router,
}

impl Stack {
    pub async fn new() -> Self {
        Self::with_config(ServiceConfig::for_tests()).await
    }

    pub async fn with_config(config: ServiceConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let embedded =
            Embedded::open(dir.path().join("t.db"), config, clock.clone()).expect("open store");
        embedded
            .admin("test")
            .ensure_signing_key()
            .await
            .expect("first key");
        let router = embedded.router();
        Self {
            _dir: dir,
            embedded,
            clock,
            router,
        }
    }

    pub fn admin(&self) -> Admin {
        self.embedded.admin("test")
    }

    /// A client with scopes `api.read api.write` (default `api.read`), audiences
    /// `https://api.example.com` (default) and `https://other.example.com`.
    pub async fn client(&self, id: &str) -> (Client, String) {
        self.client_with(NewClient {
            client_id: Some(id.to_owned()),
            name: format!("client {id}"),
            scopes: vec!["api.read".into(), "api.write".into()],
            default_scopes: Some(vec!["api.read".into()]),
            audiences: vec![AUDIENCE.into(), "https://other.example.com".into()],
            ..Default::default()
        })
        .await
    }

    pub async fn client_with(&self, spec: NewClient) -> (Client, String) {
        let (client, secret) = self
            .admin()
            .create_client(spec)
            .await
            .expect("create client");
        (client, secret.expose().to_owned())
    }

    /// Sends a request through the router.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            json,
        }
    }

    /// POSTs a form body to the token endpoint with the given extra headers.
    pub async fn token(&self, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut builder = Request::post("/oauth/token");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.send(builder.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    /// A client_secret_basic request from the source address `ip`.
    pub async fn basic_from(&self, ip: &str, id: &str, secret: &str, body: &str) -> Reply {
        let request = Request::post("/oauth/token")
            .header("content-type", FORM)
            .header("authorization", basic_header(id, secret))
            .extension(token_service::http::FrontContext {
                request_id: None,
                source_ip: Some(ip.to_owned()),
            })
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(request).await
    }

    /// A client_secret_basic request.
    pub async fn basic(&self, id: &str, secret: &str, body: &str) -> Reply {
        let auth = basic_header(id, secret);
        self.token(&[("content-type", FORM), ("authorization", &auth)], body)
            .await
    }

    pub async fn jwks(&self) -> JwkSet {
        let reply = self
            .send(
                Request::get("/.well-known/jwks.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        serde_json::from_value(reply.json).expect("a JWK set")
    }

    pub async fn audit(&self) -> Vec<token_service::audit::AuditRecord> {
        use token_service::store::AuditLog as _;
        self.embedded
            .store
            .query(&Default::default())
            .await
            .expect("audit query")
    }
}

/// `Authorization: Basic` with id and secret form-urlencoded first (RFC 6749 §2.3.1).
pub fn basic_header(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: serde_json::Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 6749 §5.2 error response with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.json["error"], code, "body: {}", self.text);
        assert!(
            self.json["error_description"].is_string(),
            "body: {}",
            self.text
        );
        assert!(
            self.json.get("access_token").is_none(),
            "an error carried a token"
        );
        self.assert_no_store();
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
        );
    }

    pub fn assert_no_store(&self) {
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("pragma"), Some("no-cache"));
    }
}

/// The one algorithm a resource server accepts for tokens of `jwk`: the `alg` the JWKS
/// publishes for it, if it is one of the service's (RS256, ES256, EdDSA). Never the token
/// header's choice (RFC 8725 §3.1).
pub fn published_alg(jwk: &Jwk) -> Result<Algorithm, String> {
    match jwk.common.key_algorithm {
        Some(KeyAlgorithm::RS256) => Ok(Algorithm::RS256),
        Some(KeyAlgorithm::ES256) => Ok(Algorithm::ES256),
        Some(KeyAlgorithm::EdDSA) => Ok(Algorithm::EdDSA),
        other => Err(format!("the JWK's alg {other:?} is not accepted")),
    }
}

/// Verifies a token the way a resource server would, with `jsonwebtoken` and the published
/// JWK: the JWK's own algorithm only, `typ: at+jwt`, issuer, audience, expiry.
pub fn verify(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<AccessTokenClaims, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(format!("typ is {:?}", header.typ));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("unknown kid {kid}"))?;
    let alg = published_alg(jwk)?;
    if header.alg != alg {
        return Err(format!("alg is {:?}, the JWK's is {alg:?}", header.alg));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf", "iat"]);
    jsonwebtoken::decode::<AccessTokenClaims>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}
