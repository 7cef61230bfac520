//! DPoP nonces of the token endpoint (RFC 9449 §8), stateless: a nonce is the HMAC-SHA256 of a
//! time step under a secret every instance shares, so any instance accepts what another
//! issued, and nothing is stored per nonce. A nonce stays valid for [`VALID_STEPS`] steps.

use aws_lc_rs::{constant_time, hmac};

use crate::encoding::b64url;

/// Length of a time step, seconds.
pub const STEP_SECS: i64 = 60;

/// Steps a nonce is accepted in: the one it was issued in and the next two (so for two to three
/// minutes), and the one before it, for an instance whose clock runs a little ahead.
pub const VALID_STEPS: i64 = 3;

/// Bytes of the HMAC kept in a nonce: 128 bits.
const NONCE_BYTES: usize = 16;

/// The key nonces are made with. Its `Debug` prints no key material.
pub struct NonceKey(hmac::Key);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey([redacted])")
    }
}

impl NonceKey {
    /// The key derived from `secret` (at least 32 random bytes, shared by every instance).
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn at_step(&self, step: i64) -> [u8; NONCE_BYTES] {
        let tag = hmac::sign(&self.0, &step.to_be_bytes());
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&tag.as_ref()[..NONCE_BYTES]);
        nonce
    }

    /// The current nonce at `now` (epoch seconds).
    pub fn issue(&self, now: i64) -> String {
        b64url(self.at_step(now.div_euclid(STEP_SECS)))
    }

    /// Whether `nonce` is one this key issued within the last [`VALID_STEPS`] steps.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let step = now.div_euclid(STEP_SECS);
        let given = nonce.as_bytes();
        (step - VALID_STEPS + 1..=step + 1).fold(false, |found, s| {
            let expected = b64url(self.at_step(s));
            found | constant_time::verify_slices_are_equal(expected.as_bytes(), given).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_for_a_few_steps_and_only_under_its_key() {
        let key = NonceKey::new(&[7; 32]);
        let nonce = key.issue(1_000_000);
        assert_eq!(nonce.len(), 22);
        for later in [0, 59, 60, 119] {
            assert!(key.accepts(&nonce, 1_000_000 + later), "{later}");
        }
        assert!(
            key.accepts(&nonce, 1_000_000 - 60),
            "an instance a step ahead"
        );
        assert!(!key.accepts(&nonce, 1_000_000 + 60 * VALID_STEPS));
        assert!(!NonceKey::new(&[8; 32]).accepts(&nonce, 1_000_000));
        assert!(!key.accepts("", 1_000_000));
        assert!(!key.accepts(&format!("{nonce}x"), 1_000_000));
    }
}
