//! pipeline-log's binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::server::run_function(pipeline_log::FUNCTION_NAME, pipeline_log::Config::from_env, pipeline_log::app).await
}
