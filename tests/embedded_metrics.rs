//! The token function's CloudWatch embedded metrics: one `token_requests` count per outcome,
//! written as an EMF document after each request.

// The embedded stack of the integration tests (tests/it), of which this test uses a part.
#[allow(dead_code)]
#[path = "it/support/stack.rs"]
mod stack;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use stack::Stack;
use token_service::admin::NewClient;
use tower::ServiceExt as _;

#[tokio::test]
async fn token_requests_are_counted_per_outcome_in_embedded_metric_format() {
    // The recorder is process-wide: this test binary holds this one test only.
    let collector =
        token_service::shapes::lambda::init_metrics("token", None).expect("recorder installs");
    let stack = Stack::new().await;
    let (_, secret) = stack
        .client_with(NewClient {
            client_id: Some("svc".into()),
            name: "svc".into(),
            scopes: vec!["a".into()],
            audiences: vec!["https://api.example.com".into()],
            ..Default::default()
        })
        .await;
    let router = token_service::shapes::lambda::token_router(stack.embedded.token_service());
    for secret in [secret.as_str(), secret.as_str(), "wrong"] {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("svc:{secret}"));
        let request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {auth}"))
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        router.clone().oneshot(request).await.unwrap();
    }
    let mut out = Vec::new();
    collector.flush(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one EMF JSON document"))
        .collect();
    let count = |outcome: &str| {
        docs.iter()
            .find(|d| d["outcome"] == outcome)
            .map(|d| d["token_requests"].as_f64().unwrap())
    };
    assert_eq!(count("issued"), Some(2.0), "{text}");
    assert_eq!(count("invalid_client"), Some(1.0), "{text}");
    let aws = &docs[0]["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(aws["Namespace"], "TokenService");
    assert!(text.contains("\"function\":\"token\""), "{text}");
    assert!(!text.contains(secret.as_str()));
}
