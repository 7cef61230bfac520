//! Start-up wiring: what each shape builds once per process before it serves anything.
//!
//! A shape reads its settings (through [`crate::config`]), creates its backends (a SQLite file,
//! or the AWS SDK clients with their bounds) and hands the store adapters to the token service,
//! the discovery documents, the management façade ([`crate::admin::Admin`]) and the router.
//! Nothing here decides a request: handlers see only the store ports.
//!
//! - [`embedded`]: `token-server` and `tokenctl` on one SQLite file.
//! - [`aws`]: DynamoDB and Secrets Manager, for the Lambda functions and `tokenctl --backend aws`.
//! - [`server`]: the embedded shape's HTTP/1.1 server with its connection bounds.
//! - [`lambda`]: what the Lambda functions add around the AWS shape (API Gateway's request
//!   context, JSON logs, embedded metrics, the init of a function).

pub mod aws;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "embedded")]
pub mod server;
