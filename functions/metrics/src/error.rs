//! Why a count was not answered, and the answer the caller gets for each.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::gateway::GatewayError;
use shared::session::SessionError;

use crate::prometheus::PrometheusError;
use crate::sampler::ScrapeError;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// No session, or one that is expired, tampered with or not ours.
    #[error("{0}: sign in to the dashboard first")]
    Session(#[from] SessionError),
    #[error("{0}")]
    BadRequest(String),
    #[error("no function `{0}` is deployed")]
    NotFound(String),
    /// Another owner's function, or one of the platform's own.
    #[error("function `{0}` does not belong to you or to one of your organisations")]
    Forbidden(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(transparent)]
    Scrape(#[from] ScrapeError),
}

impl From<shared::ownership::AccessError> for MetricsError {
    fn from(error: shared::ownership::AccessError) -> Self {
        use shared::ownership::AccessError;
        match error {
            AccessError::BadName(why) => Self::BadRequest(why),
            AccessError::NotFound(name) => Self::NotFound(name),
            AccessError::Forbidden(name) => Self::Forbidden(name),
            AccessError::Gateway(error) => Self::Gateway(error),
        }
    }
}

impl IntoResponse for MetricsError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Session(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Gateway(_) | Self::Prometheus(_) | Self::Scrape(_) => StatusCode::BAD_GATEWAY,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "counting invocations failed");
        }
        let mut response = ErrorResponse::new(status, &self).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
