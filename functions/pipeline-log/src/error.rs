//! Why a log was not served, and the answer the caller gets for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::log_store::{LinkError, LogStoreError};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    BadRequest(String),
    /// A reader's link: unsigned (401), changed or expired (403).
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Store(#[from] LogStoreError),
}

impl IntoResponse for LogError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) | Self::Store(LogStoreError::InvalidKey(_)) => StatusCode::BAD_REQUEST,
            Self::Link(LinkError::Unsigned) => StatusCode::UNAUTHORIZED,
            Self::Link(LinkError::Mismatch | LinkError::Expired(_)) => StatusCode::FORBIDDEN,
            Self::Store(LogStoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            Self::Store(LogStoreError::Backend(_) | LogStoreError::Open(_)) => StatusCode::BAD_GATEWAY,
            Self::Store(LogStoreError::Damaged { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "log request failed");
        }
        ErrorResponse::new(status, &self).into_response()
    }
}
