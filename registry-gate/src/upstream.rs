//! The registry behind the gate: a unix socket (the local stack, faasd) or a loopback port (the registry container
//! beside the gate in a Kubernetes pod, which shares the pod's loopback), spoken to in plain HTTP/1.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use hyper_util::rt::TokioIo;

use crate::error::GateError;

/// Where the registry listens; nothing but the gate should reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A unix socket in a folder only the registry's and the gate's users can enter.
    Socket(PathBuf),
    /// A loopback address: plain HTTP never leaves the machine or the pod.
    Loopback(SocketAddr),
}

impl Upstream {
    /// Parses `registry_upstream`: an absolute path is a unix socket, anything else a loopback `host:port`
    /// (`127.0.0.1:5001`, `[::1]:5001`, `localhost:5001`).
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.starts_with('/') {
            return Ok(Self::Socket(PathBuf::from(value)));
        }
        let address = match value.strip_prefix("localhost:") {
            Some(port) => {
                let port: u16 = port.parse().map_err(|_| format!("`{value}`: `{port}` is not a port number"))?;
                SocketAddr::from(([127, 0, 0, 1], port))
            }
            None => value.parse::<SocketAddr>().map_err(|_| {
                format!("`{value}` is neither a unix socket's absolute path nor a loopback `host:port`")
            })?,
        };
        if !address.ip().is_loopback() {
            return Err(format!(
                "`{value}` is not a loopback address: the registry behind the gate must not be reachable past it"
            ));
        }
        if address.port() == 0 {
            return Err(format!("`{value}` has no port"));
        }
        Ok(Self::Loopback(address))
    }

    /// The `Host` header the registry sees (it answers upload locations as paths, so the value only has to be valid).
    fn host(&self) -> HeaderValue {
        match self {
            Self::Socket(_) => HeaderValue::from_static("registry"),
            Self::Loopback(address) => {
                HeaderValue::from_str(&address.to_string()).unwrap_or_else(|_| HeaderValue::from_static("registry"))
            }
        }
    }

    /// One HTTP/1 exchange with the registry, the bodies streamed both ways.
    pub(crate) async fn send(&self, mut request: Request) -> Result<Response, GateError> {
        let unreachable = |error: &dyn std::fmt::Display| GateError::Unreachable(error.to_string());
        request.headers_mut().insert(header::HOST, self.host());
        let (mut sender, connection) = match self {
            Self::Socket(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| unreachable(&e))?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
                (sender, Box::pin(connection) as ConnectionFuture)
            }
            Self::Loopback(address) => {
                let stream = tokio::net::TcpStream::connect(address).await.map_err(|e| unreachable(&e))?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
                (sender, Box::pin(connection) as ConnectionFuture)
            }
        };
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a registry connection ended");
            }
        });
        let response = sender.send_request(request).await.map_err(|e| unreachable(&e))?;
        Ok(response.map(Body::new))
    }
}

/// A connection's driver, whichever transport it runs on.
type ConnectionFuture = std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_path_or_a_loopback_port_and_nothing_else() {
        assert_eq!(
            Upstream::parse("/run/registry/registry.sock"),
            Ok(Upstream::Socket("/run/registry/registry.sock".into()))
        );
        assert_eq!(Upstream::parse("127.0.0.1:5001"), Ok(Upstream::Loopback(([127, 0, 0, 1], 5001).into())));
        assert_eq!(Upstream::parse("localhost:5001"), Ok(Upstream::Loopback(([127, 0, 0, 1], 5001).into())));
        assert!(matches!(Upstream::parse("[::1]:5001"), Ok(Upstream::Loopback(_))));
        for refused in
            ["10.0.0.5:5000", "0.0.0.0:5000", "registry:5000", "127.0.0.1", "127.0.0.1:0", "relative/sock", ""]
        {
            assert!(Upstream::parse(refused).is_err(), "{refused}");
        }
    }
}
