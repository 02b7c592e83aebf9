//! The gate's HTTP side: every request is decided by [`crate::rules`], then passed on without its credentials (the
//! registry behind needs none) or refused.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::GateError;
use crate::rules::{decide, Decision, GateAccounts, Reads};
use crate::upstream::Upstream;

struct GateState {
    accounts: GateAccounts,
    reads: Reads,
    upstream: Upstream,
}

/// The gate's router: `/healthz`, and everything else checked and forwarded to `upstream`.
pub fn router(upstream: Upstream, accounts: GateAccounts, reads: Reads) -> axum::Router {
    let state = Arc::new(GateState { accounts, reads, upstream });
    axum::Router::new().route("/healthz", axum::routing::get(health)).fallback(forward).with_state(state)
}

/// Serves the gate on `listener`, reads open, until `shutdown` completes: the local stack and the tests, which run it
/// in their own process (the binary serves [`router`] with the function runtime's limits instead).
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstream: Upstream,
    accounts: GateAccounts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(upstream, accounts, Reads::Anyone)).with_graceful_shutdown(shutdown).await
}

/// 200 when the registry behind the gate answers `/v2/`.
async fn health(State(state): State<Arc<GateState>>) -> Response {
    let request = match Request::builder().method(Method::GET).uri("/v2/").body(axum::body::Body::empty()) {
        Ok(request) => request,
        Err(error) => return GateError::Unreachable(error.to_string()).into_response(),
    };
    match state.upstream.send(request).await {
        Ok(response) if response.status().is_success() => StatusCode::OK.into_response(),
        Ok(response) => GateError::Unhealthy(response.status()).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn forward(State(state): State<Arc<GateState>>, request: Request) -> Result<Response, GateError> {
    let authorization = request.headers().get(header::AUTHORIZATION);
    match decide(request.method(), request.uri().path(), authorization, &state.accounts, state.reads) {
        Decision::Forward => {}
        Decision::SignIn(why) => return Err(GateError::SignIn(why)),
        Decision::Denied(why) => return Err(GateError::Denied(why)),
        Decision::NotAllowed => return Err(GateError::NotAllowed),
    }
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(header::AUTHORIZATION);
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    parts.uri = path_and_query.parse().unwrap_or_default();
    state.upstream.send(Request::from_parts(parts, body)).await
}
