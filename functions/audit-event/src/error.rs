//! Why an audit event was refused, and the answer its sender gets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::signature::{SignatureError, SignedBodyError};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
}

impl IntoResponse for AuditError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
        };
        ErrorResponse::new(status, &self).into_response()
    }
}

/// A signed call's refusal (`shared::signature::SignedJson`): the signature's 401, or the body's 400.
impl From<SignedBodyError> for AuditError {
    fn from(error: SignedBodyError) -> Self {
        match error {
            SignedBodyError::Signature(error) => Self::Signature(error),
            SignedBodyError::NotTheBody(message) => Self::BadRequest(message),
        }
    }
}
