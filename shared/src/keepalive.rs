//! A lean HTTP/1.1 keep-alive client for a plain-HTTP gateway (the in-cluster `http://gateway:8080/`), for the calls
//! made on every webhook. reqwest's redirect layer parses each request's URL twice more, which with its other layers
//! costs about a tenth of gh-push's CPU per webhook; this client is hyper's pooled client and nothing else.

use std::time::Duration;

use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::resolver::FunctionResolver;

/// The most of an answer's body that is read (the gateway's answers to these calls are a few bytes).
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// What the gateway answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Pooled keep-alive connections to plain-HTTP hosts. Cheap to clone: the pool is shared.
#[derive(Clone, Debug)]
pub struct KeepAliveClient {
    client: Client<HttpConnector<FunctionResolver>, Full<Bytes>>,
}

impl Default for KeepAliveClient {
    fn default() -> Self {
        Self::new()
    }
}

impl KeepAliveClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new_with_resolver(crate::resolver::shared_resolver().as_ref().clone());
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        // Under the servers' idle bound (`read_header_timeout`, 10 s by default), so an idle connection is never
        // reused just as the server closes it.
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(5)).build(connector);
        Self { client }
    }

    /// POSTs `body` to `uri` and reads the answer, all within `timeout`. The error is a one-line reason.
    pub async fn post(&self, uri: Uri, headers: HeaderMap, body: Bytes, timeout: Duration) -> Result<Answer, String> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| crate::error::error_chain(&e))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("the answer could not be read: {e}"))?
                .to_bytes();
            Ok(Answer { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| "timed out".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::gateway::{GatewayClient, GatewayError};
    use axum::response::IntoResponse;
    use std::net::SocketAddr;
    use std::sync::Arc;

    /// A gateway stand-in that answers async calls with `status` and a call id, and keeps the peers it has seen.
    async fn gateway(status: StatusCode) -> (u16, Arc<std::sync::Mutex<std::collections::HashSet<SocketAddr>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let peers = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let seen = peers.clone();
        let app = axum::Router::new().fallback(
            move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>, body: Bytes| {
                assert!(!body.is_empty(), "the body arrives");
                seen.lock().expect("peers").insert(peer);
                async move { (status, [("x-call-id", "call-1")], "answer from the gateway").into_response() }
            },
        );
        tokio::spawn(
            async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await },
        );
        (port, peers)
    }

    fn client(base: &str) -> GatewayClient {
        GatewayClient::new(base.parse().expect("a URL"), Secret::new("payload"))
    }

    #[tokio::test]
    async fn async_calls_reuse_one_connection_and_resolve_host_names() {
        let (port, peers) = gateway(StatusCode::ACCEPTED).await;
        let gateway = client(&format!("http://localhost:{port}/"));
        for _ in 0..5 {
            let call = gateway.invoke_async("git-tar", Bytes::from_static(b"{}"), HeaderMap::new()).await;
            assert_eq!(call.expect("queued").as_deref(), Some("call-1"));
        }
        assert_eq!(peers.lock().expect("peers").len(), 1, "one connection, kept alive");
    }

    #[tokio::test]
    async fn a_gateway_url_with_credentials_is_called_through_reqwest() {
        let (port, peers) = gateway(StatusCode::ACCEPTED).await;
        let gateway = client(&format!("http://admin:secret@127.0.0.1:{port}/"));
        let call = gateway.invoke_async("git-tar", Bytes::from_static(b"{}"), HeaderMap::new()).await;
        assert_eq!(call.expect("queued").as_deref(), Some("call-1"));
        assert_eq!(peers.lock().expect("peers").len(), 1);
    }

    #[tokio::test]
    async fn a_refusal_carries_the_gateways_answer_and_an_absent_gateway_is_unreachable() {
        let (port, _) = gateway(StatusCode::SERVICE_UNAVAILABLE).await;
        let refused = client(&format!("http://127.0.0.1:{port}/"))
            .invoke_async("git-tar", Bytes::from_static(b"{}"), HeaderMap::new())
            .await
            .expect_err("refused");
        assert!(
            matches!(&refused, GatewayError::Status { status, body, .. } if *status == StatusCode::SERVICE_UNAVAILABLE && body == "answer from the gateway"),
            "{refused:?}"
        );
        assert!(refused.is_transient());
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
        let unreachable = client(&format!("http://127.0.0.1:{closed}/"))
            .invoke_async("git-tar", Bytes::from_static(b"{}"), HeaderMap::new())
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(&unreachable, GatewayError::Unreachable { url, .. } if url.ends_with("/async-function/git-tar")),
            "{unreachable:?}"
        );
    }
}
