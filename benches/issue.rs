//! Cost of issuing a token against the bare RSA-2048 signature it contains, measured in one
//! run so that the ratios hold on a shared, noisy machine (`cargo bench --bench issue`).
//!
//! Single-threaded and bounded: a fixed number of iterations per case.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine as _;
use time::OffsetDateTime;
use token_service::admin::NewClient;
use token_service::clock::SystemClock;
use token_service::config::ServiceConfig;
use token_service::embedded::Embedded;
use token_service::issue::RequestMeta;
use token_service::keys::{KeyRing, KeySet};
use token_service::oauth::request::RawRequest;

const ITERATIONS: u32 = 400;

fn time_per_op(label: &str, mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        f();
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERATIONS);
    println!("{label:<44} {us:>9.1} us/op");
    us
}

fn main() {
    let now = OffsetDateTime::now_utc();
    let set = KeySet::default()
        .rotated(now, &ServiceConfig::for_tests().schedule)
        .expect("key");
    let der = set.keys[0].pkcs8().unwrap();
    let pair = KeyPair::from_pkcs8(&der).unwrap();
    let rng = SystemRandom::new();
    let message = vec![b'x'; 420];
    let mut sig = vec![0u8; pair.public_modulus_len()];
    let bare = time_per_op("bare RSA-2048 PKCS#1 v1.5 SHA-256 signature", || {
        pair.sign(&RSA_PKCS1_SHA256, &rng, black_box(&message), &mut sig)
            .unwrap();
    });

    let ring = KeyRing::load(&set).unwrap();
    let signer = ring
        .signer(&ServiceConfig::for_tests().schedule, now)
        .unwrap();
    let claims = br#"{"iss":"https://issuer.test","sub":"demo","client_id":"demo","aud":"https://api.example.com","iat":1,"nbf":1,"exp":901,"jti":"0123456789abcdefghijkl","scope":"api.read"}"#;
    let jws = time_per_op("JWS compact serialisation + signature", || {
        black_box(signer.sign_json(claims, &rng).unwrap());
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServiceConfig::for_tests();
    // Measure issuing, not the limiter refusing.
    config.limits.issue_per_client = u32::MAX;
    let embedded =
        Embedded::open(dir.path().join("bench.db"), config, Arc::new(SystemClock)).unwrap();
    let secret = runtime.block_on(async {
        let admin = embedded.admin("bench");
        admin.ensure_signing_key().await.unwrap();
        let (_, secret) = admin
            .create_client(NewClient {
                client_id: Some("demo".into()),
                name: "bench".into(),
                scopes: vec!["api.read".into()],
                audiences: vec!["https://api.example.com".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        secret
    });
    let store = embedded.store.clone();
    time_per_op("client read (SQLite)", || {
        runtime.block_on(async {
            use token_service::store::ClientStore as _;
            black_box(store.get_client("demo").await.unwrap());
        });
    });
    let record = runtime.block_on(async {
        use token_service::store::AuditLog as _;
        store.query(&Default::default()).await.unwrap().remove(0)
    });
    time_per_op("audit append (SQLite)", || {
        runtime.block_on(async {
            use token_service::store::AuditLog as _;
            store.append(black_box(&record)).await.unwrap();
        });
    });
    let service = embedded.token_service();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("demo:{}", secret.expose()))
    );
    let meta = RequestMeta {
        request_id: "bench".into(),
        source_ip: Some("127.0.0.1".into()),
        user_agent: Some("bench".into()),
    };
    let issue = time_per_op("issue: parse, authenticate, sign, audit (SQLite)", || {
        let raw = RawRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: Some(&auth),
            query: None,
            body: b"grant_type=client_credentials",
        };
        runtime.block_on(async {
            black_box(service.handle(raw, &meta).await.unwrap());
        });
    });
    // Measured again last: the first case of a run often pays for a cold CPU and caches.
    let bare = bare.min(time_per_op("bare RSA-2048 signature, again", || {
        pair.sign(&RSA_PKCS1_SHA256, &rng, black_box(&message), &mut sig)
            .unwrap();
    }));
    println!();
    println!("JWS / bare signature:   {:.3}", jws / bare);
    println!("issue / bare signature: {:.3}", issue / bare);
    println!(
        "work outside the signature: {:.1} us per token",
        issue - bare
    );
}
