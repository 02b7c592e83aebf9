//! git-event: when a GitHub App is uninstalled from a repository or an account, the functions built from them are
//! removed. `installation_repositories` (removed) and `installation` (deleted) deliveries, verified like gh-push's,
//! become garbage-collect calls with an empty list of functions to keep.
//!
//! # Layout
//! - [`Config`]: the webhook secret, the gateway and its credentials, the customers list (as gh-push checks it).
//! - [`InstallationEvent`]: the part of both payloads that matters.
//! - [`error`]: the answers.

pub mod error;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use axum::{Json, Router};
use serde::Deserialize;
use shared::config::{duration_or, CommonConfig, ConfigError, SecretStore};
use shared::customers::{Customers, CustomersSource};
use shared::event::GarbageCollectRequest;
use shared::garbage_collect::GarbageCollectClient;
use shared::gateway::{BasicAuth, GatewayClient};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
use shared::signature::WebhookCheck;

pub use crate::error::EventError;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `validate_hmac` (default on) with `github-webhook-secret`, required when it is on: how GitHub's signature
    /// is checked.
    pub webhook: WebhookCheck,
    pub credentials: BasicAuth,
    /// `validate_customers` / `customers_url`: only the listed owners' installation events are acted on, as gh-push
    /// builds only their pushes.
    pub customers: Option<CustomersSource>,
    /// `customers_cache_ttl`: how long a fetched customers list is trusted.
    pub customers_ttl: Duration,
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
        let webhook = WebhookCheck::from_env(&secrets)?;
        Ok(Self {
            common: CommonConfig::from_env(&secrets)?,
            webhook,
            credentials: BasicAuth::from_secrets(&secrets)?,
            customers: CustomersSource::from_env()?,
            customers_ttl: duration_or("customers_cache_ttl", Duration::from_secs(60))?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

/// `installation` and `installation_repositories` payloads, as far as this function reads them.
#[derive(Debug, Deserialize)]
pub struct InstallationEvent {
    pub action: String,
    pub installation: Installation,
    #[serde(default)]
    pub repositories_removed: Vec<RemovedRepository>,
}

#[derive(Debug, Deserialize)]
pub struct Installation {
    pub id: u64,
    pub account: Account,
}

#[derive(Debug, Deserialize)]
pub struct Account {
    pub login: String,
    /// The account's numeric id: functions are matched by it where they carry one (a login can change hands).
    #[serde(default)]
    pub id: u64,
}

#[derive(Debug, Deserialize)]
pub struct RemovedRepository {
    pub name: String,
}

struct AppState {
    config: Config,
    gateway: GatewayClient,
    collector: GarbageCollectClient,
    customers: Option<Customers>,
}

pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials.clone());
    let customers =
        config.customers.clone().map(|source| Customers::new(source, config.customers_ttl, gateway.http().clone()));
    Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(Arc::new(AppState {
        config,
        collector: GarbageCollectClient::new(gateway.clone()),
        gateway,
        customers,
    }))
}

async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, EventError> {
    state.config.webhook.check(&headers, &body)?;
    let kind = headers.get("x-github-event").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if kind != "installation" && kind != "installation_repositories" {
        return Ok(Json(serde_json::json!({ "message": format!("ignored: `{kind}` events") })));
    }
    let event: InstallationEvent = serde_json::from_slice(&body)
        .map_err(|e| EventError::BadRequest(format!("the body is not an {kind} event: {e}")))?;
    let owner = event.installation.account.login.clone();
    let owner_id = Some(event.installation.account.id).filter(|id| *id != 0);
    if let Some(customers) = &state.customers {
        if !customers.contains(&owner).await? {
            return Err(EventError::NotACustomer(owner));
        }
    }
    let repos: BTreeSet<String> = match (kind, event.action.as_str()) {
        ("installation_repositories", "removed") => event.repositories_removed.iter().map(|r| r.name.clone()).collect(),
        ("installation", "deleted") => state
            .gateway
            .list_functions()
            .await?
            .iter()
            .filter(|f| f.is_cloud_function_of(&owner, owner_id))
            .filter_map(|f| f.repo().map(str::to_owned))
            .collect(),
        (_, action) => return Ok(Json(serde_json::json!({ "message": format!("ignored: {kind} `{action}`") }))),
    };
    for repo in &repos {
        let request = GarbageCollectRequest {
            owner: owner.clone(),
            repo: repo.clone(),
            owner_id,
            functions: Vec::new(),
            preview: None,
            with_previews: true,
        };
        state.collector.collect(&request).await?;
    }
    tracing::info!(%owner, installation = event.installation.id, repos = ?repos, "functions of uninstalled repositories removed");
    Ok(Json(serde_json::json!({ "owner": owner, "removed_repositories": repos })))
}
