//! Bearer tokens through the authorizer's handler, from fixture events of API Gateway's
//! payload format 2.0, against a JWKS served on loopback: a valid token of each algorithm is
//! authorized with the integration's context; every refusal is `isAuthorized: false` with
//! nothing else, for the reason its code names.

mod support;

use std::time::Duration;

use authorizer::{Authorizer, Event, Settings};
use serde_json::{Value, json};
use support::keys::{Alg, SigningKey};
use support::server::{Issuer, Stall, refusing_address};
use support::{AUDIENCE, access_claims, fixture, fixture_text};
use token_verifier::{Config, Verifier};

/// An issuer publishing one key of each algorithm, and an authorizer reading its JWKS.
struct Setup {
    issuer: Issuer,
    keys: Vec<SigningKey>,
    authorizer: Authorizer,
}

async fn setup(required_scopes: &[&str]) -> Setup {
    let keys: Vec<SigningKey> = Alg::ALL
        .iter()
        .map(|&alg| SigningKey::generate(alg, &format!("{}-1", alg.name())))
        .collect();
    let issuer = Issuer::start(keys.iter().map(SigningKey::jwk).collect()).await;
    let verifier = Verifier::new(Config::new(&issuer.url, AUDIENCE, issuer.jwks_uri()));
    let authorizer = Authorizer::new(
        verifier,
        required_scopes.iter().map(|s| (*s).to_owned()).collect(),
    );
    Setup {
        issuer,
        keys,
        authorizer,
    }
}

fn bearer(token: &str) -> Event {
    fixture("bearer.json", &format!("Bearer {token}"), "")
}

/// The context the integration gets for [`access_claims`].
fn expected_context() -> Value {
    json!({
        "client_id": "svc-orders",
        "scope": "orders.read orders.write",
        "tenant": "acme",
        "seats": "42",
        "plan": r#"{"regions":["eu","us"],"tier":"gold"}"#,
    })
}

const DENIED: &str = r#"{"isAuthorized":false,"context":{}}"#;

/// Refused, with nothing but `isAuthorized: false` on the wire, for `reason`.
async fn assert_refused(authorizer: &Authorizer, event: &Event, reason: &str) {
    let wire = serde_json::to_string(&authorizer.authorize(event).await).unwrap();
    assert_eq!(wire, DENIED, "expected a refusal for {reason}");
    match authorizer.decide(event).await {
        Err(refusal) => assert_eq!(refusal.code(), reason, "{refusal}"),
        Ok(token) => panic!("authorized {}, expected {reason}", token.client_id),
    }
}

#[tokio::test]
async fn a_valid_token_of_each_algorithm_is_authorized_with_the_callers_context() {
    let s = setup(&[]).await;
    for key in &s.keys {
        let token = key.token(&access_claims(&s.issuer.url));
        let response = s.authorizer.authorize(&bearer(&token)).await;
        let wire = serde_json::to_value(&response).unwrap();
        assert_eq!(
            wire,
            json!({"isAuthorized": true, "context": expected_context()}),
            "{:?}",
            key.alg
        );
    }
}

#[tokio::test]
async fn the_jwks_is_fetched_once_across_invocations() {
    let s = setup(&[]).await;
    for key in s.keys.iter().chain(&s.keys) {
        let token = key.token(&access_claims(&s.issuer.url));
        assert!(s.authorizer.authorize(&bearer(&token)).await.is_authorized);
    }
    assert_eq!(s.issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_token_with_the_required_scopes_is_authorized() {
    let s = setup(&["orders.read", "orders.write"]).await;
    let token = s.keys[0].token(&access_claims(&s.issuer.url));
    assert!(s.authorizer.authorize(&bearer(&token)).await.is_authorized);
}

#[tokio::test]
async fn a_request_without_authorization_is_refused() {
    let s = setup(&[]).await;
    let event = fixture("no-authorization.json", "", "");
    assert_refused(&s.authorizer, &event, "missing_token").await;
}

#[tokio::test]
async fn credentials_of_another_scheme_are_refused() {
    let s = setup(&[]).await;
    for header in ["Basic c3ZjOnNlY3JldA==", "Token abc", "Bearer"] {
        let event = fixture("bearer.json", header, "");
        assert_refused(&s.authorizer, &event, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_malformed_token_is_refused() {
    let s = setup(&[]).await;
    for token in ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30"] {
        assert_refused(&s.authorizer, &bearer(token), "malformed_token").await;
    }
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_published_kid_is_refused() {
    let s = setup(&[]).await;
    for key in &s.keys {
        let forger = SigningKey::generate(key.alg, &key.kid);
        let token = forger.token(&access_claims(&s.issuer.url));
        assert_refused(&s.authorizer, &bearer(&token), "bad_signature").await;
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = setup(&[]).await;
    let mut claims = access_claims(&s.issuer.url);
    claims["iat"] = (support::now() - 3600).into();
    claims["nbf"] = (support::now() - 3600).into();
    claims["exp"] = (support::now() - 600).into();
    assert_refused(&s.authorizer, &bearer(&s.keys[1].token(&claims)), "expired").await;
}

#[tokio::test]
async fn a_token_of_another_issuer_is_refused() {
    let s = setup(&[]).await;
    let mut claims = access_claims(&s.issuer.url);
    claims["iss"] = "https://evil.example.com".into();
    assert_refused(
        &s.authorizer,
        &bearer(&s.keys[0].token(&claims)),
        "wrong_issuer",
    )
    .await;
}

#[tokio::test]
async fn a_token_for_another_api_is_refused() {
    let s = setup(&[]).await;
    let mut claims = access_claims(&s.issuer.url);
    claims["aud"] = json!(["https://billing.example.com"]);
    assert_refused(
        &s.authorizer,
        &bearer(&s.keys[2].token(&claims)),
        "wrong_audience",
    )
    .await;
}

#[tokio::test]
async fn a_jwt_that_is_not_an_access_token_is_refused() {
    let s = setup(&[]).await;
    let claims = access_claims(&s.issuer.url);
    for typ in ["JWT", "dpop+jwt", "application/at+jwt+x"] {
        let token = s.keys[0].sign(json!({"typ": typ, "kid": s.keys[0].kid}), &claims);
        assert_refused(&s.authorizer, &bearer(&token), "wrong_typ").await;
    }
}

#[tokio::test]
async fn a_token_without_a_required_scope_is_refused() {
    let s = setup(&["orders.read", "orders.admin"]).await;
    let token = s.keys[0].token(&access_claims(&s.issuer.url));
    assert_refused(&s.authorizer, &bearer(&token), "insufficient_scope").await;
}

#[tokio::test]
async fn a_token_of_an_unpublished_key_is_refused() {
    let s = setup(&[]).await;
    let stranger = SigningKey::generate(Alg::ES256, "never-published");
    let token = stranger.token(&access_claims(&s.issuer.url));
    assert_refused(&s.authorizer, &bearer(&token), "unknown_kid").await;
}

/// An authorizer set up with payload format 1.0 gets an event the function cannot read: the
/// runtime reports an invocation error and API Gateway answers 500, never an allow.
#[tokio::test]
async fn a_payload_v1_event_is_not_read() {
    let s = setup(&[]).await;
    let token = s.keys[0].token(&access_claims(&s.issuer.url));
    let text = fixture_text("payload-v1.json", &format!("Bearer {token}"), "");
    let read = serde_json::from_str::<Event>(&text);
    assert!(read.is_err(), "a payload 1.0 event was read as 2.0");
}

/// The same event with the 2.0 shape but another version is refused by the handler.
#[tokio::test]
async fn an_event_of_another_payload_version_is_refused() {
    let s = setup(&[]).await;
    let token = s.keys[0].token(&access_claims(&s.issuer.url));
    let mut event = bearer(&token);
    event.version = Some("1.0".into());
    assert_refused(&s.authorizer, &event, "not_payload_v2").await;
}

/// A JWKS that cannot be had refuses the request within the fetch bound (the outer timeout
/// only turns a hang into a failure; nothing is asserted about how long it took).
#[tokio::test]
async fn an_unreachable_or_stalled_jwks_refuses_within_the_fetch_bound() {
    let key = SigningKey::generate(Alg::RS256, "k1");
    let stall = Stall::start().await;
    for base in [refusing_address().await, stall.url.clone()] {
        let issuer = "https://auth.example.com";
        let verifier = Verifier::new(
            Config::new(issuer, AUDIENCE, format!("{base}/.well-known/jwks.json"))
                .with_fetch_timeout(Duration::from_millis(300)),
        );
        let authorizer = Authorizer::new(verifier, Vec::new());
        let event = bearer(&key.token(&access_claims(issuer)));
        tokio::time::timeout(
            Duration::from_secs(30),
            assert_refused(&authorizer, &event, "jwks_unavailable"),
        )
        .await
        .expect("the JWKS fetch was not bounded");
    }
}

#[tokio::test]
async fn the_settings_alone_build_an_authorizer_that_discovers_the_jwks() {
    let key = SigningKey::generate(Alg::EdDSA, "ed-1");
    let issuer = Issuer::start(vec![key.jwk()]).await;
    let settings = Settings {
        issuer: issuer.url.clone(),
        audiences: vec!["https://other.example.com".into(), AUDIENCE.into()],
        jwks_uri: None,
        required_scopes: vec!["orders.read".into()],
    };
    let authorizer = Authorizer::start(settings).await.unwrap();
    let token = key.token(&access_claims(&issuer.url));
    let response = authorizer.authorize(&bearer(&token)).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"isAuthorized": true, "context": expected_context()})
    );
}

#[tokio::test]
async fn the_settings_with_a_jwks_uri_accept_any_configured_audience() {
    let key = SigningKey::generate(Alg::ES256, "es-1");
    let issuer = Issuer::start(vec![key.jwk()]).await;
    let settings = Settings {
        issuer: issuer.url.clone(),
        audiences: vec!["https://billing.example.com".into(), AUDIENCE.into()],
        jwks_uri: Some(issuer.jwks_uri()),
        required_scopes: Vec::new(),
    };
    let authorizer = Authorizer::start(settings).await.unwrap();
    let mut claims = access_claims(&issuer.url);
    for aud in ["https://billing.example.com", AUDIENCE] {
        claims["aud"] = aud.into();
        assert!(
            authorizer
                .authorize(&bearer(&key.token(&claims)))
                .await
                .is_authorized,
            "{aud}"
        );
    }
    claims["aud"] = "https://hr.example.com".into();
    assert_refused(&authorizer, &bearer(&key.token(&claims)), "wrong_audience").await;
}
