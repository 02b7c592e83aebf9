//! Why a push could not be handed on. Every variant but the first two is also a `failure` status on the commit.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use shared::error::{ErrorBody, ErrorResponse};
use shared::signature::{SignatureError, SignedBodyError};

#[derive(Debug, thiserror::Error)]
pub enum GitTarError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    /// The push cannot be built as it is: the user fixes it and pushes again (a 422, which no queue retries).
    #[error("{0}")]
    Push(String),
    /// Functions of the push cannot be built as they are (names that clash, a handler that leaves the repository):
    /// each gets a failure status with its reason, and `stack-deploy` fails with `summary`. Nothing is handed on.
    #[error("{summary}")]
    Refused { summary: String, functions: Vec<(String, String)> },
    /// Some functions failed; the `stack-deploy` status already says which and why.
    #[error("{0}")]
    Reported(String),
    /// A platform part git-tar needs (the branch records' store) failed: a 503, which the queue retries.
    #[error("{0}")]
    Unavailable(String),
    #[error("git-tar could not use its working folder: {0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for GitTarError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Push(_) | Self::Refused { .. } | Self::Reported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let ErrorResponse { status, body } = ErrorResponse::new(status, &self);
        (status, Json(Failure { status: "failure", body })).into_response()
    }
}

/// The shared error body plus `"status": "failure"`, the counterpart of the success answer's `"status": "success"`:
/// the gateway's queue posts git-tar's answer to an `X-Callback-Url` as it is, so the field stays for those readers.
#[derive(Serialize)]
struct Failure {
    status: &'static str,
    #[serde(flatten)]
    body: ErrorBody,
}

/// A signed call's refusal (`shared::signature::SignedJson`): the signature's 401, or the body's 400.
impl From<SignedBodyError> for GitTarError {
    fn from(error: SignedBodyError) -> Self {
        match error {
            SignedBodyError::Signature(error) => Self::Signature(error),
            SignedBodyError::NotTheBody(message) => Self::BadRequest(message),
        }
    }
}
