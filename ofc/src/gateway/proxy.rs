//! `/function/NAME[/rest]`: any method, path and query proxied to the function's process with its headers, and the
//! answer streamed back, as the OpenFaaS gateway does.

use std::time::Instant;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use functions_api::function_name;
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;

use super::metrics::Invocation;
use super::{is_hop_by_hop, Gateway, GatewayError};

/// The function's name (or `name.namespace`) and the path after it.
#[derive(Deserialize)]
pub(super) struct FunctionPath {
    pub(super) name: String,
    #[serde(default)]
    pub(super) rest: String,
}

/// Proxies the call, counting it in the gateway's metrics once the function is known (a name the gateway does
/// not know is answered 404 uncounted, which keeps the metrics' labels to deployed functions).
pub(super) async fn invoke(
    State(gateway): State<Gateway>,
    Path(path): Path<FunctionPath>,
    request: Request,
) -> Result<Response, GatewayError> {
    let name = function_name(&path.name).to_owned();
    let target = gateway.target_when_ready(&name).await;
    if let Err(GatewayError::NoSuchFunction(_)) = target {
        return Err(GatewayError::NoSuchFunction(name));
    }
    let mut invocation = gateway.inner.metrics.start(&name);
    match forward(&gateway, &name, target, &path.rest, request).await {
        Ok(answer) => {
            invocation.answered(answer.status().as_u16());
            Ok(respond(answer, invocation))
        }
        Err(error) => {
            invocation.answered(error.status().as_u16());
            Err(error)
        }
    }
}

/// Sends the call on to `target`, the function's base URL (or why it has none).
async fn forward(
    gateway: &Gateway,
    name: &str,
    target: Result<String, GatewayError>,
    rest: &str,
    request: Request,
) -> Result<reqwest::Response, GatewayError> {
    let base = target?;
    let (parts, body) = request.into_parts();
    let limit = gateway.inner.config.max_body_bytes;
    check_length(&parts.headers, limit)?;
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let started = Instant::now();
    let mut upstream = gateway
        .inner
        .http
        .request(parts.method.clone(), format!("{base}{rest}{query}"))
        .timeout(gateway.inner.config.upstream_timeout)
        .body(reqwest::Body::wrap_stream(limited(body, limit)));
    for (header, value) in &parts.headers {
        if !is_hop_by_hop(header.as_str()) {
            upstream = upstream.header(header, value);
        }
    }
    let answer = upstream.send().await.map_err(|error| {
        if caused_by_size(&error) {
            return GatewayError::TooLarge { limit };
        }
        GatewayError::Unreachable {
            function: name.to_owned(),
            reason: shared::error::error_chain(&error),
            timed_out: error.is_timeout(),
        }
    })?;
    tracing::info!(function = %name, method = %parts.method, status = answer.status().as_u16(), seconds = started.elapsed().as_secs_f64(), "invoked");
    Ok(answer)
}

/// The function's answer, streamed back; `invocation` is recorded once the body has gone out (or the caller left).
fn respond(answer: reqwest::Response, invocation: Invocation) -> Response {
    let mut response = Response::builder().status(answer.status().as_u16());
    for (header, value) in answer.headers() {
        if !is_hop_by_hop(header.as_str()) {
            response = response.header(header.as_str(), value.as_bytes());
        }
    }
    // Recorded as the body's last item is asked for, before the answer's end is written (so a caller that has read
    // the whole answer finds it counted); dropped with the body if the caller leaves first.
    let recorded = futures_util::stream::once(async move { drop(invocation) })
        .filter_map(|()| std::future::ready(None::<Result<Bytes, reqwest::Error>>));
    let body = Body::from_stream(answer.bytes_stream().chain(recorded));
    response.body(body).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// A declared `Content-Length` over `limit` is refused before a byte of the body is read.
pub(super) fn check_length(headers: &HeaderMap, limit: u64) -> Result<(), GatewayError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(GatewayError::TooLarge { limit }),
        _ => Ok(()),
    }
}

/// The body went over the gateway's limit while it was being passed on.
#[derive(Debug, thiserror::Error)]
#[error("the body is larger than {0} bytes")]
pub(super) struct BodyTooLarge(pub(super) u64);

/// The body's chunks, ending in [`BodyTooLarge`] once more than `limit` bytes came (a chunked body declares no
/// length), so the function never receives more than the limit.
pub(super) fn limited(body: Body, limit: u64) -> impl Stream<Item = Result<Bytes, axum::BoxError>> + Send {
    let mut seen = 0u64;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(axum::BoxError::from)?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(BodyTooLarge(limit).into());
        }
        Ok(chunk)
    })
}

/// Whether `error` comes from the body going over the limit.
fn caused_by_size(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyTooLarge>() {
            return true;
        }
        cause = error.source();
    }
    false
}
