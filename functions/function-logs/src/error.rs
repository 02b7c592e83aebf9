//! Why a log was not streamed, and the answer the caller gets for each.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::gateway::GatewayError;
use shared::ownership::AccessError;
use shared::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// No session, or one that is expired, tampered with or not ours.
    #[error("{0}: sign in to the dashboard first")]
    Session(#[from] SessionError),
    #[error("{0}")]
    BadRequest(String),
    /// No such function, another owner's, or a bad name: `shared::ownership`'s refusals.
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl IntoResponse for LogsError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Session(SessionError::Unchecked) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Session(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Access(error) => error.status(),
            Self::Gateway(_) => StatusCode::BAD_GATEWAY,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "reading a function's log failed");
        }
        let mut response = ErrorResponse::new(status, &self).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
