//! The signing algorithms of access tokens (`TOKEN_SIGNING_ALG`) and their key pairs:
//! generation, PKCS#8 storage, JWS signatures and public JWK parameters, all through aws-lc-rs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, EllipticCurveKeyParameters, EllipticCurveKeyType,
    KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType, RSAKeyParameters, RSAKeyType,
};

use crate::encoding::b64url;

/// A JWS algorithm the service signs access tokens with (RFC 7518 §3.3 and §3.4, RFC 8037
/// §3.1). Each key signs with one algorithm only, recorded with the key (RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 on RSA-2048: what every JWT library verifies.
    #[default]
    RS256,
    /// ECDSA on P-256 with SHA-256, the 64-byte `r || s` signature of RFC 7518 §3.4.
    ES256,
    /// Ed25519 (RFC 8037 §3.1).
    EdDSA,
}

/// Every algorithm, in the order the setting lists them.
pub const SIGNING_ALGS: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

impl SigningAlg {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The algorithm as `jsonwebtoken` names it, for verifiers.
    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    /// The JWK `alg` member (RFC 7517 §4.4).
    pub fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            Self::RS256 => KeyAlgorithm::RS256,
            Self::ES256 => KeyAlgorithm::ES256,
            Self::EdDSA => KeyAlgorithm::EdDSA,
        }
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is none of the JWS names of [`SIGNING_ALGS`].
#[derive(Debug, thiserror::Error)]
#[error("unknown signing algorithm {0:?}; one of RS256, ES256, EdDSA")]
pub struct UnknownAlg(pub String);

impl std::str::FromStr for SigningAlg {
    type Err = UnknownAlg;

    /// The exact JWS name: `alg` values are case-sensitive (RFC 7515 §4.1.1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SIGNING_ALGS
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAlg(s.to_owned()))
    }
}

/// A private key of one [`SigningAlg`], parsed and ready to sign.
pub enum KeyPair {
    /// RSA-2048.
    Rsa(aws_lc_rs::rsa::KeyPair),
    /// EC P-256.
    Ec(EcdsaKeyPair),
    /// Ed25519.
    Ed(Ed25519KeyPair),
}

/// The crypto library refused to make or read a key; it says nothing more.
#[derive(Debug)]
pub struct Rejected;

impl KeyPair {
    /// A new key pair for `alg`.
    pub fn generate(alg: SigningAlg) -> Result<Self, Rejected> {
        Ok(match alg {
            SigningAlg::RS256 => Self::Rsa(
                aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|_| Rejected)?,
            ),
            SigningAlg::ES256 => Self::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| Rejected)?,
            ),
            SigningAlg::EdDSA => Self::Ed(Ed25519KeyPair::generate().map_err(|_| Rejected)?),
        })
    }

    /// Reads a PKCS#8 private key of `alg` (v1 or v2 for Ed25519).
    pub fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<Self, Rejected> {
        Ok(match alg {
            SigningAlg::RS256 => {
                Self::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|_| Rejected)?)
            }
            SigningAlg::ES256 => Self::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| Rejected)?,
            ),
            SigningAlg::EdDSA => Self::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(|_| Rejected)?),
        })
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> SigningAlg {
        match self {
            Self::Rsa(_) => SigningAlg::RS256,
            Self::Ec(_) => SigningAlg::ES256,
            Self::Ed(_) => SigningAlg::EdDSA,
        }
    }

    /// The private key as PKCS#8 DER: v1 for RSA and EC, v2 (with the public key) for
    /// Ed25519. The EC and Ed25519 forms are what `jsonwebtoken`'s `EncodingKey::from_ec_der`
    /// and `from_ed_der` read.
    pub fn pkcs8(&self) -> Result<Vec<u8>, Rejected> {
        let der = match self {
            Self::Rsa(p) => p.as_der().map_err(|_| Rejected)?.as_ref().to_vec(),
            Self::Ec(p) => p.to_pkcs8v1().map_err(|_| Rejected)?.as_ref().to_vec(),
            Self::Ed(p) => p.to_pkcs8().map_err(|_| Rejected)?.as_ref().to_vec(),
        };
        Ok(der)
    }

    /// The JWS signature of `message` (RFC 7518 §3.3, §3.4; RFC 8037 §3.1).
    pub fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, Rejected> {
        match self {
            Self::Rsa(p) => {
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, rng, message, &mut sig)
                    .map_err(|_| Rejected)?;
                Ok(sig)
            }
            Self::Ec(p) => Ok(p
                .sign(rng, message)
                .map_err(|_| Rejected)?
                .as_ref()
                .to_vec()),
            Self::Ed(p) => Ok(p.sign(message).as_ref().to_vec()),
        }
    }

    /// The public key's JWK members (RFC 7518 §6.2.1 and §6.3.1, RFC 8037 §2).
    pub fn public_params(&self) -> AlgorithmParameters {
        match self {
            Self::Rsa(p) => {
                let c: PublicKeyComponents<Vec<u8>> = p.public_key().into();
                AlgorithmParameters::RSA(RSAKeyParameters {
                    key_type: RSAKeyType::RSA,
                    n: b64url(&c.n),
                    e: b64url(&c.e),
                })
            }
            Self::Ec(p) => {
                // The uncompressed point: 0x04, then x and y of 32 bytes each (SEC 1 §2.3.3).
                let point = p.public_key().as_ref();
                let (x, y) = point[1..].split_at(32);
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64url(x),
                    y: b64url(y),
                })
            }
            Self::Ed(p) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: b64url(p.public_key().as_ref()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_exact_jws_names() {
        for alg in SIGNING_ALGS {
            assert_eq!(alg.as_str().parse::<SigningAlg>().unwrap(), alg);
            assert_eq!(format!("{:?}", alg.jwt_algorithm()), alg.as_str());
        }
        for bad in ["rs256", "es256", "EDDSA", "PS256", "HS256", "none", ""] {
            let err = bad.parse::<SigningAlg>().unwrap_err().to_string();
            assert!(err.contains("RS256, ES256, EdDSA"), "{err}");
        }
        assert_eq!(SigningAlg::default(), SigningAlg::RS256);
    }

    #[test]
    fn every_key_reads_back_from_its_pkcs8_with_the_same_public_key() {
        for alg in SIGNING_ALGS {
            let pair = KeyPair::generate(alg).unwrap();
            assert_eq!(pair.alg(), alg);
            let again = KeyPair::from_pkcs8(alg, &pair.pkcs8().unwrap()).unwrap();
            assert_eq!(again.public_params(), pair.public_params(), "{alg}");
            for other in SIGNING_ALGS.into_iter().filter(|o| *o != alg) {
                assert!(
                    KeyPair::from_pkcs8(other, &pair.pkcs8().unwrap()).is_err(),
                    "a {alg} key read as {other}"
                );
            }
        }
    }
}
