//! `/function/NAME[/rest]`: any method, path and query proxied to the function's process with its headers, and the
//! answer streamed back, as the OpenFaaS gateway does.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use doubles::functions_api::function_name;
use serde::Deserialize;

use super::{is_hop_by_hop, Gateway, GatewayError};

/// The function's name (or `name.namespace`) and the path after it.
#[derive(Deserialize)]
pub(super) struct FunctionPath {
    pub(super) name: String,
    #[serde(default)]
    pub(super) rest: String,
}

pub(super) async fn invoke(
    State(gateway): State<Gateway>,
    Path(path): Path<FunctionPath>,
    request: Request,
) -> Result<Response, GatewayError> {
    let name = function_name(&path.name).to_owned();
    let base = gateway.target(&name)?;
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let started = Instant::now();
    let mut upstream = gateway
        .inner
        .http
        .request(parts.method.clone(), format!("{base}{}{query}", path.rest))
        .timeout(gateway.inner.config.upstream_timeout)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (header, value) in &parts.headers {
        if !is_hop_by_hop(header.as_str()) {
            upstream = upstream.header(header, value);
        }
    }
    let answer = upstream.send().await.map_err(|error| GatewayError::Unreachable {
        function: name.clone(),
        reason: shared::gateway::error_chain(&error),
        timed_out: error.is_timeout(),
    })?;
    tracing::info!(function = %name, method = %parts.method, status = answer.status().as_u16(), seconds = started.elapsed().as_secs_f64(), "invoked");
    let mut response = Response::builder().status(answer.status().as_u16());
    for (header, value) in answer.headers() {
        if !is_hop_by_hop(header.as_str()) {
            response = response.header(header.as_str(), value.as_bytes());
        }
    }
    Ok(response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()))
}
