//! Why a status request failed, and the answer the caller (the gateway's queue) gets.

use axum::http::StatusCode;
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
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::GitHubUnavailable { .. } => StatusCode::BAD_GATEWAY,
        };
        ErrorResponse::new(status, &self).into_response()
    }
}
