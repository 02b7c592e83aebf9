//! Why a status request failed, and the answer the caller gets: 401 unsigned, 400 malformed, 502 naming the
//! statuses that were lost when GitHub kept failing or asked for a wait longer than this request's time. No answer
//! asks a queue to replay the call (the CE queue-worker calls once): the retries were made here.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shared::error::ErrorResponse;
use shared::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    /// GitHub kept failing through every try.
    #[error("GitHub did not accept the status for `{context}` after {tries} tries: {reason}")]
    GitHubUnavailable { context: String, tries: u32, reason: String },
    /// GitHub asked for a longer wait than this request's time allows (a rate limit), or its faults outlasted it.
    #[error("the status for `{context}` could not be written: GitHub asks to wait {}s, longer than this request's time allows: {reason}", retry_after.as_secs())]
    Deferred { context: String, reason: String, retry_after: Duration, rate_limited: bool },
    /// Some statuses of a report could not be written (the others were): each lost one with why, in the answer.
    #[error("{} status(es) could not be written to GitHub and are lost: {}", lost.len(), lost_contexts(lost))]
    Lost { written: Vec<String>, rejected: Vec<serde_json::Value>, lost: Vec<LostStatus> },
}

/// A status that GitHub could not take within the request's time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LostStatus {
    pub context: String,
    pub reason: String,
}

fn lost_contexts(lost: &[LostStatus]) -> String {
    lost.iter().map(|l| l.context.as_str()).collect::<Vec<_>>().join(", ")
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::GitHubUnavailable { .. } | Self::Deferred { .. } | Self::Lost { .. } => StatusCode::BAD_GATEWAY,
        };
        if let Self::Lost { written, rejected, lost } = &self {
            let body = serde_json::json!({
                "error": self.to_string(),
                "written": written,
                "rejected": rejected,
                "lost": lost,
            });
            return (status, Json(body)).into_response();
        }
        ErrorResponse::new(status, &self).into_response()
    }
}
