//! OAuth 2.0 client credentials token service: the library shared by the local server, the
//! admin CLI and the Lambda functions.
//!
//! The domain (clients, keys, OAuth request rules) knows nothing of HTTP or storage; the
//! [`http`] module is the one axum router every shape serves, and [`store`] holds the ports
//! (traits) with their SQLite and AWS (DynamoDB, Secrets Manager) implementations.

pub mod admin;
pub mod audit;
pub mod aws_shape;
pub mod clients;
pub mod clock;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod encoding;
pub mod http;
pub mod issue;
pub mod key_cache;
pub mod keys;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod limits;
pub mod oauth;
pub mod refusal;
pub mod store;
pub mod values;
