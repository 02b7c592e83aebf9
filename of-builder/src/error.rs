//! Why a build request failed, and the HTTP answer for each: 4xx for what the caller sent, 5xx for a broken builder.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    #[error("bad build tar: {0}")]
    BadTar(String),
    #[error("the build tar is larger than {0} bytes")]
    TooLarge(u64),
    /// The builder itself cannot work (backend missing, storage broken).
    #[error("the builder is not working: {0}")]
    Backend(String),
    /// The image was built but the registry would not take it.
    #[error("the image could not be pushed to the registry: {0}")]
    Push(String),
    /// The owner has `max_queued_builds_per_owner` builds waiting: 429, final for this build (not retried).
    #[error("{0}")]
    QueueFull(#[from] crate::queue::QueueFull),
    #[error("of-builder could not use its temporary folder: {0}")]
    Io(#[from] std::io::Error),
}

impl From<shared::upload::UploadError> for BuilderError {
    fn from(error: shared::upload::UploadError) -> Self {
        use shared::upload::UploadError;
        match error {
            UploadError::Signature(e) => Self::Signature(e),
            UploadError::TooLarge(max) => Self::TooLarge(max),
            UploadError::Body(reason) => Self::BadRequest(reason),
            UploadError::Io(e) => Self::Io(e),
        }
    }
}

impl IntoResponse for BuilderError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) | Self::BadTar(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Backend(_) | Self::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Push(_) => StatusCode::BAD_GATEWAY,
            Self::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        ErrorResponse::new(status, &self).into_response()
    }
}
