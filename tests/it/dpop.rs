//! DPoP at the token endpoint (RFC 9449 §4.3, §5, §8): proofs of every accepted algorithm get a
//! `DPoP` token bound to their key, each refused proof gets `400 invalid_dpop_proof` (audited
//! and charged to the source's refusal budget), a proof is used once (on SQLite and DynamoDB),
//! DPoP-bound clients need a proof, and required nonces are asked for and accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use time::OffsetDateTime;
use token_service::admin::{Admin, ClientUpdate, NewClient};
use token_service::audit::AuditQuery;
use token_service::clock::{Clock, ManualClock};
use token_service::config::ServiceConfig;
use token_service::encoding::{b64url, random_b64url};
use token_service::http::{FrontContext, token_routes};
use tower::ServiceExt as _;

use crate::support::stores::Stores;

const TOKEN_URL: &str = "https://issuer.test/oauth/token";

/// A proof key pair: the private half signs proofs, the public JWK rides in their header.
struct ProofKey {
    encoding: EncodingKey,
    alg: Algorithm,
    public: serde_json::Value,
}

impl ProofKey {
    fn ec() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::from(EncodingKey::from_ec_der(pkcs8.as_ref()), Algorithm::ES256)
    }

    fn ed25519() -> Self {
        let pkcs8 = Ed25519KeyPair::generate().unwrap().to_pkcs8v1().unwrap();
        Self::from(EncodingKey::from_ed_der(pkcs8.as_ref()), Algorithm::EdDSA)
    }

    fn rsa(alg: Algorithm) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        // jsonwebtoken signs with the PKCS#1 RSAPrivateKey inside the PKCS#8 document.
        Self::from(EncodingKey::from_rsa_der(&der.as_ref()[26..]), alg)
    }

    fn from(encoding: EncodingKey, alg: Algorithm) -> Self {
        let jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        let mut public = serde_json::to_value(&jwk).unwrap();
        let object = public.as_object_mut().unwrap();
        object.retain(|k, _| ["kty", "crv", "x", "y", "n", "e"].contains(&k.as_str()));
        Self {
            encoding,
            alg,
            public,
        }
    }

    fn thumbprint(&self) -> String {
        let jwk: Jwk = serde_json::from_value(self.public.clone()).unwrap();
        jwk.thumbprint(ThumbprintHash::SHA256).unwrap()
    }

    /// A compact JWS of `header` and `claims` signed with this key's algorithm.
    fn sign_raw(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let message = format!(
            "{}.{}",
            b64url(header.to_string()),
            b64url(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{message}.{signature}")
    }

    fn header(&self, alg: &str) -> serde_json::Value {
        serde_json::json!({"typ": "dpop+jwt", "alg": alg, "jwk": self.public})
    }

    /// A good proof for the token endpoint at `now`, with `alg` as named in the header.
    fn proof_as(&self, alg: &str, now: OffsetDateTime) -> String {
        self.sign_raw(&self.header(alg), &claims(now))
    }

    fn proof(&self, now: OffsetDateTime) -> String {
        let name = match self.alg {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
            other => panic!("{other:?}"),
        };
        self.proof_as(name, now)
    }
}

fn claims(now: OffsetDateTime) -> serde_json::Value {
    serde_json::json!({
        "jti": random_b64url(16), "htm": "POST", "htu": TOKEN_URL, "iat": now.unix_timestamp(),
    })
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    json: serde_json::Value,
}

impl Answer {
    fn error(&self) -> Option<&str> {
        self.json["error"].as_str()
    }

    /// The claims of the issued access token, read without verifying it.
    fn token_claims(&self) -> serde_json::Value {
        let token = self.json["access_token"].as_str().expect("a token");
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }
}

struct Fixture {
    stores: Stores,
    clock: Arc<ManualClock>,
    router: axum::Router,
    admin: Admin,
    secret: String,
    next_ip: AtomicU32,
}

impl Fixture {
    async fn new(stores: Stores) -> Self {
        Self::with(stores, |c| c).await
    }

    async fn with(stores: Stores, configure: impl FnOnce(ServiceConfig) -> ServiceConfig) -> Self {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let config = Arc::new(configure(ServiceConfig::for_tests()));
        let schedule = config.schedule;
        let service = stores
            .token_service(&config, clock.clone())
            .with_assertion_replay(stores.assertion_ids.clone());
        let admin = stores.admin(&config, clock.clone(), "dpop-test");
        stores
            .rotate_keys(schedule, clock.clone() as Arc<dyn Clock>)
            .await;
        let (_, secret) = admin
            .create_client(NewClient {
                client_id: Some("svc".to_owned()),
                name: "svc".to_owned(),
                scopes: vec!["read".to_owned()],
                audiences: vec!["https://api.test/".to_owned()],
                ..NewClient::default()
            })
            .await
            .unwrap();
        Self {
            stores,
            clock,
            router: token_routes(Arc::new(service)),
            admin,
            secret: secret.expose().to_owned(),
            next_ip: AtomicU32::new(1),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Posts a client-credentials request of `svc` with these `DPoP` headers, from a fresh
    /// source address unless `ip` names one.
    async fn post_from(&self, proofs: &[&str], ip: Option<&str>) -> Answer {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        let basic = STANDARD.encode(format!("svc:{}", self.secret));
        let mut request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"));
        for proof in proofs {
            request = request.header("dpop", *proof);
        }
        let mut request = request
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        let source = ip.map_or_else(|| format!("198.51.100.{}", n % 250 + 1), str::to_owned);
        request.extensions_mut().insert(FrontContext {
            request_id: Some(random_b64url(9)),
            source_ip: Some(source),
        });
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap();
        Answer {
            status,
            headers,
            json,
        }
    }

    async fn post(&self, proofs: &[&str]) -> Answer {
        self.post_from(proofs, None).await
    }

    /// Asserts that `proof` is refused with `invalid_dpop_proof`, and that the refusal is in
    /// the audit trail.
    async fn assert_refused(&self, proofs: &[&str]) {
        let before = self.refusals().await;
        let answer = self.post(proofs).await;
        assert_eq!(answer.status, 400, "{}", answer.json);
        assert_eq!(
            answer.error(),
            Some("invalid_dpop_proof"),
            "{}",
            answer.json
        );
        assert!(answer.json["error_description"].is_string());
        assert_eq!(self.refusals().await, before + 1, "the refusal is audited");
    }

    async fn refusals(&self) -> usize {
        let query = AuditQuery {
            client_id: Some("svc".to_owned()),
            outcome: Some("invalid_dpop_proof".to_owned()),
            limit: 1000,
            ..AuditQuery::default()
        };
        self.stores.audit.query(&query).await.unwrap().len()
    }
}

async fn proofs_of_every_algorithm_get_a_token_bound_to_their_key(s: Stores) {
    let f = Fixture::new(s).await;
    let ed = ProofKey::ed25519();
    let cases = [
        (ProofKey::ec(), "ES256"),
        (ProofKey::rsa(Algorithm::RS256), "RS256"),
        (ProofKey::rsa(Algorithm::PS256), "PS256"),
    ];
    let mut proofs: Vec<(String, String)> = cases
        .iter()
        .map(|(k, alg)| (k.proof_as(alg, f.now()), k.thumbprint()))
        .collect();
    // EdDSA by both its names (RFC 9864's fully-specified `Ed25519`).
    proofs.push((ed.proof_as("EdDSA", f.now()), ed.thumbprint()));
    proofs.push((ed.proof_as("Ed25519", f.now()), ed.thumbprint()));
    let mut expected: Vec<String> = proofs.iter().map(|(_, jkt)| jkt.clone()).collect();
    for (proof, jkt) in proofs {
        let answer = f.post(&[&proof]).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(answer.json["token_type"], "DPoP");
        assert_eq!(answer.token_claims()["cnf"]["jkt"], jkt.as_str());
        // No nonce is asked for when nonces are off.
        assert!(answer.headers.get("dpop-nonce").is_none());
    }
    // The audit record of a DPoP token names the key's thumbprint.
    let query = AuditQuery {
        client_id: Some("svc".to_owned()),
        outcome: Some("issued".to_owned()),
        limit: 10,
        ..AuditQuery::default()
    };
    let records = f.stores.audit.query(&query).await.unwrap();
    let mut recorded: Vec<String> = records.into_iter().filter_map(|r| r.dpop_jkt).collect();
    recorded.sort();
    expected.sort();
    assert_eq!(recorded, expected);
}

async fn without_a_proof_the_token_is_a_bearer_token_as_before(s: Stores) {
    let f = Fixture::new(s).await;
    let answer = f.post(&[]).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["token_type"], "Bearer");
    assert!(answer.token_claims().get("cnf").is_none());
}

async fn a_replayed_proof_is_refused(s: Stores) {
    let f = Fixture::new(s).await;
    let key = ProofKey::ec();
    let proof = key.proof(f.now());
    assert_eq!(f.post(&[&proof]).await.status, 200);
    f.assert_refused(&[&proof]).await;
}

async fn a_proof_replayed_by_16_requests_at_once_issues_one_token(s: Stores) {
    let f = Arc::new(Fixture::new(s).await);
    let proof = ProofKey::ed25519().proof(f.now());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (f, proof) = (f.clone(), proof.clone());
            tokio::spawn(async move { f.post(&[&proof]).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        outcomes.push((answer.status, answer.error().map(str::to_owned)));
    }
    let issued = outcomes.iter().filter(|o| o.0 == 200).count();
    assert_eq!(issued, 1, "{outcomes:?}");
    let refused = (400, Some("invalid_dpop_proof".to_owned()));
    assert!(
        outcomes.iter().all(|o| o.0 == 200 || *o == refused),
        "{outcomes:?}"
    );
}

async fn a_dpop_bound_client_without_a_proof_is_refused(s: Stores) {
    let f = Fixture::new(s).await;
    let update = ClientUpdate {
        dpop_bound: Some(true),
        ..ClientUpdate::default()
    };
    f.admin.update_client("svc", update).await.unwrap();
    f.assert_refused(&[]).await;
    let answer = f.post(&[&ProofKey::ec().proof(f.now())]).await;
    assert_eq!(answer.json["token_type"], "DPoP", "{}", answer.json);
    let update = ClientUpdate {
        dpop_bound: Some(false),
        ..ClientUpdate::default()
    };
    f.admin.update_client("svc", update).await.unwrap();
    assert_eq!(f.post(&[]).await.json["token_type"], "Bearer");
}

/// A refused proof of `svc`: `change` edits a good proof's header and claims before signing.
async fn refused_with(change: impl Fn(&mut serde_json::Value, &mut serde_json::Value)) {
    let f = Fixture::new(crate::support::stores::sqlite().await).await;
    let key = ProofKey::ec();
    let (mut header, mut claims) = (key.header("ES256"), claims(f.now()));
    change(&mut header, &mut claims);
    f.assert_refused(&[&key.sign_raw(&header, &claims)]).await;
}

#[tokio::test]
async fn two_dpop_headers_are_refused() {
    let f = Fixture::new(crate::support::stores::sqlite().await).await;
    let key = ProofKey::ec();
    f.assert_refused(&[&key.proof(f.now()), &key.proof(f.now())])
        .await;
}

#[tokio::test]
async fn a_proof_that_is_not_a_jwt_is_refused() {
    let f = Fixture::new(crate::support::stores::sqlite().await).await;
    for proof in ["", "not-a-jwt", "a.b.c", "a.b.c.d.e"] {
        f.assert_refused(&[proof]).await;
    }
}

#[tokio::test]
async fn a_proof_of_another_type_is_refused() {
    refused_with(|h, _| h["typ"] = "JWT".into()).await;
}

#[tokio::test]
async fn a_proof_with_alg_none_is_refused() {
    let f = Fixture::new(crate::support::stores::sqlite().await).await;
    let key = ProofKey::ec();
    let header = b64url(key.header("none").to_string());
    let claims = b64url(claims(f.now()).to_string());
    f.assert_refused(&[&format!("{header}.{claims}.")]).await;
}

#[tokio::test]
async fn a_proof_signed_with_a_symmetric_alg_is_refused() {
    let f = Fixture::new(crate::support::stores::sqlite().await).await;
    let key = ProofKey::ec();
    let secret = EncodingKey::from_secret(key.public.to_string().as_bytes()).unwrap();
    let hmac = ProofKey {
        encoding: secret,
        alg: Algorithm::HS256,
        public: key.public.clone(),
    };
    f.assert_refused(&[&hmac.sign_raw(&key.header("HS256"), &claims(f.now()))])
        .await;
}

#[tokio::test]
async fn a_proof_with_a_private_jwk_is_refused() {
    refused_with(|h, _| h["jwk"]["d"] = "AAAA".into()).await;
}

#[tokio::test]
async fn a_proof_without_a_jwk_is_refused() {
    refused_with(|h, _| {
        h.as_object_mut().unwrap().remove("jwk");
    })
    .await;
}

#[tokio::test]
async fn a_proof_whose_jwk_does_not_fit_its_alg_is_refused() {
    refused_with(|h, _| h["alg"] = "EdDSA".into()).await;
}

#[tokio::test]
async fn a_proof_signed_by_another_key_is_refused() {
    let other = ProofKey::ec();
    refused_with(move |h, _| h["jwk"] = other.public.clone()).await;
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    refused_with(|_, c| c["htm"] = "GET".into()).await;
}

#[tokio::test]
async fn a_proof_for_another_url_is_refused() {
    for url in [
        "https://elsewhere.test/oauth/token",
        "https://issuer.test/oauth/token2",
        "http://issuer.test/oauth/token",
    ] {
        refused_with(|_, c| c["htu"] = url.into()).await;
    }
}

#[tokio::test]
async fn a_proof_for_the_same_url_written_otherwise_is_accepted() {
    let f = Fixture::new(crate::support::stores::sqlite().await).await;
    let key = ProofKey::ec();
    let mut claims = claims(f.now());
    claims["htu"] = "HTTPS://Issuer.TEST:443/oauth/./token?q=1#frag".into();
    let answer = f
        .post(&[&key.sign_raw(&key.header("ES256"), &claims)])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
}

/// The token endpoint and the resource side (`token-verifier`, the Lambda authorizer) compare
/// `htu` in one normal form, so a client's proof means the same URL to both.
#[test]
fn the_token_endpoint_and_the_verifier_normalise_htu_alike() {
    use token_service::oauth::dpop::normalised_htu as endpoint;
    use token_verifier::normalised_htu as verifier;
    let same = [
        "HTTPS://Issuer.TEST:443/oauth/./token?q=1#frag",
        "https://issuer.test/a/../oauth/token",
        "https://issuer.test/%6fauth/%74oken",
        "https://issuer.test/oauth/%2e/token",
    ];
    for url in same {
        assert_eq!(endpoint(url).as_deref(), Some(TOKEN_URL), "{url}");
        assert_eq!(verifier(url).as_deref(), Some(TOKEN_URL), "{url}");
    }
    let cases = [
        "https://issuer.test/a%2fb",
        "https://issuer.test/a%2Fb?x",
        "http://127.0.0.1:8080/x",
        "http://[::1]/x",
        "https://h/caf%C3%A9",
        "https://xn--caf-dma.test/",
        "https://café.test/",
        "https://issuer.test",
        "https://u@issuer.test/",
        "https://issuer.test/%zz",
        "https://issuer.test/%+1",
        "ftp://issuer.test/",
        "issuer.test/oauth/token",
    ];
    for url in cases {
        assert_eq!(endpoint(url), verifier(url), "{url}");
    }
    assert_eq!(
        endpoint("https://issuer.test/a%2fb").unwrap(),
        "https://issuer.test/a%2Fb"
    );
    assert_eq!(endpoint("https://u@issuer.test/"), None);
}

#[tokio::test]
async fn a_proof_too_old_or_from_the_future_is_refused() {
    // Window 60 s plus skew 60 s: 121 s old is too old, 61 s ahead is too early.
    refused_with(|_, c| c["iat"] = (c["iat"].as_i64().unwrap() - 121).into()).await;
    refused_with(|_, c| c["iat"] = (c["iat"].as_i64().unwrap() + 61).into()).await;
    let f = Fixture::new(crate::support::stores::sqlite().await).await;
    let key = ProofKey::ec();
    let mut claims = claims(f.now());
    claims["iat"] = (f.now().unix_timestamp() - 119).into();
    let answer = f
        .post(&[&key.sign_raw(&key.header("ES256"), &claims)])
        .await;
    assert_eq!(answer.status, 200, "within the window: {}", answer.json);
}

#[tokio::test]
async fn a_proof_without_a_jti_is_refused() {
    refused_with(|_, c| {
        c.as_object_mut().unwrap().remove("jti");
    })
    .await;
    refused_with(|_, c| c["jti"] = "".into()).await;
}

#[tokio::test]
async fn refused_proofs_are_charged_to_the_refusal_budget() {
    let budget = 3;
    let f = Fixture::with(crate::support::stores::sqlite().await, |mut c| {
        c.limits.refusal_budget = budget;
        c
    })
    .await;
    let ip = Some("203.0.113.9");
    for _ in 0..budget {
        let answer = f.post_from(&["not-a-jwt"], ip).await;
        assert_eq!(answer.error(), Some("invalid_dpop_proof"));
    }
    let answer = f.post_from(&["not-a-jwt"], ip).await;
    assert_eq!(answer.status, 429, "{}", answer.json);
}

/// The nonce secret is the key set's, made by its first rotation (on AWS the rotation protocol
/// writes it into the Secrets Manager secret).
async fn required_nonces_are_asked_for_and_then_accepted(s: Stores) {
    let f = Fixture::with(s, |mut c| {
        c.dpop_nonce_required = true;
        c
    })
    .await;
    let key = ProofKey::ec();
    let answer = f.post(&[&key.proof(f.now())]).await;
    assert_eq!(
        (answer.status, answer.error()),
        (400, Some("use_dpop_nonce"))
    );
    let nonce = answer.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let mut with_nonce = claims(f.now());
    with_nonce["nonce"] = nonce.clone().into();
    let answer = f
        .post(&[&key.sign_raw(&key.header("ES256"), &with_nonce)])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert!(
        answer.headers.get("dpop-nonce").is_some(),
        "a fresh nonce rides on a 200"
    );
    // A nonce of another key, or one long expired, is asked again.
    f.clock.advance(time::Duration::minutes(10));
    let mut stale = claims(f.now());
    stale["nonce"] = nonce.into();
    let answer = f.post(&[&key.sign_raw(&key.header("ES256"), &stale)]).await;
    assert_eq!(answer.error(), Some("use_dpop_nonce"), "{}", answer.json);
}

/// Runs each case once per backend: `sqlite::<name>` and `aws::<name>`.
macro_rules! matrix {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::stores::sqlite().await).await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::stores::aws().await).await;
                }
            )*
        }
    };
}

matrix!(
    proofs_of_every_algorithm_get_a_token_bound_to_their_key,
    without_a_proof_the_token_is_a_bearer_token_as_before,
    a_replayed_proof_is_refused,
    a_proof_replayed_by_16_requests_at_once_issues_one_token,
    a_dpop_bound_client_without_a_proof_is_refused,
    required_nonces_are_asked_for_and_then_accepted,
);
