//! ofc-registry-gate: reads its settings, then guards the registry behind it until SIGTERM.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(
        "ofc-registry-gate",
        registry_gate::Config::from_env,
        registry_gate::Config::into_router,
    )
    .await
}
