//! Cost of issuing a token against the bare RSA-2048 signature it contains, of a
//! `private_key_jwt` assertion check and of a DPoP proof check (per proof algorithm) against a
//! secret check, and of signing and verifying an access token with each `TOKEN_SIGNING_ALG`,
//! measured in one run so that the ratios hold on a shared, noisy machine (`cargo bench
//! --bench issue`).
//!
//! Bounded: a fixed number of iterations per case. Single-threaded except one case, which runs
//! 32 requests at a time on a 2-thread runtime as the server does, and reports its CPU time
//! per token against that of a bare signature (CPU time does not grow when other work shares
//! the cores; elapsed time does).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use time::OffsetDateTime;
use token_service::admin::NewClient;
use token_service::clients::SecretHash;
use token_service::clock::SystemClock;
use token_service::config::ServiceConfig;
use token_service::issue::RequestContext;
use token_service::issue::TokenService;
use token_service::keys::{KeySet, SIGNING_ALGS, SigningKeys};
use token_service::oauth::assertion::{AssertionPolicy, JWT_BEARER, verify as verify_assertion};
use token_service::oauth::dpop::{self, ProofPolicy};
use token_service::oauth::request::RawRequest;
use token_service::shapes::embedded::Embedded;

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

    let ring = SigningKeys::load(&set).unwrap();
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
            use token_service::store::ClientReader as _;
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
    let meta = RequestContext {
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
            dpop: None,
        };
        runtime.block_on(async {
            black_box(service.handle(raw, &meta).await.unwrap());
        });
    });
    let (concurrent, cpu_per_token) = concurrent_rate(&service, &auth, &meta);
    let cpu_per_signature = cpu_per_op("/proc/thread-self/stat", CPU_SAMPLE, || {
        pair.sign(&RSA_PKCS1_SHA256, &rng, black_box(&message), &mut sig)
            .unwrap();
    });
    let (secret_check, verify, issue_jwt) =
        assertion_costs(&runtime, &embedded, &service, &meta, secret.expose());
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
    println!(
        "{CONCURRENT} concurrent on {WORKERS} workers: {concurrent:.0} tokens/s / ({WORKERS} x bare signatures/s): {:.3} (needs {WORKERS} idle cores)",
        concurrent / (f64::from(WORKERS as u32) * 1e6 / bare)
    );
    println!(
        "CPU per token ({CONCURRENT} concurrent, all threads) / CPU per bare signature: {cpu_per_token:.1} us / {cpu_per_signature:.1} us = {:.3}",
        cpu_per_token / cpu_per_signature
    );
    for (alg, us) in &verify {
        println!(
            "{alg} assertion check / secret check: {:.1}",
            us / secret_check
        );
    }
    println!(
        "issue with private_key_jwt / issue with a secret: {:.3}",
        issue_jwt / issue
    );
    for (alg, us) in dpop_proof_costs() {
        println!(
            "{alg} DPoP proof check / secret check: {:.1}",
            us / secret_check
        );
    }
    signing_per_alg(claims);
}

/// Per proof algorithm: the check of a DPoP proof at the token endpoint (header, key, signature,
/// claims and thumbprint; no store), as `oauth::dpop::verify` does it for each request.
fn dpop_proof_costs() -> Vec<(&'static str, f64)> {
    let policy = ProofPolicy::new("https://issuer.test/oauth/token", 60, 60).unwrap();
    let mut costs = Vec::new();
    for (name, alg) in [
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
        ("RS256", Algorithm::RS256),
        ("PS256", Algorithm::PS256),
    ] {
        let (key, jwk) = client_key(alg);
        let mut jwk: serde_json::Value = serde_json::from_str(&jwk).unwrap();
        jwk.as_object_mut().unwrap().remove("kid");
        let mut header = Header::new(alg);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(jwk).unwrap());
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({
            "jti": "bench", "htm": "POST", "htu": "https://issuer.test/oauth/token", "iat": now,
        });
        let proof = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let label = format!("{name} DPoP proof check (signature + claims)");
        let us = time_per_op(&label, || {
            black_box(dpop::verify(black_box(&proof), &policy, now).unwrap());
        });
        costs.push((name, us));
    }
    costs
}

/// Per `TOKEN_SIGNING_ALG`: the access token's length, the cost of signing it (the token
/// service's own signer) and of verifying it as a resource server does (`jsonwebtoken` with
/// the published JWK, the key already parsed, claims checked).
fn signing_per_alg(claims: &[u8]) {
    let now = OffsetDateTime::now_utc();
    let schedule = ServiceConfig::for_tests().schedule;
    let rng = SystemRandom::new();
    let mut rows = Vec::new();
    for alg in SIGNING_ALGS {
        let set = KeySet::default().rotated_to(alg, now, &schedule).unwrap();
        let ring = SigningKeys::load(&set).unwrap();
        let signer = ring.signer(&schedule, now).unwrap();
        let token = signer.sign_json(claims, &rng).unwrap();
        let sign = time_per_op(&format!("{alg} access token: sign"), || {
            black_box(signer.sign_json(claims, &rng).unwrap());
        });
        let key = jsonwebtoken::DecodingKey::from_jwk(&ring.public_records()[0].jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg.jwt_algorithm());
        validation.validate_exp = false;
        validation.set_audience(&["https://api.example.com"]);
        validation.set_issuer(&["https://issuer.test"]);
        let verify = time_per_op(&format!("{alg} access token: verify"), || {
            black_box(
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &key, &validation)
                    .unwrap(),
            );
        });
        rows.push((alg, token.len(), sign, verify));
    }
    println!();
    println!("alg    token bytes  sign us  verify us");
    for (alg, len, sign, verify) in rows {
        println!("{:<6} {len:>11} {sign:>8.1} {verify:>10.1}", alg.as_str());
    }
}

/// Requests in flight and runtime threads of the concurrent case: the load test's 32
/// connections on a 2-core machine.
const CONCURRENT: usize = 32;
const WORKERS: usize = 2;

/// Operations whose CPU time is read from `/proc`: enough that its 10 ms ticks do not matter.
const CPU_SAMPLE: usize = 4000;

/// CPU time (user + system, microseconds) used so far by the process or thread whose `stat`
/// file this is. Linux counts it in USER_HZ ticks, 100 a second on every architecture Rust
/// builds this for. CPU time, unlike elapsed time, does not grow when other work shares the
/// cores.
fn cpu_us(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).expect("/proc stat file (Linux)");
    // The command name (field 2) may hold spaces: count from its closing parenthesis.
    let fields: Vec<u64> = text[text.rfind(')').unwrap() + 2..]
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    (fields[0] + fields[1]) as f64 * 10_000.0
}

/// CPU microseconds per call of `f`, over `n` calls, on this thread.
fn cpu_per_op(stat: &str, n: usize, mut f: impl FnMut()) -> f64 {
    let start = cpu_us(stat);
    for _ in 0..n {
        f();
    }
    let us = (cpu_us(stat) - start) / n as f64;
    println!(
        "{:<44} {us:>9.1} us CPU/op",
        "bare RSA-2048 signature, CPU time"
    );
    us
}

/// Tokens per second, and CPU microseconds per token (every thread of the process), from
/// [`CONCURRENT`] requests at a time on a [`WORKERS`]-thread runtime, as the server runs them
/// (audit records group-committed by the SQLite writer thread).
fn concurrent_rate(service: &Arc<TokenService>, auth: &str, meta: &RequestContext) -> (f64, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap();
    let per_task = CPU_SAMPLE.div_ceil(CONCURRENT);
    let run = || {
        runtime.block_on(async {
            let tasks: Vec<_> = (0..CONCURRENT)
                .map(|_| {
                    let (service, auth, meta) = (service.clone(), auth.to_owned(), meta.clone());
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            let raw = RawRequest {
                                content_type: Some("application/x-www-form-urlencoded"),
                                authorization: Some(&auth),
                                query: None,
                                body: b"grant_type=client_credentials",
                                dpop: None,
                            };
                            black_box(service.handle(raw, &meta).await.unwrap());
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    run(); // warm-up
    let (start, cpu) = (Instant::now(), cpu_us("/proc/self/stat"));
    run();
    let tokens = (per_task * CONCURRENT) as f64;
    let rate = tokens / start.elapsed().as_secs_f64();
    let cpu_per_token = (cpu_us("/proc/self/stat") - cpu) / tokens;
    println!(
        "{:<44} {rate:>9.0} tokens/s, {cpu_per_token:.1} us CPU/token",
        format!("issue, {CONCURRENT} concurrent, {WORKERS} workers")
    );
    (rate, cpu_per_token)
}

/// A client key pair for assertions: the signing key and the public JWK.
fn client_key(alg: Algorithm) -> (EncodingKey, String) {
    let rng = SystemRandom::new();
    let key = match alg {
        Algorithm::ES256 => {
            let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            EncodingKey::from_ec_der(der.as_ref())
        }
        Algorithm::EdDSA => {
            let der = Ed25519KeyPair::generate().unwrap().to_pkcs8v1().unwrap();
            EncodingKey::from_ed_der(der.as_ref())
        }
        _ => {
            let pair = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
            // jsonwebtoken wants the PKCS#1 key that ends an RSA-2048 PKCS#8 document.
            assert_eq!(&der.as_ref()[22..24], [0x04, 0x82]);
            EncodingKey::from_rsa_der(&der.as_ref()[26..])
        }
    };
    let jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    (key, serde_json::to_string(&jwk).unwrap())
}

fn assertion(key: &EncodingKey, alg: Algorithm, id: &str, jti: u32) -> String {
    let iat = OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "iss": id, "sub": id, "aud": "https://issuer.test",
        "iat": iat, "exp": iat + 300, "jti": format!("bench-{jti}"),
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

/// Per request: a secret check against assertion checks (signature and claims, no store),
/// and a whole token request with an assertion (its jti recorded in SQLite).
fn assertion_costs(
    runtime: &tokio::runtime::Runtime,
    embedded: &Embedded,
    service: &TokenService,
    meta: &RequestContext,
    secret: &str,
) -> (f64, Vec<(&'static str, f64)>, f64) {
    let stored = SecretHash::of(secret.as_bytes());
    let secret_check = time_per_op("secret check: SHA-256 + constant-time compare", || {
        black_box(stored.matches(&SecretHash::of(black_box(secret.as_bytes()))));
    });
    // The audience a client assertion must name: the issuer (TOKEN_ASSERTION_AUDIENCE default).
    let policy = AssertionPolicy {
        audiences: vec!["https://issuer.test".into()],
        max_lifetime: 3600,
        clock_skew: 60,
    };
    let admin = embedded.admin("bench");
    let mut verify = Vec::new();
    let mut es256 = None;
    for (name, alg) in [
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
        ("RS256", Algorithm::RS256),
    ] {
        let id = format!("jwt-{name}");
        let (key, jwk) = client_key(alg);
        let client = runtime.block_on(async {
            admin
                .create_key_client(
                    NewClient {
                        client_id: Some(id.clone()),
                        name: "bench".into(),
                        scopes: vec!["api.read".into()],
                        audiences: vec!["https://api.example.com".into()],
                        ..Default::default()
                    },
                    &jwk,
                )
                .await
                .unwrap()
        });
        let text = assertion(&key, alg, &id, 0);
        let now = OffsetDateTime::now_utc();
        let label = format!("{name} assertion check (signature + claims)");
        let us = time_per_op(&label, || {
            black_box(
                verify_assertion(black_box(&text), &id, Some(&client), &policy, now).unwrap(),
            );
        });
        verify.push((name, us));
        if alg == Algorithm::ES256 {
            es256 = Some((key, id));
        }
    }
    let (key, id) = es256.unwrap();
    let bodies: Vec<String> = (0..ITERATIONS + 20)
        .map(|n| {
            let a = assertion(&key, Algorithm::ES256, &id, n);
            format!("grant_type=client_credentials&client_assertion_type={JWT_BEARER}&client_assertion={a}")
        })
        .collect();
    let mut next = bodies.iter();
    let issue_jwt = time_per_op("issue with an ES256 assertion (SQLite)", || {
        let raw = RawRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: None,
            query: None,
            body: next.next().expect("one assertion per request").as_bytes(),
            dpop: None,
        };
        runtime.block_on(async {
            black_box(service.handle(raw, meta).await.unwrap());
        });
    });
    (secret_check, verify, issue_jwt)
}
