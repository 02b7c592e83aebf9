//! gh-push's binary: reads its configuration, then serves the webhook until SIGTERM.

use std::process::ExitCode;

/// Every webhook allocates a few dozen small buffers; mimalloc serves them with far less CPU than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: a webhook costs about 40 µs of CPU, so one core takes 20,000 a second, and OpenFaaS scales out by
/// replicas. A multi-threaded runtime spent a third more CPU a webhook on handing work between its threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    shared::server::run_function(shared::functions::GH_PUSH, gh_push::Config::from_env, gh_push::app).await
}
