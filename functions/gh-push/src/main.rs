//! gh-push's binary: reads its configuration, then serves the webhook until SIGTERM.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::server::init_tracing();
    let config = gh_push::Config::from_env().context("gh-push cannot start")?;
    let server = config.server.clone();
    let app = shared::server::with_runtime(gh_push::app(config), &server);
    let listener =
        shared::server::bind(&server).await.with_context(|| format!("cannot listen on port {}", server.port))?;
    tracing::info!(port = server.port, "gh-push listening");
    shared::server::serve(listener, app, shared::server::shutdown_signal()).await.context("server failed")
}
