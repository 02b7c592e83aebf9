//! git-event's binary.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::server::init_tracing();
    let config = git_event::Config::from_env().context("git-event cannot start")?;
    let server = config.server.clone();
    let app = shared::server::with_runtime(git_event::app(config), &server);
    let listener =
        shared::server::bind(&server).await.with_context(|| format!("cannot listen on port {}", server.port))?;
    shared::server::serve(listener, app, shared::server::shutdown_signal()).await.context("server failed")
}
