//! Verify the OAuth 2.0 access tokens of one issuer in a resource server: JWT access tokens
//! (RFC 9068) signed with RS256, ES256 or EdDSA, checked against the issuer's JWKS (RFC 7517),
//! and DPoP-bound tokens with their proofs (RFC 9449).
//!
//! ```no_run
//! # async fn run() -> Result<(), token_verifier::Error> {
//! use token_verifier::Verifier;
//!
//! // Once, at start-up: reads the issuer's metadata for its jwks_uri, then its keys.
//! let verifier = Verifier::discover("https://auth.example.com", "https://api.example.com").await?;
//! verifier.hydrate().await?;
//!
//! // Per request (clones are cheap and share the key cache).
//! # let token = "";
//! let claims = verifier.verify(token).await?;
//! claims.require_scope("api.read")?;
//! let tenant: Option<String> = claims.claim("tenant")?;
//! # Ok(()) }
//! ```
//!
//! Keys: only those the JWKS publishes, each with the one algorithm its JWK names (or its type
//! implies); the token's header cannot choose another (RFC 8725 §3.1). The key set is cached
//! for its `Cache-Control: max-age` (capped) and refetched on an unknown `kid` at most once per
//! [`Config::min_refetch_interval`], one fetch at a time, within [`Config::fetch_timeout`] and
//! [`Config::max_jwks_bytes`].
//!
//! With the `axum` feature, [`axum::RequireScope`] guards routes and [`VerifiedToken`] is an
//! extractor.

mod config;
mod discovery;
mod dpop;
mod error;
mod fetch;
mod jwks;
mod request;
mod token;
mod verifier;

#[cfg(feature = "axum")]
pub mod axum;

pub use config::Config;
pub use dpop::normalised_htu;
pub use error::{DPOP_ALGS, Error, Scheme};
pub use request::HttpRequestParts;
pub use token::VerifiedToken;
pub use verifier::Verifier;
