//! git-tar's binary: reads its configuration, then serves until SIGTERM.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::server::init_tracing();
    let config = git_tar::Config::from_env().context("git-tar cannot start")?;
    let server = config.server.clone();
    let app = shared::server::with_runtime(git_tar::app(config), &server);
    let listener =
        shared::server::bind(&server).await.with_context(|| format!("cannot listen on port {}", server.port))?;
    tracing::info!(port = server.port, "git-tar listening");
    shared::server::serve(listener, app, shared::server::shutdown_signal()).await.context("server failed")
}
