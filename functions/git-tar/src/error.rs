//! Why a push could not be handed on. Every variant but the first two is also a `failure` status on the commit.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shared::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum GitTarError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    /// The push cannot be built as it is: the user fixes it and pushes again (a 422, which no queue retries).
    #[error("{0}")]
    Push(String),
    /// Some functions failed; the `stack-deploy` status already says which and why.
    #[error("{0}")]
    Reported(String),
    #[error("git-tar could not use its working folder: {0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for GitTarError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Push(_) | Self::Reported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(serde_json::json!({ "status": "failure", "error": self.to_string() }))).into_response()
    }
}
