//! Why a status request failed, and the answer the caller gets: 401 unsigned, 400 malformed; when statuses could not
//! be written within the call (the retries were made here), the answer lists them as `lost`, with why: 429 when
//! GitHub's rate limit outlasted the call, 503 when its faults did (both with `Retry-After`), 502 when every try
//! failed. Nothing depends on the call being made again (the CE queue-worker never replays): the loss is logged and
//! answered; a caller that can call again after `Retry-After` (the local stack's queue) still gets it written.

use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use shared::error::ErrorResponse;
use shared::signature::{SignatureError, SignedBodyError};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    /// GitHub kept failing through every try.
    #[error("GitHub did not accept the status for `{context}` after {tries} tries: {reason}")]
    GitHubUnavailable { context: String, tries: u32, reason: String },
    /// GitHub asked for a longer wait than this request's time allows (a rate limit), or its faults outlasted it.
    #[error("the status for `{context}` could not be written: GitHub asks to wait {}s, longer than this request's time allows: {reason}", retry_after.as_secs())]
    Deferred { context: String, reason: String, retry_after: Duration, rate_limited: bool },
    /// Some statuses of a report could not be written (the others were): each lost one with why, in the answer.
    #[error(
        "{} status(es) could not be written to GitHub within this call and are lost unless it is made again: {}",
        lost.len(),
        lost_contexts(lost)
    )]
    Lost { written: Vec<String>, rejected: Vec<serde_json::Value>, lost: Vec<LostStatus> },
    /// The shared store of preview comment ids cannot be read or written: no comment is posted, since it could
    /// be a second one.
    #[error("the preview comments' store failed: {0}")]
    Store(String),
}

/// A status that GitHub could not take within the request's time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LostStatus {
    pub context: String,
    pub reason: String,
    /// How long GitHub (or the backoff) still asked to wait, and whether for a rate limit; none when every try
    /// failed.
    #[serde(skip)]
    pub wait: Option<(Duration, bool)>,
}

impl LostStatus {
    /// The lost status and why, from the error its write ended with.
    pub fn from_error(context: &str, error: &StatusError) -> Self {
        let wait = match error {
            StatusError::Deferred { retry_after, rate_limited, .. } => Some((*retry_after, *rate_limited)),
            _ => None,
        };
        Self { context: context.to_owned(), reason: error.to_string(), wait }
    }
}

fn lost_contexts(lost: &[LostStatus]) -> String {
    lost.iter().map(|l| l.context.as_str()).collect::<Vec<_>>().join(", ")
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let waits: Vec<(Duration, bool)> = match &self {
            Self::Lost { lost, .. } => lost.iter().filter_map(|l| l.wait).collect(),
            Self::Deferred { retry_after, rate_limited, .. } => vec![(*retry_after, *rate_limited)],
            _ => Vec::new(),
        };
        let status = match &self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ if waits.iter().any(|(_, rate_limited)| *rate_limited) => StatusCode::TOO_MANY_REQUESTS,
            _ if !waits.is_empty() => StatusCode::SERVICE_UNAVAILABLE,
            Self::GitHubUnavailable { .. } | Self::Deferred { .. } | Self::Lost { .. } | Self::Store(_) => {
                StatusCode::BAD_GATEWAY
            }
        };
        let mut response = if let Self::Lost { written, rejected, lost } = &self {
            let body = serde_json::json!({
                "error": self.to_string(),
                "written": written,
                "rejected": rejected,
                "lost": lost,
            });
            (status, Json(body)).into_response()
        } else {
            ErrorResponse::new(status, &self).into_response()
        };
        if let Some(longest) = waits.iter().map(|(wait, _)| *wait).max() {
            // Whole seconds, rounded up: a caller that calls again must not come back before GitHub's window ends.
            let seconds = longest.as_secs() + u64::from(longest.subsec_nanos() > 0);
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// A signed call's refusal (`shared::signature::SignedJson`): the signature's 401, or the body's 400.
impl From<SignedBodyError> for StatusError {
    fn from(error: SignedBodyError) -> Self {
        match error {
            SignedBodyError::Signature(error) => Self::Signature(error),
            SignedBodyError::NotTheBody(message) => Self::BadRequest(message),
        }
    }
}
