//! The secret-scanning Lambda function: `POST /secret-scanning/github` and
//! `POST /secret-scanning/gitlab` behind the API Gateway HTTP API, with CloudWatch embedded
//! metrics (`leaked_secrets`, `secret_scanning_reports`).

use lambda_http::{Error, run};
use token_service::shapes::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = lambda::start("secret-scanning").await?;
    let app = function.secret_scanning_app()?;
    run(app).await
}
