//! DPoP-bound tokens at the resource server (RFC 9449 §4.3, §7): a matching proof is
//! accepted, and each way a proof can fail has its own refusal.

mod support;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use support::{Issuer, TestKey, claims, now};
use token_verifier::{Error, HttpRequestParts, Scheme, VerifiedToken, Verifier};

const URL: &str = "https://api.example/orders";

struct Setup {
    issuer: Issuer,
    signing: TestKey,
    verifier: Verifier,
}

async fn setup() -> Setup {
    let signing = TestKey::ec("k");
    let issuer = Issuer::start(&[&signing]).await;
    let verifier = Verifier::new(issuer.config());
    Setup {
        issuer,
        signing,
        verifier,
    }
}

impl Setup {
    /// An access token bound to `client`'s key.
    fn bound_token(&self, client: &TestKey) -> String {
        self.signing.token(&claims(
            &self.issuer.url,
            json!({"cnf": {"jkt": client.thumbprint()}}),
        ))
    }

    async fn call(
        &self,
        method: &str,
        url: &str,
        authorization: &str,
        proofs: &[&str],
    ) -> Result<VerifiedToken, Error> {
        self.verifier
            .verify_request(&HttpRequestParts {
                method,
                url,
                authorization: Some(authorization),
                dpop: proofs,
            })
            .await
    }

    async fn dpop(&self, token: &str, proof: &str) -> Result<VerifiedToken, Error> {
        self.call("GET", URL, &format!("DPoP {token}"), &[proof])
            .await
    }
}

fn refused(result: Result<VerifiedToken, Error>, why: &str) {
    match result {
        Err(Error::InvalidDpopProof(reason)) => {
            assert!(reason.contains(why), "expected {why:?}, got {reason:?}")
        }
        other => panic!("expected an invalid proof ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn a_matching_proof_is_accepted_for_every_proof_algorithm() {
    let s = setup().await;
    for client in [
        TestKey::ec("c"),
        TestKey::ed("c"),
        TestKey::ed("c").with_alg("Ed25519"),
        TestKey::rsa("c", 1),
        TestKey::rsa("c", 1).with_alg("PS256"),
    ] {
        let token = s.bound_token(&client);
        let proof = client.proof("GET", URL, &token);
        let verified = s
            .dpop(&token, &proof)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", client.alg));
        assert_eq!(verified.key_thumbprint, Some(client.thumbprint()));
        assert_eq!(verified.client_id, "client-1");
    }
}

#[tokio::test]
async fn htu_ignores_query_fragment_and_case_but_not_path_host_or_port() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    let auth = format!("DPoP {token}");
    for (proof_url, request_url) in [
        (
            "https://API.example:443/orders",
            "https://api.example/orders?page=2#top",
        ),
        (
            "https://api.example/orders?x=1",
            "https://api.example/orders",
        ),
    ] {
        let proof = client.proof("GET", proof_url, &token);
        let result = s.call("GET", request_url, &auth, &[&proof]).await;
        assert!(result.is_ok(), "{proof_url} for {request_url}: {result:?}");
    }
    for proof_url in [
        "https://api.example/orders/1",
        "https://api.example/Orders",
        "https://other.example/orders",
        "https://api.example:8443/orders",
        "http://api.example/orders",
        "/orders",
    ] {
        let proof = client.proof("GET", proof_url, &token);
        refused(s.dpop(&token, &proof).await, "htu");
    }
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    let s = setup().await;
    let client = TestKey::ed("c");
    let token = s.bound_token(&client);
    for method in ["POST", "get"] {
        let proof = client.proof(method, URL, &token);
        refused(s.dpop(&token, &proof).await, "htm");
    }
}

#[tokio::test]
async fn a_proof_for_another_token_is_refused_by_ath() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    let other = s.bound_token(&client);
    refused(
        s.dpop(&token, &client.proof("GET", URL, &other)).await,
        "ath",
    );
    let no_ath = client.proof_with(json!({"ath": null}), "GET", URL, &token);
    refused(s.dpop(&token, &no_ath).await, "ath");
}

#[tokio::test]
async fn a_proof_by_another_key_than_the_bound_one_is_refused() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let thief = TestKey::ec("t");
    let token = s.bound_token(&client);
    refused(
        s.dpop(&token, &thief.proof("GET", URL, &token)).await,
        "not the key the token is bound to",
    );
}

#[tokio::test]
async fn a_stale_or_future_iat_is_refused() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    // Window 60 s + leeway 30 s by default.
    for iat in [now() - 120, now() + 60] {
        let proof = client.proof_with(json!({"iat": iat}), "GET", URL, &token);
        refused(s.dpop(&token, &proof).await, "iat");
    }
    let proof = client.proof_with(json!({"iat": now() - 80}), "GET", URL, &token);
    assert!(
        s.dpop(&token, &proof).await.is_ok(),
        "within window + leeway"
    );
}

#[tokio::test]
async fn a_replayed_proof_is_refused_even_under_concurrency() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    let proof = client.proof("GET", URL, &token);
    assert!(s.dpop(&token, &proof).await.is_ok());
    refused(s.dpop(&token, &proof).await, "replayed");

    let proof = client.proof("GET", URL, &token);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let verifier = s.verifier.clone();
            let (token, proof) = (token.clone(), proof.clone());
            tokio::spawn(async move {
                let auth = format!("DPoP {token}");
                let req = HttpRequestParts {
                    method: "GET",
                    url: URL,
                    authorization: Some(&auth),
                    dpop: &[&proof],
                };
                verifier.verify_request(&req).await.is_ok()
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += usize::from(task.await.unwrap());
    }
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn a_jwk_with_a_private_member_is_refused() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    let mut jwk = client.public_members();
    jwk["d"] = json!("c2VjcmV0");
    let proof = client.sign(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        &proof_claims(&token),
    );
    refused(s.dpop(&token, &proof).await, "private");
}

fn proof_claims(token: &str) -> Value {
    let probe = TestKey::ec("x").proof("GET", URL, token);
    let claims = probe.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn alg_none_and_symmetric_proofs_are_refused() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    let claims = proof_claims(&token);
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": client.public_members()})),
        b64(&claims)
    );
    refused(s.dpop(&token, &none).await, "alg");

    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("dpop+jwt".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(b"shared").unwrap(),
    )
    .unwrap();
    refused(s.dpop(&token, &hs).await, "alg");

    // A key type that does not fit the algorithm.
    let mismatched = client.sign(
        &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client.public_members()}),
        &claims,
    );
    refused(s.dpop(&token, &mismatched).await, "jwk does not fit alg");
}

#[tokio::test]
async fn the_proof_must_be_a_dpop_jwt_with_its_claims() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    let claims = proof_claims(&token);
    let jwt = client.sign(
        &json!({"typ": "JWT", "alg": "ES256", "jwk": client.public_members()}),
        &claims,
    );
    refused(s.dpop(&token, &jwt).await, "typ");
    let no_jwk = client.sign(&json!({"typ": "dpop+jwt", "alg": "ES256"}), &claims);
    refused(s.dpop(&token, &no_jwk).await, "jwk");
    for missing in ["jti", "htm", "htu", "iat"] {
        let mut over = json!({});
        over[missing] = Value::Null;
        let proof = client.proof_with(over, "GET", URL, &token);
        refused(s.dpop(&token, &proof).await, "missing");
    }
    // Signed by the key, then changed.
    let proof = client.proof("GET", URL, &token);
    let mut parts: Vec<String> = proof.split('.').map(str::to_owned).collect();
    let other = client.proof("POST", URL, &token);
    parts[1] = other.split('.').nth(1).unwrap().to_owned();
    refused(s.dpop(&token, &parts.join(".")).await, "signature");
}

#[tokio::test]
async fn exactly_one_dpop_header_is_required() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let token = s.bound_token(&client);
    let auth = format!("DPoP {token}");
    let (a, b) = (
        client.proof("GET", URL, &token),
        client.proof("GET", URL, &token),
    );
    refused(s.call("GET", URL, &auth, &[&a, &b]).await, "more than one");
    refused(s.call("GET", URL, &auth, &[]).await, "no DPoP header");
}

#[tokio::test]
async fn a_bound_token_as_bearer_and_an_unbound_token_as_dpop_are_refused() {
    let s = setup().await;
    let client = TestKey::ec("c");
    let bound = s.bound_token(&client);
    let proof = client.proof("GET", URL, &bound);
    let result = s
        .call("GET", URL, &format!("Bearer {bound}"), &[&proof])
        .await;
    assert_eq!(result, Err(Error::BoundTokenAsBearer));
    let error = result.unwrap_err();
    assert_eq!(error.status(), 401);
    assert_eq!(
        error.www_authenticate(error.challenge_scheme(Some(Scheme::Bearer)), None),
        r#"DPoP algs="ES256 EdDSA Ed25519 RS256 PS256", error="invalid_token""#
    );

    let unbound = s.signing.token(&claims(&s.issuer.url, json!({})));
    let proof = client.proof("GET", URL, &unbound);
    assert_eq!(s.dpop(&unbound, &proof).await, Err(Error::DpopRequired));
}

#[tokio::test]
async fn an_unbound_bearer_token_verifies_through_verify_request() {
    let s = setup().await;
    let token = s.signing.token(&claims(&s.issuer.url, json!({})));
    let verified = s
        .call("GET", URL, &format!("Bearer {token}"), &[])
        .await
        .unwrap();
    assert_eq!(verified.key_thumbprint, None);
    let missing = s
        .verifier
        .verify_request(&HttpRequestParts {
            method: "GET",
            url: URL,
            authorization: None,
            dpop: &[],
        })
        .await;
    assert_eq!(missing, Err(Error::MissingToken));
}

#[tokio::test]
async fn invalid_proofs_answer_401_invalid_dpop_proof_with_a_dpop_challenge() {
    let error = Error::InvalidDpopProof("htu is not the request URL");
    assert_eq!(error.status(), 401);
    assert_eq!(error.rfc6750_code(), "invalid_dpop_proof");
    assert_eq!(
        error.www_authenticate(error.challenge_scheme(Some(Scheme::DPoP)), None),
        r#"DPoP algs="ES256 EdDSA Ed25519 RS256 PS256", error="invalid_dpop_proof""#
    );
}
