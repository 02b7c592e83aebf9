//! git-event's binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(shared::functions::GIT_EVENT, git_event::Config::from_env, git_event::app).await
}
