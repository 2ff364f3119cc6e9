//! The hello-world of `make coldstart` on tokio's current-thread runtime, the flavor the
//! functions use: a second baseline, so the cost of our own init shows apart from the
//! runtime's (never deployed).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
