//! Every way a page can fail, and the one place each becomes an answer: a redirect to the login, or an HTML error
//! page with its status and a reason a user can act on.
//!
//! A handler's error only names what went wrong ([`PageError`]); the page itself is rendered by [`render_failure`],
//! called from the layer that knows the dashboard's links and the response's nonce.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::gateway::GatewayError;
use shared::log_store::LogStoreError;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No session, or one that is tampered, expired or not ours: sign in, then come back to `login_url`'s `r`.
    #[error("sign in to see this page")]
    SignIn { login_url: String },
    #[error("`{0}` is not one of your functions or your organisations' functions")]
    NotYours(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the gateway could not list the functions: {0}")]
    Gateway(#[from] GatewayError),
    #[error("the build logs could not be read: {0}")]
    Store(LogStoreError),
    #[error("{0}")]
    Upstream(String),
    #[error("the page could not be rendered: {0}")]
    Render(#[from] askama::Error),
}

impl From<LogStoreError> for PageError {
    fn from(error: LogStoreError) -> Self {
        match error {
            LogStoreError::NotFound(_) | LogStoreError::InvalidKey(_) => Self::NotFound("no such build log".into()),
            other => Self::Store(other),
        }
    }
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            Self::SignIn { .. } => StatusCode::FOUND,
            Self::NotYours(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gateway(_) | Self::Store(_) | Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::SignIn { .. } => "Sign in",
            Self::NotYours(_) => "Not your function",
            Self::NotFound(_) => "Not found",
            Self::Gateway(_) | Self::Store(_) | Self::Upstream(_) => "Temporarily unavailable",
            Self::Render(_) => "Something went wrong",
        }
    }
}

/// What an error page shows, left on the response for [`render_failure`].
#[derive(Debug, Clone)]
pub struct Failure {
    pub title: &'static str,
    pub message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::SignIn { login_url } = &self {
            return (status, [(header::LOCATION, login_url.as_str())]).into_response();
        }
        // A server-side failure is logged in full; the user reads what to do, never an internal address.
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "page failed");
            "The dashboard could not reach the platform's services. Try again in a moment.".to_owned()
        } else {
            self.to_string()
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(Failure { title: self.title(), message });
        response
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    home: &'a str,
    nonce: &'a str,
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// The HTML page of a failed response (`home` is the dashboard's URL).
pub fn render_failure(status: StatusCode, failure: &Failure, home: &str, nonce: &str) -> String {
    let page = ErrorPage { home, nonce, status: status.as_u16(), title: failure.title, message: &failure.message };
    page.render().unwrap_or_else(|_| format!("{} {}", status.as_u16(), failure.title))
}
