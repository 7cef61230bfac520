//! Key rotation over simulated days on both backends: tokens are issued continuously while keys
//! rotate (SQLite: `tokenctl keys rotate`'s path; AWS: the Secrets Manager rotation protocol),
//! and a resource server that refreshes its JWKS only every `max-age` seconds never meets an
//! unknown `kid`, and never accepts a token signed by a key past its retirement.

use std::collections::HashMap;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use token_service::admin::Admin;
use token_service::clock::{Clock as _, ManualClock};
use token_service::config::ServiceConfig;
use token_service::encoding::random_b64url;
use token_service::issue::RequestContext;
use token_service::oauth::request::RawRequest;
use token_service::store::aws::protocol::{RotationProtocol, Step};

use crate::support::resource_server::{check, published};
use crate::support::stores::{Stores, svc_client};

async fn rotate(s: &Stores, admin: &Admin, config: &ServiceConfig, clock: Arc<ManualClock>) {
    match &s.versions {
        None => {
            admin.rotate_keys().await.unwrap();
        }
        Some(versions) => {
            let rotation = RotationProtocol {
                secret: versions.clone(),
                public_keys: s.public_keys.clone(),
                schedule: config.schedule,
                alg: config.signing_alg,
                clock,
            };
            let token = random_b64url(24);
            for step in [
                Step::CreateSecret,
                Step::SetSecret,
                Step::TestSecret,
                Step::FinishSecret,
            ] {
                rotation.run(step, &token).await.unwrap();
            }
        }
    }
}

async fn simulate(s: &Stores) {
    let mut config = ServiceConfig::for_tests();
    config.limits.issue_per_client = 1_000;
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let admin = s.admin(&config, clock.clone(), "simulation");
    // The first key comes from the first rotation, as after a deployment.
    rotate(s, &admin, &config, clock.clone()).await;
    let auth = svc_client(&admin).await;
    let service = s.token_service(&config, clock.clone());
    let max_age = Duration::seconds(config.jwks_max_age as i64);
    let start = clock.now();
    let mut cached = published(s, &config, start).await;
    let mut fetched_at = start;
    let mut next_rotation = start + Duration::hours(4);
    let mut tokens: HashMap<String, Vec<String>> = HashMap::new();
    let mut rotations = 1;
    while clock.now() < start + Duration::hours(22) {
        let now = clock.now();
        if now >= next_rotation {
            rotate(s, &admin, &config, clock.clone()).await;
            rotations += 1;
            next_rotation += Duration::hours(4);
        }
        if now - fetched_at >= max_age {
            cached = published(s, &config, now).await;
            fetched_at = now;
        }
        let raw = RawRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: Some(&auth),
            query: None,
            body: b"grant_type=client_credentials",
            dpop: None,
        };
        let issued = service
            .handle(raw, &RequestContext::default())
            .await
            .unwrap_or_else(|e| panic!("at {now}: {e}"));
        check(&cached, &issued.access_token, now)
            .unwrap_or_else(|e| panic!("at {now}, JWKS cached since {fetched_at}: {e}"));
        let kid = jsonwebtoken::decode_header(&issued.access_token)
            .unwrap()
            .kid
            .unwrap();
        tokens.entry(kid).or_default().push(issued.access_token);

        // Against the JWKS of this moment: every unexpired token verifies (its key is still
        // published), and every expired one is refused.
        let current = published(s, &config, now).await;
        for (kid, list) in &tokens {
            for token in list.iter().rev().take(4) {
                let exp = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
                    .unwrap()
                    .claims["exp"]
                    .as_i64()
                    .unwrap();
                let verdict = check(&current, token, now);
                if exp > now.unix_timestamp() {
                    verdict.unwrap_or_else(|e| {
                        panic!("unexpired token of {kid} refused at {now}: {e}")
                    });
                } else {
                    assert!(verdict.is_err(), "expired token of {kid} accepted at {now}");
                }
            }
        }
        clock.advance(Duration::minutes(5));
    }
    assert!(rotations >= 5, "rotated {rotations} times");
    assert!(tokens.len() >= 5, "{} keys signed", tokens.len());
    assert!(published(s, &config, clock.now()).await.keys.len() <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rotation_simulation() {
    simulate(&crate::support::stores::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_rotation_simulation() {
    simulate(&crate::support::stores::aws().await).await;
}
