//! The token Lambda function: `POST /oauth/token` behind the API Gateway HTTP API, with
//! CloudWatch embedded metrics per outcome.

use std::process::ExitCode;
use std::sync::Arc;

use token_service::clock::SystemClock;
use token_service::shapes::aws::AwsShape;
use token_service::shapes::lambda;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(s) = lambda::start("token").await else {
        return ExitCode::FAILURE;
    };
    let metrics = match lambda::init_metrics("token") {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "metrics recorder not installed");
            return ExitCode::FAILURE;
        }
    };
    let shape = AwsShape::new(
        &s.sdk,
        s.resources.clone(),
        s.config.clone(),
        Arc::new(SystemClock),
    );
    let router = lambda::with_embedded_metrics(shape.token_router().await, metrics);
    s.initialised();
    lambda::exit(lambda_http::run(router).await)
}
