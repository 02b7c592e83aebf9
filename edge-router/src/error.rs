//! Why a request is not routed, and the answer for each: plain text, since a browser shows it as it is.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("no site is served at `{0}`")]
    UnknownHost(String),
    #[error("`{0}` is not a page of the platform: the dashboard is at /dashboard/")]
    NotOnSystem(String),
    #[error("name one of {owner}'s functions in the path: /<function>")]
    NoFunction { owner: String },
    #[error("`{function}` cannot be a function of {owner}")]
    NoSuchFunction { owner: String, function: String },
    #[error("a path may not have `.` or `..` segments")]
    DotSegment,
    #[error("the request has no Host header")]
    NoHost,
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the gateway did not answer: {0}")]
    Unreachable(String),
    #[error("the gateway did not answer within {0} s")]
    TimedOut(u64),
}

impl RouteError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownHost(_) | Self::NotOnSystem(_) | Self::NoFunction { .. } | Self::NoSuchFunction { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::NoHost | Self::DotSegment => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unreachable(_) => StatusCode::BAD_GATEWAY,
            Self::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        (self.status(), [(axum::http::header::CACHE_CONTROL, "no-store")], format!("{self}\n")).into_response()
    }
}
