//! garbage-collect: removes the functions of one repository that its stack.yml no longer has. It only ever touches
//! functions labelled `Git-Cloud: 1` with this owner and repository.
//!
//! # Layout
//! - [`Config`]: the gateway, its admin credentials, the payload secret.
//! - [`collectable`]: the safety rule, in one place.
//! - [`error`]: the answers.

pub mod error;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::{Json, Router};
use shared::config::{CommonConfig, ConfigError, SecretStore};
use shared::event::{GarbageCollectRequest, GarbageCollected};
use shared::gateway::{BasicAuth, GatewayClient};
use shared::openfaas::FunctionStatus;
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
use shared::signature::verify_cloud;

pub use crate::error::GcError;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `basic-auth-user` / `basic-auth-password`: listing and deleting need the gateway's admin.
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

struct AppState {
    config: Config,
    gateway: GatewayClient,
}

pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials.clone());
    Router::new()
        .route("/", any(handle))
        .route("/{*path}", any(handle))
        .with_state(Arc::new(AppState { config, gateway }))
}

/// Whether `function` belongs to `owner/repo` through our labels and is not in `keep`.
/// Owner and repository compare case-insensitively, as GitHub names them.
pub fn collectable(function: &FunctionStatus, request: &GarbageCollectRequest) -> bool {
    function.is_cloud_function_from(&request.owner, request.owner_id, &request.repo)
        && !request.functions.iter().any(|keep| keep == &function.name)
}

async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<GarbageCollected>, GcError> {
    verify_cloud(&headers, &body, state.config.common.payload_secret.expose().as_bytes())?;
    let request: GarbageCollectRequest = serde_json::from_slice(&body)
        .map_err(|e| GcError::BadRequest(format!("the body is not a garbage-collect request: {e}")))?;
    if request.owner.trim().is_empty() || request.repo.trim().is_empty() {
        return Err(GcError::BadRequest("owner and repo are required".into()));
    }
    // The owner's alone where the gateway can select them (ofc's); `collectable` decides either way.
    let functions = state.gateway.list_functions_of(&request.owner, request.owner_id).await?;
    let mut deleted = Vec::new();
    for function in functions.iter().filter(|f| collectable(f, &request)) {
        match state.gateway.delete(&function.name).await {
            Ok(()) => deleted.push(function.name.clone()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(owner = %request.owner, repo = %request.repo, deleted = ?deleted, "garbage collected");
    Ok(Json(GarbageCollected { owner: request.owner, repo: request.repo, deleted }))
}
