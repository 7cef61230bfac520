//! API Gateway HTTP API (payload 2.0) fixture events, parsed by `lambda_http` and run through
//! the routers the Lambda functions serve, over a SQLite store.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::Value;
use tempfile::TempDir;
use token_service::admin::NewClient;
use token_service::audit::{AuditQuery, AuditRecord};
use token_service::clock::SystemClock;
use token_service::config::ServiceConfig;
use token_service::shapes::embedded::Embedded;
use token_service::shapes::lambda::{discovery_router, token_router};
use token_service::store::AuditLog;
use tower::ServiceExt as _;

const AUDIENCE: &str = "https://api.example.com";

struct Harness {
    _dir: TempDir,
    embedded: Embedded,
    client_id: String,
    secret: String,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Embedded::open(
        dir.path().join("lambda.db"),
        ServiceConfig::for_tests(),
        Arc::new(SystemClock),
    )
    .expect("open store");
    let admin = embedded.admin("test");
    admin.ensure_signing_key().await.expect("signing key");
    let (client, secret) = admin
        .create_client(NewClient {
            client_id: Some("fixture-client".to_owned()),
            name: "Fixture client".to_owned(),
            scopes: vec!["api.read".to_owned()],
            audiences: vec![AUDIENCE.to_owned()],
            ..Default::default()
        })
        .await
        .expect("create client");
    Harness {
        _dir: dir,
        embedded,
        client_id: client.client_id,
        secret: secret.expose().to_owned(),
    }
}

fn form(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl Harness {
    fn token_router(&self) -> Router {
        token_router(self.embedded.token_service())
    }

    fn discovery_router(&self) -> Router {
        discovery_router(self.embedded.discovery())
    }

    /// The fixture with this client's credentials put in (they are generated per test run).
    fn event(&self, fixture: &str) -> lambda_http::Request {
        let basic = format!("{}:{}", form(&self.client_id), form(&self.secret));
        let text = fixture
            .replace(
                "{{BASIC}}",
                &base64::engine::general_purpose::STANDARD.encode(basic),
            )
            .replace("{{CLIENT_ID}}", &form(&self.client_id))
            .replace("{{SECRET}}", &form(&self.secret));
        lambda_http::request::from_str(&text).expect("fixture is an API Gateway v2 event")
    }

    async fn audit_record(&self, request_id: &str) -> AuditRecord {
        let records = self
            .embedded
            .store
            .query(&AuditQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("audit query");
        let mut matching: Vec<_> = records
            .into_iter()
            .filter(|r| r.request_id == request_id)
            .collect();
        assert_eq!(matching.len(), 1, "one audit record for {request_id}");
        matching.remove(0)
    }
}

async fn call(router: Router, request: lambda_http::Request) -> (Response<()>, Value) {
    let response = router.oneshot(request).await.expect("router is infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(Body::new(body), 1 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).expect("JSON body");
    (Response::from_parts(parts, ()), json)
}

fn header_of(response: &Response<()>, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .expect("ASCII header")
}

async fn jwks(h: &Harness) -> JwkSet {
    let (response, body) = call(
        h.discovery_router(),
        h.event(include_str!("../fixtures/jwks.json")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_value(body).expect("a JWK set")
}

fn verify(token: &str, keys: &JwkSet) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("JWT header");
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("kid");
    let jwk = keys.find(&kid).expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("RSA JWK");
    // The algorithm the JWKS publishes for the key, never the header's choice.
    let alg = jwk.common.key_algorithm.expect("the JWK names its alg");
    let mut validation = Validation::new(alg.to_string().parse().expect("a JWS algorithm"));
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&["https://issuer.test"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("token verifies against the JWKS")
        .claims
}

#[tokio::test]
async fn basic_auth_event_gets_a_token_audited_with_api_gateway_ids() {
    let h = harness().await;
    let (response, body) = call(
        h.token_router(),
        h.event(include_str!("../fixtures/token-basic.json")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-store");
    assert_eq!(header_of(&response, header::PRAGMA), "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "api.read");
    assert_eq!(body["expires_in"], 900);
    let claims = verify(
        body["access_token"].as_str().expect("token"),
        &jwks(&h).await,
    );
    assert_eq!(claims["client_id"], "fixture-client");

    let record = h.audit_record("JKJaXmPLvHcESHA=").await;
    assert_eq!(record.outcome, "issued");
    assert_eq!(record.client_id, "fixture-client");
    assert_eq!(record.jti.as_deref(), claims["jti"].as_str());
    // sourceIp from the request context, not the client-written X-Forwarded-For.
    assert_eq!(record.source_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(record.user_agent.as_deref(), Some("fixture-client/1.0"));
}

/// An ES256 DPoP proof for the token endpoint now, and its key's thumbprint.
fn dpop_proof() -> (String, String) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    let jkt = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.typ = Some("dpop+jwt".to_owned());
    header.jwk = Some(jwk);
    let claims = serde_json::json!({
        "jti": token_service::encoding::random_b64url(16), "htm": "POST",
        "htu": "https://issuer.test/oauth/token",
        "iat": time::OffsetDateTime::now_utc().unix_timestamp(),
    });
    (jsonwebtoken::encode(&header, &claims, &key).unwrap(), jkt)
}

/// The basic-auth fixture with a `dpop` header of `value`.
fn with_dpop(h: &Harness, value: &str) -> lambda_http::Request {
    let mut request = h.event(include_str!("../fixtures/token-basic.json"));
    let value = header::HeaderValue::from_str(value).unwrap();
    request.headers_mut().insert("dpop", value);
    request
}

#[tokio::test]
async fn dpop_event_gets_a_token_bound_to_the_proof_key() {
    let h = harness().await;
    let (proof, jkt) = dpop_proof();
    let (response, body) = call(h.token_router(), with_dpop(&h, &proof)).await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let claims = verify(body["access_token"].as_str().unwrap(), &jwks(&h).await);
    assert_eq!(claims["cnf"]["jkt"], jkt.as_str());
    assert_eq!(h.audit_record("JKJaXmPLvHcESHA=").await.dpop_jkt, Some(jkt));
}

#[tokio::test]
async fn two_dpop_headers_joined_by_api_gateway_are_refused() {
    // API Gateway's payload 2.0 joins a repeated header's values with commas.
    let h = harness().await;
    let joined = format!("{},{}", dpop_proof().0, dpop_proof().0);
    let (response, body) = call(h.token_router(), with_dpop(&h, &joined)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_dpop_proof");
    let record = h.audit_record("JKJaXmPLvHcESHA=").await;
    assert_eq!(record.outcome, "invalid_dpop_proof");
}

#[tokio::test]
async fn client_secret_post_event_gets_a_token() {
    let h = harness().await;
    let (response, body) = call(
        h.token_router(),
        h.event(include_str!("../fixtures/token-post.json")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    verify(
        body["access_token"].as_str().expect("token"),
        &jwks(&h).await,
    );
    let record = h.audit_record("JKJbYnQLvHcEPmQ=").await;
    assert_eq!(record.outcome, "issued");
    assert_eq!(record.source_ip.as_deref(), Some("203.0.113.8"));
}

#[tokio::test]
async fn wrong_grant_type_event_is_unsupported_grant_type_and_audited() {
    let h = harness().await;
    let (response, body) = call(
        h.token_router(),
        h.event(include_str!("../fixtures/token-bad-grant.json")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
    assert!(body.get("access_token").is_none());
    assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-store");
    let record = h.audit_record("JKJcZoRMvHcEQnR=").await;
    assert_eq!(record.outcome, "unsupported_grant_type");
    assert_eq!(record.source_ip.as_deref(), Some("192.0.2.44"));
    assert!(record.jti.is_none());
}

#[tokio::test]
async fn jwks_event_lists_the_signing_key_with_cache_headers() {
    let h = harness().await;
    let (response, body) = call(
        h.discovery_router(),
        h.event(include_str!("../fixtures/jwks.json")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, header::CACHE_CONTROL),
        "public, max-age=300"
    );
    let keys = body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0].get("d").is_none(), "no private part");
}

#[tokio::test]
async fn metadata_event_describes_the_issuer() {
    let h = harness().await;
    let (response, body) = call(
        h.discovery_router(),
        h.event(include_str!("../fixtures/metadata.json")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body["issuer"], "https://issuer.test");
    assert_eq!(body["token_endpoint"], "https://issuer.test/oauth/token");
    assert_eq!(
        body["jwks_uri"],
        "https://issuer.test/.well-known/jwks.json"
    );
    assert_eq!(body["grant_types_supported"][0], "client_credentials");
}

#[tokio::test]
async fn each_function_serves_only_its_own_routes() {
    let h = harness().await;
    let response = h
        .token_router()
        .oneshot(h.event(include_str!("../fixtures/jwks.json")))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = h
        .discovery_router()
        .oneshot(h.event(include_str!("../fixtures/token-basic.json")))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
