//! Signing keys: the key set, its rotation schedule, token signing and the published JWKS.

pub mod jwk;
pub mod pair;
pub mod signing;
pub mod schedule;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use jwk::PublicKeyRecord;
pub use pair::{KeyPair, SIGNING_ALGS, SigningAlg};
pub use signing::{SigningKeys, SigningKey};
pub use schedule::{KeyTimes, KeyTiming, Schedule};

/// The `alg` of a stored key that has none: key sets written before keys recorded their
/// algorithm hold RSA keys only.
fn legacy_alg() -> String {
    SigningAlg::RS256.as_str().to_owned()
}

/// One private key of the set (DESIGN.md "Data model").
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Key id: the RFC 7638 thumbprint of the public key, never reused.
    pub kid: String,
    /// The JWS algorithm the key signs with ([`SigningAlg`]); `RS256` when absent.
    #[serde(default = "legacy_alg")]
    pub alg: String,
    /// When the key was generated.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// From this instant on the key may sign (if it is the newest active one).
    #[serde(with = "time::serde::rfc3339")]
    pub activates_at: OffsetDateTime,
    /// The private key, PKCS#8 DER, standard base64.
    pub private_key: String,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl KeyTimes for KeyEntry {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
    fn activates_at(&self) -> OffsetDateTime {
        self.activates_at
    }
}

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key generation failed in the crypto library.
    #[error("key generation failed")]
    Generate,
    /// Stored key material is not a valid PKCS#8 private key of the key's algorithm.
    #[error("key {0} is not a valid PKCS#8 private key of its algorithm")]
    Invalid(String),
    /// The key set uses a version or algorithm this build does not know.
    #[error("unsupported key set: {0}")]
    Unsupported(String),
    /// The text is not a key set. Only the position is kept: serde's message may quote the
    /// value it failed on, and that value may be a private key.
    #[error("not a key set (JSON line {line} column {column})")]
    Malformed {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
    },
}

impl KeyError {
    /// A parse error reduced to its position.
    pub fn malformed(e: &serde_json::Error) -> Self {
        Self::Malformed {
            line: e.line(),
            column: e.column(),
        }
    }
}

impl KeyEntry {
    /// Generates a new key of `alg` that may sign from `activates_at` on.
    pub fn generate(
        alg: SigningAlg,
        now: OffsetDateTime,
        activates_at: OffsetDateTime,
    ) -> Result<Self, KeyError> {
        let pair = KeyPair::generate(alg).map_err(|_| KeyError::Generate)?;
        let der = pair.pkcs8().map_err(|_| KeyError::Generate)?;
        Ok(Self {
            kid: jwk::thumbprint(&pair.public_params()),
            alg: alg.as_str().to_owned(),
            created_at: now,
            activates_at,
            private_key: STANDARD.encode(der),
        })
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> Result<SigningAlg, KeyError> {
        self.alg
            .parse()
            .map_err(|_| KeyError::Unsupported(format!("alg {} of {}", self.alg, self.kid)))
    }

    /// The PKCS#8 DER bytes of the private key.
    pub fn pkcs8(&self) -> Result<Vec<u8>, KeyError> {
        STANDARD
            .decode(&self.private_key)
            .map_err(|_| KeyError::Invalid(self.kid.clone()))
    }

    /// The parsed private key.
    pub fn key_pair(&self) -> Result<KeyPair, KeyError> {
        KeyPair::from_pkcs8(self.algorithm()?, &self.pkcs8()?)
            .map_err(|_| KeyError::Invalid(self.kid.clone()))
    }
}

/// The private key set: what the Secrets Manager secret (or the SQLite key table) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    /// Format version, currently 1.
    pub version: u32,
    /// The keys, in any order; the schedule decides which signs.
    pub keys: Vec<KeyEntry>,
    /// The timing of the rotation that wrote the set, where the embedded shape records it
    /// (see [`KeyTiming`]); absent in sets written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<KeyTiming>,
    /// The secret DPoP nonces are made with (RFC 9449 §8), shared by every instance that reads
    /// the set; made by the first rotation that finds none, then kept by every rotation. Absent
    /// from sets written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_nonce_secret: Option<NonceSecret>,
}

/// 256 random bits, base64url, that DPoP nonces are made with. Its `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NonceSecret(String);

impl std::fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceSecret([redacted])")
    }
}

impl NonceSecret {
    /// A new secret from the system's random generator.
    pub fn generate() -> Self {
        Self(crate::encoding::random_b64url(32))
    }

    /// The secret's bytes (its text: any text is as good a key).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Default for KeySet {
    fn default() -> Self {
        Self {
            version: 1,
            keys: Vec::new(),
            timing: None,
            dpop_nonce_secret: None,
        }
    }
}

impl KeySet {
    /// Parses the JSON form and checks version and algorithms.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let set: Self = serde_json::from_str(text).map_err(|e| KeyError::malformed(&e))?;
        if set.version != 1 {
            return Err(KeyError::Unsupported(format!("version {}", set.version)));
        }
        for key in &set.keys {
            key.algorithm()?;
        }
        Ok(set)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a key set always serialises")
    }

    /// [`rotated_to`](Self::rotated_to) with a new key of the default algorithm, RS256.
    pub fn rotated(&self, now: OffsetDateTime, schedule: &Schedule) -> Result<Self, KeyError> {
        self.rotated_to(SigningAlg::default(), now, schedule)
    }

    /// The set after one rotation at `now` (DESIGN.md "Keys and rotation"): a new key of `alg`
    /// that activates after the pre-publication delay is added, and keys that are no longer
    /// published are dropped. An empty set gets a key that signs at once: nobody can have
    /// cached a JWKS yet. This is the only way a change of `TOKEN_SIGNING_ALG` takes effect:
    /// the keys already in the set keep their algorithm until they retire.
    pub fn rotated_to(
        &self,
        alg: SigningAlg,
        now: OffsetDateTime,
        schedule: &Schedule,
    ) -> Result<Self, KeyError> {
        let activates_at = if self.keys.is_empty() {
            now
        } else {
            now + schedule.prepublication
        };
        let new = KeyEntry::generate(alg, now, activates_at)?;
        let mut keys: Vec<KeyEntry> = self
            .keys
            .iter()
            .filter(|k| schedule.is_published(&self.keys, k.kid(), now))
            .cloned()
            .collect();
        keys.push(new);
        let secret = self.dpop_nonce_secret.clone();
        Ok(Self {
            version: 1,
            keys,
            timing: Some(schedule.into()),
            dpop_nonce_secret: Some(secret.unwrap_or_else(NonceSecret::generate)),
        })
    }

    /// The public records of every key in the set.
    pub fn public_records(&self) -> Result<Vec<PublicKeyRecord>, KeyError> {
        self.keys.iter().map(PublicKeyRecord::from_entry).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Key sets whose shape is wrong right where key material sits; serde would quote it.
    pub(crate) const LEAKY: &[&str] = &[
        r#"{"version":1,"keys":"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ"}"#,
        r#"{"version":"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ","keys":[]}"#,
        r#"{"version":1,"keys":["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ"]}"#,
        r#"{"version":1,"keys":[{"kid":"k","alg":"RS256","created_at":"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ",
            "activates_at":"2026-01-01T00:00:00Z","private_key":"x"}]}"#,
    ];

    /// The part of [`LEAKY`] that must never show in an error.
    pub(crate) const MATERIAL: &str = "MIIEvQIBADANBgkq";

    #[test]
    fn parse_errors_never_carry_key_material() {
        for text in LEAKY {
            let err = KeySet::from_json(text).unwrap_err().to_string();
            assert!(!err.contains(MATERIAL), "{err}");
            assert!(err.contains("line"), "the position is reported: {err}");
        }
        let err = KeySet::from_json(r#"{"version":2,"keys":[]}"#).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    /// The first rotation makes the DPoP nonce secret; later ones keep it; a set written before
    /// it existed reads as having none; `Debug` shows nothing of it.
    #[test]
    fn rotations_make_the_nonce_secret_once_and_keep_it() {
        let now = OffsetDateTime::now_utc();
        let schedule = Schedule {
            prepublication: time::Duration::hours(1),
            retirement: time::Duration::seconds(3660),
            signer_refresh: time::Duration::minutes(5),
        };
        let first = KeySet::default().rotated(now, &schedule).unwrap();
        let secret = first
            .dpop_nonce_secret
            .clone()
            .expect("made by the first rotation");
        assert_eq!(secret.as_bytes().len(), 43);
        let second = first.rotated(now, &schedule).unwrap();
        assert_eq!(second.dpop_nonce_secret, Some(secret.clone()));
        let text = std::str::from_utf8(secret.as_bytes()).unwrap().to_owned();
        assert!(!format!("{second:?}").contains(&text));
        let mut json = serde_json::to_value(&second).unwrap();
        json.as_object_mut().unwrap().remove("dpop_nonce_secret");
        let old = KeySet::from_json(&json.to_string()).unwrap();
        assert_eq!(old.dpop_nonce_secret, None);
    }

    /// A key set written before keys recorded an algorithm (no `alg`), or with `RS256`, loads
    /// and signs RS256; an algorithm this build does not sign with is refused by name.
    #[test]
    fn key_sets_without_alg_load_as_rs256() {
        let now = OffsetDateTime::now_utc();
        let key = KeyEntry::generate(SigningAlg::RS256, now, now).unwrap();
        let mut json = serde_json::to_value(KeySet {
            version: 1,
            keys: vec![key.clone()],
            timing: None,
            dpop_nonce_secret: None,
        })
        .unwrap();
        json["keys"][0].as_object_mut().unwrap().remove("alg");
        let set = KeySet::from_json(&json.to_string()).unwrap();
        assert_eq!(set.keys[0].algorithm().unwrap(), SigningAlg::RS256);
        let ring = SigningKeys::load(&set).unwrap();
        assert_eq!(ring.key(&key.kid).unwrap().alg(), SigningAlg::RS256);
        assert_eq!(
            set.public_records().unwrap()[0].jwk.common.key_algorithm,
            Some(jsonwebtoken::jwk::KeyAlgorithm::RS256)
        );

        json["keys"][0]["alg"] = "PS256".into();
        let err = KeySet::from_json(&json.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("alg PS256"), "{err}");
    }

    /// A rotation makes its new key with the algorithm asked for, and leaves the keys already
    /// in the set, and so the key that signs now, as they were.
    #[test]
    fn a_rotation_adds_a_key_of_the_new_algorithm_and_keeps_the_others() {
        let schedule = Schedule {
            prepublication: time::Duration::hours(1),
            retirement: time::Duration::seconds(3660),
            signer_refresh: time::Duration::minutes(5),
        };
        let t0 = OffsetDateTime::now_utc();
        let first = KeySet::default().rotated(t0, &schedule).unwrap();
        let t1 = t0 + time::Duration::hours(2);
        let next = first.rotated_to(SigningAlg::ES256, t1, &schedule).unwrap();
        assert_eq!(next.keys.len(), 2);
        assert_eq!(next.keys[0], first.keys[0]);
        assert_eq!(next.keys[1].algorithm().unwrap(), SigningAlg::ES256);
        assert_eq!(next.keys[1].activates_at, t1 + schedule.prepublication);
        let ring = SigningKeys::load(&next).unwrap();
        assert_eq!(ring.signer(&schedule, t1).unwrap().alg(), SigningAlg::RS256);
        let later = t1 + schedule.prepublication;
        assert_eq!(
            ring.signer(&schedule, later).unwrap().alg(),
            SigningAlg::ES256
        );
    }
}
