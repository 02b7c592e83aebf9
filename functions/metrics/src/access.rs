//! Who may see a function's numbers: the signed-in session, when one of its accounts owns the function.

use std::collections::HashMap;
use std::hash::BuildHasher;

use shared::gateway::GatewayClient;
use shared::naming::is_dns1123_label;
use shared::openfaas::{labels, FunctionStatus};
use shared::session::Session;

use crate::MetricsError;

/// The `name` query parameter: a deployed function's name (a DNS-1123 label, e.g. `octo-hello`).
pub fn service_from_query<S: BuildHasher>(query: &HashMap<String, String, S>) -> Result<&str, MetricsError> {
    let name = query
        .get("name")
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| MetricsError::BadRequest("the `name` query parameter (the function) is required".into()))?;
    if !is_dns1123_label(name) {
        return Err(MetricsError::BadRequest(format!("`{name}` is not a function's name")));
    }
    Ok(name)
}

/// Whether `function` is a cloud function of one of the session's accounts: by the owner id label
/// (`com.openfaas.cloud.git-owner-id`) when it has one, else by the owner's login (`Git-Owner`). The platform's
/// own functions, and those deployed by hand, are nobody's.
pub fn is_owned_by(function: &FunctionStatus, session: &Session) -> bool {
    let login = function.label(labels::OWNER).or_else(|| function.label(labels::GIT_OWNER));
    function.is_cloud_function()
        && match (function.owner_id(), login) {
            (Some(id), login) => session.owns(login.unwrap_or_default(), Some(id)),
            (None, Some(login)) => session.owns(login, None),
            (None, None) => false,
        }
}

/// The deployed function `name`, when the session may see it: 404 when there is none, 403 when it is not theirs.
pub async fn owned_function(
    gateway: &GatewayClient,
    session: &Session,
    name: &str,
) -> Result<FunctionStatus, MetricsError> {
    let function = gateway
        .list_functions()
        .await?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| MetricsError::NotFound(name.to_owned()))?;
    if is_owned_by(&function, session) {
        Ok(function)
    } else {
        Err(MetricsError::Forbidden(name.to_owned()))
    }
}
