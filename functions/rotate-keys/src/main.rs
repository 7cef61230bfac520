//! The rotate-keys Lambda function: Secrets Manager invokes it with each step of the rotation
//! protocol for the signing-key secret (`token_service::shapes::aws::RotationProtocol`).

mod handler;

use lambda_http::Error;
use lambda_http::lambda_runtime::{run, service_fn};
use token_service::shapes::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = lambda::start("rotate-keys").await?;
    let rotation = function.shape.rotation_protocol();
    let key_secret_id = function.shape.resources.key_secret_id.as_str();
    function.initialised();
    run(service_fn(|event| {
        handler::handle(&rotation, key_secret_id, event)
    }))
    .await
}
