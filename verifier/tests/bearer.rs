//! Bearer verification against a real JWKS over HTTP: the algorithms, every refusal, the key
//! cache (rotation, max-age, a flood of unknown kids) and the bounds of a fetch.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use serde::Deserialize;
use serde_json::json;
use support::{AUDIENCE, Issuer, TestKey, b64, claims, now, raw_server};
use token_verifier::{Config, Error, Verifier};

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_with_the_published_key() {
    let keys = [TestKey::rsa("r", 0), TestKey::ec("e"), TestKey::ed("d")];
    let issuer = Issuer::start(&keys.iter().collect::<Vec<_>>()).await;
    let verifier = Verifier::new(issuer.config());
    for key in &keys {
        let token = key.token(&claims(&issuer.url, json!({"tenant": "acme"})));
        let verified = verifier
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.alg));
        assert_eq!(verified.client_id, "client-1");
        assert_eq!(verified.issuer, issuer.url);
        assert_eq!(verified.audiences, [AUDIENCE]);
        assert_eq!(verified.scopes, ["api.read", "orders.write"]);
        assert!(verified.expires_at > now());
        assert_eq!(verified.key_thumbprint, None);
        assert_eq!(
            verified.claim::<String>("tenant").unwrap().as_deref(),
            Some("acme")
        );
    }
    assert_eq!(issuer.jwks_hits(), 1, "one fetch serves every key");
}

#[tokio::test]
async fn extra_claims_are_typed_and_scopes_checked() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    let token = key.token(&claims(
        &issuer.url,
        json!({"aud": ["other", AUDIENCE], "tenant": "acme", "plan": {"seats": 5, "tier": "gold"}}),
    ));
    let verified = verifier.verify(&token).await.unwrap();
    #[derive(Deserialize, Debug, PartialEq)]
    struct Plan {
        seats: u32,
        tier: String,
    }
    assert_eq!(
        verified.claim::<Plan>("plan").unwrap(),
        Some(Plan {
            seats: 5,
            tier: "gold".into()
        })
    );
    assert!(matches!(
        verified.claim::<u32>("tenant"),
        Err(Error::ClaimType { name }) if name == "tenant"
    ));
    let extra: Vec<_> = verified.extra_claims().keys().cloned().collect();
    assert_eq!(extra, ["plan", "tenant"]);
    assert!(verified.require_scope("api.read").is_ok());
    let refused = verified.require_scope("api.admin").unwrap_err();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.rfc6750_code(), "insufficient_scope");
}

#[tokio::test]
async fn a_forged_signature_is_refused() {
    let key = TestKey::ec("k");
    let impostor = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    let forged = impostor.token(&claims(&issuer.url, json!({})));
    assert_eq!(verifier.verify(&forged).await, Err(Error::BadSignature));

    // The real token with its claims changed after signing.
    let real = key.token(&claims(&issuer.url, json!({})));
    let parts: Vec<&str> = real.split('.').collect();
    let more = b64(claims(&issuer.url, json!({"scope": "api.admin"}))
        .to_string()
        .as_bytes());
    let tampered = format!("{}.{more}.{}", parts[0], parts[2]);
    assert_eq!(verifier.verify(&tampered).await, Err(Error::BadSignature));
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    let key = TestKey::rsa("r", 0);
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    // The classic confusion attack: HMAC with the public key's bytes as the secret.
    for secret in [key.jwk().to_string(), key.public_members()["n"].to_string()] {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("r".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(&issuer.url, json!({})),
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&token).await,
            Err(Error::UnsupportedAlgorithm)
        );
    }
}

#[tokio::test]
async fn alg_none_and_an_algorithm_other_than_the_keys_are_refused() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    let body = b64(claims(&issuer.url, json!({})).to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "typ": "at+jwt", "kid": "k"})
            .to_string()
            .as_bytes());
        for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
            assert!(
                matches!(
                    verifier.verify(&token).await,
                    Err(Error::UnsupportedAlgorithm | Error::Malformed(_))
                ),
                "{alg}"
            );
        }
    }
    // An EdDSA signature under the kid of a P-256 key: the key decides, not the header.
    let ed = TestKey::ed("k");
    let token = ed.token(&claims(&issuer.url, json!({})));
    assert_eq!(
        verifier.verify(&token).await,
        Err(Error::UnsupportedAlgorithm)
    );
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn lifetime_issuer_audience_and_type_are_enforced() {
    let key = TestKey::ed("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config().with_leeway(Duration::from_secs(30)));
    let url = issuer.url.clone();
    let cases = [
        (json!({"exp": now() - 60}), Error::Expired),
        (json!({"nbf": now() + 60}), Error::NotYetValid),
        (json!({"iss": format!("{url}/")}), Error::WrongIssuer),
        (json!({"iss": "https://evil.example"}), Error::WrongIssuer),
        (
            json!({"aud": "https://other.example"}),
            Error::WrongAudience,
        ),
        (
            json!({"aud": ["https://other.example"]}),
            Error::WrongAudience,
        ),
        (json!({"exp": null}), Error::MissingClaim("exp")),
        (json!({"aud": null}), Error::MissingClaim("aud")),
        (json!({"jti": null}), Error::MissingClaim("jti")),
        (json!({"client_id": null}), Error::MissingClaim("client_id")),
    ];
    for (over, expected) in cases {
        let token = key.token(&claims(&url, over.clone()));
        assert_eq!(verifier.verify(&token).await, Err(expected), "{over}");
    }
    // Within the leeway.
    for over in [json!({"exp": now() - 20}), json!({"nbf": now() + 20})] {
        let token = key.token(&claims(&url, over.clone()));
        assert!(verifier.verify(&token).await.is_ok(), "{over}");
    }
    // typ: at+jwt only (RFC 9068 §4), any case, or the full media type.
    for (typ, ok) in [
        (json!("at+jwt"), true),
        (json!("AT+JWT"), true),
        (json!("application/at+jwt"), true),
        (json!("JWT"), false),
        (json!("dpop+jwt"), false),
        (json!(null), false),
    ] {
        let mut header = json!({"alg": "EdDSA", "kid": "k", "typ": typ});
        if header["typ"].is_null() {
            header.as_object_mut().unwrap().remove("typ");
        }
        let token = key.sign(&header, &claims(&url, json!({})));
        let result = verifier.verify(&token).await;
        assert_eq!(result.is_ok(), ok, "{typ}: {result:?}");
        if !ok {
            assert_eq!(result, Err(Error::WrongType));
        }
    }
}

#[tokio::test]
async fn any_of_several_configured_audiences_is_accepted() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let config = issuer
        .config()
        .with_audiences(["https://a.example", "https://b.example"]);
    let verifier = Verifier::new(config);
    let token = key.token(&claims(
        &issuer.url,
        json!({"aud": ["x", "https://b.example"]}),
    ));
    assert!(verifier.verify(&token).await.is_ok());
    let token = key.token(&claims(&issuer.url, json!({})));
    assert_eq!(verifier.verify(&token).await, Err(Error::WrongAudience));
}

#[tokio::test]
async fn a_key_published_later_is_fetched_once() {
    let old = TestKey::ec("old");
    let new = TestKey::ec("new");
    let issuer = Issuer::start(&[&old]).await;
    let verifier = Verifier::new(
        issuer
            .config()
            .with_min_refetch_interval(Duration::from_millis(200)),
    );
    verifier.hydrate().await.unwrap();
    assert!(
        verifier
            .verify(&old.token(&claims(&issuer.url, json!({}))))
            .await
            .is_ok()
    );
    assert_eq!(issuer.jwks_hits(), 1);

    // The rotation pre-publishes the new key; its first token arrives after the interval.
    issuer.publish(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..5 {
        let token = new.token(&claims(&issuer.url, json!({})));
        assert!(verifier.verify(&token).await.is_ok());
        assert!(
            verifier
                .verify(&old.token(&claims(&issuer.url, json!({}))))
                .await
                .is_ok()
        );
    }
    assert_eq!(issuer.jwks_hits(), 2, "the new kid cost one fetch");
}

#[tokio::test]
async fn an_unknown_kid_within_the_interval_fails_fast_without_a_fetch() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    verifier.hydrate().await.unwrap();
    let stranger = TestKey::ec("stranger");
    let token = stranger.token(&claims(&issuer.url, json!({})));
    assert_eq!(verifier.verify(&token).await, Err(Error::UnknownKey));
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn a_flood_of_random_kids_fetches_the_jwks_at_most_once_per_interval() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    // Cold: nothing fetched yet, 100 requests with 100 different kids arrive together.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let verifier = verifier.clone();
            let token = key.sign(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("random-{i}")}),
                &claims(&issuer.url, json!({})),
            );
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err(Error::UnknownKey));
    }
    assert_eq!(issuer.jwks_hits(), 1, "concurrent misses share one fetch");

    // And a second wave within the interval costs nothing.
    for i in 0..100 {
        let token = key.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("again-{i}")}),
            &claims(&issuer.url, json!({})),
        );
        assert_eq!(verifier.verify(&token).await, Err(Error::UnknownKey));
    }
    assert_eq!(issuer.jwks_hits(), 1);
    // The real key still verifies.
    assert!(
        verifier
            .verify(&key.token(&claims(&issuer.url, json!({}))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn cache_control_max_age_is_honoured() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    issuer.set_cache_control(Some("public, max-age=2"));
    let verifier = Verifier::new(issuer.config().with_min_refetch_interval(Duration::ZERO));
    let token = key.token(&claims(&issuer.url, json!({})));
    for _ in 0..5 {
        verifier.verify(&token).await.unwrap();
    }
    assert_eq!(issuer.jwks_hits(), 1, "no refetch within max-age");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(issuer.jwks_hits(), 2, "refetched once max-age passed");
    verifier.verify(&token).await.unwrap();
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn known_keys_keep_verifying_through_a_failed_refresh() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    issuer.set_cache_control(Some("max-age=1"));
    let config = issuer
        .config()
        .with_min_refetch_interval(Duration::from_secs(1));
    let verifier = Verifier::new(config);
    let token = key.token(&claims(&issuer.url, json!({})));
    verifier.verify(&token).await.unwrap();

    issuer.set_failing(true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        verifier.verify(&token).await.is_ok(),
        "stale key, refresh failed"
    );
    assert_eq!(issuer.jwks_hits(), 2);
    // An unknown kid cannot be checked while the issuer is down: 503, not 401.
    let stranger = TestKey::ec("stranger").token(&claims(&issuer.url, json!({})));
    let result = verifier.verify(&stranger).await;
    assert!(matches!(result, Err(Error::Jwks(_))), "{result:?}");
    assert_eq!(issuer.jwks_hits(), 2, "no retry within the interval");
    assert!(matches!(verifier.hydrate().await, Err(Error::Jwks(_))));

    issuer.set_failing(false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        issuer.jwks_hits(),
        4,
        "hydrate, then the retry after the interval"
    );
}

#[tokio::test]
async fn max_age_is_capped_by_max_cache() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    issuer.set_cache_control(Some("max-age=86400"));
    let config = issuer
        .config()
        .with_max_cache(Duration::from_millis(300))
        .with_min_refetch_interval(Duration::ZERO);
    let verifier = Verifier::new(config);
    let token = key.token(&claims(&issuer.url, json!({})));
    verifier.verify(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn a_stalled_jwks_server_fails_within_the_fetch_timeout() {
    let key = TestKey::ec("k");
    let token = key.token(&claims("http://127.0.0.1", json!({})));
    // One server never answers; the other sends its headers, then nothing.
    let (silent, _) = raw_server("", None).await;
    let (trickle, _) = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"keys\":",
        None,
    )
    .await;
    for base in [silent, trickle] {
        let config = Config::new("http://127.0.0.1", AUDIENCE, format!("{base}/jwks"))
            .with_fetch_timeout(Duration::from_millis(300));
        let verifier = Verifier::new(config);
        // The bound is the verifier's: this outer limit (10 x) only keeps a broken build from
        // hanging the suite.
        let result = tokio::time::timeout(Duration::from_secs(3), verifier.verify(&token))
            .await
            .expect("the verifier bounds its own fetch");
        let error = result.unwrap_err();
        assert!(matches!(error, Error::Jwks(_)), "{error:?}");
        assert_eq!(error.status(), 503);
        let result = tokio::time::timeout(Duration::from_secs(3), verifier.hydrate())
            .await
            .expect("hydrate is bounded too");
        assert!(matches!(result, Err(Error::Jwks(_))));
    }
}

#[tokio::test]
async fn an_oversized_jwks_is_refused_without_reading_it_all() {
    let key = TestKey::ec("k");
    let token = key.token(&claims("http://127.0.0.1", json!({})));
    // Announced by Content-Length, and not announced (read until the connection closes).
    let (declared, _) = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16777216\r\n\r\n",
        Some(16 << 20),
    )
    .await;
    let (streamed, cut_off) = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        Some(16 << 20),
    )
    .await;
    for base in [declared, streamed] {
        let config = Config::new("http://127.0.0.1", AUDIENCE, format!("{base}/jwks"));
        let verifier = Verifier::new(config);
        let result = tokio::time::timeout(Duration::from_secs(20), verifier.verify(&token))
            .await
            .unwrap();
        assert!(
            matches!(&result, Err(Error::Jwks(why)) if why.contains("larger than 65536")),
            "{result:?}"
        );
    }
    // The client hung up: the server could not write its 16 MiB.
    for _ in 0..50 {
        if cut_off.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cut_off.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_jwks_that_is_not_a_key_set_or_not_https_is_an_unavailable_key_set() {
    let key = TestKey::ec("k");
    let token = key.token(&claims("https://issuer.example", json!({})));
    let (html, _) = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>",
        Some(0),
    )
    .await;
    for jwks_uri in [format!("{html}/jwks"), "http://issuer.example/jwks".into()] {
        let config = Config::new("https://issuer.example", AUDIENCE, jwks_uri);
        let result = Verifier::new(config).verify(&token).await;
        assert!(matches!(result, Err(Error::Jwks(_))), "{result:?}");
    }
}

#[tokio::test]
async fn discover_reads_the_metadata_and_falls_back_to_openid() {
    let key = TestKey::ed("k");
    let issuer = Issuer::start(&[&key]).await;
    let token = key.token(&claims(&issuer.url, json!({})));

    let verifier = Verifier::discover(&issuer.url, AUDIENCE).await.unwrap();
    assert_eq!(verifier.config().jwks_uri, issuer.jwks_uri());
    assert!(verifier.verify(&token).await.is_ok());

    issuer.set_oauth_metadata(None);
    let verifier = Verifier::discover(&issuer.url, AUDIENCE).await.unwrap();
    assert!(verifier.verify(&token).await.is_ok());

    // A document naming another issuer is not followed (RFC 8414 §3.3).
    issuer.set_openid_metadata(Some(json!({
        "issuer": "https://evil.example", "jwks_uri": issuer.jwks_uri(),
    })));
    let result = Verifier::discover(&issuer.url, AUDIENCE).await;
    assert!(matches!(result, Err(Error::Jwks(_))), "{result:?}");

    issuer.set_openid_metadata(None);
    assert!(Verifier::discover(&issuer.url, AUDIENCE).await.is_err());
}

#[tokio::test]
async fn a_dpop_bound_token_presented_as_bearer_is_refused() {
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    let token = key.token(&claims(&issuer.url, json!({"cnf": {"jkt": "abc"}})));
    assert_eq!(
        verifier.verify(&token).await,
        Err(Error::BoundTokenAsBearer)
    );
}

#[tokio::test]
async fn verifiers_are_cheap_to_clone_and_share_one_cache() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Verifier>();
    let key = TestKey::ec("k");
    let issuer = Issuer::start(&[&key]).await;
    let verifier = Verifier::new(issuer.config());
    let clones: HashMap<usize, Verifier> = (0..4).map(|i| (i, verifier.clone())).collect();
    for v in clones.values() {
        v.verify(&key.token(&claims(&issuer.url, json!({}))))
            .await
            .unwrap();
    }
    assert_eq!(issuer.jwks_hits(), 1);
}
