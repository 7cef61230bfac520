//! Abuse protection: the per-client issuance limit, failed-authentication limits per (client,
//! address) and per address, the per-address budget of refused requests, their 429 answers,
//! and exactness under concurrency. The tests of the atomic limits and of the budget run on
//! SQLite and on DynamoDB (moto, see `support/moto.rs`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use token_service::admin::{Admin, NewClient};
use token_service::audit::AuditRecord;
use token_service::clock::{Clock, ManualClock};
use token_service::config::ServiceConfig;
use token_service::http::{FrontContext, token_routes};
use token_service::issue::TokenService;
use token_service::key_cache::KeyCache;
use token_service::limits::{Window, refusals_of_source_key};
use token_service::store::rotation::KeySetSwap;
use tower::ServiceExt as _;

use crate::support::stack::{self, AUDIENCE, Stack};
use crate::support::stores::{self, Stores};

const GRANT: &str = "grant_type=client_credentials";

async fn limited_client(s: &Stack, id: &str, per_minute: u32) -> String {
    s.client_with(NewClient {
        client_id: Some(id.into()),
        name: id.into(),
        scopes: vec!["a".into()],
        audiences: vec![AUDIENCE.into()],
        rate_limit: Some(per_minute),
        ..Default::default()
    })
    .await
    .1
}

/// Moves the manual clock forward to the start of the next minute, so that a test's requests
/// share one window.
fn start_of_minute(s: &Stack) {
    let now = s.clock.now();
    let floor = now
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    s.clock.set(floor + time::Duration::minutes(1));
}

fn assert_limited(r: &stack::Reply) -> u64 {
    r.assert_error(429, "temporarily_unavailable");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    retry
}

#[tokio::test]
async fn issuance_over_the_client_limit_is_429_until_the_window_ends() {
    let s = Stack::new().await;
    start_of_minute(&s);
    let secret = limited_client(&s, "svc", 3).await;
    for _ in 0..3 {
        assert_eq!(s.basic("svc", &secret, GRANT).await.status, 200);
    }
    s.clock.advance(time::Duration::seconds(15));
    let retry = assert_limited(&s.basic("svc", &secret, GRANT).await);
    assert_eq!(retry, 45);
    let outcomes: Vec<String> = s.audit().await.into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes[0], "rate_limited");
    s.clock.advance(time::Duration::seconds(45));
    assert_eq!(s.basic("svc", &secret, GRANT).await.status, 200);
}

#[tokio::test]
async fn the_service_default_limit_applies_to_clients_without_their_own() {
    let mut config = ServiceConfig::for_tests();
    config.limits.issue_per_client = 2;
    let s = Stack::with_config(config).await;
    start_of_minute(&s);
    let (_, secret) = s.client("svc").await;
    assert_eq!(s.basic("svc", &secret, GRANT).await.status, 200);
    assert_eq!(s.basic("svc", &secret, GRANT).await.status, 200);
    assert_limited(&s.basic("svc", &secret, GRANT).await);
    // Another client has its own budget.
    let (_, other) = s.client("other").await;
    assert_eq!(s.basic("other", &other, GRANT).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_requests_never_exceed_the_limit() {
    let s = Arc::new(Stack::new().await);
    start_of_minute(&s);
    let secret = Arc::new(limited_client(&s, "svc", 10).await);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (s, secret) = (s.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            s.basic("svc", &secret, GRANT).await.status.as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 429).count(),
        54,
        "{statuses:?}"
    );
    let issued = s
        .audit()
        .await
        .into_iter()
        .filter(|r| r.outcome == "issued")
        .count();
    assert_eq!(issued, 10);
}

#[tokio::test]
async fn wrong_secrets_from_one_address_do_not_lock_out_the_client_elsewhere() {
    let mut config = ServiceConfig::for_tests();
    config.limits.fail_per_client_ip = 5;
    let s = Stack::with_config(config).await;
    start_of_minute(&s);
    let (_, secret) = s.client("svc").await;
    for _ in 0..5 {
        s.basic_from("203.0.113.9", "svc", "tks_guess", GRANT)
            .await
            .assert_error(401, "invalid_client");
    }
    // The attacker's address is now refused before any secret is checked, even the right one.
    assert_limited(&s.basic_from("203.0.113.9", "svc", "tks_guess", GRANT).await);
    assert_limited(&s.basic_from("203.0.113.9", "svc", &secret, GRANT).await);
    // The real client, calling from its own address, is unaffected.
    let r = s.basic_from("198.51.100.20", "svc", &secret, GRANT).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // And the attacker's address may still use another client id it knows the secret of.
    let (_, other) = s.client("other").await;
    assert_eq!(
        s.basic_from("203.0.113.9", "other", &other, GRANT)
            .await
            .status,
        200
    );
    // Rate-limited attempts leave audit records too.
    let records = s.audit().await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome == "rate_limited")
            .count(),
        2
    );
    assert!(
        records
            .iter()
            .filter(|r| r.outcome == "rate_limited")
            .all(|r| r.source_ip.as_deref() == Some("203.0.113.9"))
    );
    s.clock.advance(time::Duration::minutes(1));
    assert_eq!(
        s.basic_from("203.0.113.9", "svc", &secret, GRANT)
            .await
            .status,
        200,
        "the limit ends with its window"
    );
}

#[tokio::test]
async fn failures_across_client_ids_from_one_address_hit_the_address_limit() {
    let mut config = ServiceConfig::for_tests();
    config.limits.fail_per_ip = 4;
    let s = Stack::with_config(config).await;
    start_of_minute(&s);
    let (_, secret) = s.client("svc").await;
    for id in ["a", "b", "c", "d"] {
        s.basic_from("203.0.113.9", id, "x", GRANT)
            .await
            .assert_error(401, "invalid_client");
    }
    assert_limited(&s.basic_from("203.0.113.9", "e", "x", GRANT).await);
    assert_limited(&s.basic_from("203.0.113.9", "svc", &secret, GRANT).await);
    assert_eq!(
        s.basic_from("198.51.100.20", "svc", &secret, GRANT)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn requests_without_credentials_count_against_the_address() {
    let mut config = ServiceConfig::for_tests();
    config.limits.fail_per_ip = 2;
    let s = Stack::with_config(config).await;
    start_of_minute(&s);
    let send = || async {
        let request = Request::post("/oauth/token")
            .header("content-type", stack::FORM)
            .extension(FrontContext {
                request_id: None,
                source_ip: Some("203.0.113.9".into()),
            })
            .body(Body::from(GRANT))
            .unwrap();
        s.send(request).await
    };
    send().await.assert_error(401, "invalid_client");
    send().await.assert_error(401, "invalid_client");
    assert_limited(&send().await);
    let unidentified = s
        .audit()
        .await
        .into_iter()
        .filter(|r| r.client_id == "-" && r.action.is_none())
        .count();
    assert_eq!(unidentified, 3, "each request leaves one record");
}

/// The token route over one backend's stores, with a manual clock at the start of a minute and
/// two clients, `svc` and `neighbour` (their secrets kept).
struct Backend {
    stores: Stores,
    clock: Arc<ManualClock>,
    router: Router,
    secret: String,
    neighbour_secret: String,
}

impl Backend {
    async fn new(stores: Stores, config: ServiceConfig) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let minute = now
            .replace_second(0)
            .unwrap()
            .replace_nanosecond(0)
            .unwrap();
        let clock = Arc::new(ManualClock::new(minute + time::Duration::minutes(1)));
        let shared: Arc<dyn Clock> = clock.clone();
        let config = Arc::new(config);
        let admin = Admin {
            clients: stores.clients.clone(),
            audit: stores.audit.clone(),
            rotation: Arc::new(KeySetSwap::new(
                stores.keys.clone(),
                config.signing_alg,
                config.schedule,
                shared.clone(),
            )),
            public_keys: stores.public_keys.clone(),
            config: config.clone(),
            clock: shared.clone(),
            actor: "abuse-test".into(),
        };
        // The first key as each backend makes it (the protocol on Secrets Manager, which
        // refuses any other writer).
        stores.rotate_keys(config.schedule, shared.clone()).await;
        let (_, secret) = admin
            .create_client(NewClient {
                client_id: Some("svc".into()),
                name: "svc".into(),
                scopes: vec!["a".into()],
                audiences: vec![AUDIENCE.into()],
                ..Default::default()
            })
            .await
            .expect("create client");
        let (_, neighbour_secret) = admin
            .create_client(NewClient {
                client_id: Some("neighbour".into()),
                name: "neighbour".into(),
                scopes: vec!["a".into()],
                audiences: vec![AUDIENCE.into()],
                ..Default::default()
            })
            .await
            .expect("create client");
        let (schedule, ttl, stale) = (config.schedule, config.key_cache, config.key_max_stale);
        let keys = KeyCache::new(stores.keys.clone(), shared.clone(), schedule, ttl, stale);
        let service = TokenService::new(
            config,
            stores.clients.clone(),
            stores.audit.clone(),
            stores.limits.clone(),
            keys,
            shared,
        );
        Self {
            router: token_routes(Arc::new(service)),
            stores,
            clock,
            secret: secret.expose().to_owned(),
            neighbour_secret: neighbour_secret.expose().to_owned(),
        }
    }

    /// Sends `request` from `ip`; the status and whether the body is an OAuth error.
    async fn send(&self, ip: &str, mut request: Request<Body>) -> u16 {
        request.extensions_mut().insert(FrontContext {
            request_id: None,
            source_ip: Some(ip.to_owned()),
        });
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        if status >= 400 {
            assert!(json["error"].is_string(), "{status}: {json}");
        }
        status
    }

    async fn basic(&self, ip: &str, id: &str, secret: &str) -> u16 {
        let request = Request::post("/oauth/token")
            .header("content-type", stack::FORM)
            .header("authorization", stack::basic_header(id, secret))
            .body(Body::from(GRANT))
            .unwrap();
        self.send(ip, request).await
    }

    /// The `i`-th of a few kinds of bad requests, each refused with its own 4xx: a wrong
    /// content type (400), no credentials (401), a GET (405), a body over 8 KiB (413).
    async fn malformed(&self, ip: &str, i: usize) -> u16 {
        let post = || Request::post("/oauth/token");
        let request = match i % 4 {
            0 => post()
                .header("content-type", "text/plain")
                .body(GRANT.into()),
            1 => post()
                .header("content-type", stack::FORM)
                .body("grant_type=password".into()),
            2 => Request::get("/oauth/token").body(Body::empty()),
            _ => post()
                .header("content-type", stack::FORM)
                .body(vec![b'a'; 9000].into()),
        };
        self.send(ip, request.unwrap()).await
    }

    async fn records_from(&self, ip: &str) -> Vec<AuditRecord> {
        let all = self.stores.audit.query(&Default::default()).await.unwrap();
        all.into_iter()
            .filter(|r| r.source_ip.as_deref() == Some(ip))
            .collect()
    }

    async fn refusals_counted(&self, ip: &str) -> u64 {
        let window = Window::at(self.clock.now());
        let key = refusals_of_source_key(ip, window);
        self.stores.limits.count(&key).await.unwrap()
    }
}

fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|&&c| c == code).count()
}

/// Concurrent wrong secrets for one client from one address ([`Stores::racers`] of them):
/// exactly the failure limit of them get 401, the rest 429, and every one is audited.
async fn concurrent_wrong_secrets_get_at_most_the_limit_of_401s(stores: Stores) {
    let n = stores.racers;
    let limit = ServiceConfig::for_tests().limits.fail_per_client_ip as usize;
    let b = Arc::new(Backend::new(stores, ServiceConfig::for_tests()).await);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                b.basic("203.0.113.9", "svc", &format!("tks_guess_{i}"))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(count(&statuses, 401) <= limit, "{statuses:?}");
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (limit, n - limit),
        "{statuses:?}"
    );
    // All refusals are within the address's budget (100): each one is audited.
    assert_eq!(b.records_from("203.0.113.9").await.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_secrets_get_at_most_the_limit_of_401s_on_sqlite() {
    concurrent_wrong_secrets_get_at_most_the_limit_of_401s(stores::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_secrets_get_at_most_the_limit_of_401s_on_dynamodb() {
    concurrent_wrong_secrets_get_at_most_the_limit_of_401s(stores::aws_alone().await).await;
}

/// A client running past its own issue limit is answered 429 each time, but those 429s cost
/// its address nothing: another client behind the same address (a NAT, one /64) is still
/// served. Failure-limit 429s and unauthenticated requests do count (the flood tests).
async fn a_busy_clients_own_issue_limit_costs_its_neighbours_nothing(stores: Stores) {
    const NAT: &str = "198.51.100.77";
    let mut config = budget_of(5);
    config.limits.issue_per_client = 1;
    let b = Backend::new(stores, config).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(b.basic(NAT, "svc", &b.secret).await);
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses[1..].iter().all(|&c| c == 429), "{statuses:?}");
    assert_eq!(b.refusals_counted(NAT).await, 0, "no refusal charged");
    assert_eq!(b.basic(NAT, "neighbour", &b.neighbour_secret).await, 200);
    let limited = b
        .records_from(NAT)
        .await
        .into_iter()
        .filter(|r| r.outcome == "rate_limited")
        .count();
    assert_eq!(limited, 11, "each issue-limit 429 is still audited");
}

#[tokio::test]
async fn a_busy_clients_own_issue_limit_costs_its_neighbours_nothing_on_sqlite() {
    a_busy_clients_own_issue_limit_costs_its_neighbours_nothing(stores::sqlite().await).await;
}

#[tokio::test]
async fn a_busy_clients_own_issue_limit_costs_its_neighbours_nothing_on_dynamodb() {
    a_busy_clients_own_issue_limit_costs_its_neighbours_nothing(stores::aws().await).await;
}

fn budget_of(n: u32) -> ServiceConfig {
    let mut config = ServiceConfig::for_tests();
    config.limits.refusal_budget = n;
    config
}

/// A flood of malformed requests from one address: the first `budget` get their own 4xx and
/// are audited; the next gets 429 and is audited as the cut-off; every later one gets 429 and
/// costs neither an audit record nor a counter write. Other addresses are unaffected, and the
/// address is served again in the next window.
async fn a_flood_of_bad_requests_is_cut_off_with_one_audit_record(stores: Stores) {
    const FLOOD: &str = "203.0.113.66";
    let b = Backend::new(stores, budget_of(5)).await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(b.malformed(FLOOD, i).await);
    }
    assert_eq!(statuses[..5], [400, 401, 405, 413, 400], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&c| c == 429), "{statuses:?}");
    // Even the right secret is refused at that address for the rest of the window.
    assert_eq!(b.basic(FLOOD, "svc", &b.secret).await, 429);
    let records = b.records_from(FLOOD).await;
    // One instant on the manual clock: the records' order is the request ids', so compare
    // them sorted.
    let mut outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "invalid_client",
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "rate_limited"
        ],
        "five refusals and the cut-off, nothing after it"
    );
    assert_eq!(
        b.refusals_counted(FLOOD).await,
        6,
        "no counter write per request past the cut-off"
    );
    assert_eq!(b.basic("198.51.100.20", "svc", &b.secret).await, 200);
    b.clock.advance(time::Duration::minutes(1));
    assert_eq!(b.basic(FLOOD, "svc", &b.secret).await, 200, "a new window");
}

#[tokio::test]
async fn a_flood_of_bad_requests_is_cut_off_with_one_audit_record_on_sqlite() {
    a_flood_of_bad_requests_is_cut_off_with_one_audit_record(stores::sqlite().await).await;
}

#[tokio::test]
async fn a_flood_of_bad_requests_is_cut_off_with_one_audit_record_on_dynamodb() {
    a_flood_of_bad_requests_is_cut_off_with_one_audit_record(stores::aws().await).await;
}

/// Many malformed requests at once ([`Stores::racers`]) against a budget of 10: exactly 10
/// get their own 400, the rest 429, and exactly one of the 429s is audited.
async fn a_parallel_flood_gets_exactly_the_budget_and_one_cut_off_record(stores: Stores) {
    let n = stores.racers;
    let b = Arc::new(Backend::new(stores, budget_of(10)).await);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let b = b.clone();
            // Addresses of one /64 share one budget.
            let ip = format!("2001:db8:7:7::{:x}", i + 1);
            tokio::spawn(async move { b.malformed(&ip, 0).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        (count(&statuses, 400), count(&statuses, 429)),
        (10, n - 10),
        "{statuses:?}"
    );
    let all = b.stores.audit.query(&Default::default()).await.unwrap();
    let outcomes = |o: &str| {
        all.iter()
            .filter(|r| r.action.is_none() && r.outcome == o)
            .count()
    };
    assert_eq!(
        (outcomes("invalid_request"), outcomes("rate_limited")),
        (10, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_flood_gets_exactly_the_budget_and_one_cut_off_record_on_sqlite() {
    a_parallel_flood_gets_exactly_the_budget_and_one_cut_off_record(stores::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_flood_gets_exactly_the_budget_and_one_cut_off_record_on_dynamodb() {
    a_parallel_flood_gets_exactly_the_budget_and_one_cut_off_record(stores::aws_alone().await)
        .await;
}
