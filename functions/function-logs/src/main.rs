//! function-logs' binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(function_logs::FUNCTION_NAME, function_logs::Config::from_env, function_logs::app)
        .await
}
