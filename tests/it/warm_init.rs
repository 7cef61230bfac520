//! The token function loads its key set during init (`AwsShape::token_service_loaded`), over
//! DynamoDB and Secrets Manager on moto, with the fault proxy between the SDK and moto:
//! - when Secrets Manager answers at init, the first request signs without calling it (every
//!   Secrets Manager call fails from then on, and the token is still issued);
//! - when Secrets Manager fails at init, the init still completes, and the first request
//!   loads the set itself once Secrets Manager answers again.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use token_service::admin::NewClient;
use token_service::clock::SystemClock;
use token_service::config::ServiceConfig;
use token_service::http::{FrontContext, token_routes};
use token_service::shapes::aws::AwsShape;
use token_service::store::aws::create_resources;
use tower::ServiceExt as _;

use crate::support::fault_proxy::{Fault, FaultProxy, Service};
use crate::support::moto;
use crate::support::stores::{random_resources, rotate_keys_on};

/// An AWS shape reaching moto through a fault proxy, with a signing key and one client.
struct Harness {
    proxy: FaultProxy,
    shape: AwsShape,
    basic: String,
}

async fn harness() -> Harness {
    let proxy = FaultProxy::start(moto::endpoint()).await;
    let names = random_resources();
    create_resources(&moto::sdk_config().await, &names)
        .await
        .expect("create the tables and the secret");
    // The first key as Secrets Manager makes it: the rotation protocol, its only writer.
    rotate_keys_on(&moto::sdk_config().await, &names, Arc::new(SystemClock)).await;
    let shape = AwsShape::new(
        &moto::sdk_config_at(proxy.url()).await,
        names,
        ServiceConfig::for_tests(),
        Arc::new(SystemClock),
    );
    let admin = shape.admin("warm-init-test");
    let (client, secret) = admin
        .create_client(NewClient {
            name: "Warm init test".to_owned(),
            scopes: vec!["api.read".to_owned()],
            audiences: vec!["https://api.example.com".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create client");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        client.client_id,
        secret.expose()
    ));
    Harness {
        proxy,
        shape,
        basic,
    }
}

impl Harness {
    /// Status and `error` (if any) of one token request.
    async fn token(&self, router: &Router, request_id: &str) -> (StatusCode, Option<String>) {
        let mut request = Request::post("/oauth/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, format!("Basic {}", self.basic))
            .body(Body::from("grant_type=client_credentials"))
            .expect("request");
        request.extensions_mut().insert(FrontContext {
            request_id: Some(request_id.to_owned()),
            source_ip: Some("198.51.100.24".to_owned()),
        });
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON body");
        (status, body["error"].as_str().map(str::to_owned))
    }
}

#[tokio::test]
async fn the_first_request_signs_with_the_key_set_loaded_during_init() {
    let h = harness().await;
    let router = token_routes(h.shape.token_service_loaded().await);
    assert_eq!(h.proxy.faulted(), 0, "Secrets Manager answered during init");

    // From here on every Secrets Manager call fails: a token proves the set was in memory.
    h.proxy.set(Service::SecretsManager, Fault::Http500);
    assert_eq!(h.token(&router, "warm-1").await, (StatusCode::OK, None));
    assert_eq!(
        h.proxy.faulted(),
        0,
        "the first request called Secrets Manager"
    );

    // The same shape without the init load needs Secrets Manager for its first token.
    let cold = token_routes(h.shape.token_service());
    let (status, error) = h.token(&cold, "cold-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error.as_deref(), Some("temporarily_unavailable"));
    assert!(h.proxy.faulted() > 0);
}

#[tokio::test]
async fn a_failed_load_during_init_is_retried_by_the_first_request() {
    let h = harness().await;
    h.proxy.set(Service::SecretsManager, Fault::Http500);
    let router = token_routes(h.shape.token_service_loaded().await);
    assert!(h.proxy.faulted() > 0, "the init tried Secrets Manager");

    // Still failing: the first request gets the usual answer, not a panic or a stale key.
    let (status, error) = h.token(&router, "failing-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error.as_deref(), Some("temporarily_unavailable"));

    // Once Secrets Manager answers, the next request loads the set and signs.
    h.proxy.clear();
    assert_eq!(
        h.token(&router, "recovered-1").await,
        (StatusCode::OK, None)
    );
}
