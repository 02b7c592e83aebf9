//! Why an audit event was refused, and the answer its sender gets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::signature::SignatureError;

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
