//! github-status's binary: reads its configuration (the App key when `report_status` is on), then serves.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(shared::functions::GITHUB_STATUS, github_status::Config::from_env, github_status::app)
        .await
}
