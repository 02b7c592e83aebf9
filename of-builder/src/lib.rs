//! of-builder: the HTTP build service. It takes a signed build tar (`config` + `context/`), checks it, builds the
//! context's Dockerfile with Buildah or BuildKit, pushes the image, and answers with its digest.
//!
//! # Layout
//! - [`config`]: `builder_backend`, `max_context_bytes`, `max_concurrent_builds`, `registry_insecure`…
//! - [`context`]: receiving the tar into a fresh temporary folder, checking every entry before unpacking.
//! - [`backend`]: the `BuildBackend` trait, Buildah and BuildKit.
//! - [`storage`]: Buildah's storage driver, overlay where a probe at start shows it works, else vfs.
//! - [`sandbox`]: builds as an unprivileged user in their own PID namespace with a minimal `/dev` (`build_user`).
//! - [`reference`]: `ref` must be a registry reference, never a transport that writes elsewhere.
//! - [`log`]: the whole build log, with known secrets scrubbed.
//! - [`error`]: the answers: 400 for a bad tar, 401 unsigned, 5xx only when the builder itself is broken.

pub mod backend;
pub mod config;
pub mod context;
pub mod error;
pub mod log;
pub mod reference;
pub mod sandbox;
pub mod storage;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use shared::build::{BuildResult, BuildStatus};
use shared::signature::{SignatureError, CLOUD_SIGNATURE};
use tokio::sync::Semaphore;

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
    ) -> Result<BuildOutcome, BuilderError> {
        match self {
            Self::Buildah(b) => b.build(config, context, work).await,
            Self::Buildkit(b) => b.build(config, context, work).await,
        }
    }
}

struct AppState {
    config: Config,
    backend: Backend,
    /// Builds are CPU- and disk-heavy: at most `max_concurrent_builds` run, the rest wait here.
    builds: Semaphore,
}

/// The service's router with Buildah on vfs, without the runtime layers (see `shared::server::with_runtime`).
pub fn app(config: Config) -> Router {
    serve(Setup { config, storage: StorageDriver::Vfs })
}

/// The service's router with the storage driver chosen at start (`Setup::from_env`).
pub fn serve(setup: Setup) -> Router {
    let Setup { config, storage } = setup;
    let backend = Backend::from_config(&config, storage);
    let builds = Semaphore::new(config.max_concurrent_builds);
    let state = Arc::new(AppState { config, backend, builds });
    Router::new().route("/build", post(build)).route("/healthz", get(healthz)).with_state(state)
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

async fn build(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BuildResult>, BuilderError> {
    let claimed =
        headers.get(CLOUD_SIGNATURE).and_then(|v| v.to_str().ok()).map(str::to_owned).ok_or(SignatureError::Missing)?;
    let dir = tempfile::Builder::new().prefix("of-builder-").tempdir()?;
    let secret = state.config.common.payload_secret.expose().as_bytes();
    let tar_path = dir.path().join("build.tar");
    shared::upload::receive_signed(body, &tar_path, secret, &claimed, state.config.server.max_body_bytes).await?;
    let max_context = state.config.max_context_bytes;
    let context = tokio::task::spawn_blocking(move || context::check_and_unpack(&tar_path, dir, max_context))
        .await
        .map_err(|e| BuilderError::Backend(format!("the tar check stopped: {e}")))??;
    let image = context.config.image_ref.clone();
    let _permit =
        state.builds.acquire().await.map_err(|_| BuilderError::Backend("the builder is shutting down".into()))?;
    tracing::info!(%image, backend = state.backend.name(), "building");
    let started = std::time::Instant::now();
    let outcome = state.backend.build(&context.config, &context.context_dir(), context.dir.path()).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Json(match outcome {
        BuildOutcome::Pushed { digest, log } => {
            tracing::info!(%image, %digest, seconds, "built and pushed");
            BuildResult { image, digest, status: BuildStatus::Success, log }
        }
        BuildOutcome::Failed { log } => {
            tracing::info!(%image, seconds, "the Dockerfile failed");
            BuildResult { image, digest: String::new(), status: BuildStatus::Failure, log }
        }
    }))
}
