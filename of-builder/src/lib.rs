//! of-builder: the HTTP build service. It takes a signed build tar (`config` + `context/`), checks it, builds the
//! context's Dockerfile with Buildah or BuildKit, pushes the image, and answers with its digest.
//!
//! # Layout
//! - [`config`]: `builder_backend`, `max_context_bytes`, `max_concurrent_builds`, `registry_insecure`…
//! - [`queue`]: the build slots shared fairly between owners (per-owner queues, caps on running and waiting
//!   builds), and each waiting build's place, served at `GET /queue/{ticket}`.
//! - [`context`]: receiving the tar into a fresh temporary folder, checking every entry before unpacking.
//! - [`base_images`]: a build reads only its owner's images and the operator's allowed base images.
//! - [`identity`], [`cache`]: a build's identity, computed here from the tar, and the sealed registry tag that lets
//!   an unchanged build reuse its image (of-builder is the registry's only writer).
//! - [`backend`]: the `BuildBackend` trait, Buildah and BuildKit.
//! - [`storage`]: Buildah's storage driver, overlay where a probe at start shows it works, else vfs.
//! - [`sandbox`]: builds as an unprivileged user in their own PID namespace with a minimal `/dev` (`build_user`).
//! - [`reference`]: `ref` must be a registry reference, never a transport that writes elsewhere.
//! - [`log`]: the whole build log, with known secrets scrubbed.
//! - [`error`]: the answers: 400 for a bad tar, 401 unsigned, 5xx only when the builder itself is broken.

pub mod backend;
pub mod base_images;
pub mod cache;
pub mod config;
pub mod context;
pub mod error;
pub mod identity;
pub mod log;
pub mod queue;
pub mod reference;
pub mod sandbox;
pub mod storage;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use shared::build::{is_build_ticket, BuildResult, BuildStatus, BUILD_TICKET_HEADER};
use shared::signature::{SignatureError, CLOUD_SIGNATURE};

use crate::backend::{BuildBackend, BuildOutcome, Buildah, Buildkit};
pub use crate::config::{BackendKind, Config, Setup};
pub use crate::error::BuilderError;
use crate::storage::StorageDriver;

/// The configured backend.
pub enum Backend {
    Buildah(Buildah),
    Buildkit(Buildkit),
}

impl Backend {
    pub fn from_config(config: &Config, storage: StorageDriver) -> Self {
        let scrubber = log::Scrubber::new(&config.common.payload_secret, config.registry_auth.as_ref());
        match &config.backend {
            BackendKind::Buildah => Self::Buildah(Buildah {
                root: config.buildah_root.clone(),
                driver: storage,
                insecure_registry: config.registry_insecure,
                timeout: config.build_timeout,
                user: config.build_user.clone(),
                registry_auth: config.registry_auth.clone(),
                scrubber,
            }),
            BackendKind::Buildkit { host } => Self::Buildkit(Buildkit {
                host: host.clone(),
                insecure_registry: config.registry_insecure,
                timeout: config.build_timeout,
                registry_auth: config.registry_auth.clone(),
                scrubber,
            }),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Buildah(b) => b.name(),
            Self::Buildkit(b) => b.name(),
        }
    }

    /// Buildah's storage driver, chosen at start; none for BuildKit.
    fn storage_driver(&self) -> Option<&'static str> {
        match self {
            Self::Buildah(b) => Some(b.driver.name()),
            Self::Buildkit(_) => None,
        }
    }

    async fn check(&self) -> Result<String, BuilderError> {
        match self {
            Self::Buildah(b) => b.check().await,
            Self::Buildkit(b) => b.check().await,
        }
    }

    async fn build(
        &self,
        config: &shared::build::BuildConfig,
        context: &std::path::Path,
        work: &std::path::Path,
        label: (&str, &str),
    ) -> Result<BuildOutcome, BuilderError> {
        match self {
            Self::Buildah(b) => b.build(config, context, work, label).await,
            Self::Buildkit(b) => b.build(config, context, work, label).await,
        }
    }
}

struct AppState {
    config: Config,
    backend: Backend,
    /// Earlier builds, found by identity in the registry.
    cache: cache::BuildCache,
    /// Builds are CPU- and disk-heavy: at most `max_concurrent_builds` run, the rest wait here, in a queue per
    /// owner, so that one owner's backlog does not hold the others back.
    builds: Arc<queue::BuildQueue>,
}

/// The service's router with Buildah on vfs, without the runtime layers (see `shared::server::with_runtime`).
pub fn app(config: Config) -> Router {
    serve(Setup { config, storage: StorageDriver::Vfs })
}

/// The service's router with the storage driver chosen at start (`Setup::from_env`).
pub fn serve(setup: Setup) -> Router {
    let Setup { config, storage } = setup;
    let backend = Backend::from_config(&config, storage);
    let builds = queue::BuildQueue::new(queue::Limits {
        slots: config.max_concurrent_builds,
        per_owner_running: config.max_concurrent_builds_per_owner,
        per_owner_queued: config.max_queued_builds_per_owner,
    });
    let cache = cache::BuildCache {
        registry: shared::registry::RegistryClient::new(config.registry_insecure, config.registry_auths()),
        key: config.common.payload_secret.clone(),
    };
    let state = Arc::new(AppState { config, backend, cache, builds });
    Router::new()
        .route("/build", post(build))
        .route("/queue/{ticket}", get(place))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.backend.check().await {
        Ok(version) => {
            let storage = state.backend.storage_driver();
            Json(serde_json::json!({ "backend": state.backend.name(), "ok": true, "version": version, "storage_driver": storage }))
                .into_response()
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "backend": state.backend.name(), "ok": false, "error": error.to_string() })),
        )
            .into_response(),
    }
}

/// Where the build named `ticket` is (queued, and how many builds are ahead, or building); 404 when no open build
/// request carries that ticket. The ticket is the caller's secret-enough name: it tells only a place in line.
async fn place(State(state): State<Arc<AppState>>, Path(ticket): Path<String>) -> Result<Response, BuilderError> {
    if !is_build_ticket(&ticket) {
        return Err(BuilderError::BadRequest(bad_ticket()));
    }
    Ok(match state.builds.place(&ticket) {
        Some(place) => Json(place).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no open build request has this ticket" })))
            .into_response(),
    })
}

fn bad_ticket() -> String {
    format!("the {BUILD_TICKET_HEADER} header must be 8 to 64 letters, digits, `-` or `_`")
}

/// The owner a build counts against: its image's owner namespace (`<registry>/<owner id>`), from the signed tar's
/// `config`, which no pusher can choose; an image outside any namespace counts as its own repository.
fn queue_owner(image: &str) -> String {
    shared::naming::image_owner_prefix(image)
        .map_or_else(|| shared::naming::split_image_tag(image).0.to_owned(), str::to_owned)
}

async fn build(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BuildResult>, BuilderError> {
    let claimed =
        headers.get(CLOUD_SIGNATURE).and_then(|v| v.to_str().ok()).map(str::to_owned).ok_or(SignatureError::Missing)?;
    let ticket = match headers.get(BUILD_TICKET_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|t| is_build_ticket(t))
                .map(str::to_owned)
                .ok_or_else(|| BuilderError::BadRequest(bad_ticket()))?,
        ),
    };
    let dir = tempfile::Builder::new().prefix("of-builder-").tempdir()?;
    let secret = state.config.common.payload_secret.expose().as_bytes();
    let tar_path = dir.path().join("build.tar");
    shared::upload::receive_signed(body, &tar_path, secret, &claimed, state.config.server.max_body_bytes).await?;
    let max_context = state.config.max_context_bytes;
    let context = tokio::task::spawn_blocking(move || context::check_and_unpack(&tar_path, dir, max_context))
        .await
        .map_err(|e| BuilderError::Backend(format!("the tar check stopped: {e}")))??;
    let image = context.config.image_ref.clone();
    let scrubber = log::ImageScrubber::new(&image, &state.config.allowed_base_images);
    let dockerfile = tokio::fs::read(context.context_dir().join("Dockerfile")).await?;
    let dockerfile = String::from_utf8_lossy(&dockerfile);
    if let Err(reason) =
        base_images::check(&dockerfile, &context.config.build_args, &image, &state.config.allowed_base_images)
    {
        tracing::info!(%image, "the Dockerfile reads an image it may not");
        let log = vec![format!("refused: {reason}")];
        return Ok(Json(BuildResult { image, digest: String::new(), status: BuildStatus::Failure, log }));
    }
    let tar_path = context.dir.path().join("build.tar");
    let identity = tokio::task::spawn_blocking(move || identity::identity(&tar_path))
        .await
        .map_err(|e| BuilderError::Backend(format!("the identity task stopped: {e}")))?
        .map_err(|error| tracing::warn!(%image, %error, "no build identity; building without the cache"))
        .ok();
    let queued_at = std::time::Instant::now();
    let waiting = state.builds.enqueue(&queue_owner(&image), ticket.as_deref())?;
    let ahead = waiting.ahead_when_queued;
    let _slot = waiting.slot().await.ok_or_else(|| BuilderError::Backend("the build queue lost the build".into()))?;
    let waited = queued_at.elapsed();
    let queue_line = ahead.map(|ahead| {
        tracing::info!(%image, ahead, waited = waited.as_secs_f64(), "build slot taken after waiting");
        format!(
            "waited {:.1} s for a build slot; {ahead} waiting builds were ahead of it when it was queued",
            waited.as_secs_f64()
        )
    });
    let mut result = build_in_slot(&state, &context, image, identity.as_ref(), &scrubber).await?;
    if let Some(line) = queue_line {
        result.log.insert(0, line);
    }
    Ok(Json(result))
}

/// The build itself, once it holds a slot: the earlier image when the cache has one, else a backend build.
async fn build_in_slot(
    state: &AppState,
    context: &context::BuildContext,
    image: String,
    identity: Option<&identity::BuildIdentity>,
    scrubber: &log::ImageScrubber,
) -> Result<BuildResult, BuilderError> {
    if let Some(identity) = identity {
        if let Some(reused) = state.cache.find(&image, identity).await {
            tracing::info!(%image, digest = %reused.digest, "build skipped: image reused");
            let log = vec![format!(
                "build skipped: this repository's image built before from the same build context, build arguments \
                 and builder ({}) is reused as {}",
                identity.tag(),
                reused.digest
            )];
            return Ok(BuildResult { image, digest: reused.digest, status: BuildStatus::Success, log });
        }
    }
    tracing::info!(%image, backend = state.backend.name(), "building");
    let started = std::time::Instant::now();
    let seal = identity.map(|identity| state.cache.seal(&image, identity)).unwrap_or_default();
    let outcome = state
        .backend
        .build(&context.config, &context.context_dir(), context.dir.path(), (cache::SEAL_LABEL, &seal))
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(match outcome {
        BuildOutcome::Pushed { digest, log } => {
            tracing::info!(%image, %digest, seconds, "built and pushed");
            if let Some(identity) = identity {
                state.cache.remember(&image, &digest, identity).await;
            }
            BuildResult { image, digest, status: BuildStatus::Success, log: scrubber.scrub_all(log) }
        }
        BuildOutcome::Failed { log } => {
            tracing::info!(%image, seconds, "the Dockerfile failed");
            BuildResult { image, digest: String::new(), status: BuildStatus::Failure, log: scrubber.scrub_all(log) }
        }
    })
}
