//! The gateway's one error type, and the one place it becomes an HTTP answer (an [`ErrorResponse`] body), so every
//! refusal of the embedded gateway reads the same way.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;

/// Why a call through the gateway was not answered by the function.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no such function: {0}")]
    NoSuchFunction(String),
    /// Deployed, but no replica answers; the text says why.
    #[error("{reason}")]
    Unavailable { function: String, reason: String },
    #[error("function {function} could not be reached: {reason}")]
    Unreachable { function: String, reason: String, timed_out: bool },
    #[error("the body could not be read")]
    UnreadableBody,
    #[error("the body is larger than the gateway accepts ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("the call could not be queued: {0}")]
    NotQueued(#[from] std::io::Error),
    /// The owner has `max_queued_pushes_per_owner` pushes waiting already.
    #[error("this owner already has {0} pushes waiting in the queue (max_queued_pushes_per_owner); push again once they are built")]
    OwnerQueueFull(usize),
    /// `/system/logs` without the function's `name`.
    #[error("name the function: /system/logs?name=NAME")]
    MissingName,
    /// A `/system/logs` parameter that cannot be read (OpenFaaS answers these 422).
    #[error("the log request cannot be read: {0}")]
    BadLogQuery(String),
    #[error("the function's log could not be read: {0}")]
    LogUnreadable(std::io::Error),
    /// A faas-provider request body (`ScaleServiceRequest`, `Secret`) that cannot be read; never quotes the body.
    #[error("the request cannot be read: {0}")]
    BadProviderRequest(String),
    /// Functions run in one namespace here.
    #[error("namespace {0} is not valid: functions run in openfaas-fn")]
    UnknownNamespace(String),
    #[error("function {0} is one of the platform's own, which keep their one replica: it cannot be scaled to zero")]
    NoScaleToZero(String),
    #[error("a secret's name is lower-case letters, digits, '-' and '.', starting and ending with a letter or digit")]
    BadSecretName,
    #[error("secret {0} already exists")]
    SecretExists(String),
    #[error("no such secret: {0}")]
    NoSuchSecret(String),
    /// The state folder's secrets cannot be read or written (the error names no value).
    #[error("the secrets cannot be stored: {0}")]
    SecretStore(std::io::Error),
}

impl GatewayError {
    /// The HTTP status the caller gets (also counted in the gateway's metrics).
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::NoSuchFunction(_) | Self::NoSuchSecret(_) => StatusCode::NOT_FOUND,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unreachable { timed_out: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            Self::UnreadableBody
            | Self::MissingName
            | Self::BadProviderRequest(_)
            | Self::UnknownNamespace(_)
            | Self::NoScaleToZero(_)
            | Self::BadSecretName => StatusCode::BAD_REQUEST,
            Self::SecretExists(_) => StatusCode::CONFLICT,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::OwnerQueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NotQueued(_) | Self::LogUnreadable(_) | Self::SecretStore(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadLogQuery(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn function(&self) -> Option<&str> {
        match self {
            Self::NoSuchFunction(function)
            | Self::Unavailable { function, .. }
            | Self::Unreachable { function, .. } => Some(function),
            Self::UnreadableBody
            | Self::TooLarge { .. }
            | Self::NotQueued(_)
            | Self::OwnerQueueFull(_)
            | Self::MissingName
            | Self::BadLogQuery(_)
            | Self::LogUnreadable(_)
            | Self::BadProviderRequest(_)
            | Self::UnknownNamespace(_)
            | Self::NoScaleToZero(_)
            | Self::BadSecretName
            | Self::SecretExists(_)
            | Self::NoSuchSecret(_)
            | Self::SecretStore(_) => None,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = ErrorResponse::new(self.status(), &self);
        if let Some(function) = self.function() {
            response = response.for_function(function);
        }
        response.into_response()
    }
}
