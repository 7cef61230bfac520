//! A change of `TOKEN_SIGNING_ALG` (RS256 -> ES256 -> EdDSA) rolls out through the normal key
//! rotation on both backends (SQLite: `tokenctl keys rotate`'s path; AWS: the Secrets Manager
//! rotation protocol's `createSecret`). Each new key has the new algorithm and is published
//! before it signs; the key that signs keeps its algorithm until it is replaced; a resource
//! server that fetched the JWKS once before the change and refetches only on an unknown `kid`
//! (as resource-server libraries do) verifies every token throughout; and a key leaves the
//! JWKS only after the last token it signed expired.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use time::{Duration, OffsetDateTime};
use token_service::admin::Admin;
use token_service::clock::{Clock as _, ManualClock};
use token_service::config::ServiceConfig;
use token_service::issue::RequestContext;
use token_service::keys::{KeySet, SigningAlg};
use token_service::oauth::request::RawRequest;

use crate::support::resource_server::{check, published};
use crate::support::stores::{Stores, svc_client};

/// A verifier that fetched the JWKS once and fetches it again only for a `kid` it does not
/// know.
struct CachingVerifier {
    jwks: JwkSet,
    fetches: usize,
}

impl CachingVerifier {
    async fn verify(
        &mut self,
        s: &Stores,
        config: &ServiceConfig,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Algorithm, String> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|e| e.to_string())?
            .kid
            .ok_or("no kid")?;
        if self.jwks.find(&kid).is_none() {
            self.jwks = published(s, config, now).await;
            self.fetches += 1;
        }
        check(&self.jwks, token, now).map(|(alg, _)| alg)
    }
}

/// One rotation whose new key signs with `alg`, by the backend's own writer; returns the set.
async fn rotate(
    s: &Stores,
    config: &ServiceConfig,
    alg: SigningAlg,
    clock: Arc<ManualClock>,
) -> KeySet {
    let config = ServiceConfig {
        signing_alg: alg,
        ..config.clone()
    };
    match &s.versions {
        None => admin(s, &config, clock).rotate_keys().await.unwrap().keys,
        Some(_) => s.rotate_keys_to(alg, config.schedule, clock).await,
    }
}

fn admin(s: &Stores, config: &ServiceConfig, clock: Arc<ManualClock>) -> Admin {
    s.admin(config, clock, "signing-alg")
}

fn alg_of(token: &str) -> Algorithm {
    jsonwebtoken::decode_header(token).unwrap().alg
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn exp_of(token: &str) -> i64 {
    jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims["exp"]
        .as_i64()
        .unwrap()
}

async fn change_of_algorithm(s: &Stores) {
    let mut config = ServiceConfig::for_tests();
    config.limits.issue_per_client = 1_000;
    // Every token lives as long as the service allows: the old keys must outlive them.
    config.default_ttl = config.max_ttl;
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let start = clock.now();

    // The first key comes from the first rotation, as after a deployment: RS256.
    let first = rotate(s, &config, SigningAlg::RS256, clock.clone()).await;
    assert_eq!(first.keys[0].alg, "RS256");
    let auth = svc_client(&admin(s, &config, clock.clone())).await;
    let service = s.token_service(&config, clock.clone());

    // Fetched once, before any change of the setting.
    let mut verifier = CachingVerifier {
        jwks: published(s, &config, start).await,
        fetches: 1,
    };
    // The setting changes to ES256 at 2 h and to EdDSA at 7 h; each takes effect through the
    // rotation that follows.
    let changes = [
        (start + Duration::hours(2), SigningAlg::ES256),
        (start + Duration::hours(7), SigningAlg::EdDSA),
    ];
    // When each algorithm starts to sign: RS256 at once, the others at their key's activation.
    let mut activations = vec![(start, Algorithm::RS256)];
    let mut first_published: HashMap<String, OffsetDateTime> = HashMap::new();
    let mut left_at: HashMap<String, OffsetDateTime> = HashMap::new();
    let mut tokens: HashMap<String, Vec<String>> = HashMap::new();

    while clock.now() < start + Duration::hours(13) {
        let now = clock.now();
        if let Some((_, alg)) = changes.iter().find(|(at, _)| *at == now) {
            let set = rotate(s, &config, *alg, clock.clone()).await;
            let new = set.keys.last().unwrap();
            assert_eq!(new.alg, alg.as_str());
            assert!(
                new.activates_at >= now + config.schedule.prepublication,
                "the {alg} key may sign at {} though made at {now}",
                new.activates_at
            );
            activations.push((new.activates_at, alg.jwt_algorithm()));
        }

        // What the JWKS publishes now, and since when each key has been in it.
        let current = published(s, &config, now).await;
        for jwk in &current.keys {
            let kid = jwk.common.key_id.clone().unwrap();
            first_published.entry(kid).or_insert(now);
        }
        for kid in first_published.keys() {
            if current.find(kid).is_none() {
                left_at.entry(kid.clone()).or_insert(now);
            }
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
            .unwrap_or_else(|e| panic!("at {now}: {e}"))
            .access_token;
        let kid = kid_of(&issued);
        // The algorithm of the newest activated key, whatever the setting says meanwhile.
        let expected = activations
            .iter()
            .filter(|(at, _)| *at <= now)
            .max_by_key(|(at, _)| *at)
            .unwrap()
            .1;
        assert_eq!(alg_of(&issued), expected, "at {now}");
        // Published for the whole pre-publication delay before its first token (the first key
        // signs at once: nobody can have cached a JWKS before it).
        if kid != first.keys[0].kid {
            let since = first_published[&kid];
            assert!(
                now - since >= config.schedule.prepublication,
                "{kid} signs at {now} but was first published at {since}"
            );
        }
        let verified = verifier
            .verify(s, &config, &issued, now)
            .await
            .unwrap_or_else(|e| panic!("at {now}, the caching verifier refused: {e}"));
        assert_eq!(verified, expected);
        tokens.entry(kid).or_default().push(issued);

        // Every unexpired token verifies, for the caching verifier and against the JWKS of
        // this moment; every expired one is refused.
        for (kid, list) in &tokens {
            for token in list.iter().rev().take(3) {
                let fresh = check(&current, token, now).map(|(alg, _)| alg);
                if exp_of(token) > now.unix_timestamp() {
                    fresh.unwrap_or_else(|e| {
                        panic!("unexpired token of {kid} refused at {now}: {e}")
                    });
                    verifier
                        .verify(s, &config, token, now)
                        .await
                        .unwrap_or_else(|e| {
                            panic!("unexpired token of {kid} refused by the cache at {now}: {e}")
                        });
                } else {
                    assert!(fresh.is_err(), "expired token of {kid} accepted at {now}");
                }
            }
        }
        clock.advance(Duration::minutes(5));
    }

    // One fetch before the change and one for each new key: the cache never missed otherwise.
    assert_eq!(verifier.fetches, 3);
    let by_alg = |alg: Algorithm| -> Vec<&String> {
        tokens
            .iter()
            .filter(|(_, list)| alg_of(&list[0]) == alg)
            .map(|(kid, _)| kid)
            .collect()
    };
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        assert_eq!(by_alg(alg).len(), 1, "one {alg:?} key signed");
    }
    // The retired keys left the JWKS, and only once their last token had expired.
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let kid = by_alg(alg)[0];
        let gone = left_at
            .get(kid)
            .unwrap_or_else(|| panic!("the {alg:?} key is still published"));
        let last_exp = tokens[kid].iter().map(|t| exp_of(t)).max().unwrap();
        assert!(
            gone.unix_timestamp() >= last_exp,
            "{alg:?} key left at {gone}, its last token expires at {last_exp}"
        );
    }
    let last = published(s, &config, clock.now()).await;
    assert_eq!(last.keys.len(), 1);
    assert_eq!(last.keys[0].common.key_algorithm, Some(KeyAlgorithm::EdDSA));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_change_of_signing_algorithm_rolls_out_through_rotation() {
    change_of_algorithm(&crate::support::stores::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_change_of_signing_algorithm_rolls_out_through_rotation() {
    change_of_algorithm(&crate::support::stores::aws().await).await;
}
