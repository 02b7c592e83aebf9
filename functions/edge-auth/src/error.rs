//! Why a sign-in was refused, and the page each refusal answers with: one place, small pages with a reason a person
//! can act on, never a token, a code or a secret.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use shared::customers::CustomersUnavailable;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The callback came without the state cookie: started in another browser, or over ten minutes ago.
    #[error("this sign-in was not started in this browser, or it took too long")]
    StateMissing,
    /// The callback's `state` is not the one this browser was given: possibly a forged request.
    #[error("this sign-in does not match the one this browser started")]
    StateMismatch,
    /// GitHub sent the person back without a code (they declined, or the App is misconfigured).
    #[error("GitHub did not sign you in ({0})")]
    Declined(String),
    #[error("the sign-in answer from GitHub has no code")]
    MissingCode,
    /// GitHub refused to exchange the code (`bad_verification_code`, `incorrect_client_credentials`…).
    #[error("GitHub did not accept this sign-in ({0})")]
    Rejected(String),
    /// GitHub could not be reached, or answered something unexpected.
    #[error("GitHub could not be asked who you are: {0}")]
    GitHub(String),
    /// Neither the user nor any of their organisations is on the customers list.
    #[error("{0} is not a customer of this OpenFaaS Cloud, and neither is any of its organisations")]
    NotCustomer(String),
    #[error(transparent)]
    Customers(#[from] CustomersUnavailable),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::StateMissing | Self::MissingCode => StatusCode::BAD_REQUEST,
            Self::StateMismatch | Self::Declined(_) | Self::Rejected(_) | Self::NotCustomer(_) => StatusCode::FORBIDDEN,
            Self::GitHub(_) | Self::Customers(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "sign-in failed");
        } else {
            tracing::warn!(error = %self, "sign-in refused");
        }
        // A failure on this side (GitHub unreachable, the customers list unreadable) is logged whole and shown in
        // general terms: its text can name internal addresses or the customers list's URL.
        let mut reason = if status.is_server_error() {
            "the sign-in could not be completed right now; try again in a minute".to_owned()
        } else {
            self.to_string()
        };
        if let Some(first) = reason.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        // Served at `{auth_url}oauth2/authorized`, so `../login/` is `{auth_url}login/` behind any prefix.
        let html = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Sign-in refused</title></head>\n\
             <body><h1>Sign-in refused</h1>\n<p>{}.</p>\n\
             <p><a href=\"../login/\">Sign in again</a></p>\n</body></html>\n",
            escape(&reason)
        );
        (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
    }
}

/// Escapes text for HTML content.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
