//! What each signature algorithm costs in the AWS-LC build it is linked with: the signatures
//! the token function makes (RS256, ES256, EdDSA by `TOKEN_SIGNING_ALG`) and the verifications
//! the functions make (client assertions, DPoP proofs, access tokens, scanning alerts), to
//! compare AWS-LC at `-O3` with its tables against `-Os` with `OPENSSL_SMALL`, the build of the
//! arm64 Lambda functions (`.cargo/config.toml`, docs/performance.md "AWS-LC build per
//! function").
//!
//! `cargo bench --bench signing` prints the wall time per operation of every case. Given a case
//! and a count, it runs only that case, so that `valgrind --tool=callgrind
//! --toggle-collect='*signing::measured*'` counts the instructions of those operations alone:
//! a figure that does not move with the other work on a shared machine.
//!
//! Bounded: a fixed number of iterations per case; fixed messages, fresh keys per run.

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256, UnparsedPublicKey,
};

const ITERATIONS: u32 = 400;

/// The keys and one signature of each kind over the same message, made before anything is
/// measured.
struct Fixture {
    rng: SystemRandom,
    message: Vec<u8>,
    rsa: RsaKeyPair,
    p256: EcdsaKeyPair,
    ed25519: Ed25519KeyPair,
    rs256: Vec<u8>,
    ps256: Vec<u8>,
    es256: Vec<u8>,
    eddsa: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let rng = SystemRandom::new();
        // About the size of a JWS signing input: header and claims of an access token.
        let message = vec![b'x'; 420];
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key");
        let ed25519 = Ed25519KeyPair::generate().expect("Ed25519 key");
        let mut rs256 = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut rs256)
            .expect("RS256");
        let mut ps256 = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PSS_SHA256, &rng, &message, &mut ps256)
            .expect("PS256");
        let es256 = p256.sign(&rng, &message).expect("ES256").as_ref().to_vec();
        let eddsa = ed25519.sign(&message).as_ref().to_vec();
        Self {
            rng,
            message,
            rsa,
            p256,
            ed25519,
            rs256,
            ps256,
            es256,
            eddsa,
        }
    }

    /// One operation of `case`, or `None` for an unknown case.
    fn run(&self, case: &str) -> Option<()> {
        let verify =
            |alg: &'static dyn signature::VerificationAlgorithm, key: &[u8], sig: &[u8]| {
                UnparsedPublicKey::new(alg, key)
                    .verify(black_box(&self.message), sig)
                    .expect("valid signature");
            };
        match case {
            "RS256-sign" => {
                let mut sig = vec![0; self.rsa.public_modulus_len()];
                self.rsa
                    .sign(
                        &RSA_PKCS1_SHA256,
                        &self.rng,
                        black_box(&self.message),
                        &mut sig,
                    )
                    .expect("RS256");
            }
            "ES256-sign" => {
                black_box(self.p256.sign(&self.rng, black_box(&self.message))).expect("ES256");
            }
            "EdDSA-sign" => {
                black_box(self.ed25519.sign(black_box(&self.message)));
            }
            "RS256-verify" => verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                self.rsa.public_key().as_ref(),
                &self.rs256,
            ),
            "PS256-verify" => verify(
                &signature::RSA_PSS_2048_8192_SHA256,
                self.rsa.public_key().as_ref(),
                &self.ps256,
            ),
            "ES256-verify" => verify(
                &ECDSA_P256_SHA256_FIXED,
                self.p256.public_key().as_ref(),
                &self.es256,
            ),
            "EdDSA-verify" => verify(&ED25519, self.ed25519.public_key().as_ref(), &self.eddsa),
            _ => return None,
        }
        Some(())
    }
}

const CASES: [&str; 7] = [
    "RS256-sign",
    "ES256-sign",
    "EdDSA-sign",
    "RS256-verify",
    "PS256-verify",
    "ES256-verify",
    "EdDSA-verify",
];

/// The operations whose instructions callgrind counts (`--toggle-collect`): nothing else runs
/// inside this function.
#[inline(never)]
fn measured(fixture: &Fixture, case: &str, count: u32) {
    for _ in 0..count {
        fixture.run(case).expect("known case");
    }
}

fn main() {
    let fixture = Fixture::new();
    // cargo bench passes `--bench`; a case name and a count select one case.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [case, count] = args.as_slice() {
        let count: u32 = count.parse().expect("a count of operations");
        if fixture.run(case).is_none() {
            eprintln!("unknown case {case}; cases: {}", CASES.join(", "));
            std::process::exit(2);
        }
        measured(&fixture, case, count);
        return;
    }
    for case in CASES {
        measured(&fixture, case, 20);
        let start = Instant::now();
        measured(&fixture, case, ITERATIONS);
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERATIONS);
        println!("{case:<14} {us:>9.1} us/op");
    }
}
