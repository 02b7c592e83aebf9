//! buildshiprun: turns one function's build tar into a deployed function. It streams the tar to of-builder, then
//! deploys the pushed image (pinned by digest) through the gateway's `/system/functions`, and reports the function's
//! commit status.
//!
//! # Layout
//! - an unchanged build context is not built again: of-builder finds its earlier image by build identity (its
//!   `identity` and `cache`), since only of-builder may write the registry.
//! - [`config`]: `builder_url`, `gateway_public_url`, `gateway_pretty_url`, `default_memory_limit`, the gateway credentials, retries.
//! - [`deployment`]: the `FunctionDeployment` a build becomes (labels, env, limits), and who may replace a name.
//! - [`policy`]: the operator's bounds (names, labels, annotations, scaling, resources, secrets, build args, `dockerfile`),
//!   decided once on what a function asks for (`Policy::decide`), before anything is built.
//! - [`error`]: every failure and its answer; a failure is also a `failure` commit status.
//! - [`logs`]: every build's record in the log store (timings, outcome, the whole log, secrets scrubbed), and the
//!   signed pipeline-log link a failure's status points to.
//! - the handler below: receive, build (with retries), deploy (with retries), store the log, report. A build of a
//!   commit that a newer commit of its branch superseded (`shared::branch_head`) is not started, or not deployed:
//!   the deployment is made under the function's deploy claim, right after the branch's head is read again.

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
use shared::branch_head::{superseded_description, BranchHeadError, BranchKey};
use shared::build::{BuildResult, BuildStatus, QueuePlace, BUILD_TICKET_HEADER};
use shared::error::error_chain;
use shared::event::{BuildEvent, CommitStatus, ShipResult, StatusState, OFC_EVENT_HEADER};
use shared::gateway::{GatewayClient, GatewayError};
use shared::naming::{deployed_name, function_url, pin_by_digest, preview_function_url};
use shared::openfaas::FunctionDeployment;
use shared::openfaas::FunctionStatus;
use shared::registry::{ImageRef, RegistryClient};
use shared::retry::Backoff;
use shared::signature::{SignatureError, CLOUD_SIGNATURE};
use shared::status::StatusClient;
use shared::upload::receive_signed;

pub use crate::config::Config;
use crate::deployment::{deployment_for, may_replace, unchanged};
pub use crate::error::ShipError;
use crate::logs::{BuildTrace, BUILD, DEPLOY};
use crate::policy::Asked;

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
    let tag = event.preview_tag();
    let service = deployed_name(&event.owner, &event.function, tag.as_deref())
        .map_err(|e| ShipError::BadRequest(e.to_string()))?;
    let status_event = event.status_event();
    let mut trace = BuildTrace::default();
    let result = ship(&state, &event, &service, &tar_path, size, &signature, &mut trace).await;
    // A commit superseded before its build has no build to keep a log of (nor a success to list).
    let log_url = match &result {
        Ok(ShipResult { superseded_by: Some(_), digest, .. }) if digest.is_empty() => None,
        _ => logs::store(&state.config, &event, &trace, &result).await,
    };
    let status = match &result {
        Ok(ShipResult { superseded_by: Some(by), digest, .. }) => {
            let what = match (event.skip_build, digest.is_empty()) {
                (true, _) => "not deployed",
                (false, true) => "not built",
                (false, false) => "built, not deployed",
            };
            CommitStatus::new(&event.function, StatusState::Success, superseded_description(by, &event.branch, what))
        }
        Ok(answer) => CommitStatus::new(
            &event.function,
            StatusState::Success,
            format!("deployed {service} ({})", answer.deployed),
        )
        .with_target_url(public_url(&state.config, &event, &service, tag.as_deref())),
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
        // A superseded commit was logged as such where it was decided.
        Ok(ShipResult { superseded_by: Some(_), .. }) => {}
        Ok(_) => tracing::info!(owner = %event.owner, repo = %event.repo, sha = %event.sha, %service, "deployed"),
        Err(error) => {
            tracing::warn!(owner = %event.owner, repo = %event.repo, sha = %event.sha, %service, %error, "not deployed");
        }
    }
    state.statuses.report_or_log(&status_event, vec![status]).await;
    let url = public_url(&state.config, &event, &service, tag.as_deref());
    result.map(|answer| Json(ShipResult { log_url: log_url.map(String::from), url: Some(url), ..answer }))
}

/// Where users reach the deployed function: the default branch's URL, or the preview's.
fn public_url(config: &Config, event: &BuildEvent, service: &str, tag: Option<&str>) -> String {
    let (base, pretty) = (config.gateway_public_url.as_str(), config.gateway_pretty_url.as_deref());
    match tag {
        Some(tag) => preview_function_url(base, pretty, &event.owner, &event.function, service, tag),
        None => function_url(base, pretty, &event.owner, &event.function, service),
    }
}

/// A new preview is refused once the owner has `max_previews_per_owner` live: counted as the distinct preview tags
/// among the owner's deployed functions (by account id), this one's excepted, so a preview already live is
/// always updated. Two new previews deployed at the same instant can both pass: the bound is exceeded by at most
/// the previews in flight.
async fn check_preview_limit(state: &AppState, event: &BuildEvent, tag: &str) -> Result<(), ShipError> {
    let functions = state.gateway.list_functions().await.map_err(|e| ShipError::Unavailable {
        function: event.function.clone(),
        reason: format!("the live previews could not be counted: {}", error_chain(&e)),
    })?;
    let mut live: Vec<&str> = functions
        .iter()
        .filter(|f| f.is_cloud_function_of(&event.owner, Some(event.owner_id)))
        .filter_map(FunctionStatus::preview)
        .collect();
    live.sort_unstable();
    live.dedup();
    let max = state.config.max_previews_per_owner;
    if live.contains(&tag) || (live.len() as u64) < max {
        return Ok(());
    }
    Err(ShipError::Refused {
        function: event.function.clone(),
        reason: format!(
            "no preview: {} already has {} live previews, the most allowed (max_previews_per_owner); close a pull \
             request or delete a branch to make room",
            event.owner,
            live.len()
        ),
    })
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
    // Decided before anything else, so a refused stack costs no build.
    let allowed = state.config.policy.decide(&Asked::of(event, service)).map_err(|r| refused(r.to_string()))?;
    if let Some(tag) = event.preview_tag() {
        check_preview_limit(state, event, &tag).await?;
    }
    let branch = branch_key(event);
    // Known before the build starts: no build is spent on it.
    if let Some(by) = superseded(state, branch.as_ref(), event).await? {
        return Ok(not_deployed(event, service, String::new(), String::new(), by));
    }
    let (image, digest) = image_step(state, event, tar, size, signature, trace).await?;
    let default_memory = state.config.default_memory_limit.as_deref();
    let deployment = deployment_for(event, service, &image, default_memory, allowed);
    let started = Instant::now();
    // The claim makes the head's re-read and the gateway call one step: a newer commit's deployment of this
    // function either ended before it (and its head is read here) or starts after it (and replaces this one).
    let claim = match &branch {
        Some(_) => Some(state.config.branch_heads.claim_deploy(service).await.map_err(|e| unavailable(event, &e))?),
        None => None,
    };
    let newer = superseded(state, branch.as_ref(), event).await;
    let deployed = match &newer {
        Ok(None) => Some(retry(state, &event.function, || deploy(&state.gateway, event, &deployment)).await),
        _ => None,
    };
    if let Some(claim) = claim {
        claim.release().await;
    }
    trace.step(DEPLOY, started);
    if let Some(by) = newer? {
        return Ok(not_deployed(event, service, image, digest, by));
    }
    let deployed = deployed.expect("deployed when the commit is still its branch's newest");
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
        superseded_by: None,
        log_url: None,
        url: None,
    })
}

/// What `deployed` says of a function whose commit a newer commit of its branch superseded: nothing was deployed.
pub const SUPERSEDED: &str = "superseded";

/// The answer for a function not deployed because `by`, a newer commit of its branch, superseded its commit.
fn not_deployed(event: &BuildEvent, service: &str, image: String, digest: String, by: String) -> ShipResult {
    tracing::info!(service, sha = %event.sha, superseded_by = %by, built = !digest.is_empty(), "superseded: not deployed");
    ShipResult {
        function: event.function.clone(),
        service: service.to_owned(),
        image,
        digest,
        deployed: SUPERSEDED.to_owned(),
        superseded_by: Some(by),
        log_url: None,
        url: None,
    }
}

/// The record of the event's branch; `None` for a build that is not ordered (no branch or no owner id, as from
/// a sender older than the order of pushes).
fn branch_key(event: &BuildEvent) -> Option<BranchKey> {
    if event.branch.is_empty() || event.owner_id == 0 {
        return None;
    }
    BranchKey::new(event.owner_id, &event.repo, &event.branch).ok()
}

/// The newer commit of the branch that superseded the event's, if one did.
async fn superseded(
    state: &AppState,
    branch: Option<&BranchKey>,
    event: &BuildEvent,
) -> Result<Option<String>, ShipError> {
    let Some(branch) = branch else { return Ok(None) };
    state.config.branch_heads.superseded(branch, &event.sha).await.map_err(|e| unavailable(event, &e))
}

fn unavailable(event: &BuildEvent, error: &BranchHeadError) -> ShipError {
    ShipError::Unavailable {
        function: event.function.clone(),
        reason: format!("the order of pushes could not be checked: {error}"),
    }
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

/// Sends the tar to of-builder, retrying while the builder cannot be reached or fails. While the build waits for a
/// slot, its place is polled (`GET /queue/{ticket}`) and reported as the function's pending status; `build_timeout`
/// counts from when the build starts, the wait for a slot is bounded apart by `build_queue_timeout`.
async fn build(state: &AppState, event: &BuildEvent, tar: &Path, signature: &str) -> Result<BuildResult, ShipError> {
    let url = state.config.builder_url.join("build").expect("a relative path joins");
    let reporter = QueueReporter::new(state, event);
    let answer = retry(state, &event.function, || async {
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| Attempt::Refused(format!("the tar could not be reopened: {e}")))?;
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        let exchange = async {
            let response = state
                .http
                .post(url.clone())
                .header(CLOUD_SIGNATURE, signature)
                .header(BUILD_TICKET_HEADER, &ticket)
                .header("content-type", "application/x-tar")
                .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)))
                .send()
                .await
                .map_err(|e| Attempt::Transient(format!("of-builder could not be reached: {}", error_chain(&e))))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| Attempt::Transient(format!("of-builder's answer broke off: {}", error_chain(&e))))?;
            Ok::<_, Attempt>((status, text))
        };
        let (status, text) = tokio::select! {
            answer = exchange => answer?,
            timed_out = reporter.watch(&ticket) => return Err(timed_out),
        };
        if status.is_success() {
            return serde_json::from_str::<BuildResult>(&text)
                .map_err(|e| Attempt::Refused(format!("of-builder's answer could not be read: {e}")));
        }
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        // A 429 is of-builder's per-owner queue limit: final, as a retry would find the same backlog; its reason is
        // what the status must say.
        if status.as_u16() == 429 {
            Err(Attempt::Refused(message))
        } else if status.is_server_error() {
            Err(Attempt::Transient(format!("of-builder answered {status}: {message}")))
        } else {
            Err(Attempt::Refused(format!("of-builder refused the build ({status}): {message}")))
        }
    })
    .await;
    answer.map_err(|error| match error {
        Attempt::TimedOut => {
            ShipError::BuildTimedOut { function: event.function.clone(), seconds: state.config.build_timeout.as_secs() }
        }
        Attempt::Refused(reason) | Attempt::NotYours(reason) => {
            ShipError::BuildFailed { function: event.function.clone(), reason }
        }
        Attempt::Transient(reason) => ShipError::Unavailable { function: event.function.clone(), reason },
    })
}

/// How often a waiting build's place is asked for.
const QUEUE_POLL: Duration = Duration::from_secs(2);
/// A changed place is written as a status at most this often (the first at once), to keep status writes few.
const QUEUE_STATUS_EVERY: Duration = Duration::from_secs(15);

/// Follows one build request's place at of-builder: reports it as the function's pending status while it waits,
/// and decides when it has waited or built too long.
struct QueueReporter<'a> {
    state: &'a AppState,
    event: &'a BuildEvent,
    /// The last place written as a status, and when; a lock as each try of the build shares the reporter.
    written: std::sync::Mutex<Written>,
}

#[derive(Default)]
struct Written {
    last: Option<(usize, Instant)>,
    /// Whether a "queued" status stands that a "building" one must replace.
    queued: bool,
}

impl<'a> QueueReporter<'a> {
    fn new(state: &'a AppState, event: &'a BuildEvent) -> Self {
        Self { state, event, written: std::sync::Mutex::default() }
    }

    /// Polls the place of the build request named `ticket` until a deadline passes, and answers which: the time for
    /// a slot (`build_queue_timeout`, from the request) or for the build (`build_timeout`, from its start). Until
    /// of-builder names the place (the tar still uploading, or an of-builder without `/queue`), the build's time
    /// counts from the request, as a build may be running.
    async fn watch(&self, ticket: &str) -> Attempt {
        let sent = Instant::now();
        let place_url = self.state.config.builder_url.join(&format!("queue/{ticket}")).expect("a relative path joins");
        let (build_timeout, queue_timeout) = (self.state.config.build_timeout, self.state.config.build_queue_timeout);
        let mut queued_seen = false;
        let mut building_since: Option<Instant> = None;
        loop {
            let deadline = match building_since {
                Some(since) => since + build_timeout,
                None if queued_seen => sent + queue_timeout,
                None => sent + build_timeout,
            };
            let now = Instant::now();
            if now >= deadline {
                if building_since.is_none() && queued_seen {
                    return Attempt::Refused(format!(
                        "of-builder had no free build slot within {} s (build_queue_timeout)",
                        queue_timeout.as_secs()
                    ));
                }
                return Attempt::TimedOut;
            }
            tokio::time::sleep(QUEUE_POLL.min(deadline - now)).await;
            if building_since.is_some() {
                continue;
            }
            match self.place(&place_url).await {
                Some(QueuePlace::Queued { ahead }) => {
                    queued_seen = true;
                    self.queued(ahead).await;
                }
                Some(QueuePlace::Building) => {
                    building_since = Some(Instant::now());
                    self.building().await;
                }
                // The build started and ended between two polls; its answer is on its way.
                None if queued_seen => building_since = Some(Instant::now()),
                None => {}
            }
        }
    }

    async fn place(&self, url: &reqwest::Url) -> Option<QueuePlace> {
        let response = self.state.http.get(url.clone()).timeout(Duration::from_secs(10)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Writes "queued" with the place when it changed, at most every `QUEUE_STATUS_EVERY`.
    async fn queued(&self, ahead: usize) {
        {
            let mut written = self.written();
            if written.last.is_some_and(|(last, at)| last == ahead || at.elapsed() < QUEUE_STATUS_EVERY) {
                return;
            }
            *written = Written { last: Some((ahead, Instant::now())), queued: true };
        }
        let description = match ahead {
            0 => "queued: next to build when a slot frees".to_owned(),
            1 => "queued: 1 build ahead".to_owned(),
            n => format!("queued: {n} builds ahead"),
        };
        self.write(description).await;
    }

    /// Replaces a standing "queued" status once the build has its slot (or its request ended).
    async fn building(&self) {
        let standing = std::mem::take(&mut self.written().queued);
        if standing {
            self.write("building".to_owned()).await;
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn write(&self, description: String) {
        let status = CommitStatus::new(&self.event.function, StatusState::Pending, description);
        self.state.statuses.report_or_log(&self.event.status_event(), vec![status]).await;
    }
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
    /// of-builder did not answer within `build_timeout` of the build's start: final, as another try would take as
    /// long again.
    TimedOut,
}

impl From<GatewayError> for Attempt {
    fn from(error: GatewayError) -> Self {
        match error {
            error if error.is_transient() => Self::Transient(error.to_string()),
            // The gateway's own reason first, so the 140 characters of a commit status hold it (a missing secret).
            GatewayError::Status { status, body, .. } if status.is_client_error() => {
                let reason = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|answer| answer.get("error").and_then(serde_json::Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| body.trim().to_owned());
                Self::Refused(format!("{reason} ({status})"))
            }
            error => Self::Refused(error.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn refused(status: StatusCode, body: &str) -> String {
        let error = GatewayError::Status { what: "POST /system/functions".into(), status, body: body.into() };
        match Attempt::from(error) {
            Attempt::Refused(reason) => reason,
            _ => panic!("a {status} is final"),
        }
    }

    #[test]
    fn a_refused_deployment_says_the_gateway_s_own_reason_first() {
        let json = r#"{"error":"required secrets not found: 7--db","status":400}"#;
        assert_eq!(refused(StatusCode::BAD_REQUEST, json), "required secrets not found: 7--db (400 Bad Request)");
        // OpenFaaS' providers answer plain text.
        assert_eq!(refused(StatusCode::BAD_REQUEST, "bad image\n"), "bad image (400 Bad Request)");
        let transient = GatewayError::Status { what: "x".into(), status: StatusCode::BAD_GATEWAY, body: String::new() };
        assert!(matches!(Attempt::from(transient), Attempt::Transient(_)));
    }
}
