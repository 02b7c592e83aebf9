//! list-functions' binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(
        shared::functions::LIST_FUNCTIONS,
        list_functions::Config::from_env,
        list_functions::app,
    )
    .await
}
