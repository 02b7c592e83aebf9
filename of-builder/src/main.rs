//! of-builder's binary: reads its configuration, then serves `POST /build` and `GET /healthz` until SIGTERM.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function("of-builder", of_builder::Setup::from_env, of_builder::serve).await
}
