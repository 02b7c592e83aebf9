//! Why a build-and-deploy failed, and what the caller (git-tar) is answered.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::signature::SignatureError;
use shared::upload::UploadError;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the build tar is larger than {0} bytes")]
    TooLarge(u64),
    /// The user's build failed: their Dockerfile or code, with the line that says why.
    #[error("{function}: the build failed: {reason}")]
    BuildFailed { function: String, reason: String },
    /// of-builder did not answer within `build_timeout`: not retried, as another try would take as long.
    #[error("{function}: the build did not finish within {seconds} s (build_timeout)")]
    BuildTimedOut { function: String, seconds: u64 },
    /// The gateway refused the deployment (a 4xx): not retried.
    #[error("{function}: the gateway refused the deployment: {reason}")]
    DeployRefused { function: String, reason: String },
    /// The operator's policy or the name's owner refuses the deployment: nothing is built or deployed.
    #[error("{function}: {reason}")]
    Refused { function: String, reason: String },
    /// The builder or gateway kept failing through every retry: 502 (and a failing commit status).
    #[error("{function}: {reason}")]
    Unavailable { function: String, reason: String },
    #[error("buildshiprun could not use its temporary folder: {0}")]
    Io(#[from] std::io::Error),
}

impl From<UploadError> for ShipError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::Signature(e) => Self::Signature(e),
            UploadError::TooLarge(max) => Self::TooLarge(max),
            UploadError::Body(reason) => Self::BadRequest(reason),
            UploadError::Io(e) => Self::Io(e),
        }
    }
}

impl ShipError {
    /// Why, without the function's name: what a commit status (already named by the function) says after the
    /// failing step.
    pub fn reason(&self) -> String {
        match self {
            Self::BuildFailed { reason, .. } | Self::Refused { reason, .. } | Self::Unavailable { reason, .. } => {
                reason.clone()
            }
            Self::DeployRefused { reason, .. } => format!("the gateway refused the deployment: {reason}"),
            Self::BuildTimedOut { seconds, .. } => format!("it did not finish within {seconds} s (build_timeout)"),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ShipError {
    fn into_response(self) -> Response {
        let (status, function) = match &self {
            Self::Signature(_) => (StatusCode::UNAUTHORIZED, None),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            Self::Refused { function, .. } => (StatusCode::FORBIDDEN, Some(function.clone())),
            Self::BuildFailed { function, .. } => (StatusCode::UNPROCESSABLE_ENTITY, Some(function.clone())),
            Self::BuildTimedOut { function, .. } => (StatusCode::GATEWAY_TIMEOUT, Some(function.clone())),
            Self::DeployRefused { function, .. } | Self::Unavailable { function, .. } => {
                (StatusCode::BAD_GATEWAY, Some(function.clone()))
            }
            Self::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let response = ErrorResponse::new(status, &self);
        match function {
            Some(function) => response.for_function(function),
            None => response,
        }
        .into_response()
    }
}
