//! garbage-collect: removes the functions of one repository that its stack.yml no longer has, or a preview's when
//! its branch or pull request is gone. It only ever touches functions labelled `Git-Cloud: 1` with this owner and
//! repository, and only the asked preview's (or only the default branch's).
//!
//! # Layout
//! - [`Config`]: the gateway, its admin credentials, the payload secret.
//! - [`collectable`]: the safety rule, in one place.
//! - [`error`]: the answers.
//! - [`sweep_previews`]: on a timer (`preview_sweep_every`), previews with no deployment for `preview_ttl_days`
//!   are removed.

pub mod error;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use axum::{Json, Router};
use shared::config::{duration_or, u64_or, CommonConfig, ConfigError, Secret, SecretStore};
use shared::event::{GarbageCollectRequest, GarbageCollected};
use shared::gateway::{BasicAuth, GatewayClient};
use shared::openfaas::{labels, FunctionStatus};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
use shared::signature::{SignedCalls, SignedJson};

pub use crate::error::GcError;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `basic-auth-user` / `basic-auth-password`: listing and deleting need the gateway's admin.
    pub credentials: BasicAuth,
    /// `preview_ttl_days` (default 7; 0 turns the sweep off): a preview with no deployment for this long is removed.
    pub preview_ttl: Duration,
    /// `preview_sweep_every` (default 1h): how often the previews are looked at for that.
    pub preview_sweep_every: Duration,
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
            preview_ttl: Duration::from_secs(u64_or("preview_ttl_days", 7)?.saturating_mul(24 * 3600)),
            preview_sweep_every: duration_or("preview_sweep_every", Duration::from_secs(3600))?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

struct AppState {
    config: Config,
    gateway: GatewayClient,
}

impl SignedCalls for AppState {
    type Error = GcError;

    fn payload_secret(&self) -> &Secret {
        &self.config.common.payload_secret
    }
}

pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials.clone());
    spawn_preview_sweep(gateway.clone(), config.preview_ttl, config.preview_sweep_every);
    Router::new()
        .route("/", any(handle))
        .route("/{*path}", any(handle))
        .with_state(Arc::new(AppState { config, gateway }))
}

/// The previews' functions last deployed more than `ttl` before `now` (Unix seconds): by the platform's
/// deploy-time label, which every deployment of a push sets (an unchanged function is not deployed again, so its
/// time is that of its last change). A preview function without a readable time is left alone.
pub fn stale_previews(functions: &[FunctionStatus], now: i64, ttl: Duration) -> Vec<String> {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    functions
        .iter()
        .filter(|f| f.preview().is_some() && f.label(labels::GIT_CLOUD) == Some("1"))
        .filter(|f| {
            let deployed = f.label(labels::DEPLOY_TIME).or_else(|| f.label(labels::GIT_DEPLOY_TIME));
            deployed.and_then(|t| t.parse::<i64>().ok()).is_some_and(|t| t < now.saturating_sub(ttl))
        })
        .map(|f| f.name.clone())
        .collect()
}

/// Removes every stale preview function (see [`stale_previews`]); answers the names removed.
pub async fn sweep_previews(gateway: &GatewayClient, ttl: Duration) -> Result<Vec<String>, GcError> {
    let functions = gateway.list_functions().await?;
    let mut deleted = Vec::new();
    for name in stale_previews(&functions, chrono::Utc::now().timestamp(), ttl) {
        match gateway.delete(&name).await {
            Ok(()) => deleted.push(name),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

/// The stale-preview sweep, every `every` while the function runs (each replica sweeps; a function another removed
/// first is no error). Off with a zero `ttl`, and outside a runtime (a router built for a test).
fn spawn_preview_sweep(gateway: GatewayClient, ttl: Duration, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if ttl.is_zero() || every.is_zero() {
        return;
    }
    runtime.spawn(async move {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            match sweep_previews(&gateway, ttl).await {
                Ok(deleted) if deleted.is_empty() => {}
                Ok(deleted) => tracing::info!(?deleted, "stale previews removed"),
                Err(error) => tracing::warn!(%error, "sweeping the stale previews failed"),
            }
        }
    });
}

/// Whether `function` belongs to `owner/repo` through our labels, to the asked preview (or to the repository's own
/// deployment when none is asked; to either with `with_previews`), and is not in `keep`. A push to the default
/// branch thus never removes a preview, nor a preview's push the default branch's functions. Owner and repository
/// compare case-insensitively, as GitHub names them.
pub fn collectable(function: &FunctionStatus, request: &GarbageCollectRequest) -> bool {
    let in_scope = request.with_previews || function.preview() == request.preview.as_deref();
    function.is_cloud_function_from(&request.owner, request.owner_id, &request.repo)
        && in_scope
        && !request.functions.iter().any(|keep| keep == &function.name)
}

async fn handle(
    State(state): State<Arc<AppState>>,
    SignedJson(request): SignedJson<GarbageCollectRequest>,
) -> Result<Json<GarbageCollected>, GcError> {
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
