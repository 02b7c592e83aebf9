//! buildshiprun: turns one function's build tar into a deployed function. It streams the tar to of-builder, then
//! deploys the pushed image (pinned by digest) through the gateway's `/system/functions`, and reports the function's
//! commit status.
//!
//! # Layout
//! - an unchanged build context is not built again: of-builder finds its earlier image by build identity (its
//!   `identity` and `cache`), since only of-builder may write the registry.
//! - [`config`]: `builder_url`, `gateway_public_url`, `gateway_pretty_url`, `default_memory_limit`, the gateway credentials, retries.
//! - [`deployment`]: the `FunctionDeployment` a build becomes (labels, env, limits), and who may replace a name.
//! - [`policy`]: the operator's bounds (labels, annotations, scaling, resources, secrets, build args, `dockerfile`).
//! - [`error`]: every failure and its answer; a failure is also a `failure` commit status.
//! - [`logs`]: every build's record in the log store (timings, outcome, the whole log, secrets scrubbed), and the
//!   signed pipeline-log link a failure's status points to.
//! - the handler below: receive, build (with retries), deploy (with retries), store the log, report.

pub mod config;
pub mod deployment;
pub mod error;
pub mod logs;
pub mod policy;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use axum::{Json, Router};
use shared::build::{BuildResult, BuildStatus};
use shared::error::error_chain;
use shared::event::{BuildEvent, CommitStatus, ShipResult, StatusState, OFC_EVENT_HEADER};
use shared::gateway::{GatewayClient, GatewayError};
use shared::naming::{function_url, pin_by_digest, service_name};
use shared::openfaas::FunctionDeployment;
use shared::registry::{ImageRef, RegistryClient};
use shared::retry::Backoff;
use shared::signature::{SignatureError, CLOUD_SIGNATURE};
use shared::status::StatusClient;
use shared::upload::receive_signed;

pub use crate::config::Config;
use crate::deployment::{deployment_for, may_replace, unchanged};
pub use crate::error::ShipError;
use crate::logs::{BuildTrace, BUILD, DEPLOY};
use crate::policy::Policy;

struct AppState {
    config: Config,
    /// Reads a `skip_build` image's digest (reads only: of-builder alone writes the registry).
    registry: RegistryClient,
    gateway: GatewayClient,
    statuses: StatusClient,
    http: reqwest::Client,
}

/// The function's router, without the runtime layers (see `shared::server::with_runtime`).
pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials.clone());
    let http = shared::resolver::client_builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("static client settings");
    let registry = RegistryClient::new(config.registry_insecure, config.registry_auths.clone());
    let state = AppState { statuses: StatusClient::new(gateway.clone()), gateway, http, registry, config };
    Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(Arc::new(state))
}

async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ShipResult>, ShipError> {
    let signature = header(&headers, CLOUD_SIGNATURE).ok_or(SignatureError::Missing)?.to_owned();
    let dir = tempfile::Builder::new().prefix("buildshiprun-").tempdir()?;
    let tar_path = dir.path().join("build.tar");
    let secret = state.config.common.payload_secret.expose().as_bytes();
    let size = receive_signed(body, &tar_path, secret, &signature, state.config.server.max_body_bytes).await?;
    let event = headers
        .get(OFC_EVENT_HEADER)
        .ok_or_else(|| ShipError::BadRequest(format!("the {OFC_EVENT_HEADER} header is missing")))
        .and_then(|v| {
            BuildEvent::from_header_value(v.as_bytes())
                .map_err(|e| ShipError::BadRequest(format!("the {OFC_EVENT_HEADER} header is not a build event: {e}")))
        })?;
    let service = service_name(&event.owner, &event.function).map_err(|e| ShipError::BadRequest(e.to_string()))?;
    let status_event = event.status_event();
    let mut trace = BuildTrace::default();
    let result = ship(&state, &event, &service, &tar_path, size, &signature, &mut trace).await;
    let log_url = logs::store(&state.config, &event, &trace, &result).await;
    let status = match &result {
        Ok(answer) => CommitStatus::new(
            &event.function,
            StatusState::Success,
            format!("deployed {service} ({})", answer.deployed),
        )
        .with_target_url(function_url(
            state.config.gateway_public_url.as_str(),
            state.config.gateway_pretty_url.as_deref(),
            &event.owner,
            &event.function,
            &service,
        )),
        Err(error) => {
            let status =
                CommitStatus::new(&event.function, StatusState::Failure, logs::failure_description(&trace, error));
            match &log_url {
                Some(url) => status.with_target_url(url.to_string()),
                None => status,
            }
        }
    };
    match &result {
        Ok(_) => tracing::info!(owner = %event.owner, repo = %event.repo, sha = %event.sha, %service, "deployed"),
        Err(error) => {
            tracing::warn!(owner = %event.owner, repo = %event.repo, sha = %event.sha, %service, %error, "not deployed");
        }
    }
    state.statuses.report_or_log(&status_event, vec![status]).await;
    result.map(|answer| Json(ShipResult { log_url: log_url.map(String::from), ..answer }))
}

/// Builds and deploys, noting in `trace` each step's time and what of-builder answered.
async fn ship(
    state: &AppState,
    event: &BuildEvent,
    service: &str,
    tar: &Path,
    size: u64,
    signature: &str,
    trace: &mut BuildTrace,
) -> Result<ShipResult, ShipError> {
    let refused = |reason: String| ShipError::Refused { function: event.function.clone(), reason };
    Policy::check_names(&event.owner, service).map_err(refused)?;
    // Checked before the build with a placeholder image, so a refused stack costs no build.
    let default_memory = state.config.default_memory_limit.as_deref();
    deployment_for(event, service, &event.image, default_memory, &state.config.policy).map_err(refused)?;
    let (image, digest) = image_step(state, event, tar, size, signature, trace).await?;
    let deployment = deployment_for(event, service, &image, default_memory, &state.config.policy).map_err(refused)?;
    let started = Instant::now();
    let deployed = retry(state, &event.function, || deploy(&state.gateway, event, &deployment)).await;
    trace.step(DEPLOY, started);
    let deployed = deployed.map_err(|error| match error {
        Attempt::Refused(reason) => ShipError::DeployRefused { function: event.function.clone(), reason },
        Attempt::NotYours(reason) => refused(reason),
        Attempt::Transient(reason) => ShipError::Unavailable {
            function: event.function.clone(),
            reason: format!("the gateway kept failing: {reason}"),
        },
        Attempt::TimedOut => ShipError::Unavailable {
            function: event.function.clone(),
            reason: "the gateway did not answer in time".into(),
        },
    })?;
    Ok(ShipResult {
        function: event.function.clone(),
        service: service.to_owned(),
        image,
        digest,
        deployed: deployed.to_owned(),
        log_url: None,
    })
}

/// The image to deploy, pinned by digest, and its digest: the stack's own for `skip_build`; else what of-builder
/// answers (a new build, or the image built before from the same build identity, which of-builder looks up).
async fn image_step(
    state: &AppState,
    event: &BuildEvent,
    tar: &Path,
    size: u64,
    signature: &str,
    trace: &mut BuildTrace,
) -> Result<(String, String), ShipError> {
    if event.skip_build {
        return pinned_skip_build_image(state, event).await;
    }
    if size == 0 {
        return Err(ShipError::BadRequest(format!("{}: the build tar is empty", event.function)));
    }
    build_step(state, event, tar, signature, trace).await
}

/// A `skip_build` image (the policy has allowed it) pinned by the digest its registry holds for it now; refused
/// when the registry cannot say, as a tag deployed unpinned could be moved under the running function.
async fn pinned_skip_build_image(state: &AppState, event: &BuildEvent) -> Result<(String, String), ShipError> {
    let refused = |reason: String| ShipError::Refused { function: event.function.clone(), reason };
    let image = event.image.trim();
    let reference =
        ImageRef::parse(&registry_api_image(state, image)).map_err(|e| refused(format!("skip_build: {e}")))?;
    let wanted = reference.digest.clone().or_else(|| reference.tag.clone()).unwrap_or_else(|| "latest".into());
    let digest = state
        .registry
        .digest_of(&reference, &wanted)
        .await
        .map_err(|e| refused(format!("skip_build: the digest of `{image}` could not be resolved: {e}")))?
        .ok_or_else(|| refused(format!("skip_build: the registry has no image `{image}`")))?;
    if reference.digest.as_ref().is_some_and(|d| *d != digest) {
        return Err(refused(format!("skip_build: the registry answered another digest for `{image}`")));
    }
    Ok((pin_by_digest(image, &digest), digest))
}

/// The build step: of-builder builds and pushes; answers the image pinned by digest, and the digest.
async fn build_step(
    state: &AppState,
    event: &BuildEvent,
    tar: &Path,
    signature: &str,
    trace: &mut BuildTrace,
) -> Result<(String, String), ShipError> {
    let started = Instant::now();
    let result = build(state, event, tar, signature).await;
    trace.step(BUILD, started);
    let result = result?;
    // The time inside the builder, which the pipeline-overhead benchmark subtracts.
    tracing::info!(service = %event.service, sha = %event.sha, seconds = started.elapsed().as_secs_f64(), "built");
    trace.log.clone_from(&result.log);
    trace.image = Some(result.image.clone());
    if result.status == BuildStatus::Failure {
        return Err(ShipError::BuildFailed { function: event.function.clone(), reason: meaningful_line(&result.log) });
    }
    trace.digest = Some(result.digest.clone());
    // The name the node pulls: of-builder may have pushed through another address (`registry_push_url`).
    Ok((pin_by_digest(&event.image, &result.digest), result.digest))
}

/// `image` as buildshiprun's registry calls address it: the platform's own registry (`repository_url`'s host) at
/// `registry_api_url` when set; any other registry as written.
fn registry_api_image(state: &AppState, image: &str) -> String {
    let own_host = state.config.policy.repository_url.trim().split('/').next().unwrap_or_default().to_ascii_lowercase();
    match &state.config.registry_api_url {
        Some(host) if !own_host.is_empty() && image.to_ascii_lowercase().starts_with(&format!("{own_host}/")) => {
            shared::registry::with_registry_host(image, host)
        }
        _ => image.to_owned(),
    }
}

/// Sends the tar to of-builder, retrying while the builder cannot be reached or fails.
async fn build(state: &AppState, event: &BuildEvent, tar: &Path, signature: &str) -> Result<BuildResult, ShipError> {
    let url = state.config.builder_url.join("build").expect("a relative path joins");
    retry(state, &event.function, || async {
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| Attempt::Refused(format!("the tar could not be reopened: {e}")))?;
        let response = state
            .http
            .post(url.clone())
            .header(CLOUD_SIGNATURE, signature)
            .header("content-type", "application/x-tar")
            .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)))
            .timeout(state.config.build_timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    Attempt::TimedOut
                } else {
                    Attempt::Transient(format!("of-builder could not be reached: {}", error_chain(&e)))
                }
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str::<BuildResult>(&text)
                .map_err(|e| Attempt::Refused(format!("of-builder's answer could not be read: {e}")));
        }
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        if status.is_server_error() || status.as_u16() == 429 {
            Err(Attempt::Transient(format!("of-builder answered {status}: {message}")))
        } else {
            Err(Attempt::Refused(format!("of-builder refused the build ({status}): {message}")))
        }
    })
    .await
    .map_err(|error| match error {
        Attempt::TimedOut => {
            ShipError::BuildTimedOut { function: event.function.clone(), seconds: state.config.build_timeout.as_secs() }
        }
        Attempt::Refused(reason) | Attempt::NotYours(reason) => {
            ShipError::BuildFailed { function: event.function.clone(), reason }
        }
        Attempt::Transient(reason) => ShipError::Unavailable { function: event.function.clone(), reason },
    })
}

/// What `deployed` says when the running function already is what this push would deploy: nothing was sent.
pub const UNCHANGED: &str = "unchanged";

/// `created` for a new function (POST), `updated` for the owner's existing one (PUT), `unchanged` when the owner's
/// existing one already runs the same deployment (see [`unchanged`]). A name deployed by anyone
/// else is refused; when two first deployments race, the gateway refuses the second POST and the loser finds the
/// winner's function, which it may replace only if it is its own.
async fn deploy(
    gateway: &GatewayClient,
    event: &BuildEvent,
    deployment: &FunctionDeployment,
) -> Result<&'static str, Attempt> {
    if let Some(existing) = gateway.get_function(&deployment.service).await.map_err(Attempt::from)? {
        may_replace(&existing, event).map_err(Attempt::NotYours)?;
        if unchanged(&existing, deployment) {
            return Ok(UNCHANGED);
        }
        gateway.update(deployment).await.map_err(Attempt::from)?;
        return Ok("updated");
    }
    match gateway.deploy(deployment).await {
        Ok(()) => Ok("created"),
        Err(error) => match gateway.get_function(&deployment.service).await.map_err(Attempt::from)? {
            Some(existing) => {
                may_replace(&existing, event).map_err(|reason| {
                    Attempt::NotYours(format!("{reason} (it was deployed while this push was deploying it)"))
                })?;
                gateway.update(deployment).await.map_err(Attempt::from)?;
                Ok("updated")
            }
            None => Err(Attempt::from(error)),
        },
    }
}

/// One try's failure: worth retrying, or final.
enum Attempt {
    Transient(String),
    Refused(String),
    /// The name belongs to someone else: final, and no deployment was made.
    NotYours(String),
    /// of-builder did not answer within `build_timeout`: final, as another try would take as long again.
    TimedOut,
}

impl From<GatewayError> for Attempt {
    fn from(error: GatewayError) -> Self {
        if error.is_transient() {
            Self::Transient(error.to_string())
        } else {
            Self::Refused(error.to_string())
        }
    }
}

/// Runs `attempt` up to `max_retries + 1` times while it fails transiently, doubling the wait from `retry_wait`
/// each time with jitter (never capped before the last try): the retries are made here, as no queue replays a call.
async fn retry<T, F, Fut>(state: &AppState, function: &str, mut attempt: F) -> Result<T, Attempt>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let max_retries = state.config.max_retries;
    let initial = state.config.retry_wait;
    let backoff = Backoff::new(initial, initial.saturating_mul(1 << max_retries.min(20)));
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(Attempt::Transient(reason)) if tries <= max_retries => {
                tracing::warn!(%function, try_number = tries, %reason, "transient fault, retrying");
                tokio::time::sleep(backoff.jittered(tries)).await;
            }
            other => return other,
        }
    }
}

/// The log line that best says why a build failed: the last one mentioning an error, else the last one.
pub fn meaningful_line(log: &[String]) -> String {
    log.iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or_else(|| log.iter().rev().map(|l| l.trim()).find(|l| !l.is_empty()))
        .unwrap_or("the build failed without output")
        .to_owned()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.trim().is_empty())
}
