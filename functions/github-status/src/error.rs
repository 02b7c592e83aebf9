//! Why a status request failed, and the answer the caller (the gateway's queue) gets: 401 unsigned, 400 malformed,
//! 502 when GitHub kept failing, 429/503 with `Retry-After` when GitHub asked for a wait this request cannot make.

use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    /// GitHub kept failing: 502 lets the queue try the whole request again later.
    #[error("GitHub did not accept the status for `{context}` after {tries} tries: {reason}")]
    GitHubUnavailable { context: String, tries: u32, reason: String },
    /// GitHub asked for a longer wait than this request's time allows (a rate limit), or its faults outlasted it:
    /// 429 (rate limited) or 503 with `Retry-After`, so the gateway's queue waits that long before replaying.
    #[error("the status for `{context}` is deferred for {}s: {reason}", retry_after.as_secs())]
    Deferred { context: String, reason: String, retry_after: Duration, rate_limited: bool },
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::GitHubUnavailable { .. } => StatusCode::BAD_GATEWAY,
            Self::Deferred { rate_limited: true, .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Deferred { rate_limited: false, .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = ErrorResponse::new(status, &self).into_response();
        if let Self::Deferred { retry_after, .. } = &self {
            // Whole seconds, rounded up: the queue must not come back before GitHub's window ends.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
