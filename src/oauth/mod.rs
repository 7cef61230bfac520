//! The OAuth 2.0 protocol surface: errors (RFC 6749 §5.2), token requests (§2.3, §4.4, RFC 8707),
//! scopes (§3.3), access-token claims (RFC 9068), the grant rules (§4.4), client assertions
//! (RFC 7523) and DPoP proofs and nonces (RFC 9449).

pub mod assertion;
pub mod claims;
pub mod dpop;
pub mod error;
pub mod grant;
pub mod nonce;
pub mod request;
pub mod scope;
pub mod used_ids;

pub use error::OAuthError;
pub use request::{ClientCredentials, TokenRequest};
