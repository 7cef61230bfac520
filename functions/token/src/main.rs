//! The token Lambda function: `POST /oauth/token` behind the API Gateway HTTP API.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use aws_config::BehaviorVersion;
use token_service::clock::SystemClock;
use token_service::lambda::{self, AwsShape};

#[tokio::main]
async fn main() -> ExitCode {
    let started = Instant::now();
    lambda::init_tracing();
    let (config, resources) = match lambda::config_from_env() {
        Ok(loaded) => loaded,
        Err(e) => {
            // Stop at init: a bad setting must not turn into failing requests.
            tracing::error!(error = %e, "token function not started; fix its environment");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match lambda::init_metrics("token") {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "metrics recorder not installed");
            return ExitCode::FAILURE;
        }
    };
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let shape = AwsShape::new(&sdk, resources, config, Arc::new(SystemClock));
    let router = lambda::with_embedded_metrics(shape.token_router(), metrics);
    let init_ms = started.elapsed().as_millis() as u64;
    tracing::info!(init_ms, "token function initialised");
    match lambda_http::run(router).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}
