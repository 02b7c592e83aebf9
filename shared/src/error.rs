//! The one JSON error body every function and the local stack answer with, so a caller reads every refusal the
//! same way: `{"error": "<what went wrong, for a person>"}`, plus fields a caller may act on; and the one way an
//! error and its causes become one line of such a message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in words a user can act on; never a secret or a file's content.
    pub error: String,
    /// The function of stack.yml the error is about, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// An HTTP status with its [`ErrorBody`]: what each crate's error type turns into in its one `IntoResponse`.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ErrorResponse {
    pub fn new(status: StatusCode, error: impl std::fmt::Display) -> Self {
        Self { status, body: ErrorBody { error: error.to_string(), function: None } }
    }

    /// Names the function of stack.yml the error is about.
    #[must_use]
    pub fn for_function(mut self, function: impl Into<String>) -> Self {
        self.body.function = Some(function.into());
        self
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// An error and its causes on one line (reqwest's own message alone is often just "error sending request").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_error_and_the_function_only_when_named() {
        let plain = serde_json::to_value(ErrorResponse::new(StatusCode::BAD_REQUEST, "no").body).unwrap();
        assert_eq!(plain, serde_json::json!({"error": "no"}));
        let named = ErrorResponse::new(StatusCode::BAD_GATEWAY, "build failed").for_function("hello");
        assert_eq!(
            serde_json::to_value(named.body).unwrap(),
            serde_json::json!({"error": "build failed", "function": "hello"})
        );
    }
}
