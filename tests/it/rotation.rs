//! Key rotation over time on the embedded shape, with an injected clock: tokens are issued
//! continuously while keys rotate, and resource servers that refresh the JWKS only every
//! `max-age` seconds never meet an unknown `kid`, while no key outlives the tokens it signed.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};
use token_service::clock::Clock as _;

use crate::support::stack::{AUDIENCE, Stack, verify};

const GRANT: &str = "grant_type=client_credentials";
const ISSUER: &str = "https://issuer.test";

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn continuous_issuance_across_rotations_never_meets_an_unknown_kid() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let admin = s.admin();
    let config = s.embedded.config.clone();
    let max_age = Duration::seconds(config.jwks_max_age as i64);
    let rotate_every = Duration::hours(5);
    let step = Duration::minutes(2);
    let start = s.clock.now();

    // A resource server that refetches the JWKS only once its max-age has passed.
    let mut cached = s.jwks().await;
    let mut fetched_at = start;
    // Every token issued, by kid: (token, exp).
    let mut issued: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    let mut rotations = 0;

    while s.clock.now() < start + Duration::hours(26) {
        let now = s.clock.now();
        if admin.rotate_if_due(rotate_every).await.unwrap() {
            rotations += 1;
        }
        if now - fetched_at >= max_age {
            cached = s.jwks().await;
            fetched_at = now;
        }
        let r = s.basic("svc", &secret, GRANT).await;
        assert_eq!(r.status, 200, "at {now}: {}", r.text);
        let token = r.json["access_token"].as_str().unwrap().to_owned();
        let claims = verify(&token, &cached, ISSUER, AUDIENCE)
            .unwrap_or_else(|e| panic!("at {now}, with a JWKS fetched at {fetched_at}: {e}"));
        issued
            .entry(kid_of(&token))
            .or_default()
            .push((token, claims.exp));

        // No key leaves the JWKS while a token it signed is still valid, and once it has left,
        // its tokens no longer verify.
        let published = s.jwks().await;
        for (kid, tokens) in &issued {
            if published.find(kid).is_none() {
                for (token, exp) in tokens {
                    assert!(
                        *exp <= now.unix_timestamp(),
                        "key {kid} unpublished at {now} while a token it signed is valid"
                    );
                    assert!(verify(token, &published, ISSUER, AUDIENCE).is_err());
                }
            }
        }
        s.clock.advance(step);
    }
    assert!(rotations >= 5, "rotated {rotations} times");
    assert!(issued.len() >= 5, "{} keys signed", issued.len());
    let keys = s.jwks().await.keys.len();
    assert!(keys <= 3, "{keys} keys published: retired keys are dropped");
}

#[tokio::test]
async fn rotation_is_due_only_after_the_interval() {
    let s = Stack::new().await;
    let admin = s.admin();
    assert!(!admin.rotate_if_due(Duration::days(30)).await.unwrap());
    s.clock.advance(Duration::days(30) - Duration::seconds(1));
    assert!(!admin.rotate_if_due(Duration::days(30)).await.unwrap());
    s.clock.advance(Duration::seconds(1));
    assert!(admin.rotate_if_due(Duration::days(30)).await.unwrap());
    assert!(!admin.rotate_if_due(Duration::days(30)).await.unwrap());
    let started: OffsetDateTime = s.clock.now();
    assert_eq!(admin.key_status().await.unwrap().len(), 2, "at {started}");
}
