//! The secret-scanning Lambda function: `POST /secret-scanning/github` and
//! `POST /secret-scanning/gitlab` behind the API Gateway HTTP API, with CloudWatch embedded
//! metrics (`leaked_secrets`, `secret_scanning_reports`, `leak_notifications_failed`) and a
//! notification of each leak to the alarm topic (`TOKEN_ALARM_TOPIC_ARN`).

use lambda_http::{Error, run};
use token_service::shapes::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = lambda::start("secret-scanning").await?;
    let app = function.secret_scanning_app()?;
    run(app).await
}
