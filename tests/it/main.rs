//! The integration tests, built as one test binary: one module per behaviour area, the
//! helpers they share (`support/`), and the Lambda shape's tests behind the `lambda` feature. The tests
//! that install a process-wide metrics recorder run in binaries of their own
//! (`tests/embedded_metrics.rs`, `tests/request_log.rs`).

mod support;

mod abuse;
mod access_log;
mod apigw_jwt_authorizer;
mod architecture;
mod audit_report;
mod aws_rate_limits;
mod aws_round_trips;
mod aws_store;
mod bootstrap_check;
mod client_claims;
mod connections;
mod discovery_and_audit;
mod docs;
mod dpop;
mod dpop_client;
mod e2e_server;
mod fault;
#[cfg(feature = "lambda")]
mod fuzz_lambda;
mod fuzz_router;
mod group_commit;
mod hardening;
mod key_rotation_protocol;
#[cfg(feature = "lambda")]
mod lambda_events;
mod lifecycle;
#[cfg(feature = "lambda")]
mod openid_discovery;
mod private_key_jwt;
mod private_key_jwt_authlib;
mod rotation;
mod rotation_race;
mod rotation_signing_alg;
mod rotation_simulation;
mod secret_scanning;
mod secret_scanning_reports;
mod store_conformance;
mod token_endpoint;
mod tokenctl;
mod tokenctl_aws;
mod tokenctl_client_keys;
mod tokenctl_report;
mod warm_init;
