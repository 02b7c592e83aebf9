//! edge-router's binary: reads its configuration, then routes pretty URLs to the gateway until SIGTERM.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function("edge-router", edge_router::Config::from_env, edge_router::app).await
}
