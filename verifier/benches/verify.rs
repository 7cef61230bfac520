//! Cost of `Verifier::verify` (key cache hit) per algorithm, beside a bare
//! `jsonwebtoken::decode` with the key already parsed and the same claim checks; the target is
//! within 1.2 x. Run: `cargo bench -p token-verifier --bench verify`.
//!
//! A plain timed loop (no bench framework among the dependencies): a warm-up, then rounds of a
//! fixed number of verifications, the two sides alternating round by round, keeping each side's
//! best round. Time is the thread's CPU time, so the busy neighbours of a shared machine do not
//! count; `block_on` runs the verifier on this same thread.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use support::{AUDIENCE, Issuer, TestKey, claims};
use token_verifier::{HttpRequestParts, Verifier};

const ROUNDS: usize = 20;
const PER_ROUND: u32 = 200;

/// CPU time of the calling thread, in ns (POSIX `CLOCK_THREAD_CPUTIME_ID`): on a machine
/// shared with other builds, wall time measures the neighbours; this measures the work.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The best ns per call of each side over `ROUNDS` rounds, the sides alternating round by round.
fn compare(mut a: impl FnMut() -> u32, mut b: impl FnMut() -> u32) -> (f64, f64) {
    let time = |round: &mut dyn FnMut() -> u32| {
        let start = thread_cpu_ns();
        let n = round();
        (thread_cpu_ns() - start) as f64 / f64::from(n)
    };
    let (mut best_a, mut best_b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..ROUNDS {
        best_a = best_a.min(time(&mut a));
        best_b = best_b.min(time(&mut b));
    }
    (best_a, best_b)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("access token verification, CPU ns/verify (best of {ROUNDS} x {PER_ROUND})");
    println!(
        "{:<6} {:>12} {:>12} {:>7}",
        "alg", "bare decode", "Verifier", "ratio"
    );
    for key in [TestKey::rsa("r", 0), TestKey::ec("e"), TestKey::ed("d")] {
        let issuer = rt.block_on(Issuer::start(&[&key]));
        let verifier = Verifier::new(issuer.config());
        rt.block_on(verifier.hydrate()).unwrap();
        let token = key.token(&claims(&issuer.url, json!({"tenant": "acme"})));

        let alg = match key.alg {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            _ => Algorithm::EdDSA,
        };
        let jwk: Jwk = serde_json::from_value(key.jwk()).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&issuer.url]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;

        let bare = || {
            for _ in 0..PER_ROUND {
                black_box(
                    jsonwebtoken::decode::<Map<String, Value>>(
                        black_box(&token),
                        &decoding,
                        &validation,
                    )
                    .unwrap(),
                );
            }
            PER_ROUND
        };
        let ours = || {
            rt.block_on(async {
                for _ in 0..PER_ROUND {
                    black_box(verifier.verify(black_box(&token)).await.unwrap());
                }
            });
            PER_ROUND
        };
        // Warm-up, then interleaved rounds.
        bare();
        ours();
        let (b, o) = compare(bare, ours);
        println!("{:<6} {b:>12.0} {o:>12.0} {:>6.2}x", key.alg, o / b);
    }

    println!();
    println!("DPoP request (token + proof), CPU ns/request (best of {ROUNDS} x {PER_ROUND})");
    println!("{:<8} {:>12} {:>12}", "proof", "bearer", "DPoP");
    let signing = TestKey::ec("k");
    let issuer = rt.block_on(Issuer::start(&[&signing]));
    // A large replay cache: every proof below has its own jti.
    let config = issuer.config().with_dpop_replay_capacity(1 << 20);
    let verifier = Verifier::new(config);
    rt.block_on(verifier.hydrate()).unwrap();
    let url = "https://api.example/orders";
    let bearer = signing.token(&claims(&issuer.url, json!({})));
    let bearer_header = format!("Bearer {bearer}");
    for client in [
        TestKey::ec("c"),
        TestKey::ed("c"),
        TestKey::ed("c").with_alg("Ed25519"),
        TestKey::rsa("c", 1),
        TestKey::rsa("c", 1).with_alg("PS256"),
    ] {
        let token = signing.token(&claims(
            &issuer.url,
            json!({"cnf": {"jkt": client.thumbprint()}}),
        ));
        let authorization = format!("DPoP {token}");
        // Proofs are made ahead: signing is the client's cost, not the API's.
        let total = (ROUNDS + 1) * PER_ROUND as usize;
        let proofs: Vec<String> = (0..total)
            .map(|_| client.proof("GET", url, &token))
            .collect();
        let mut next = proofs.iter();
        let bearer_round = || {
            rt.block_on(async {
                for _ in 0..PER_ROUND {
                    let req = HttpRequestParts {
                        method: "GET",
                        url,
                        authorization: Some(&bearer_header),
                        dpop: &[],
                    };
                    black_box(verifier.verify_request(&req).await.unwrap());
                }
            });
            PER_ROUND
        };
        let mut dpop_round = || {
            rt.block_on(async {
                for _ in 0..PER_ROUND {
                    let proof = next.next().unwrap().as_str();
                    let req = HttpRequestParts {
                        method: "GET",
                        url,
                        authorization: Some(&authorization),
                        dpop: &[proof],
                    };
                    black_box(verifier.verify_request(&req).await.unwrap());
                }
            });
            PER_ROUND
        };
        dpop_round();
        let (b, d) = compare(bearer_round, dpop_round);
        println!("{:<8} {b:>12.0} {d:>12.0}", client.alg);
    }
}
