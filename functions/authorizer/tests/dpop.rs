//! DPoP-bound tokens (RFC 9449) through the authorizer's handler: the proof is checked
//! against the request API Gateway describes (`htm` = its method, `htu` =
//! `https://{domainName}{rawPath}`), the token's `cnf.jkt` and `ath`; a proof is accepted once;
//! a bound token sent as a bearer token is refused (§7.2).

mod support;

use authorizer::{Authorizer, Event};
use serde_json::{Value, json};
use support::keys::{Alg, SigningKey, random_id, sha256_b64};
use support::server::Issuer;
use support::{AUDIENCE, access_claims, fixture, now};
use token_verifier::{Config, Verifier};

/// The URL of the request in dpop.json, as the client called it: its custom domain and path
/// with the stage, without the query.
const HTU: &str = "https://api.example.com/prod/orders";

struct Setup {
    issuer: Issuer,
    signer: SigningKey,
    /// The client's DPoP key.
    client_key: SigningKey,
    authorizer: Authorizer,
}

async fn setup() -> Setup {
    let signer = SigningKey::generate(Alg::RS256, "rs-1");
    let issuer = Issuer::start(vec![signer.jwk()]).await;
    let verifier = Verifier::new(Config::new(&issuer.url, AUDIENCE, issuer.jwks_uri()));
    Setup {
        issuer,
        signer,
        client_key: SigningKey::generate(Alg::ES256, "unused"),
        authorizer: Authorizer::new(verifier, Vec::new()),
    }
}

impl Setup {
    /// A token bound to the client's key (`cnf.jkt`, RFC 9449 §6.1).
    fn bound_token(&self) -> String {
        let mut claims = access_claims(&self.issuer.url);
        claims["cnf"] = json!({"jkt": self.client_key.thumbprint()});
        self.signer.token(&claims)
    }
}

/// The claims of a proof for `token` on the request of dpop.json (RFC 9449 §4.2).
fn proof_claims(token: &str) -> Value {
    json!({
        "jti": random_id(),
        "htm": "POST",
        "htu": HTU,
        "iat": now(),
        "ath": sha256_b64(token.as_bytes()),
    })
}

/// A proof signed by `key` with its public key in the header (RFC 9449 §4.2).
fn proof(key: &SigningKey, claims: &Value) -> String {
    key.sign(
        json!({"typ": "dpop+jwt", "jwk": key.public_members()}),
        claims,
    )
}

fn dpop_event(token: &str, proof: &str) -> Event {
    fixture("dpop.json", &format!("DPoP {token}"), proof)
}

const DENIED: &str = r#"{"isAuthorized":false,"context":{}}"#;

async fn assert_refused(authorizer: &Authorizer, event: &Event, reason: &str) {
    let wire = serde_json::to_string(&authorizer.authorize(event).await).unwrap();
    assert_eq!(wire, DENIED, "expected a refusal for {reason}");
}

/// The refusal's code and description, from the decision alone (a proof that reaches the
/// replay check is then spent: use a fresh one).
async fn reason(authorizer: &Authorizer, event: &Event) -> (String, String) {
    match authorizer.decide(event).await {
        Err(refusal) => (refusal.code().to_owned(), refusal.to_string()),
        Ok(token) => panic!("authorized {}", token.client_id),
    }
}

#[tokio::test]
async fn a_matching_proof_is_accepted_with_the_callers_context() {
    let s = setup().await;
    let token = s.bound_token();
    let event = dpop_event(&token, &proof(&s.client_key, &proof_claims(&token)));
    let wire = serde_json::to_value(s.authorizer.authorize(&event).await).unwrap();
    assert_eq!(
        wire,
        json!({"isAuthorized": true, "context": {
            "client_id": "svc-orders",
            "scope": "orders.read orders.write",
            "tenant": "acme",
            "seats": "42",
            "plan": r#"{"regions":["eu","us"],"tier":"gold"}"#,
        }})
    );
}

#[tokio::test]
async fn a_proof_key_of_each_algorithm_is_accepted() {
    let s = setup().await;
    for alg in Alg::ALL {
        let client_key = SigningKey::generate(alg, "unused");
        let mut claims = access_claims(&s.issuer.url);
        claims["cnf"] = json!({"jkt": client_key.thumbprint()});
        let token = s.signer.token(&claims);
        let event = dpop_event(&token, &proof(&client_key, &proof_claims(&token)));
        assert!(
            s.authorizer.authorize(&event).await.is_authorized,
            "{alg:?}"
        );
    }
}

/// Each broken proof, checked twice with fresh `jti`s: once on the wire, once for its reason
/// (`invalid_dpop_proof`, for the check that `why` names).
async fn assert_proof_refused(s: &Setup, token: &str, why: &str, make: impl Fn() -> String) {
    assert_refused(
        &s.authorizer,
        &dpop_event(token, &make()),
        "invalid_dpop_proof",
    )
    .await;
    let (code, detail) = reason(&s.authorizer, &dpop_event(token, &make())).await;
    assert_eq!(code, "invalid_dpop_proof", "{detail}");
    assert!(detail.contains(why), "{detail:?} does not say {why:?}");
}

#[tokio::test]
async fn a_proof_for_another_token_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    let other = s.bound_token();
    assert_proof_refused(&s, &token, "ath is not the hash", || {
        proof(&s.client_key, &proof_claims(&other))
    })
    .await;
}

#[tokio::test]
async fn a_proof_by_another_key_than_the_tokens_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    let thief = SigningKey::generate(Alg::ES256, "unused");
    assert_proof_refused(&s, &token, "not the key the token is bound to", || {
        proof(&thief, &proof_claims(&token))
    })
    .await;
}

#[tokio::test]
async fn a_proof_for_another_url_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    for htu in [
        // the route without the stage the client called it with
        "https://api.example.com/orders",
        // API Gateway's own domain instead of the custom domain
        "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/prod/orders",
        "http://api.example.com/prod/orders",
        "https://api.example.com/prod/orders/42",
    ] {
        assert_proof_refused(&s, &token, "htu is not the request URL", || {
            let mut claims = proof_claims(&token);
            claims["htu"] = htu.into();
            proof(&s.client_key, &claims)
        })
        .await;
    }
}

#[tokio::test]
async fn a_proof_with_the_query_of_the_request_is_still_for_its_url() {
    let s = setup().await;
    let token = s.bound_token();
    let mut claims = proof_claims(&token);
    // RFC 9449 §4.3 compares htu without query and fragment.
    claims["htu"] = format!("{HTU}?dry_run=true").into();
    let event = dpop_event(&token, &proof(&s.client_key, &claims));
    assert!(s.authorizer.authorize(&event).await.is_authorized);
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    assert_proof_refused(&s, &token, "htm is not the request method", || {
        let mut claims = proof_claims(&token);
        claims["htm"] = "GET".into();
        proof(&s.client_key, &claims)
    })
    .await;
}

#[tokio::test]
async fn a_stale_proof_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    for iat in [now() - 600, now() + 600] {
        assert_proof_refused(&s, &token, "iat is outside the accepted window", || {
            let mut claims = proof_claims(&token);
            claims["iat"] = iat.into();
            proof(&s.client_key, &claims)
        })
        .await;
    }
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    let event = dpop_event(&token, &proof(&s.client_key, &proof_claims(&token)));
    assert!(s.authorizer.authorize(&event).await.is_authorized);
    assert_refused(&s.authorizer, &event, "invalid_dpop_proof").await;
    let (code, detail) = reason(&s.authorizer, &event).await;
    assert_eq!(code, "invalid_dpop_proof");
    assert!(detail.contains("proof replayed"), "{detail}");
}

#[tokio::test]
async fn two_proofs_in_one_request_are_refused() {
    let s = setup().await;
    let token = s.bound_token();
    let (a, b) = (
        proof(&s.client_key, &proof_claims(&token)),
        proof(&s.client_key, &proof_claims(&token)),
    );
    // API Gateway joins a repeated header's values with a comma.
    let event = dpop_event(&token, &format!("{a},{b}"));
    assert_refused(&s.authorizer, &event, "invalid_dpop_proof").await;
    let (_, detail) = reason(&s.authorizer, &event).await;
    assert!(detail.contains("more than one DPoP header"), "{detail}");
}

#[tokio::test]
async fn a_bound_token_sent_as_a_bearer_token_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    let event = fixture("bearer.json", &format!("Bearer {token}"), "");
    assert_refused(&s.authorizer, &event, "dpop_bound_token_as_bearer").await;
    assert_eq!(
        reason(&s.authorizer, &event).await.0,
        "dpop_bound_token_as_bearer"
    );
    // With a valid proof beside it, too: the scheme says how the token is presented.
    let proof = proof(&s.client_key, &proof_claims(&token));
    let event = fixture("dpop.json", &format!("Bearer {token}"), &proof);
    assert_eq!(
        reason(&s.authorizer, &event).await.0,
        "dpop_bound_token_as_bearer"
    );
}

#[tokio::test]
async fn a_bound_token_without_a_proof_is_refused() {
    let s = setup().await;
    let token = s.bound_token();
    let event = fixture("bearer.json", &format!("DPoP {token}"), "");
    assert_refused(&s.authorizer, &event, "invalid_dpop_proof").await;
    let (_, detail) = reason(&s.authorizer, &event).await;
    assert!(detail.contains("no DPoP header"), "{detail}");
}

#[tokio::test]
async fn an_unbound_token_sent_with_the_dpop_scheme_is_refused() {
    let s = setup().await;
    let token = s.signer.token(&access_claims(&s.issuer.url));
    let event = dpop_event(&token, &proof(&s.client_key, &proof_claims(&token)));
    assert_refused(&s.authorizer, &event, "dpop_scheme_without_binding").await;
}
