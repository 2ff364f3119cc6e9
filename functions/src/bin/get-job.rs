use capy_functions::{Error, run_route};
use capy_shared::api::Route;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run_route(Route::GetJob).await
}
