//! DynamoDB calls and round trips per token request on the AWS shape, counted by an SDK
//! interceptor on the shape's own DynamoDB client, against the moto emulator.
//!
//! A **call** is one SDK operation (retries included), from just before its request is
//! serialised to the end of its execution. A **round trip** is a maximal stretch of time during which at least one call is in
//! flight: calls that overlap, directly or through another call, form one round trip; calls
//! made one after another are one round trip each. This is what a request waits for on
//! DynamoDB: its latency is about (round trips x one in-region call).
//!
//! Every call is held back [`LATENCY`] on its way to moto, as a network would: moto on loopback
//! answers within the time a debug build takes to poll a call once, which could let one call
//! end before a call issued concurrently with it had even started.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use time::OffsetDateTime;
use token_service::admin::{Admin, NewClient};
use token_service::clock::{Clock, ManualClock};
use token_service::config::ServiceConfig;
use token_service::encoding::random_b64url;
use token_service::issue::{RequestContext, TokenService};
use token_service::oauth::OAuthError;
use token_service::oauth::assertion::JWT_BEARER;
use token_service::oauth::request::RawRequest;
use token_service::refusal::Refused;
use token_service::shapes::aws::AwsShape;
use token_service::store::RateLimits;
use token_service::store::aws::{DynamoDbRateLimits, create_resources};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::moto;
use crate::support::stores::{random_resources, rotate_keys_on};

const FORM: &str = "application/x-www-form-urlencoded";

/// The network latency every DynamoDB call of the test is given.
const LATENCY: Duration = Duration::from_millis(50);

/// A TCP proxy in front of moto that holds back every chunk a client sends by [`LATENCY`];
/// its URL. It runs until the test's runtime ends.
async fn slow_network() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let moto = moto::endpoint().trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&moto).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    tokio::time::sleep(LATENCY).await;
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            });
        }
    });
    url
}

/// One start or end of a DynamoDB call.
#[derive(Debug)]
struct Event {
    at: Instant,
    operation: String,
    start: bool,
}

/// The interceptor: records the start and the end of every call of the client it is on.
#[derive(Debug, Clone, Default)]
struct Calls(Arc<Mutex<Vec<Event>>>);

impl Calls {
    fn push(&self, cfg: &ConfigBag, start: bool) {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_owned();
        let mut events = self.0.lock().unwrap();
        // The instant is taken under the lock: the events are in time order.
        events.push(Event {
            at: Instant::now(),
            operation,
            start,
        });
    }

    /// The cost of everything recorded since the last call, which it forgets.
    fn take(&self) -> Cost {
        let events = std::mem::take(&mut *self.0.lock().unwrap());
        Cost::of(&events)
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "CountDynamoDbCalls"
    }

    // The first hook after the operation's configuration (its name) is in place; nothing has
    // been sent yet.
    fn read_before_serialization(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.push(cfg, true);
        Ok(())
    }

    fn read_after_execution(
        &self,
        _: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.push(cfg, false);
        Ok(())
    }
}

/// The DynamoDB calls of one request, by operation, and its round trips.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    calls: BTreeMap<String, usize>,
    round_trips: usize,
}

impl Cost {
    fn of(events: &[Event]) -> Self {
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
        let (mut in_flight, mut round_trips) = (0usize, 0);
        let mut calls = BTreeMap::new();
        for e in events {
            if e.start {
                round_trips += usize::from(in_flight == 0);
                in_flight += 1;
                *calls.entry(e.operation.clone()).or_default() += 1;
            } else {
                in_flight -= 1;
            }
        }
        assert_eq!(in_flight, 0, "a call still in flight: {events:?}");
        Self { calls, round_trips }
    }

    fn expected(calls: &[(&str, usize)], round_trips: usize) -> Self {
        let calls = calls.iter().map(|(op, n)| ((*op).to_owned(), *n)).collect();
        Self { calls, round_trips }
    }

    fn total(&self) -> usize {
        self.calls.values().sum()
    }
}

#[test]
fn overlapping_calls_are_one_round_trip_and_calls_in_turn_one_each() {
    let t = Instant::now();
    let ms = |n| t + Duration::from_millis(n);
    let event = |at, op: &str, start| Event {
        at,
        operation: op.to_owned(),
        start,
    };
    // A and B overlap; C starts while B (not A) is in flight; D comes after all of them.
    let events = [
        event(ms(0), "A", true),
        event(ms(1), "B", true),
        event(ms(2), "A", false),
        event(ms(3), "C", true),
        event(ms(4), "B", false),
        event(ms(5), "C", false),
        event(ms(6), "D", true),
        event(ms(7), "D", false),
    ];
    assert_eq!(
        Cost::of(&events),
        Cost::expected(&[("A", 1), ("B", 1), ("C", 1), ("D", 1)], 2)
    );
}

/// The token function's service on fresh moto resources, its DynamoDB client observed.
struct Stack {
    service: Arc<TokenService>,
    admin: Admin,
    calls: Calls,
    clock: Arc<ManualClock>,
}

impl Stack {
    async fn new() -> Self {
        let sdk = moto::sdk_config().await;
        let names = random_resources();
        create_resources(&sdk, &names)
            .await
            .expect("create the tables and the secret");
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        rotate_keys_on(&sdk, &names, clock.clone()).await;
        let calls = Calls::default();
        let observed = calls.clone();
        let slow = moto::sdk_config_at(&slow_network().await).await;
        let shape = AwsShape::new(&slow, names, config(), clock.clone())
            .with_dynamodb_config(move |b| b.interceptor(observed));
        // As the token function starts: the key set is loaded during init.
        let service = shape.token_service_loaded().await;
        Self {
            service,
            admin: shape.admin("round-trips-test"),
            calls,
            clock,
        }
    }

    /// The cost of one request with `body` from `ip`, and its answer.
    async fn cost(&self, ip: &str, body: &str) -> (Result<(), Refused>, Cost) {
        self.cost_with(ip, body, None).await
    }

    /// The cost of one request with `body` and a `DPoP` header `proof` from `ip`.
    async fn cost_with(
        &self,
        ip: &str,
        body: &str,
        proof: Option<&str>,
    ) -> (Result<(), Refused>, Cost) {
        self.calls.take();
        let raw = RawRequest {
            content_type: Some(FORM),
            body: body.as_bytes(),
            dpop: proof.map(Ok),
            ..RawRequest::default()
        };
        let meta = RequestContext {
            request_id: random_b64url(9),
            source_ip: Some(ip.to_owned()),
            user_agent: None,
        };
        let answer = self.service.handle(raw, &meta).await.map(|_| ());
        (answer, self.calls.take())
    }
}

/// The test service's settings: small per-address limits, so that a few requests reach them.
fn config() -> ServiceConfig {
    let mut config = ServiceConfig::for_tests();
    config.limits.fail_per_ip = 2;
    config.limits.refusal_budget = 2;
    config
}

fn spec(id: &str, rate_limit: Option<u32>) -> NewClient {
    NewClient {
        client_id: Some(id.to_owned()),
        name: id.to_owned(),
        scopes: vec!["read".to_owned()],
        audiences: vec!["https://api.test/".to_owned()],
        rate_limit,
        ..NewClient::default()
    }
}

fn secret_body(id: &str, secret: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", id)
        .append_pair("client_secret", secret)
        .finish()
}

/// A `private_key_jwt` client registered with a fresh ES256 key, and a good assertion of it.
async fn key_client_assertion(stack: &Stack, id: &str) -> String {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    let mut public = serde_json::to_value(&jwk).unwrap();
    public.as_object_mut().unwrap().remove("kid");
    let client = stack
        .admin
        .create_key_client(spec(id, None), &public.to_string())
        .await
        .unwrap();
    let iat = stack.clock.now().unix_timestamp();
    let claims = serde_json::json!({
        "iss": id, "sub": id, "aud": "https://issuer.test",
        "iat": iat, "exp": iat + 300, "jti": random_b64url(16),
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(client.keys[0].kid.clone());
    let assertion = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_assertion_type", JWT_BEARER)
        .append_pair("client_assertion", &assertion)
        .finish()
}

/// A DPoP proof (RFC 9449) for the token endpoint at `now`, by a fresh ES256 key.
fn dpop_proof(now: OffsetDateTime) -> String {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("dpop+jwt".to_owned());
    header.jwk = Some(jwk);
    let claims = serde_json::json!({
        "jti": random_b64url(16), "htm": "POST", "htu": "https://issuer.test/oauth/token",
        "iat": now.unix_timestamp(),
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_request_adds_one_write_in_the_round_trip_of_the_issue_counter() {
    let stack = Stack::new().await;
    let (_, secret) = stack.admin.create_client(spec("svc", None)).await.unwrap();
    let good = secret_body("svc", secret.expose());
    let proof = dpop_proof(stack.clock.now());
    let (answer, issued) = stack.cost_with("192.0.2.20", &good, Some(&proof)).await;
    assert_eq!(answer, Ok(()));
    eprintln!("DPoP token issued: {} calls {issued:?}", issued.total());
    let (answer, replayed) = stack.cost_with("192.0.2.21", &good, Some(&proof)).await;
    assert_eq!(answer, Err(Refused::OAuth(OAuthError::InvalidDpopProof)));
    eprintln!(
        "DPoP proof replayed: {} calls {replayed:?}",
        replayed.total()
    );
    let one_more_put = Cost::expected(
        &[
            ("BatchGetItem", 1),
            ("GetItem", 1),
            ("PutItem", 2),
            ("UpdateItem", 1),
        ],
        3,
    );
    assert_eq!(issued, one_more_put);
    // The refused proof's write and the issue counter's in one round trip, then the refusal
    // charged to the address's refusal budget (it is no failed authentication) and audited.
    let refused = Cost::expected(
        &[
            ("BatchGetItem", 1),
            ("GetItem", 1),
            ("PutItem", 2),
            ("UpdateItem", 2),
        ],
        4,
    );
    assert_eq!(replayed, refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_request_makes_the_counted_dynamodb_calls_and_round_trips() {
    let stack = Stack::new().await;
    let (_, secret) = stack.admin.create_client(spec("svc", None)).await.unwrap();
    let (_, limited) = stack
        .admin
        .create_client(spec("one-a-minute", Some(1)))
        .await
        .unwrap();
    let good = secret_body("svc", secret.expose());
    let wrong = secret_body("svc", "tks_wrong");
    let unknown = secret_body("nobody", secret.expose());
    let one = secret_body("one-a-minute", limited.expose());
    let wide = format!("{good}&scope=admin");
    // The issue counter of `one-a-minute` is spent by a first token.
    let (answer, _) = stack.cost("192.0.2.10", &one).await;
    assert_eq!(answer, Ok(()));
    // 192.0.2.6 fails authentication up to its limit (2); 192.0.2.7 is refused up to its
    // budget (2), then once more: the audited cut-off.
    for _ in 0..2 {
        let (answer, _) = stack.cost("192.0.2.6", &wrong).await;
        assert_eq!(answer, Err(Refused::OAuth(OAuthError::InvalidClient)));
        let (answer, _) = stack.cost("192.0.2.7", &wide).await;
        assert!(
            matches!(answer, Err(Refused::OAuth(OAuthError::InvalidScope(_)))),
            "{answer:?}"
        );
    }
    let (answer, _) = stack.cost("192.0.2.7", &wide).await;
    assert!(
        matches!(answer, Err(Refused::RateLimited { .. })),
        "{answer:?}"
    );
    let assertion = key_client_assertion(&stack, "signer").await;

    // Every case from its own address, so that no case's failure counters meet another's.
    let cases = [
        ("success", "192.0.2.1", good.as_str(), true),
        ("wrong secret", "192.0.2.2", wrong.as_str(), false),
        ("unknown client", "192.0.2.3", unknown.as_str(), false),
        ("rate-limited", "192.0.2.4", one.as_str(), false),
        ("private_key_jwt", "192.0.2.5", assertion.as_str(), true),
        (
            "address over its failure limit",
            "192.0.2.6",
            good.as_str(),
            false,
        ),
        (
            "address past its refusal cut-off",
            "192.0.2.7",
            wide.as_str(),
            false,
        ),
    ];
    let mut costs = Vec::new();
    for (case, ip, body, issued) in cases {
        let (answer, cost) = stack.cost(ip, body).await;
        assert_eq!(answer.is_ok(), issued, "{case}: {answer:?}");
        eprintln!("{case}: {} calls {cost:?}", cost.total());
        costs.push((case, cost));
    }
    let expected = [
        (
            "success",
            Cost::expected(
                &[
                    ("BatchGetItem", 1),
                    ("GetItem", 1),
                    ("PutItem", 1),
                    ("UpdateItem", 1),
                ],
                3,
            ),
        ),
        (
            "wrong secret",
            Cost::expected(
                &[
                    ("BatchGetItem", 1),
                    ("GetItem", 1),
                    ("PutItem", 1),
                    ("UpdateItem", 3),
                ],
                5,
            ),
        ),
        (
            "unknown client",
            Cost::expected(
                &[
                    ("BatchGetItem", 1),
                    ("GetItem", 1),
                    ("PutItem", 1),
                    ("UpdateItem", 3),
                ],
                5,
            ),
        ),
        (
            // A client's own issue limit costs its address's refusal budget nothing: no
            // budget update.
            "rate-limited",
            Cost::expected(
                &[
                    ("BatchGetItem", 1),
                    ("GetItem", 1),
                    ("PutItem", 1),
                    ("UpdateItem", 1),
                ],
                3,
            ),
        ),
        (
            "private_key_jwt",
            Cost::expected(
                &[
                    ("BatchGetItem", 1),
                    ("GetItem", 1),
                    ("PutItem", 2),
                    ("UpdateItem", 1),
                ],
                4,
            ),
        ),
        (
            "address over its failure limit",
            Cost::expected(
                &[
                    ("BatchGetItem", 1),
                    ("GetItem", 1),
                    ("PutItem", 1),
                    ("UpdateItem", 1),
                ],
                3,
            ),
        ),
        (
            "address past its refusal cut-off",
            Cost::expected(&[("BatchGetItem", 1), ("GetItem", 1)], 1),
        ),
    ];
    for ((case, got), (_, want)) in costs.iter().zip(expected) {
        assert_eq!(got, &want, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_counters_are_read_in_one_call_in_the_order_asked() {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    create_resources(&sdk, &names).await.unwrap();
    let calls = Calls::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(calls.clone())
        .build();
    let limits = DynamoDbRateLimits::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        &names.rate_limits_table,
    );
    let expires = OffsetDateTime::now_utc().unix_timestamp() + 120;
    for _ in 0..3 {
        limits.increment("b", expires).await.unwrap();
    }
    limits.increment("a", expires).await.unwrap();
    calls.take();
    let keys = ["b", "absent", "a", "b"].map(str::to_owned);
    assert_eq!(limits.counts(&keys).await.unwrap(), [3, 0, 1, 3]);
    assert_eq!(calls.take(), Cost::expected(&[("BatchGetItem", 1)], 1));
    // More keys than one BatchGetItem takes (100): one call per hundred.
    let many: Vec<String> = (0..150).map(|i| format!("k{i}")).collect();
    assert_eq!(limits.counts(&many).await.unwrap(), vec![0; 150]);
    assert_eq!(calls.take(), Cost::expected(&[("BatchGetItem", 2)], 2));
}
