//! of-builder's binary: reads its configuration, then serves `POST /build` and `GET /healthz` until SIGTERM.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::server::init_tracing();
    let config = of_builder::Config::from_env().context("of-builder cannot start")?;
    let server = config.server.clone();
    let app = shared::server::with_runtime(of_builder::app(config), &server);
    let listener =
        shared::server::bind(&server).await.with_context(|| format!("cannot listen on port {}", server.port))?;
    tracing::info!(port = server.port, "of-builder listening");
    shared::server::serve(listener, app, shared::server::shutdown_signal()).await.context("server failed")
}
