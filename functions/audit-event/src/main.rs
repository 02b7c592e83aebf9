//! audit-event's binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(shared::functions::AUDIT_EVENT, audit_event::Config::from_env, audit_event::app).await
}
