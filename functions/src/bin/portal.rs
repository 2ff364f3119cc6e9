// The portal's built files (`portal/dist` at build time), embedded by build.rs.
include!(concat!(env!("OUT_DIR"), "/portal_files.rs"));

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), capy_functions::Error> {
    capy_functions::run_portal(PORTAL_FILES).await
}
