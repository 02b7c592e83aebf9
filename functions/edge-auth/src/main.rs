//! edge-auth's binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(edge_auth::FUNCTION_NAME, edge_auth::Config::from_env, edge_auth::app).await
}
