//! garbage-collect's binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(
        shared::functions::GARBAGE_COLLECT,
        garbage_collect::Config::from_env,
        garbage_collect::app,
    )
    .await
}
