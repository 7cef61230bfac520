//! OAuth 2.0 client credentials token service: the library shared by the local server, the
//! admin CLI and the Lambda functions.
//!
//! The pure modules ([`oauth`], [`keys`], [`clients`], and the leaf [`values`]) know nothing of
//! HTTP, storage, settings or AWS (`tests/it/architecture.rs` checks it). [`issue`] is the token
//! flow: read -> authenticate -> authorize -> limit and sign -> audit, with [`refusal`]
//! deciding what a refused request costs its source, [`limits`] spelling windows and counter
//! keys, [`key_cache`] holding the signing key set and [`audit`] writing the record of every
//! answer. [`http`] is the one axum router every shape serves, HTTP-only statuses mapped
//! there once; [`store`] holds the ports (one small trait per capability; the token path's
//! client port is read-only) with their SQLite, in-memory and AWS (DynamoDB, Secrets Manager)
//! implementations. [`shapes`] wires them together at
//! start-up.

pub mod admin;
pub mod audit;
pub mod clients;
pub mod clock;
pub mod config;
pub mod encoding;
pub mod http;
pub mod issue;
pub mod key_cache;
pub mod keys;
pub mod limits;
pub mod oauth;
pub mod refusal;
#[cfg(feature = "scanning")]
pub mod scanning;
pub mod shapes;
pub mod store;
pub mod values;
