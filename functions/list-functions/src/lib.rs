//! list-functions: an owner's functions, as the dashboard shows them, read from the gateway's `/system/functions`.
//!
//! # Layout
//! - [`Config`]: the gateway and its admin credentials.
//! - [`ListedFunction`]: one function as answered.
//! - [`error`]: the answers.

pub mod error;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use shared::config::{CommonConfig, ConfigError, SecretStore};
use shared::gateway::{BasicAuth, GatewayClient};
use shared::naming::is_github_login;
use shared::openfaas::labels;
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

pub use crate::error::ListError;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub credentials: BasicAuth,
    pub server: ServerConfig,
}

impl shared::server::FunctionConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let secrets = SecretStore::from_env();
        Ok(Self {
            common: CommonConfig::from_env(&secrets)?,
            credentials: BasicAuth::from_secrets(&secrets)?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

/// One function of the owner.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedFunction {
    pub name: String,
    pub image: String,
    pub sha: String,
    pub repo: String,
    /// Unix seconds of the deployment (`Git-DeployTime`).
    pub deploy_time: String,
    pub replicas: u64,
    pub available_replicas: u64,
    pub invocation_count: f64,
}

struct AppState {
    gateway: GatewayClient,
}

pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials);
    Router::new().route("/", get(list)).route("/{*path}", get(list)).with_state(Arc::new(AppState { gateway }))
}

async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<ListedFunction>>, ListError> {
    let user = query
        .get("user")
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ListError::BadRequest("the `user` query parameter is required".into()))?;
    if !is_github_login(user) {
        return Err(ListError::BadRequest(format!("`{user}` is not a GitHub login")));
    }
    // `owner_id` narrows the list to the functions deployed for that GitHub id (a login can change hands).
    let owner_id = match query.get("owner_id").map(|id| id.trim()).filter(|id| !id.is_empty()) {
        Some(id) => Some(id.parse::<u64>().map_err(|_| ListError::BadRequest(format!("`{id}` is not an owner id")))?),
        None => None,
    };
    // The owner's alone where the gateway can select them (ofc's); the rule below decides either way.
    let mut functions = state.gateway.list_functions_of(user, owner_id).await?;
    functions.retain(|f| f.is_cloud_function_of(user, owner_id));
    // Readiness as `GET /system/function/NAME` counts it where the list does not (faasd's list never does).
    let functions = state.gateway.with_readiness(functions).await;
    let mut listed: Vec<ListedFunction> = functions
        .into_iter()
        .map(|f| ListedFunction {
            sha: f.label(labels::GIT_SHA).unwrap_or_default().to_owned(),
            repo: f.repo().unwrap_or_default().to_owned(),
            deploy_time: f.label(labels::GIT_DEPLOY_TIME).unwrap_or_default().to_owned(),
            name: f.name,
            image: f.image,
            replicas: f.replicas,
            available_replicas: f.available_replicas,
            invocation_count: f.invocation_count,
        })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(listed))
}
