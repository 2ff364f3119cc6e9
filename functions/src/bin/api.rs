//! Every route function: the template's `CAPY_ROUTE` says which route this one serves.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), capy_functions::Error> {
    capy_functions::run_api().await
}
