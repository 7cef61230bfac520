//! The authorizer Lambda function: API Gateway calls it with each request to an HTTP API
//! route it protects and routes the request on `isAuthorized` (see README.md).

use authorizer::{Authorizer, Event};
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One event at a time per execution environment: a single-threaded runtime starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let authorizer = &Authorizer::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(authorizer.authorize(&event.payload).await)
    }))
    .await
}
