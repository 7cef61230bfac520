//! `private_key_jwt` (RFC 7523 §2.2, §3) conformance matrix, run on SQLite and on DynamoDB
//! (moto): each case sends a client assertion to `POST /oauth/token` through the router and
//! checks the exact status and error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use time::{Duration, OffsetDateTime};
use token_service::admin::{Admin, AdminError, NewClient};
use token_service::audit::AuditQuery;
use token_service::clients::keys::KeyInputError;
use token_service::clock::{Clock, ManualClock};
use token_service::config::{AssertionAudience, ServiceConfig};
use token_service::encoding::{b64url, random_b64url};
use token_service::http::{FrontContext, token_routes};
use token_service::oauth::assertion::JWT_BEARER;
use tower::ServiceExt as _;

use crate::support::stores::Stores;

const ISSUER: &str = "https://issuer.test";
const TOKEN_URL: &str = "https://issuer.test/oauth/token";
const AUDIENCE: &str = "https://api.test/";

/// A client's key pair: the private half signs assertions, the public JWK is registered.
struct ClientKeyPair {
    encoding: EncodingKey,
    alg: Algorithm,
    public: Jwk,
}

impl ClientKeyPair {
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
        // jsonwebtoken signs with a PKCS#1 RSAPrivateKey: the OCTET STRING that ends a
        // PKCS#8 PrivateKeyInfo of an RSA-2048 key (SEQUENCE, version, rsaEncryption
        // AlgorithmIdentifier, then 04 82 <len> <RSAPrivateKey>).
        let der = der.as_ref();
        assert_eq!(
            &der[22..24],
            [0x04, 0x82],
            "PKCS#8 layout of an RSA-2048 key"
        );
        Self::from(EncodingKey::from_rsa_der(&der[26..]), alg)
    }

    fn from(encoding: EncodingKey, alg: Algorithm) -> Self {
        let public = Jwk::from_encoding_key(&encoding, alg).unwrap();
        Self {
            encoding,
            alg,
            public,
        }
    }

    /// The public JWK as a client would hand it over, without `kid` (we name it).
    fn public_json(&self) -> String {
        let mut v = serde_json::to_value(&self.public).unwrap();
        v.as_object_mut().unwrap().remove("kid");
        v.to_string()
    }

    fn sign(&self, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Claims of a good assertion by `id` at `now`: `aud` the issuer (the only audience by
/// default), `exp = iat + 3600` (Authlib's default).
fn claims(id: &str, now: OffsetDateTime) -> serde_json::Value {
    let iat = now.unix_timestamp();
    serde_json::json!({
        "iss": id, "sub": id, "aud": ISSUER,
        "iat": iat, "exp": iat + 3600, "jti": random_b64url(16),
    })
}

struct Fixture {
    stores: Stores,
    clock: Arc<ManualClock>,
    router: axum::Router,
    admin: Admin,
    next_ip: AtomicU32,
}

impl Fixture {
    async fn new(stores: Stores) -> Self {
        Self::with_config(stores, ServiceConfig::for_tests()).await
    }

    async fn with_config(stores: Stores, config: ServiceConfig) -> Self {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let config_schedule = config.schedule;
        let service = stores
            .token_service(&config, clock.clone())
            .with_assertion_replay(stores.assertion_ids.clone());
        let admin = stores.admin(&config, clock.clone(), "pkjwt-test");
        // The first key as each backend makes it (the rotation protocol on Secrets Manager).
        stores
            .rotate_keys(config_schedule, clock.clone() as Arc<dyn Clock>)
            .await;
        Self {
            stores,
            clock,
            router: token_routes(Arc::new(service)),
            admin,
            next_ip: AtomicU32::new(1),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    async fn key_client(&self, id: &str, key: &ClientKeyPair) -> String {
        let c = self
            .admin
            .create_key_client(spec(id), &key.public_json())
            .await
            .unwrap();
        c.keys[0].kid.clone()
    }

    /// Posts `body` (and an optional Authorization header) from a fresh source address, so
    /// that the failure limits of one case never affect the next.
    async fn post(&self, auth: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        let ip = self.next_ip.fetch_add(1, Ordering::Relaxed);
        let mut request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        let mut request = request.body(Body::from(body.to_owned())).unwrap();
        request.extensions_mut().insert(FrontContext {
            request_id: Some(random_b64url(9)),
            source_ip: Some(format!("198.51.100.{}", ip % 250 + 1)),
        });
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn assert_assertion(&self, assertion: &str, status: u16, error: Option<&str>) {
        let body = assertion_body(assertion, None);
        let (got, json) = self.post(None, &body).await;
        assert_eq!(got.as_u16(), status, "{json}");
        assert_eq!(json["error"].as_str(), error, "{json}");
    }
}

fn spec(id: &str) -> NewClient {
    NewClient {
        client_id: Some(id.to_owned()),
        name: id.to_owned(),
        scopes: vec!["read".to_owned()],
        audiences: vec![AUDIENCE.to_owned()],
        ..NewClient::default()
    }
}

fn assertion_body(assertion: &str, client_id: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_assertion_type", JWT_BEARER)
        .append_pair("client_assertion", assertion);
    if let Some(id) = client_id {
        form.append_pair("client_id", id);
    }
    form.finish()
}

async fn good_assertions_of_every_key_type_get_a_token(s: Stores) {
    let f = Fixture::new(s).await;
    for (i, key) in [
        ClientKeyPair::ec(),
        ClientKeyPair::ed25519(),
        ClientKeyPair::rsa(Algorithm::RS256),
        ClientKeyPair::rsa(Algorithm::PS256),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("svc-{i}");
        let kid = f.key_client(&id, key).await;
        // With the kid, and without it (the only key).
        f.assert_assertion(&key.sign(Some(&kid), &claims(&id, f.now())), 200, None)
            .await;
        f.assert_assertion(&key.sign(None, &claims(&id, f.now())), 200, None)
            .await;
    }
    // client_id may be sent too, and must then match.
    let key = ClientKeyPair::ec();
    f.key_client("named", &key).await;
    let c = claims("named", f.now());
    let (status, json) = f
        .post(None, &assertion_body(&key.sign(None, &c), Some("named")))
        .await;
    assert_eq!(status, 200, "{json}");
    let (status, json) = f
        .post(
            None,
            &assertion_body(&key.sign(None, &claims("named", f.now())), Some("svc-0")),
        )
        .await;
    assert_eq!(
        (status.as_u16(), json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // The audit record of an issued token names the method.
    let records = f
        .stores
        .audit
        .query(&AuditQuery {
            client_id: Some("named".to_owned()),
            outcome: Some("issued".to_owned()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].fields, ["private_key_jwt"]);
}

async fn refused_assertions_are_invalid_client(s: Stores) {
    let f = Fixture::new(s).await;
    let key = ClientKeyPair::ec();
    let kid = f.key_client("svc", &key).await;
    let now = f.now();
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims("svc", now);
        change(&mut c);
        key.sign(Some(&kid), &c)
    };
    let t = now.unix_timestamp();
    let skew = 60;
    let cases: Vec<(&str, String)> = vec![
        ("expired", with(&|c| c["exp"] = (t - skew - 1).into())),
        (
            "too far ahead",
            with(&|c| c["exp"] = (t + 3600 + skew + 1).into()),
        ),
        (
            "issued in the future",
            with(&|c| c["iat"] = (t + skew + 5).into()),
        ),
        ("not yet valid", with(&|c| c["nbf"] = (t + skew + 5).into())),
        (
            "wrong aud",
            with(&|c| c["aud"] = "https://elsewhere.test/oauth/token".into()),
        ),
        // The audience-injection attack (draft-ietf-oauth-rfc7523bis): an assertion made for
        // another server that also names this one.
        (
            "aud an array naming the issuer and another server",
            with(&|c| c["aud"] = serde_json::json!([ISSUER, "https://other.test"])),
        ),
        (
            "aud an array of the issuer alone",
            with(&|c| c["aud"] = serde_json::json!([ISSUER])),
        ),
        (
            "aud the token endpoint, by default",
            with(&|c| c["aud"] = TOKEN_URL.into()),
        ),
        (
            "no aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        ("iss is not sub", with(&|c| c["iss"] = "other".into())),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "no jti",
            with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        (
            "unknown kid",
            key.sign(Some("no-such-kid"), &claims("svc", now)),
        ),
        (
            "signed by another key",
            ClientKeyPair::ec().sign(Some(&kid), &claims("svc", now)),
        ),
        ("unknown client", key.sign(None, &claims("nobody", now))),
        ("alg none", unsigned(&claims("svc", now))),
        (
            "HS256 with the public key as secret",
            hs256_with_public_key(&key, &kid, now),
        ),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    for (case, assertion) in cases {
        let (status, json) = f.post(None, &assertion_body(&assertion, None)).await;
        assert_eq!(
            (status.as_u16(), json["error"].as_str()),
            (401, Some("invalid_client")),
            "{case}: {json}"
        );
    }
    // The border cases inside the skew allowance still pass.
    f.assert_assertion(&with(&|c| c["exp"] = (t - skew + 5).into()), 200, None)
        .await;
    f.assert_assertion(&with(&|c| c["exp"] = (t + 3600 + skew).into()), 200, None)
        .await;
}

fn unsigned(claims: &serde_json::Value) -> String {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(claims.to_string());
    format!("{header}.{payload}.")
}

/// The classic confusion attack: HMAC keyed with the (public) key the server holds.
fn hs256_with_public_key(key: &ClientKeyPair, kid: &str, now: OffsetDateTime) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    let secret = serde_json::to_vec(&key.public).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims("svc", now),
        &EncodingKey::from_secret(&secret).unwrap(),
    )
    .unwrap()
}

async fn a_jti_is_used_once_sequentially_and_concurrently(s: Stores) {
    let f = Arc::new(Fixture::new(s).await);
    let key = ClientKeyPair::ec();
    let kid = f.key_client("svc", &key).await;
    let assertion = key.sign(Some(&kid), &claims("svc", f.now()));
    f.assert_assertion(&assertion, 200, None).await;
    f.assert_assertion(&assertion, 401, Some("invalid_client"))
        .await;
    // Eight requests with one fresh assertion at once: exactly one token.
    let assertion = key.sign(Some(&kid), &claims("svc", f.now()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            let body = assertion_body(&assertion, None);
            tokio::spawn(async move { f.post(None, &body).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        let (status, json) = t.await.unwrap();
        outcomes.push((status.as_u16(), json["error"].as_str().map(str::to_owned)));
    }
    let issued = outcomes.iter().filter(|o| o.0 == 200).count();
    assert_eq!(issued, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.0 == 200 || (o.0 == 401 && o.1.as_deref() == Some("invalid_client"))),
        "{outcomes:?}"
    );
}

async fn two_keys_live_at_once_and_a_removed_key_stops_at_once(s: Stores) {
    let f = Fixture::new(s).await;
    let old = ClientKeyPair::ec();
    let old_kid = f.key_client("svc", &old).await;
    let new = ClientKeyPair::ed25519();
    let (_, kids) = f
        .admin
        .add_client_keys("svc", &new.public_json())
        .await
        .unwrap();
    let new_kid = kids[0].clone();
    // Both keys authenticate during the rotation.
    f.assert_assertion(
        &old.sign(Some(&old_kid), &claims("svc", f.now())),
        200,
        None,
    )
    .await;
    f.assert_assertion(
        &new.sign(Some(&new_kid), &claims("svc", f.now())),
        200,
        None,
    )
    .await;
    // With two keys, an assertion must name one.
    f.assert_assertion(
        &new.sign(None, &claims("svc", f.now())),
        401,
        Some("invalid_client"),
    )
    .await;
    // Signed before the removal, presented a second after it.
    let signed = old.sign(Some(&old_kid), &claims("svc", f.now()));
    f.admin.remove_client_key("svc", &old_kid).await.unwrap();
    f.clock.advance(Duration::seconds(1));
    f.assert_assertion(&signed, 401, Some("invalid_client"))
        .await;
    f.assert_assertion(
        &new.sign(Some(&new_kid), &claims("svc", f.now())),
        200,
        None,
    )
    .await;
    let keys = f.admin.client("svc").await.unwrap().keys;
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        [new_kid.as_str()]
    );
    // Admin actions are audited.
    let mut actions: Vec<String> = f
        .stores
        .audit
        .query(&AuditQuery {
            client_id: Some("svc".to_owned()),
            outcome: Some("admin".to_owned()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.action)
        .collect();
    // One instant of the manual clock: the order among them is not defined.
    actions.sort();
    assert_eq!(actions, ["client.create", "key.add", "key.remove"]);
}

async fn a_private_key_is_refused_at_registration_and_never_stored(s: Stores) {
    let f = Fixture::new(s).await;
    let key = ClientKeyPair::ec();
    let mut private = serde_json::to_value(&key.public).unwrap();
    private["d"] = "c2VjcmV0LXByaXZhdGUtc2NhbGFy".into();
    let err = f
        .admin
        .create_key_client(spec("svc"), &private.to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::KeyInput(KeyInputError::PrivateKey(m)) if m == "d"),
        "{err:?}"
    );
    assert!(err.to_string().contains("public key only"), "{err}");
    assert_eq!(f.stores.clients.get_client("svc").await.unwrap(), None);
    // Nor through `keys add`, nor a symmetric key.
    f.key_client("svc", &key).await;
    let oct = r#"{"kty":"oct","k":"c2VjcmV0"}"#;
    for text in [private.to_string(), oct.to_owned()] {
        let err = f.admin.add_client_keys("svc", &text).await.unwrap_err();
        assert!(
            matches!(err, AdminError::KeyInput(KeyInputError::PrivateKey(_))),
            "{err:?}"
        );
    }
    let stored = serde_json::to_string(&f.admin.client("svc").await.unwrap()).unwrap();
    assert!(!stored.contains("c2VjcmV0"), "{stored}");
}

async fn methods_do_not_mix(s: Stores) {
    let f = Fixture::new(s).await;
    let key = ClientKeyPair::ec();
    f.key_client("jwt", &key).await;
    let (secret_client, secret) = f.admin.create_client(spec("sec")).await.unwrap();
    let secret = secret.expose().to_owned();
    // A secret client cannot use an assertion, even one signed by a key of another client.
    f.assert_assertion(
        &key.sign(None, &claims(&secret_client.client_id, f.now())),
        401,
        Some("invalid_client"),
    )
    .await;
    // A key client has no secret to use: a guessed one is refused.
    let body = "grant_type=client_credentials&client_id=jwt&client_secret=tks_guess";
    let (status, json) = f.post(None, body).await;
    assert_eq!(
        (status.as_u16(), json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Two methods in one request: invalid_request, in the body or with Basic.
    let assertion = key.sign(None, &claims("jwt", f.now()));
    let both = format!(
        "{}&client_secret={secret}",
        assertion_body(&assertion, None)
    );
    let (status, json) = f.post(None, &both).await;
    assert_eq!(
        (status.as_u16(), json["error"].as_str()),
        (400, Some("invalid_request")),
        "{json}"
    );
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("sec:{secret}"))
    );
    let (status, json) = f
        .post(Some(&basic), &assertion_body(&assertion, None))
        .await;
    assert_eq!(
        (status.as_u16(), json["error"].as_str()),
        (400, Some("invalid_request")),
        "{json}"
    );
    // An assertion without its type, or the other way round: invalid_request.
    let (status, json) = f
        .post(
            None,
            &format!("grant_type=client_credentials&client_assertion={assertion}"),
        )
        .await;
    assert_eq!(
        (status.as_u16(), json["error"].as_str()),
        (400, Some("invalid_request")),
        "{json}"
    );
    // Adding a secret to a key client, or a key to a secret client, is refused.
    assert!(f.admin.add_secret("jwt", None).await.is_err());
    assert!(
        f.admin
            .add_client_keys("sec", &key.public_json())
            .await
            .is_err()
    );
}

async fn failed_assertions_count_towards_the_failure_limit(s: Stores) {
    let f = Fixture::new(s).await;
    let key = ClientKeyPair::ec();
    f.key_client("svc", &key).await;
    let limit = ServiceConfig::for_tests().limits.fail_per_client_ip;
    let bad = ClientKeyPair::ec();
    let mut last = Vec::new();
    for _ in 0..=limit {
        let body = assertion_body(&bad.sign(None, &claims("svc", f.now())), None);
        let mut request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        request.extensions_mut().insert(FrontContext {
            request_id: Some(random_b64url(9)),
            source_ip: Some("203.0.113.7".to_owned()),
        });
        last.push(
            f.router
                .clone()
                .oneshot(request)
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(last[..limit as usize].iter().all(|s| *s == 401), "{last:?}");
    assert_eq!(last[limit as usize], 429, "{last:?}");
}

async fn the_replay_cache_forgets_an_id_only_after_it_expired(s: Stores) {
    let ids = &s.assertion_ids;
    let (now, until) = (1_000_000, 1_000_100);
    assert!(ids.first_use("3:svc:a", until, now).await.unwrap());
    assert!(!ids.first_use("3:svc:a", until, now).await.unwrap());
    assert!(
        !ids.first_use("3:svc:a", until + 500, until - 1)
            .await
            .unwrap()
    );
    assert!(ids.first_use("3:svc:b", until, now).await.unwrap());
    // Past its expiry (TTL deletion is lazy) the record no longer counts.
    assert!(ids.first_use("3:svc:a", until + 100, until).await.unwrap());
    assert!(!ids.first_use("3:svc:a", until + 100, until).await.unwrap());
}

/// Runs each case once per backend: `sqlite::<name>` and `aws::<name>`.
/// With `TOKEN_ASSERTION_AUDIENCE=issuer-or-token-endpoint` (clients not yet updated) the
/// token endpoint URL is accepted beside the issuer, as one string; arrays still are not.
async fn the_token_endpoint_audience_is_accepted_only_when_configured(s: Stores) {
    let mut config = ServiceConfig::for_tests();
    config.assertion_audience = AssertionAudience::IssuerOrTokenEndpoint;
    let f = Fixture::with_config(s, config).await;
    let key = ClientKeyPair::ec();
    let kid = f.key_client("svc", &key).await;
    let with_aud = |aud: serde_json::Value| {
        let mut c = claims("svc", f.now());
        c["aud"] = aud;
        key.sign(Some(&kid), &c)
    };
    for aud in [TOKEN_URL, ISSUER] {
        f.assert_assertion(&with_aud(aud.into()), 200, None).await;
    }
    for aud in [
        serde_json::json!([TOKEN_URL]),
        serde_json::json!([TOKEN_URL, ISSUER]),
        serde_json::json!("https://elsewhere.test/oauth/token"),
    ] {
        f.assert_assertion(&with_aud(aud), 401, Some("invalid_client"))
            .await;
    }
}

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
    good_assertions_of_every_key_type_get_a_token,
    refused_assertions_are_invalid_client,
    a_jti_is_used_once_sequentially_and_concurrently,
    two_keys_live_at_once_and_a_removed_key_stops_at_once,
    a_private_key_is_refused_at_registration_and_never_stored,
    methods_do_not_mix,
    failed_assertions_count_towards_the_failure_limit,
    the_replay_cache_forgets_an_id_only_after_it_expired,
    the_token_endpoint_audience_is_accepted_only_when_configured,
);
