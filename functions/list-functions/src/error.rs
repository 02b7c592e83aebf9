//! Why a listing failed, and the answer the dashboard gets for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::gateway::GatewayError;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl IntoResponse for ListError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Gateway(_) => StatusCode::BAD_GATEWAY,
        };
        ErrorResponse::new(status, &self).into_response()
    }
}
