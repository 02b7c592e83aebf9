//! Why a count was not answered, and the answer the caller gets for each.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::gateway::GatewayError;
use shared::ownership::AccessError;
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
    /// No such function, another owner's, or a bad name: `shared::ownership`'s refusals.
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(transparent)]
    Scrape(#[from] ScrapeError),
}

impl IntoResponse for MetricsError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Session(SessionError::Unchecked) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Session(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Access(error) => error.status(),
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
