#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), capy_functions::Error> {
    capy_functions::run_jobs().await
}
