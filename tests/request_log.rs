//! What the token function writes to CloudWatch Logs per request: one line, the embedded
//! metrics document (`token_requests` by outcome, and the signing key's age on the first issued
//! token of a minute); a refusal's carries the request's fields as properties (client id and
//! source address for Contributor Insights, request id), an issued token's none (its audit
//! record has them); never a secret or a token; under 512 bytes.

// The embedded stack of the integration tests (tests/it), of which this test uses a part.
#[allow(dead_code)]
#[path = "it/support/stack.rs"]
mod stack;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use base64::Engine as _;
use serde_json::Value;
use stack::Stack;
use token_service::admin::NewClient;
use token_service::shapes::lambda::{
    init_metrics, json_subscriber, log_filter, token_router, write_metrics,
};
use tower::ServiceExt as _;

/// CloudWatch Logs bills ingestion per byte; the budget per token request (issues 9 and 22).
const BUDGET_BYTES: usize = 512;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn event(client_id: &str, secret: &str) -> lambda_http::Request {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    let text = include_str!("fixtures/token-basic.json").replace("{{BASIC}}", &basic);
    lambda_http::request::from_str(&text).expect("fixture is an API Gateway v2 event")
}

#[tokio::test]
async fn each_request_writes_one_line_with_its_fields_and_metrics_within_the_budget() {
    // The metrics recorder is process-wide: this test binary holds this one test only.
    let collector = init_metrics("token", None).expect("recorder installs");
    let logs = Sink::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(json_subscriber(
        log_filter(None, Some("INFO")),
        move || writer.clone(),
    ));
    let stack = Stack::new().await;
    let (_, secret) = stack
        .client_with(NewClient {
            client_id: Some("billing-reporter".into()),
            name: "Billing reporter".into(),
            scopes: vec!["api.read".into()],
            audiences: vec!["https://api.example.com".into()],
            ..Default::default()
        })
        .await;
    let router = token_router(stack.embedded.token_service());
    collector.flush(std::io::sink()).unwrap();
    logs.take();

    for (presented, outcome, key_age) in [
        (secret.as_str(), "issued", true),
        ("wrong-secret-value", "invalid_client", false),
        // The key's age is sampled once a minute per execution environment.
        (secret.as_str(), "issued", false),
        (secret.as_str(), "issued", true),
    ] {
        if key_age && outcome == "issued" {
            // A minute later (the manual clock): the first token of its minute.
            stack.clock.advance(time::Duration::minutes(1));
        }
        // What lambda_runtime wraps each invocation in (its span is in every log line).
        let span = tracing::info_span!(
            "Lambda runtime invoke",
            requestId = "8f2c6f4e-7d1a-4c3b-9e5f-0a1b2c3d4e5f",
            xrayTraceId = "Root=1-674a3c10-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=1:8e4b7b9c:0"
        );
        let _entered = span.enter();
        let response = router
            .clone()
            .oneshot(event("billing-reporter", presented))
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(Body::new(response.into_body()), 1 << 16)
            .await
            .unwrap();
        let mut emf = Vec::new();
        write_metrics(collector, &mut emf).unwrap();
        let emf = String::from_utf8(emf).unwrap();
        let log = logs.take();

        // One line per request: the metrics document; nothing in the JSON log.
        assert_eq!(
            log, "",
            "the request's fields belong in its metrics document"
        );
        let docs = json_lines(&emf);
        assert_eq!(docs.len(), 1, "{emf}");
        let doc = &docs[0];
        assert_eq!(doc["outcome"], outcome, "{emf}");
        assert_eq!(doc["token_requests"], 1.0, "{emf}");
        assert!(!emf.contains(secret.as_str()) && !emf.contains("wrong-secret-value"));
        let body: Value = serde_json::from_slice(&body).unwrap();
        if outcome == "issued" {
            assert_eq!(status, 200, "{body}");
            let token = body["access_token"].as_str().expect("an issued token");
            assert!(
                !emf.contains(token) && !emf.contains(&jwt_id(token)),
                "{emf}"
            );
            if key_age {
                // The key was created with the stack, one or two minutes of the manual clock
                // ago; the alarm keys on its age.
                let age = doc["signing_key_age_seconds"][0].as_f64().expect("key age");
                assert!((60.0..=120.0).contains(&age), "{emf}");
            }
        } else {
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"], "invalid_client", "{body}");
            assert!(body.get("access_token").is_none(), "{body}");
            assert_eq!(doc["client_id"], "billing-reporter", "{emf}");
            assert_eq!(doc["source_ip"], "203.0.113.7", "{emf}");
            assert_eq!(doc["request_id"], "JKJaXmPLvHcESHA=", "{emf}");
        }
        // Nothing else: no secret, hash or token has a field to hide in.
        let mut names: Vec<&str> = doc
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        names.sort_unstable();
        let mut expected = match outcome {
            "issued" => vec!["_aws", "function", "outcome", "token_requests"],
            _ => vec![
                "_aws",
                "client_id",
                "function",
                "outcome",
                "request_id",
                "source_ip",
                "token_requests",
            ],
        };
        if key_age {
            expected.push("signing_key_age_seconds");
            expected.sort_unstable();
        }
        assert_eq!(names, expected, "{emf}");

        println!(
            "{outcome} ({status}): {} bytes in one line\n{emf}",
            emf.len()
        );
        assert!(emf.len() < BUDGET_BYTES, "{} bytes:\n{emf}", emf.len());
    }
}

/// The `jti` claim of a JWT (the test only reads what it was issued).
fn jwt_id(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().expect("jti claim").to_owned()
}
