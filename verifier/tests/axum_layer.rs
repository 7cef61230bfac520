//! The axum layer and extractor answer as RFC 6750 §3 and RFC 9449 §7.1 say, header for
//! header.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json};
use serde_json::{Value, json};
use support::{Issuer, TestKey, claims};
use token_verifier::axum::RequireScope;
use token_verifier::{Config, VerifiedToken, Verifier};
use tower::ServiceExt;

const EXTERNAL: &str = "https://api.example";
const DPOP_CHALLENGE: &str = r#"DPoP algs="ES256 EdDSA Ed25519 RS256 PS256""#;

async fn whoami(token: VerifiedToken) -> Json<Value> {
    Json(json!({"client_id": token.client_id, "tenant": token.claim::<String>("tenant").unwrap()}))
}

fn app(verifier: Verifier) -> Router {
    Router::new()
        .route("/orders", get(whoami))
        .layer(RequireScope::new(verifier, "api.read"))
}

async fn call(app: &Router, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::get("/orders?page=2");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn challenges(response: &Response) -> Vec<&str> {
    response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

async fn body(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn setup() -> (Issuer, TestKey, Router) {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config().with_external_url(EXTERNAL));
    (issuer, key, app(verifier))
}

#[tokio::test]
async fn a_valid_token_with_the_scope_reaches_the_handler() {
    let (issuer, key, app) = setup().await;
    let token = key.token(&claims(&issuer.url, json!({"tenant": "acme"})));
    let response = call(&app, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(response).await,
        json!({"client_id": "client-1", "tenant": "acme"})
    );
}

#[tokio::test]
async fn refusals_carry_rfc_6750_challenges() {
    let (issuer, key, app) = setup().await;

    let response = call(&app, &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&response), ["Bearer", DPOP_CHALLENGE]);

    let expired = key.token(&claims(&issuer.url, json!({"exp": 1000})));
    let response = call(&app, &[("authorization", &format!("Bearer {expired}"))]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&response), [r#"Bearer error="invalid_token""#]);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");

    let narrow = key.token(&claims(&issuer.url, json!({"scope": "orders.write"})));
    let response = call(&app, &[("authorization", &format!("Bearer {narrow}"))]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenges(&response),
        [r#"Bearer error="insufficient_scope", scope="api.read""#]
    );

    let response = call(&app, &[("authorization", "Basic dXNlcjpwYXNz")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(challenges(&response), [r#"Bearer error="invalid_request""#]);
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_without_a_challenge() {
    let key = TestKey::ec("k");
    let config = Config::new(
        "https://issuer.example",
        "https://api.example",
        "http://127.0.0.1:9/jwks",
    );
    let app = app(Verifier::new(config));
    let token = key.token(&claims("https://issuer.example", json!({})));
    let response = call(&app, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(challenges(&response).is_empty());
}

#[tokio::test]
async fn dpop_requests_are_checked_against_the_external_url() {
    let (issuer, key, app) = setup().await;
    let client_key = TestKey::ed("client");
    let token = key.token(&claims(
        &issuer.url,
        json!({"cnf": {"jkt": client_key.thumbprint()}}),
    ));
    let authorization = format!("DPoP {token}");

    // htu is the external URL of the route; the query does not take part.
    let proof = client_key.proof("GET", &format!("{EXTERNAL}/orders"), &token);
    let response = call(&app, &[("authorization", &authorization), ("dpop", &proof)]).await;
    assert_eq!(response.status(), StatusCode::OK);

    // A proof for the address the server sees behind the proxy is not for this API.
    let proof = client_key.proof("GET", "http://localhost/orders", &token);
    let response = call(&app, &[("authorization", &authorization), ("dpop", &proof)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&response),
        [format!(r#"{DPOP_CHALLENGE}, error="invalid_dpop_proof""#)]
    );

    // The bound token sent as a bearer token gets a DPoP challenge (RFC 9449 §7.2).
    let response = call(&app, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&response),
        [format!(r#"{DPOP_CHALLENGE}, error="invalid_token""#)]
    );
}

#[tokio::test]
async fn without_an_external_url_dpop_is_refused_and_bearer_works() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let app = app(Verifier::new(issuer.config()));
    let client_key = TestKey::ec("client");
    let bound = key.token(&claims(
        &issuer.url,
        json!({"cnf": {"jkt": client_key.thumbprint()}}),
    ));
    let proof = client_key.proof("GET", "http://localhost/orders", &bound);
    let response = call(
        &app,
        &[
            ("authorization", &format!("DPoP {bound}")),
            ("dpop", &proof),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let token = key.token(&claims(&issuer.url, json!({})));
    let response = call(&app, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_extractor_verifies_with_a_verifier_in_the_extensions() {
    let key = TestKey::ed("k");
    let issuer = Issuer::start(&[&key]).await;
    let app = Router::new()
        .route("/orders", get(whoami))
        .layer(Extension(Verifier::new(issuer.config())));
    let token = key.token(&claims(&issuer.url, json!({"scope": ""})));
    let response = call(&app, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(response.status(), StatusCode::OK, "no scope required here");

    let response = call(&app, &[("authorization", "Bearer a.b.c")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&response), [r#"Bearer error="invalid_token""#]);
}
