//! The jwks Lambda function: the JWKS and the authorization server metadata, read from the
//! public-keys table only (this function has no access to private keys).

use lambda_http::{Error, run};
use token_service::shapes::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = lambda::start("jwks").await?;
    run(function.discovery_app()).await
}
