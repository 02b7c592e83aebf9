//! gh-push's binary: reads its configuration, then serves the webhook until SIGTERM.

use anyhow::Context as _;

/// Every webhook allocates a few dozen small buffers; mimalloc serves them with far less CPU than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: a webhook costs about 40 µs of CPU, so one core takes 20,000 a second, and OpenFaaS scales out by
/// replicas. A multi-threaded runtime spent a third more CPU a webhook on handing work between its threads.
#[tokio::main(flavor = "current_thread")]
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
