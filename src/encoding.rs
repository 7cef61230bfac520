//! Small encoding helpers shared across the crate: base64url, random identifiers, RFC 3339.

use aws_lc_rs::rand;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// base64url without padding (RFC 4648 §5), as JOSE uses it (RFC 7515 §2).
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `n` bytes from the system CSPRNG, base64url encoded.
pub fn random_b64url(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The system RNG failing is unrecoverable: there is no safe token or secret without it.
    rand::fill(&mut buf).expect("system random number generator failed");
    b64url(buf)
}

/// Formats an instant as RFC 3339 UTC with millisecond precision (`2026-01-02T03:04:05.678Z`).
pub fn rfc3339_ms(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let ms = at.millisecond();
    let base = at
        .replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default();
    // `Rfc3339` prints `...:05Z` for whole seconds: insert the milliseconds before the `Z`.
    format!("{}.{ms:03}Z", base.trim_end_matches('Z'))
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn rfc3339_ms_always_has_three_fraction_digits_and_z() {
        assert_eq!(
            rfc3339_ms(datetime!(2026-01-02 03:04:05 UTC)),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            rfc3339_ms(datetime!(2026-01-02 03:04:05.678912 UTC)),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05.678Z"),
            Some(datetime!(2026-01-02 03:04:05.678 UTC))
        );
    }

    #[test]
    fn random_values_differ_and_have_the_expected_length() {
        let a = random_b64url(16);
        assert_eq!(a.len(), 22);
        assert_ne!(a, random_b64url(16));
    }
}
