//! Why a collection was refused or failed, and the answer its caller (git-tar, git-event) gets for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::gateway::GatewayError;
use shared::signature::{SignatureError, SignedBodyError};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl IntoResponse for GcError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Gateway(_) => StatusCode::BAD_GATEWAY,
        };
        ErrorResponse::new(status, &self).into_response()
    }
}

/// A signed call's refusal (`shared::signature::SignedJson`): the signature's 401, or the body's 400.
impl From<SignedBodyError> for GcError {
    fn from(error: SignedBodyError) -> Self {
        match error {
            SignedBodyError::Signature(error) => Self::Signature(error),
            SignedBodyError::NotTheBody(message) => Self::BadRequest(message),
        }
    }
}
