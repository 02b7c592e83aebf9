//! The gate's one error type, and the one place it becomes an HTTP answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::rules::REALM;

/// Why a request was not passed on, or did not come back.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// 401 with the Basic challenge: sign in to do this.
    #[error("{0}")]
    SignIn(&'static str),
    /// 403: signed in, but this account may not.
    #[error("{0}")]
    Denied(&'static str),
    /// 405: not a distribution API call the gate lets through.
    #[error("this registry does not do that")]
    NotAllowed,
    /// The registry behind the gate did not answer (its socket or port is closed, or the exchange broke).
    #[error("the registry cannot be reached: {0}")]
    Unreachable(String),
    /// The registry answered `/v2/` with something other than success.
    #[error("the registry answered {0}")]
    Unhealthy(StatusCode),
}

impl IntoResponse for GateError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::SignIn(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            Self::NotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            Self::Unreachable(_) | Self::Unhealthy(_) => (StatusCode::BAD_GATEWAY, "UNAVAILABLE"),
        };
        if matches!(self, Self::Unreachable(_)) {
            tracing::warn!(error = %self, "the registry behind the gate cannot be reached");
        }
        // A distribution-style error body; the transport's details stay in the log.
        let message = match &self {
            Self::Unreachable(_) => "the registry is not answering".to_owned(),
            other => other.to_string(),
        };
        let body = serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, Self::SignIn(_)) {
            if let Ok(challenge) = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
            }
        }
        response
    }
}
