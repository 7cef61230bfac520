//! Abuse protection on the embedded shape: the per-client issuance limit, failed-authentication
//! limits per (client, address) and per address, their 429 answers, and exactness under
//! concurrency.

mod common;

use std::sync::Arc;

use common::{AUDIENCE, Stack};
use token_service::admin::NewClient;
use token_service::config::ServiceConfig;

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
    let now = token_service::clock::Clock::now(s.clock.as_ref());
    let floor = now
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    s.clock.set(floor + time::Duration::minutes(1));
}

fn assert_limited(r: &common::Reply) -> u64 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_wrong_secrets_get_at_most_the_limit_of_401s() {
    let s = Arc::new(Stack::new().await);
    start_of_minute(&s);
    s.client("svc").await;
    let limit = ServiceConfig::for_tests().limits.fail_per_client_ip as usize;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let guess = format!("tks_guess_{i}");
            s.basic_from("203.0.113.9", "svc", &guess, GRANT)
                .await
                .status
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let count = |code: u16| statuses.iter().filter(|&&c| c == code).count();
    assert_eq!(
        (count(401), count(429)),
        (limit, 64 - limit),
        "{statuses:?}"
    );
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
        let request = axum::http::Request::post("/oauth/token")
            .header("content-type", common::FORM)
            .extension(token_service::http::RequestContext {
                request_id: None,
                source_ip: Some("203.0.113.9".into()),
            })
            .body(axum::body::Body::from(GRANT))
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
