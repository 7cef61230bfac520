//! Writes DPoP proofs (RFC 9449) for `bench/load.sh`: one ES256 key, COUNT proofs for
//! `POST <htu>`, each with its own `jti` and `iat` = now, one per line on standard output.
//! wrk's Lua cannot sign, so the load test reads proofs made just before the run; each is good
//! once, for the proof window (`TOKEN_DPOP_PROOF_WINDOW`, 60 s by default).
//!
//!   cargo run --release --example dpop-proofs -- http://127.0.0.1:9000/oauth/token 100000

use std::io::{BufWriter, Write as _};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: dpop-proofs <htu> <count>";
    let htu = args.next().ok_or(usage)?;
    let count: usize = args.next().ok_or(usage)?.parse()?;
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "cannot make a P-256 key")?;
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(Jwk::from_encoding_key(&key, Algorithm::ES256)?);
    let iat = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut bytes = [0u8; 16];
    for _ in 0..count {
        rng.fill(&mut bytes).map_err(|_| "no randomness")?;
        let claims = serde_json::json!({
            "jti": URL_SAFE_NO_PAD.encode(bytes), "htm": "POST", "htu": htu, "iat": iat,
        });
        writeln!(out, "{}", jsonwebtoken::encode(&header, &claims, &key)?)?;
    }
    Ok(())
}
