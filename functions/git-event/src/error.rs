//! Why an installation event was refused or failed, and the answer GitHub (through gh-push) gets for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error::ErrorResponse;
use shared::gateway::GatewayError;
use shared::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    /// `validate_customers` is on and the account is not on the list: nothing of it is touched.
    #[error("Customer: \"{0}\" not found in customers ACL")]
    NotACustomer(String),
    /// The list could not be read: 502, so GitHub can redeliver once it can.
    #[error(transparent)]
    CustomersUnavailable(#[from] shared::customers::CustomersUnavailable),
    /// The gateway or garbage-collect failed: 502, so GitHub shows the delivery as failed and it can be redelivered.
    #[error("the functions could not be removed: {0}")]
    Gateway(#[from] GatewayError),
}

impl IntoResponse for EventError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotACustomer(_) => StatusCode::FORBIDDEN,
            Self::CustomersUnavailable(_) | Self::Gateway(_) => StatusCode::BAD_GATEWAY,
        };
        ErrorResponse::new(status, &self).into_response()
    }
}
