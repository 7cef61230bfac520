//! The token function's CloudWatch embedded metrics: one `token_requests` count per outcome,
//! written as an EMF document after each request.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use token_service::admin::NewClient;
use token_service::clock::SystemClock;
use token_service::config::ServiceConfig;
use token_service::embedded::Embedded;
use tower::ServiceExt as _;

#[tokio::test]
async fn token_requests_are_counted_per_outcome_in_embedded_metric_format() {
    // The recorder is process-wide: this test binary holds this one test only.
    let collector = token_service::lambda::init_metrics("token").expect("recorder installs");
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(
        dir.path().join("m.db"),
        ServiceConfig::for_tests(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let admin = embedded.admin("test");
    admin.ensure_signing_key().await.unwrap();
    let (_, secret) = admin
        .create_client(NewClient {
            client_id: Some("svc".into()),
            name: "svc".into(),
            scopes: vec!["a".into()],
            audiences: vec!["https://api.example.com".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let router = token_service::lambda::token_router(embedded.token_service());
    for secret in [secret.expose(), secret.expose(), "wrong"] {
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
    assert!(!text.contains(secret.expose()));
}
