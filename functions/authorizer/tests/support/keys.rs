//! Signing keys of the three token algorithms, their public JWKs and RFC 7638 thumbprints,
//! and compact JWS signing (RFC 7515 §7.1) for test tokens and DPoP proofs.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SystemRandom, fill};
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The token algorithms the service signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

enum Pair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key with its `kid`.
pub struct SigningKey {
    pub alg: Alg,
    pub kid: String,
    pair: Pair,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// 128 random bits, base64url: a `jti`.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    fill(&mut bytes).unwrap();
    b64(&bytes)
}

/// base64url SHA-256 of `text` (RFC 9449 §4.2 `ath`, RFC 7638 thumbprints).
pub fn sha256_b64(text: &[u8]) -> String {
    b64(digest(&SHA256, text).as_ref())
}

impl SigningKey {
    pub fn generate(alg: Alg, kid: &str) -> Self {
        let pair = match alg {
            Alg::RS256 => Pair::Rsa(aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap()),
            Alg::ES256 => {
                Pair::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
            }
            Alg::EdDSA => Pair::Ed(Ed25519KeyPair::generate().unwrap()),
        };
        Self {
            alg,
            kid: kid.to_owned(),
            pair,
        }
    }

    /// The public members only, in RFC 7638 §3.2's canonical (lexicographic) order.
    pub fn public_members(&self) -> Value {
        match &self.pair {
            Pair::Rsa(p) => {
                let c: PublicKeyComponents<Vec<u8>> = p.public_key().into();
                json!({"e": b64(&c.e), "kty": "RSA", "n": b64(&c.n)})
            }
            Pair::Ec(p) => {
                let point = p.public_key().as_ref();
                let (x, y) = point[1..].split_at(32);
                json!({"crv": "P-256", "kty": "EC", "x": b64(x), "y": b64(y)})
            }
            Pair::Ed(p) => {
                json!({"crv": "Ed25519", "kty": "OKP", "x": b64(p.public_key().as_ref())})
            }
        }
    }

    /// The RFC 7638 SHA-256 thumbprint: serde_json keeps the members sorted.
    pub fn thumbprint(&self) -> String {
        sha256_b64(self.public_members().to_string().as_bytes())
    }

    /// The JWK as a JWKS publishes it: public members, `kid`, `alg`, `use: sig`.
    pub fn jwk(&self) -> Value {
        let mut jwk = self.public_members();
        let o = jwk.as_object_mut().unwrap();
        o.insert("kid".into(), self.kid.clone().into());
        o.insert("alg".into(), self.alg.name().into());
        o.insert("use".into(), "sig".into());
        jwk
    }

    /// A compact JWS of `claims` under `header` (its `alg` is set to this key's).
    pub fn sign(&self, mut header: Value, claims: &Value) -> String {
        header["alg"] = self.alg.name().into();
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!("{input}.{}", b64(&self.signature(input.as_bytes())))
    }

    fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(p) => {
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).unwrap();
                sig
            }
            Pair::Ec(p) => p.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Ed(p) => p.sign(message).as_ref().to_vec(),
        }
    }

    /// An access token (RFC 9068): `typ: at+jwt`, this key's `kid`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(json!({"typ": "at+jwt", "kid": self.kid}), claims)
    }
}
