//! buildshiprun's binary: reads its configuration, then serves until SIGTERM.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(shared::functions::BUILDSHIPRUN, buildshiprun::Config::from_env, buildshiprun::app)
        .await
}
