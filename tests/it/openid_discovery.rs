//! `GET /.well-known/openid-configuration`: the RFC 8414 metadata where OpenID discovery is
//! looked for (API Gateway's HTTP API JWT authorizer reads `{issuer}/.well-known/
//! openid-configuration` and follows its `jwks_uri`). On both shapes it is the same document as
//! `/.well-known/oauth-authorization-server`, byte for byte, with the same headers.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use token_service::admin::NewClient;
use token_service::clock::SystemClock;
use token_service::config::ServiceSettings;
use token_service::shapes::embedded::Embedded;
use token_service::shapes::lambda::discovery_router;
use tower::ServiceExt as _;

const OPENID: &str = "/.well-known/openid-configuration";
const RFC8414: &str = "/.well-known/oauth-authorization-server";
/// The issuer a stack with a custom domain sets (template.yaml: `https://${DomainName}`).
const CUSTOM_DOMAIN: &str = "https://auth.example.com";

/// An embedded service over a fresh SQLite file, with one client so that `scopes_supported`
/// is not empty.
async fn service(issuer: &str) -> (TempDir, Embedded) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServiceSettings::from_lookup(|_| None)
        .expect("defaults parse")
        .validate(Some(issuer))
        .expect("valid settings");
    let embedded =
        Embedded::open(dir.path().join("d.db"), config, Arc::new(SystemClock)).expect("open store");
    let admin = embedded.admin("test");
    admin.ensure_signing_key().await.expect("signing key");
    admin
        .create_client(NewClient {
            client_id: Some("svc".to_owned()),
            name: "svc".to_owned(),
            scopes: vec!["api.read".to_owned(), "api.write".to_owned()],
            audiences: vec!["https://api.example.com".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create client");
    (dir, embedded)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Runs one request through `router`: an axum request, or a Lambda event as `lambda_http`
/// hands it to the function.
async fn send<B>(router: Router, request: Request<B>) -> Reply
where
    Router: tower::Service<
            Request<B>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
{
    let response = router.oneshot(request).await.expect("router is infallible");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(router: Router, path: &str) -> Reply {
    send(router, Request::get(path).body(Body::empty()).unwrap()).await
}

/// An API Gateway HTTP API (payload 2.0) event for `GET path`, from the fixture.
fn event(path: &str) -> lambda_http::Request {
    let fixture = include_str!("../fixtures/openid-configuration.json").replace(OPENID, path);
    lambda_http::request::from_str(&fixture).expect("fixture is an API Gateway v2 event")
}

fn assert_same_document(openid: &Reply, rfc8414: &Reply) {
    assert_eq!(openid.status, StatusCode::OK);
    assert_eq!(rfc8414.status, StatusCode::OK);
    assert_eq!(
        openid.body, rfc8414.body,
        "the two documents are byte-equal"
    );
    assert_eq!(
        openid.headers, rfc8414.headers,
        "and carry the same headers"
    );
}

#[tokio::test]
async fn embedded_openid_configuration_is_the_rfc8414_document() {
    let (_dir, e) = service("https://issuer.test").await;
    let openid = get(e.router(), OPENID).await;
    let rfc8414 = get(e.router(), RFC8414).await;
    assert_same_document(&openid, &rfc8414);
    let cache = openid.headers.get("cache-control").expect("cache-control");
    assert_eq!(cache, "public, max-age=300");
    assert_eq!(openid.headers["content-type"], "application/json");
    let m = openid.json();
    assert_eq!(m["issuer"], "https://issuer.test");
    assert_eq!(m["jwks_uri"], "https://issuer.test/.well-known/jwks.json");
    assert_eq!(m["token_endpoint"], "https://issuer.test/oauth/token");
    assert_eq!(
        m["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );
    assert_eq!(
        m["token_endpoint_auth_signing_alg_values_supported"],
        serde_json::json!(["RS256", "PS256", "ES256", "EdDSA"])
    );
    // RFC 9449 §5.1: every proof algorithm, EdDSA under both its names.
    assert_eq!(
        m["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256", "EdDSA", "Ed25519", "RS256", "PS256"])
    );
    assert_eq!(
        m["scopes_supported"],
        serde_json::json!(["api.read", "api.write"])
    );
}

#[tokio::test]
async fn jwks_function_serves_the_same_document_under_the_custom_domain() {
    let (_dir, e) = service(CUSTOM_DOMAIN).await;
    let lambda = discovery_router(e.discovery());
    let openid = send(lambda.clone(), event(OPENID)).await;
    let rfc8414 = send(lambda, event(RFC8414)).await;
    assert_same_document(&openid, &rfc8414);
    let m = openid.json();
    assert_eq!(m["issuer"], CUSTOM_DOMAIN);
    assert_eq!(
        m["jwks_uri"],
        format!("{CUSTOM_DOMAIN}/.well-known/jwks.json")
    );
    assert_eq!(m["token_endpoint"], format!("{CUSTOM_DOMAIN}/oauth/token"));
    // The function and the embedded server answer alike over the same store and settings.
    let embedded = get(e.router(), OPENID).await;
    assert_same_document(&openid, &embedded);
}

#[tokio::test]
async fn openid_configuration_accepts_get_only() {
    let (_dir, e) = service("https://issuer.test").await;
    let reply = send(
        e.router(),
        Request::post(OPENID).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET, HEAD");
}
