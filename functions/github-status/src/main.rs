//! github-status's binary: reads its configuration (the App key when `report_status` is on), then serves.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::server::init_tracing();
    let config = github_status::Config::from_env().context("github-status cannot start")?;
    let server = config.server.clone();
    let app = shared::server::with_runtime(github_status::app(config), &server);
    let listener =
        shared::server::bind(&server).await.with_context(|| format!("cannot listen on port {}", server.port))?;
    tracing::info!(port = server.port, "github-status listening");
    shared::server::serve(listener, app, shared::server::shutdown_signal()).await.context("server failed")
}
