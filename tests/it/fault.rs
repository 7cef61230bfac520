//! Bounded dependency calls: the token and jwks routes of the AWS shape over DynamoDB and
//! Secrets Manager on moto, with a proxy between the SDK and moto that stalls, drops or fails
//! (`500`) the requests of one service.
//!
//! Under every fault a request gets `503` with `Retry-After` and `temporarily_unavailable`
//! within the stated bound ([`TOKEN_DEPENDENCY_BOUND`], [`JWKS_DEPENDENCY_BOUND`]; checked with
//! a wide margin, as a guarantee, not a speed), no token, and nothing half-done, checked in the
//! emulator's tables:
//! - DynamoDB failing: the audit and rate-limit tables hold exactly what they held before;
//! - Secrets Manager failing: exactly one new audit record, the request's own, with outcome
//!   `temporarily_unavailable` and no `jti`, and exactly one changed counter, the client's
//!   issue counter (the attempt is counted: the limit is checked before the key is needed);
//! - always: every delivered token has its `issued` record with the token's `jti`.
//!
//! Once the fault clears, the same router serves tokens again by itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use serde_json::Value;
use token_service::admin::NewClient;
use token_service::audit::AuditQuery;
use token_service::clients::Client;
use token_service::clock::{Clock, ManualClock, SystemClock};
use token_service::config::ServiceConfig;
use token_service::http::{FrontContext, discovery_routes, token_routes};
use token_service::issue::{DECISION_DEADLINE, TokenService};
use token_service::key_cache::KeyCache;
use token_service::shapes::aws::{AwsShape, JWKS_DEPENDENCY_BOUND, TOKEN_DEPENDENCY_BOUND};
use token_service::shapes::embedded::Embedded;
use token_service::store::aws::{AwsResources, create_resources};
use token_service::store::{AuditLog, ClientReader, StoreError};
use tower::ServiceExt as _;

use crate::support::fault_proxy::{Fault, FaultProxy, Service};
use crate::support::moto;
use crate::support::stores::{random_resources, rotate_keys_on};

const AUDIENCE: &str = "https://api.example.com";
const SOURCE_IP: &str = "198.51.100.23";
/// Room for a loaded machine on top of a bound: the check is that the bound holds at all.
const MARGIN: Duration = Duration::from_secs(3);
/// When a test stops waiting for an answer, rather than hang like an unbounded call would.
const GIVE_UP: Duration = Duration::from_secs(20);
const FAULTS: [Fault; 3] = [Fault::Stall, Fault::Drop, Fault::Http500];

/// One AWS shape whose SDK clients reach moto through a fault proxy, with a signing key and a
/// client, and a direct (unproxied) DynamoDB client to inspect the emulator's state.
struct Harness {
    proxy: FaultProxy,
    shape: AwsShape,
    names: AwsResources,
    direct: aws_sdk_dynamodb::Client,
    client_id: String,
    secret: String,
}

async fn harness(clock: Arc<dyn Clock>) -> Harness {
    let proxy = FaultProxy::start(moto::endpoint()).await;
    let names = random_resources();
    let direct_sdk = moto::sdk_config().await;
    create_resources(&direct_sdk, &names)
        .await
        .expect("create the tables and the secret");
    let shape = AwsShape::new(
        &moto::sdk_config_at(proxy.url()).await,
        names.clone(),
        ServiceConfig::for_tests(),
        clock.clone(),
    );
    rotate_keys_on(&direct_sdk, &names, clock.clone()).await;
    let admin = shape.admin("fault-test");
    let (client, secret) = admin
        .create_client(NewClient {
            name: "Fault test".to_owned(),
            scopes: vec!["api.read".to_owned()],
            audiences: vec![AUDIENCE.to_owned()],
            ..Default::default()
        })
        .await
        .expect("create client");
    Harness {
        proxy,
        shape,
        names,
        direct: aws_sdk_dynamodb::Client::new(&direct_sdk),
        client_id: client.client_id,
        secret: secret.expose().to_owned(),
    }
}

/// An answer and how long it took.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    elapsed: Duration,
}

async fn call(router: &Router, request: Request<Body>) -> Answer {
    let start = Instant::now();
    let response = tokio::time::timeout(GIVE_UP, router.clone().oneshot(request))
        .await
        .unwrap_or_else(|_| panic!("no answer within {GIVE_UP:?}: a dependency call is unbounded"))
        .expect("infallible");
    let elapsed = start.elapsed();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).expect("JSON body"),
        elapsed,
    }
}

fn form(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl Harness {
    /// The token function's routes over this shape, with a key cache of their own (cold).
    fn token_router(&self) -> Router {
        token_routes(self.shape.token_service())
    }

    fn token_request(&self, request_id: &str) -> Request<Body> {
        let basic = format!("{}:{}", form(&self.client_id), form(&self.secret));
        let mut request = Request::post("/oauth/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(basic)
                ),
            )
            .body(Body::from("grant_type=client_credentials"))
            .expect("request");
        request.extensions_mut().insert(FrontContext {
            request_id: Some(request_id.to_owned()),
            source_ip: Some(SOURCE_IP.to_owned()),
        });
        request
    }

    async fn jwks(&self) -> Answer {
        let router = discovery_routes(self.shape.discovery());
        let request = Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .expect("request");
        call(&router, request).await
    }

    /// Every audit item in the emulator: request id -> (outcome, jti).
    async fn audit(&self) -> BTreeMap<String, (String, Option<String>)> {
        let items = self.scan(&self.names.audit_table).await;
        items
            .into_iter()
            .map(|item| {
                let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                // The sort key `<time>#<request id>` is the item's only copy of the id.
                let sk = s("sk").expect("sk");
                let (_, request_id) = sk.split_once('#').expect("<time>#<request id>");
                // An issued token's item has no `outcome`: absent means issued.
                let outcome = s("outcome").unwrap_or_else(|| "issued".to_owned());
                (request_id.to_owned(), (outcome, s("jti")))
            })
            .collect()
    }

    /// Every rate-limit counter in the emulator: key -> count.
    async fn counters(&self) -> BTreeMap<String, u64> {
        let items = self.scan(&self.names.rate_limits_table).await;
        items
            .into_iter()
            .map(|item| {
                let key = item["key"].as_s().expect("key").clone();
                let count = item["count"]
                    .as_n()
                    .expect("count")
                    .parse()
                    .expect("number");
                (key, count)
            })
            .collect()
    }

    async fn scan(
        &self,
        table: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self
            .direct
            .scan()
            .table_name(table)
            .consistent_read(true)
            .send()
            .await
            .expect("scan the emulator directly");
        assert!(
            out.last_evaluated_key().is_none(),
            "one page holds them all"
        );
        out.items().to_vec()
    }

    /// A token from `router`, verified against the JWKS the jwks routes serve.
    async fn assert_serves_tokens(&self, router: &Router, request_id: &str) -> String {
        let answer = call(router, self.token_request(request_id)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let token = answer.body["access_token"].as_str().expect("a token");
        let jwks = self.jwks().await;
        assert_eq!(jwks.status, StatusCode::OK, "{}", jwks.body);
        let claims = verify(
            token,
            &serde_json::from_value(jwks.body).expect("a JWK set"),
        );
        assert_eq!(claims["client_id"], self.client_id.as_str());
        let jti = claims["jti"].as_str().expect("jti").to_owned();
        let audit = self.audit().await;
        assert_eq!(
            audit.get(request_id),
            Some(&("issued".to_owned(), Some(jti.clone()))),
            "the delivered token is audited"
        );
        jti
    }
}

fn verify(token: &str, keys: &JwkSet) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("JWT header");
    let jwk = keys
        .find(header.kid.as_deref().expect("kid"))
        .expect("the token's kid is in the JWKS");
    // The algorithm the JWKS publishes for the key, never the header's choice.
    let alg = jwk.common.key_algorithm.expect("the JWK names its alg");
    let mut validation = Validation::new(alg.to_string().parse().expect("a JWS algorithm"));
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&["https://issuer.test"]);
    let key = DecodingKey::from_jwk(jwk).expect("RSA JWK");
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("the token verifies against the JWKS")
        .claims
}

/// `503`, `Retry-After`, `temporarily_unavailable`, no token, within `bound` (plus margin).
fn assert_unavailable(answer: &Answer, bound: Duration, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        answer.body
    );
    let retry_after = answer
        .headers
        .get(header::RETRY_AFTER)
        .expect("Retry-After");
    let seconds: u64 = retry_after
        .to_str()
        .unwrap()
        .parse()
        .expect("delay-seconds");
    assert!(seconds > 0, "{what}: Retry-After {seconds}");
    assert_eq!(answer.body["error"], "temporarily_unavailable", "{what}");
    assert!(
        answer.body.get("access_token").is_none(),
        "{what}: no token"
    );
    assert!(
        answer.elapsed < bound + MARGIN,
        "{what}: answered after {:?}, bound {bound:?}",
        answer.elapsed
    );
    // The figure the bound is documented with (docs/aws.md, "Bounded dependency calls").
    eprintln!("{what}: 503 after {} ms", answer.elapsed.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_path_answers_503_in_time_while_dynamodb_fails_and_recovers_by_itself() {
    let h = harness(Arc::new(SystemClock)).await;
    let router = h.token_router();
    h.assert_serves_tokens(&router, "before-faults").await;
    for fault in FAULTS {
        let counters = h.counters().await;
        let audit = h.audit().await;
        let faulted = h.proxy.faulted();
        h.proxy.set(Service::DynamoDb, fault);

        let request_id = format!("dynamodb-{fault:?}");
        let answer = call(&router, h.token_request(&request_id)).await;
        assert_unavailable(
            &answer,
            TOKEN_DEPENDENCY_BOUND,
            &format!("token, DynamoDB {fault:?}"),
        );
        assert!(h.proxy.faulted() > faulted, "the fault was met");

        h.proxy.clear();
        // Nothing half-done: no counter and no audit record was written while DynamoDB was
        // unreachable, so the emulator holds exactly what it held before.
        assert_eq!(h.counters().await, counters, "{fault:?}: counters");
        assert_eq!(h.audit().await, audit, "{fault:?}: audit trail");
        h.assert_serves_tokens(&router, &format!("after-dynamodb-{fault:?}"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_path_with_a_cold_key_cache_answers_503_while_secrets_manager_fails() {
    let h = harness(Arc::new(SystemClock)).await;
    for fault in FAULTS {
        // A fresh token service: its key cache is cold, as in a new execution environment.
        let router = h.token_router();
        let before = h.counters().await;
        let mut audit = h.audit().await;
        let faulted = h.proxy.faulted();
        h.proxy.set(Service::SecretsManager, fault);

        let request_id = format!("secrets-{fault:?}");
        let answer = call(&router, h.token_request(&request_id)).await;
        assert_unavailable(
            &answer,
            TOKEN_DEPENDENCY_BOUND,
            &format!("token, cold key cache, Secrets Manager {fault:?}"),
        );
        assert!(h.proxy.faulted() > faulted, "the fault was met");
        h.proxy.clear();

        // DynamoDB worked: the refusal is audited as such, with no jti, and the only counter
        // written is the issue counter of the attempt.
        audit.insert(request_id, ("temporarily_unavailable".to_owned(), None));
        assert_eq!(
            h.audit().await,
            audit,
            "{fault:?}: the 503 alone is audited"
        );
        let after = h.counters().await;
        let changed: Vec<_> = after
            .iter()
            .filter(|(key, count)| before.get(*key) != Some(count))
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(changed.len(), 1, "{fault:?}: {changed:?}");
        assert!(changed[0].starts_with("issue#"), "{fault:?}: {changed:?}");

        h.assert_serves_tokens(&router, &format!("after-secrets-{fault:?}"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_key_cache_keeps_signing_while_secrets_manager_stalls() {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let h = harness(clock.clone()).await;
    let router = h.token_router();
    h.assert_serves_tokens(&router, "warm-up").await;

    // Past the cache lifetime, within the staleness bound: the refresh runs in the
    // background, meets the stall, and the cached set keeps signing meanwhile.
    let config = ServiceConfig::for_tests();
    clock.advance(time::Duration::try_from(config.key_cache).unwrap() + time::Duration::SECOND);
    h.proxy.set(Service::SecretsManager, Fault::Stall);
    h.assert_serves_tokens(&router, "stale-cache").await;
    for _ in 0..50 {
        if h.proxy.faulted() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        h.proxy.faulted() > 0,
        "the background refresh met the stall"
    );

    // Past the staleness bound the cached set may be outdated: refuse, in time.
    clock.advance(time::Duration::try_from(config.key_max_stale).unwrap());
    let answer = call(&router, h.token_request("too-stale")).await;
    assert_unavailable(
        &answer,
        TOKEN_DEPENDENCY_BOUND,
        "token, key cache past its staleness bound, Secrets Manager Stall",
    );
    assert_eq!(
        h.audit().await.get("too-stale"),
        Some(&("temporarily_unavailable".to_owned(), None))
    );

    h.proxy.clear();
    h.assert_serves_tokens(&router, "after-stale").await;
}

/// A jwks function that has read no keys yet (a cold start during the outage) has nothing to
/// serve: 503 in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_path_answers_503_in_time_while_dynamodb_fails_and_recovers_by_itself() {
    let h = harness(Arc::new(SystemClock)).await;
    let keys = h.jwks().await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.body);
    for fault in FAULTS {
        let faulted = h.proxy.faulted();
        h.proxy.set(Service::DynamoDb, fault);
        let answer = h.jwks().await;
        assert_unavailable(
            &answer,
            JWKS_DEPENDENCY_BOUND,
            &format!("jwks, DynamoDB {fault:?}"),
        );
        assert!(h.proxy.faulted() > faulted, "the fault was met");
        h.proxy.clear();
        let again = h.jwks().await;
        assert_eq!(again.status, StatusCode::OK, "{fault:?}: {}", again.body);
        assert_eq!(again.body, keys.body, "{fault:?}: the same key set");
    }
}

/// The jwks function keeps the public keys it last read: while DynamoDB fails it serves them,
/// with the same cache headers, for at most `TOKEN_JWKS_MAX_STALE`, and only then answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_serves_the_keys_last_read_while_dynamodb_fails_for_a_bounded_time() {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let h = harness(clock.clone()).await;
    // One router for the whole test, as one warm jwks function serves many requests.
    let router = discovery_routes(h.shape.discovery());
    let get = || {
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .expect("request")
    };
    let fresh = call(&router, get()).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    let max_stale = ServiceConfig::for_tests().jwks_max_stale;
    for fault in FAULTS {
        let faulted = h.proxy.faulted();
        h.proxy.set(Service::DynamoDb, fault);
        clock.advance(max_stale);
        let stale = call(&router, get()).await;
        assert!(h.proxy.faulted() > faulted, "{fault:?}: the fault was met");
        assert_eq!(stale.status, StatusCode::OK, "{fault:?}: {}", stale.body);
        assert_eq!(stale.body, fresh.body, "{fault:?}: the keys last read");
        assert_eq!(
            stale.headers.get(header::CACHE_CONTROL),
            fresh.headers.get(header::CACHE_CONTROL),
            "{fault:?}: the same cache headers"
        );
        clock.advance(time::Duration::seconds(1));
        let expired = call(&router, get()).await;
        assert_unavailable(
            &expired,
            JWKS_DEPENDENCY_BOUND,
            &format!("jwks past its staleness bound, DynamoDB {fault:?}"),
        );
        h.proxy.clear();
        let again = call(&router, get()).await;
        assert_eq!(again.status, StatusCode::OK, "{fault:?}: {}", again.body);
        assert_eq!(again.body, fresh.body, "{fault:?}: the same key set");
    }
}

/// A client store that never answers, as a dependency stalled beyond every SDK timeout would.
struct Hanging;

#[async_trait]
impl ClientReader for Hanging {
    async fn get_client(&self, _: &str) -> Result<Option<Client>, StoreError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_request_not_decided_by_the_deadline_is_refused_and_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = ServiceConfig::for_tests();
    let embedded = Embedded::open(
        dir.path().join("deadline.db"),
        config.clone(),
        clock.clone(),
    )
    .expect("open store");
    embedded
        .admin("test")
        .ensure_signing_key()
        .await
        .expect("signing key");
    let store = embedded.store.clone();
    let service = Arc::new(TokenService::new(
        Arc::new(config.clone()),
        Arc::new(Hanging),
        store.clone(),
        store.clone(),
        KeyCache::new(
            store.clone(),
            clock.clone(),
            config.schedule,
            config.key_cache,
            config.key_max_stale,
        ),
        clock,
    ));
    let request = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "grant_type=client_credentials&client_id=hanging-client&client_secret=x",
        ))
        .expect("request");
    let answer = call(&token_routes(service), request).await;
    assert_unavailable(&answer, DECISION_DEADLINE, "token, client store hanging");

    let records = store
        .query(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit query");
    let outcomes: Vec<_> = records
        .iter()
        .filter(|r| r.actor.is_none()) // leaves out the key creation above
        .map(|r| (r.client_id.as_str(), r.outcome.as_str(), r.jti.is_some()))
        .collect();
    assert_eq!(
        outcomes,
        [("hanging-client", "temporarily_unavailable", false)],
        "the refusal is audited under the client id it named"
    );
}

#[test]
fn the_template_timeouts_leave_room_for_the_bounds() {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml");
    // Block (`Timeout: 10`) and flow (`{..., TimeoutInMillis: 10000}`) mappings alike.
    let values = |key: &str| -> Vec<Duration> {
        let pattern = regex::Regex::new(&format!(r"(?:^|[\s{{,]){key}\s*(\d+)")).unwrap();
        template
            .lines()
            .flat_map(|line| {
                pattern
                    .captures_iter(line)
                    .map(|c| c[1].parse::<u64>().unwrap())
            })
            .collect::<Vec<u64>>()
            .into_iter()
            .map(|n| match key {
                "TimeoutInMillis:" => Duration::from_millis(n),
                _ => Duration::from_secs(n),
            })
            .collect()
    };
    let integration = values("TimeoutInMillis:");
    let functions = values("Timeout:");
    assert!(
        integration.len() >= 3 && !functions.is_empty(),
        "timeouts found: {integration:?} {functions:?}"
    );
    for timeout in integration.iter().chain(&functions) {
        // "Well below": the bound is at most half of every timeout in front of it.
        assert!(
            2 * TOKEN_DEPENDENCY_BOUND <= *timeout && JWKS_DEPENDENCY_BOUND < *timeout,
            "{timeout:?} leaves no room for {TOKEN_DEPENDENCY_BOUND:?}"
        );
    }
}
