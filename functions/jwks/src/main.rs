//! The jwks Lambda function: the JWKS and the authorization server metadata, read from the
//! public-keys table only (this function has no access to private keys).

use std::process::ExitCode;
use std::sync::Arc;

use token_service::clock::SystemClock;
use token_service::shapes::aws::AwsShape;
use token_service::shapes::lambda;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(s) = lambda::start("jwks").await else {
        return ExitCode::FAILURE;
    };
    let router = AwsShape::new(
        &s.sdk,
        s.resources.clone(),
        s.config.clone(),
        Arc::new(SystemClock),
    )
    .discovery_router();
    s.initialised();
    lambda::exit(lambda_http::run(router).await)
}
