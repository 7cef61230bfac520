//! What a refusal leaves in the log: one line with the reason code and API Gateway's request
//! id, never the token or the proof.

mod support;

use std::sync::{Arc, Mutex};

use authorizer::Authorizer;
use serde_json::Value;
use support::keys::{Alg, SigningKey};
use support::server::Issuer;
use support::{AUDIENCE, access_claims, fixture};
use token_verifier::{Config, Verifier};

/// A log sink the test reads back.
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
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn a_refusal_logs_its_reason_and_never_the_token() {
    let key = SigningKey::generate(Alg::ES256, "es-1");
    let issuer = Issuer::start(vec![key.jwk()]).await;
    let authorizer = Authorizer::new(
        Verifier::new(Config::new(&issuer.url, AUDIENCE, issuer.jwks_uri())),
        Vec::new(),
    );
    let mut claims = access_claims(&issuer.url);
    claims["exp"] = (support::now() - 600).into();
    let expired = key.token(&claims);
    let valid = key.token(&access_claims(&issuer.url));

    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let refused = authorizer
        .authorize(&fixture("bearer.json", &format!("Bearer {expired}"), ""))
        .await;
    assert!(!refused.is_authorized);
    let allowed = authorizer
        .authorize(&fixture("bearer.json", &format!("Bearer {valid}"), ""))
        .await;
    assert!(allowed.is_authorized);

    let lines = sink.lines();
    assert_eq!(lines.len(), 1, "one line, for the refusal only: {lines:#?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["reason"], "expired");
    assert_eq!(fields["request_id"], "Qm2rXgqkjoEEJ5A=");
    let text = sink.text();
    for secret in [&expired, &valid] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "a token reached the log: {text}");
    }
}
