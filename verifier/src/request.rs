//! The parts of an HTTP request that token and proof checks read, independent of any server
//! framework (axum, API Gateway events, hyper...).

use crate::error::{Error, Scheme};

/// What [`Verifier::verify_request`](crate::Verifier::verify_request) reads from a request.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequestParts<'a> {
    /// The request method, as sent (`GET`, `POST`, ...): a DPoP proof's `htm`.
    pub method: &'a str,
    /// The absolute URL as the client reached it (external scheme, host and path; the query is
    /// ignored): a DPoP proof's `htu`. Build it from configuration, not from the `Host` header.
    pub url: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// Every `DPoP` header value (RFC 9449 §4.3 requires exactly one with the DPoP scheme).
    pub dpop: &'a [&'a str],
}

impl HttpRequestParts<'_> {
    /// The scheme of the `Authorization` header, if it names one this crate knows.
    pub fn scheme(&self) -> Option<Scheme> {
        self.authorization
            .and_then(|value| credentials(value).ok())
            .map(|(scheme, _)| scheme)
    }
}

/// Splits `Authorization: <scheme> <token>` (RFC 9110 §11.4: the scheme is case-insensitive;
/// RFC 6750 §2.1 `b64token`).
pub(crate) fn credentials(header: &str) -> Result<(Scheme, &str), Error> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(Error::InvalidRequest(
        "Authorization is not `<scheme> <token>`",
    ))?;
    let scheme = if scheme.eq_ignore_ascii_case("Bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("DPoP") {
        Scheme::DPoP
    } else {
        return Err(Error::InvalidRequest(
            "Authorization scheme is not Bearer or DPoP",
        ));
    };
    let token = token.trim_start_matches(' ');
    if token.is_empty() || !token.bytes().all(is_b64token_char) {
        return Err(Error::InvalidRequest(
            "Authorization token is not a b64token",
        ));
    }
    Ok((scheme, token))
}

fn is_b64token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_case_insensitive_and_tokens_are_b64tokens() {
        assert_eq!(
            credentials("Bearer a.b.c").unwrap(),
            (Scheme::Bearer, "a.b.c")
        );
        assert_eq!(
            credentials("bearer a.b.c").unwrap(),
            (Scheme::Bearer, "a.b.c")
        );
        assert_eq!(credentials("DPoP a.b.c").unwrap(), (Scheme::DPoP, "a.b.c"));
        assert!(credentials("Basic dXNlcjpwYXNz").is_err());
        assert!(credentials("Bearer").is_err());
        assert!(credentials("Bearer a b").is_err());
        assert!(credentials("Bearer \"x\"").is_err());
    }
}
