//! metrics' binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(metrics::FUNCTION_NAME, metrics::Config::from_env, metrics::app).await
}
