//! A router served over real HTTP on a random loopback port, for as long as the test holds it.
//!
//! Why here: the functions' tests, the embedded gateway's tests and the benchmarks each bound `127.0.0.1:0`, spawned
//! `axum::serve` and kept a shutdown sender, in about ten copies. [`ServedFunction`] is the one copy (the shape of
//! zero-to-production's `spawn_app`): the listener is bound before the server starts, so the address is live as
//! soon as it is returned, and dropping the value stops the server.

use std::net::SocketAddr;

use axum::Router;
use shared::server::{with_runtime, ConnectionLimits, ServerConfig};

/// A router served on `127.0.0.1:<random port>`; it stops when dropped.
#[derive(Debug)]
pub struct ServedFunction {
    pub address: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ServedFunction {
    /// Serves a function's `app` wrapped by `shared::server::with_runtime`, with test settings (32 MiB bodies).
    pub async fn start(app: Router) -> Self {
        Self::start_with(app, &ServerConfig::for_tests(32 << 20)).await
    }

    /// Serves a function's `app` wrapped by `shared::server::with_runtime` with these settings, as its binary would.
    pub async fn start_with(app: Router, config: &ServerConfig) -> Self {
        Self::serve_limited(with_runtime(app, config), config.limits()).await
    }

    /// Serves `router` as it is, with no layers added (a gateway, a double).
    pub async fn serve(router: Router) -> Self {
        Self::serve_limited(router, ConnectionLimits::default()).await
    }

    /// Serves `router` as it is, within these connection bounds (the header timeout, the cap, the body deadline).
    pub async fn serve_limited(router: Router, limits: ConnectionLimits) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(shared::server::serve_with_limits(listener, router, limits, async {
            let _ = stopped.await;
        }));
        Self { address, _stop: stop }
    }

    /// The base URL, ending in `/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use axum::Router;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::ServedFunction;

    async fn get_status(url: &str) -> Option<u16> {
        let stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://").trim_end_matches('/')).await;
        let mut stream = stream.ok()?;
        stream.write_all(b"GET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        text.get(9..12)?.parse().ok()
    }

    #[tokio::test]
    async fn serves_until_dropped() {
        let served = ServedFunction::serve(Router::new().route("/hi", get(|| async { "hi" }))).await;
        let url = served.url();
        assert_eq!(get_status(&url).await, Some(200));
        drop(served);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while get_status(&url).await.is_some() {
            assert!(tokio::time::Instant::now() < deadline, "still serving after the drop");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
