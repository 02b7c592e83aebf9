//! Whose a deployed function is, for the parts that show a function to its owner only (the dashboard,
//! function-logs, metrics): one rule, so that a page and the data behind it can never disagree.

use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::gateway::{GatewayClient, GatewayError};
use crate::naming::is_dns1123_label;
use crate::openfaas::{labels, FunctionStatus};
use crate::session::Session;

/// Why a function is not shown.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    BadName(String),
    #[error("no function `{0}` is deployed")]
    NotFound(String),
    /// Another owner's function, one of the platform's own, or one deployed by hand.
    #[error("function `{0}` does not belong to you or to one of your organisations")]
    Forbidden(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl AccessError {
    /// The answer each refusal gets, the same from every function that shows a function to its owner.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::BadName(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Gateway(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The `name` query parameter: a deployed function's name (a DNS-1123 label, e.g. `octo-hello-4`).
pub fn requested_function<S: BuildHasher>(query: &HashMap<String, String, S>) -> Result<&str, AccessError> {
    let name = query
        .get("name")
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AccessError::BadName("the `name` query parameter (the function) is required".into()))?;
    if !is_dns1123_label(name) {
        return Err(AccessError::BadName(format!("`{name}` is not a function's name")));
    }
    Ok(name)
}

impl Session {
    /// Whether `function` is a cloud function of one of the session's accounts: by the owner id label
    /// (`com.openfaas.cloud.git-owner-id`) when it has one, else by the owner's login (`Git-Owner`). The
    /// platform's own functions, and those deployed by hand, are nobody's.
    pub fn may_see(&self, function: &FunctionStatus) -> bool {
        let login = function.label(labels::OWNER).or_else(|| function.label(labels::GIT_OWNER));
        function.is_cloud_function()
            && match (function.owner_id(), login) {
                (Some(id), login) => self.owns(login.unwrap_or_default(), Some(id)),
                (None, Some(login)) => self.owns(login, None),
                (None, None) => false,
            }
    }
}

/// The deployed function `name`, when the session may see it.
pub async fn owned_function(
    gateway: &GatewayClient,
    session: &Session,
    name: &str,
) -> Result<FunctionStatus, AccessError> {
    let function = gateway
        .list_functions()
        .await?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| AccessError::NotFound(name.to_owned()))?;
    if session.may_see(&function) {
        Ok(function)
    } else {
        Err(AccessError::Forbidden(name.to_owned()))
    }
}
