//! dashboard's binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(shared::functions::DASHBOARD, dashboard::Config::from_env, dashboard::app).await
}
