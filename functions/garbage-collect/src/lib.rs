//! garbage-collect: removes the functions of one repository that its stack.yml no longer has, or a preview's when
//! its branch or pull request is gone. It only ever touches functions labelled `Git-Cloud: 1` with this owner and
//! repository, and only the asked preview's (or only the default branch's).
//!
//! # Layout
//! - [`Config`]: the gateway, its admin credentials, the payload secret.
//! - [`collectable`]: the safety rule, in one place.
//! - [`error`]: the answers.
//! - [`images`]: a removed preview's images, deleted from the registry with the collector's account.
//! - [`sweep_previews`]: on a timer (`preview_sweep_every`), previews with no deployment for `preview_ttl` are
//!   removed.

pub mod error;
pub mod images;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use axum::{Json, Router};
use shared::config::{duration_or, env_string, parse_duration, u64_or, CommonConfig, ConfigError, Secret, SecretStore};
use shared::event::{GarbageCollectRequest, GarbageCollected};
use shared::gateway::{BasicAuth, GatewayClient};
use shared::openfaas::{labels, FunctionStatus};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
use shared::signature::{SignedCalls, SignedJson};

pub use crate::error::GcError;
use crate::images::{ImagesRemoved, PreviewImages, RegistryConfig};

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `basic-auth-user` / `basic-auth-password`: listing and deleting need the gateway's admin.
    pub credentials: BasicAuth,
    /// `preview_ttl` (default `7d`; `0` turns the sweep off; the older `preview_ttl_days` is read when it is
    /// unset): a preview with no deployment for this long is removed.
    pub preview_ttl: Duration,
    /// `preview_sweep_every` (default 1h): how often the previews are looked at for that.
    pub preview_sweep_every: Duration,
    /// The registry account and address a removed preview's images are deleted with.
    pub registry: RegistryConfig,
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
            preview_ttl: preview_ttl()?,
            preview_sweep_every: duration_or("preview_sweep_every", Duration::from_secs(3600))?,
            registry: RegistryConfig::from_env(&secrets)?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

/// `preview_ttl`: a duration (`30s`, `12h`, `7d`; days are what previews are usually kept for), or, when it is
/// unset, the older `preview_ttl_days`; both set is refused, as one would silently win.
fn preview_ttl() -> Result<Duration, ConfigError> {
    let days = env_string("preview_ttl_days");
    let Some(value) = env_string("preview_ttl") else {
        return Ok(Duration::from_secs(u64_or("preview_ttl_days", 7)?.saturating_mul(24 * 3600)));
    };
    if days.is_some() {
        return Err(ConfigError::Invalid {
            name: "preview_ttl_days".into(),
            reason: "set `preview_ttl` or `preview_ttl_days`, not both".into(),
        });
    }
    parse_ttl(&value).map_err(|reason| ConfigError::Invalid { name: "preview_ttl".into(), reason })
}

/// A duration as every duration setting reads it, or a whole number of days (`7d`).
pub fn parse_ttl(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    match value.strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) => Ok(Duration::from_secs(days.saturating_mul(24 * 3600))),
        Some(Err(_)) => Err(format!("`{value}` is not a duration (e.g. 30s, 12h, 7d)")),
        None => parse_duration(value),
    }
}

struct AppState {
    config: Config,
    gateway: GatewayClient,
    images: PreviewImages,
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
    let images = PreviewImages::new(&config.registry);
    spawn_preview_sweep(gateway.clone(), images.clone(), config.preview_ttl, config.preview_sweep_every);
    Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(Arc::new(AppState {
        config,
        gateway,
        images,
    }))
}

/// The previews' functions last deployed more than `ttl` before `now` (Unix seconds): by the platform's
/// deploy-time label, which every deployment of a push sets (an unchanged function is not deployed again, so its
/// time is that of its last change). A preview function without a readable time is left alone.
pub fn stale_previews(functions: &[FunctionStatus], now: i64, ttl: Duration) -> Vec<&FunctionStatus> {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    functions
        .iter()
        .filter(|f| f.preview().is_some() && f.label(labels::GIT_CLOUD) == Some("1"))
        .filter(|f| {
            let deployed = f.label(labels::DEPLOY_TIME).or_else(|| f.label(labels::GIT_DEPLOY_TIME));
            deployed.and_then(|t| t.parse::<i64>().ok()).is_some_and(|t| t < now.saturating_sub(ttl))
        })
        .collect()
}

/// What a sweep removed: the stale previews' functions and their images.
#[derive(Debug, Default)]
pub struct Swept {
    pub deleted: Vec<String>,
    pub images: ImagesRemoved,
}

/// Removes every stale preview function (see [`stale_previews`]) and then their images; answers what it removed.
/// The images of the functions removed before a gateway failure are still deleted.
pub async fn sweep_previews(gateway: &GatewayClient, images: &PreviewImages, ttl: Duration) -> Result<Swept, GcError> {
    let functions = gateway.list_functions().await?;
    let stale = stale_previews(&functions, chrono::Utc::now().timestamp(), ttl);
    let (removed, failed) = delete_functions(gateway, stale).await;
    let live = if removed.iter().any(|f| f.preview().is_some()) { gateway.list_functions().await.ok() } else { None };
    let swept = Swept {
        deleted: removed.iter().map(|f| f.name.clone()).collect(),
        images: images.remove(&removed, live.as_deref()).await,
    };
    match failed {
        Some(error) => {
            tracing::warn!(deleted = ?swept.deleted, images = ?swept.images.deleted, "a sweep stopped part way");
            Err(error)
        }
        None => Ok(swept),
    }
}

/// Deletes `functions` from the gateway in turn (one already gone is no error); answers those deleted, and the
/// error that stopped it.
async fn delete_functions(
    gateway: &GatewayClient,
    functions: Vec<&FunctionStatus>,
) -> (Vec<FunctionStatus>, Option<GcError>) {
    let mut deleted = Vec::new();
    for function in functions {
        match gateway.delete(&function.name).await {
            Ok(()) => deleted.push(function.clone()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {}
            Err(e) => return (deleted, Some(e.into())),
        }
    }
    (deleted, None)
}

/// The stale-preview sweep, every `every` while the function runs (each replica sweeps; a function another removed
/// first is no error). Off with a zero `ttl`, and outside a runtime (a router built for a test).
fn spawn_preview_sweep(gateway: GatewayClient, images: PreviewImages, ttl: Duration, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if ttl.is_zero() || every.is_zero() {
        return;
    }
    runtime.spawn(async move {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            match sweep_previews(&gateway, &images, ttl).await {
                Ok(swept) if swept.deleted.is_empty() => {}
                Ok(swept) => tracing::info!(
                    deleted = ?swept.deleted,
                    images = ?swept.images.deleted,
                    images_kept = ?swept.images.kept,
                    "stale previews removed"
                ),
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
    let (removed, failed) =
        delete_functions(&state.gateway, functions.iter().filter(|f| collectable(f, &request)).collect()).await;
    // The images of what was removed go even when a later function's removal failed.
    // Read again only when a preview went: its images are deleted unless a function runs from them again.
    let live = if removed.iter().any(|f| f.preview().is_some()) {
        state.gateway.list_functions_of(&request.owner, request.owner_id).await.ok()
    } else {
        None
    };
    let images = state.images.remove(&removed, live.as_deref()).await;
    let deleted: Vec<String> = removed.iter().map(|f| f.name.clone()).collect();
    if let Some(error) = failed {
        tracing::warn!(owner = %request.owner, repo = %request.repo, ?deleted, images = ?images.deleted, "a collection stopped part way");
        return Err(error);
    }
    tracing::info!(
        owner = %request.owner,
        repo = %request.repo,
        ?deleted,
        images = ?images.deleted,
        images_kept = ?images.kept,
        "garbage collected"
    );
    Ok(Json(GarbageCollected {
        owner: request.owner,
        repo: request.repo,
        deleted,
        images_deleted: images.deleted,
        images_kept: images.kept,
    }))
}
