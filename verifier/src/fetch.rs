//! Bounded GETs of the issuer's documents: `https` only (loopback `http` for tests), a time
//! limit from connection to last byte, a size limit checked before and while reading, and the
//! `Cache-Control: max-age` of the answer (RFC 9111 §5.2.2.1).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Client, Url, header};

use crate::error::Error;

/// A document read within the bounds.
pub(crate) struct Fetched {
    pub body: Vec<u8>,
    /// `max-age` of `Cache-Control`, `Some(0)` for `no-store`/`no-cache`, `None` if absent.
    pub max_age: Option<Duration>,
}

/// The HTTP client for every fetch of one verifier: no redirects (a key set that moves is a
/// configuration change, and a redirect could lead from `https` to `http`), bounded time.
pub(crate) fn client(timeout: Duration) -> Result<Client, Error> {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("token-verifier/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|_| Error::Jwks("the HTTP client could not be built".into()))
}

/// `url` if it may be fetched: `https`, or `http` to a loopback address (127.0.0.0/8, ::1,
/// `localhost`) for local development and tests.
pub(crate) fn allowed_url(url: &str) -> Result<Url, Error> {
    let parsed = Url::parse(url).map_err(|_| Error::Jwks(format!("not a URL: {url}")))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(Error::Jwks(format!("only https URLs are fetched: {url}"))),
    }
}

/// GETs `url` within `timeout` and `max_bytes`.
pub(crate) async fn get(
    client: &Client,
    url: &Url,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Fetched, Error> {
    // reqwest's own timeout covers the request; this one also covers a body that trickles.
    tokio::time::timeout(timeout, read(client, url, max_bytes))
        .await
        .unwrap_or_else(|_| {
            Err(Error::Jwks(format!(
                "{url} did not answer within {timeout:?}"
            )))
        })
}

async fn read(client: &Client, url: &Url, max_bytes: usize) -> Result<Fetched, Error> {
    let unreachable = |e: reqwest::Error| {
        let why = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        Error::Jwks(format!("{url}: {why}"))
    };
    let mut response = client
        .get(url.clone())
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Jwks(format!("{url} answered {}", status.as_u16())));
    }
    let too_large = || Error::Jwks(format!("{url} is larger than {max_bytes} bytes"));
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(too_large());
    }
    let max_age = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, max_age })
}

/// The freshness lifetime a `Cache-Control` value grants (RFC 9111 §5.2.2): `max-age=N`, or
/// zero for `no-store` / `no-cache`; `None` when it says neither.
pub(crate) fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            age = value
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_reads_the_directive() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("max-age=\"5\""), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn only_https_or_loopback_http() {
        assert!(allowed_url("https://issuer.example/jwks").is_ok());
        assert!(allowed_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(allowed_url("http://127.8.0.1/jwks").is_ok());
        assert!(allowed_url("http://[::1]:9/jwks").is_ok());
        assert!(allowed_url("http://LocalHost/jwks").is_ok());
        assert!(allowed_url("http://issuer.example/jwks").is_err());
        assert!(allowed_url("http://10.0.0.1/jwks").is_err());
        assert!(allowed_url("http://localhost.evil.example/jwks").is_err());
        assert!(allowed_url("file:///etc/passwd").is_err());
    }
}
