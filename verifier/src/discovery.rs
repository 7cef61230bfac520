//! Finding the JWKS from the issuer's metadata (RFC 8414; OpenID Connect Discovery 1.0).

use reqwest::Client;
use serde::Deserialize;

use crate::config::Config;
use crate::error::Error;
use crate::fetch;

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

/// The `jwks_uri` of `config.issuer`: from the RFC 8414 document, else the OpenID one. The
/// document must name the same issuer, byte for byte (RFC 8414 §3.3), or it could send us to
/// another issuer's keys.
pub(crate) async fn jwks_uri(client: &Client, config: &Config) -> Result<String, Error> {
    let mut last = Error::Jwks("no metadata document".into());
    for url in metadata_urls(&config.issuer)? {
        match document(client, &url, config).await {
            Ok(metadata) => {
                if metadata.issuer != config.issuer {
                    return Err(Error::Jwks(format!(
                        "the metadata at {url} names another issuer"
                    )));
                }
                fetch::allowed_url(&metadata.jwks_uri)?;
                return Ok(metadata.jwks_uri);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn document(client: &Client, url: &str, config: &Config) -> Result<Metadata, Error> {
    let url = fetch::allowed_url(url)?;
    let fetched = fetch::get(client, &url, config.fetch_timeout, config.max_jwks_bytes).await?;
    serde_json::from_slice(&fetched.body)
        .map_err(|_| Error::Jwks(format!("{url} is not a metadata document with a jwks_uri")))
}

/// RFC 8414 §3.1 inserts the well-known segment before the issuer's path; OpenID Connect
/// Discovery §4 appends it.
fn metadata_urls(issuer: &str) -> Result<[String; 2], Error> {
    let url = fetch::allowed_url(issuer)?;
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    Ok([
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_follow_rfc_8414_and_openid() {
        assert_eq!(
            metadata_urls("https://issuer.example").unwrap(),
            [
                "https://issuer.example/.well-known/oauth-authorization-server",
                "https://issuer.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://issuer.example/tenant/").unwrap(),
            [
                "https://issuer.example/.well-known/oauth-authorization-server/tenant",
                "https://issuer.example/tenant/.well-known/openid-configuration"
            ]
        );
        assert!(metadata_urls("http://issuer.example").is_err());
    }
}
