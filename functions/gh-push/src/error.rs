//! Why a delivery was refused or failed, and the HTTP answer GitHub gets for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::gateway::GatewayError;
use shared::signature::SignatureError;

use crate::customers::CustomersUnavailable;

#[derive(Debug, thiserror::Error)]
pub enum GhPushError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the owner `{0}` is not a customer of this OpenFaaS Cloud")]
    NotACustomer(String),
    #[error(transparent)]
    CustomersUnavailable(#[from] CustomersUnavailable),
    #[error("the build could not be queued: {0}")]
    Queue(#[from] GatewayError),
    /// The shared delivery records cannot be read or written: nothing is queued, since it could be a duplicate.
    #[error("the delivery records cannot be reached: {0}")]
    Records(#[from] object_store::Error),
}

impl GhPushError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotACustomer(_) => StatusCode::FORBIDDEN,
            // 502 makes GitHub show the delivery as failed, so it can be redelivered once the fault has passed.
            Self::CustomersUnavailable(_) | Self::Queue(_) | Self::Records(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for GhPushError {
    fn into_response(self) -> Response {
        ErrorResponse::new(self.status(), &self).into_response()
    }
}
