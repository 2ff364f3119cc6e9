//! A bare `lambda_runtime` hello-world: the cold-start baseline of `make coldstart`
//! (built with the same profile and target as the functions; never deployed).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
