//! The token Lambda function: `POST /oauth/token` behind the API Gateway HTTP API, with
//! CloudWatch embedded metrics per outcome.

use lambda_http::{Error, run};
use token_service::shapes::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = lambda::start("token").await?;
    let app = function.token_app().await?;
    run(app).await
}
