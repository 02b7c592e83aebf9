//! git-tar's binary: reads its configuration, then serves until SIGTERM.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(shared::functions::GIT_TAR, git_tar::Config::from_env, git_tar::app).await
}
