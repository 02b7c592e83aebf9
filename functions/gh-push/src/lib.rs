//! gh-push: the GitHub App's webhook endpoint. It verifies a delivery, decides whether it is a push to build, and
//! queues git-tar through the gateway's async route, with a `pending` status on the commit and an `X-Callback-Url`
//! to github-status, so a build the queue gives up on ends as an `error` status rather than staying pending.
//!
//! # Layout
//! - [`config`]: settings (`validate_hmac`, `validate_customers`, `customers_url`, `build_branch`…).
//! - [`customers`]: the cached list of owners that may build.
//! - [`deliveries`]: delivery ids this replica saw queued: a front cache of the records below.
//! - [`delivery_records`]: the records every replica shares in the build-log store, so a delivery sent to several
//!   replicas, or redelivered after a restart, is queued once.
//! - [`error`]: every refusal and its HTTP answer.
//! - [`app`] and the handler below: the order of checks, signature first. A `rerequested` `check_suite` or
//!   `check_run` (the Re-run buttons of the App's check runs) is turned into the push of its commit and queued
//!   like one.
//! - [`previews`]: with `previews` on, other branches and same-repository pull requests are queued as previews, and
//!   a deleted branch or closed pull request has its preview removed.

pub mod config;
pub mod customers;
pub mod deliveries;
pub mod delivery_records;
pub mod error;
pub mod previews;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use reqwest::header::{HeaderMap as ClientHeaders, HeaderValue};
use serde_json::json;
use shared::audit::AuditClient;
use shared::callback::BuildRef;
use shared::event::{
    is_null_sha, pushed_at_of, AuditEvent, CommitSha, CommitStatus, GitHubCheckEvent, GitHubPush, NotACommitSha,
    PreviewOf, PushEvent, StatusEvent, StatusState, STACK_DEPLOY_CONTEXT,
};
use shared::functions::{GH_PUSH, GIT_EVENT, GIT_TAR};
use shared::gateway::GatewayClient;
use shared::status::StatusClient;

pub use crate::config::Config;
use crate::customers::Customers;
use crate::deliveries::{Claim, DeliveryLog};
use crate::delivery_records::{is_delivery_id, DeliveryRecords, Recorded, MAX_DELIVERY_ID};
pub use crate::error::GhPushError;

/// What every request shares.
pub(crate) struct AppState {
    config: Config,
    gateway: GatewayClient,
    statuses: StatusClient,
    audit: AuditClient,
    customers: Option<Customers>,
    deliveries: DeliveryLog,
    records: DeliveryRecords,
}

/// The function's router, without the runtime layers (see `shared::server::with_runtime`).
pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone());
    let customers =
        config.customers.clone().map(|source| Customers::new(source, config.customers_ttl, gateway.http().clone()));
    let state = AppState {
        statuses: StatusClient::new(gateway.clone()),
        audit: AuditClient::new(config.common.audit_url.clone(), config.common.payload_secret.clone()),
        deliveries: DeliveryLog::new(config.delivery_ttl, config.delivery_log_max_bytes),
        records: config.delivery_records.clone(),
        customers,
        gateway,
        config,
    };
    let state = Arc::new(state);
    spawn_tidying(Arc::downgrade(&state));
    Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(state)
}

/// How often the delivery log forgets expired ids and gives back table capacity while gh-push is idle.
const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How often (in [`TIDY_EVERY`]s) the shared delivery records past `delivery_ttl` are swept: a minute.
const SWEEP_EVERY_TIDIES: u32 = 60;

/// Tidies the delivery log every [`TIDY_EVERY`] until the router is dropped: without it, expiry only runs as a
/// webhook arrives, so the memory of a burst stayed until the next one. Outside a runtime (a router built for a
/// test with no runtime) there is nothing to run it on, and the log is tidied by webhooks alone.
///
/// Nothing is done about the allocator: 10 s after a burst, with the log empty, gh-push is 2 MiB above idle
/// whether mimalloc purges at once (`MIMALLOC_PURGE_DELAY=0`) or is made to purge every second, so its retained
/// pages are not what a burst leaves behind (the delivery log was: 100,000 ids, ~25 MiB).
fn spawn_tidying(state: std::sync::Weak<AppState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(TIDY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tidies = 0u32;
        loop {
            every.tick().await;
            let Some(state) = state.upgrade() else { return };
            state.deliveries.tidy();
            tidies = (tidies + 1) % SWEEP_EVERY_TIDIES;
            if tidies == 0 {
                match state.records.sweep(state.config.delivery_ttl).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "swept expired delivery records"),
                    Err(error) => tracing::warn!(%error, "sweeping the delivery records failed"),
                }
            }
        }
    });
}

/// What happened to one delivery, for the answer and the audit log.
pub(crate) struct Outcome {
    status: StatusCode,
    message: String,
    extra: serde_json::Value,
}

impl Outcome {
    fn ignored(message: impl Into<String>) -> Self {
        Self { status: StatusCode::OK, message: message.into(), extra: json!({}) }
    }
}

async fn handle(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let delivery = header(&headers, "x-github-delivery").unwrap_or_default();
    let event_type = header(&headers, "x-github-event").unwrap_or_default();
    let result = process(&state, &headers, &body, delivery, event_type).await;
    if state.audit.is_enabled() {
        state.audit.record(audit_event(&result, delivery));
    }
    match result {
        Ok((outcome, _)) => {
            tracing::info!(%delivery, event = %event_type, status = outcome.status.as_u16(), "{}", outcome.message);
            let mut answer = json!({ "message": outcome.message });
            if let (Some(answer), Some(extra)) = (answer.as_object_mut(), outcome.extra.as_object()) {
                answer.extend(extra.clone());
            }
            (outcome.status, Json(answer)).into_response()
        }
        Err(error) => {
            tracing::warn!(%delivery, event = %event_type, status = error.status().as_u16(), %error, "delivery refused");
            error.into_response()
        }
    }
}

/// What the audit log keeps of a delivery: the answer, and whose push it was.
fn audit_event(result: &Result<(Outcome, Option<GitHubPush>), GhPushError>, delivery: &str) -> AuditEvent {
    let message = match result {
        Ok((outcome, _)) => format!("{} ({})", outcome.message, outcome.status.as_u16()),
        Err(error) => format!("refused: {error} ({})", error.status().as_u16()),
    };
    let mut audit = AuditEvent::new(GH_PUSH, message);
    audit.delivery = (!delivery.is_empty()).then(|| delivery.to_owned());
    if let Ok((_, Some(push))) = result {
        audit.owner = Some(push.repository.owner.login.clone());
        audit.repo = Some(push.repository.name.clone());
        audit.sha = Some(push.after.clone());
    }
    audit
}

/// The checks in order: signature before anything reads the body, then the event, then the filters.
async fn process(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    delivery: &str,
    event_type: &str,
) -> Result<(Outcome, Option<GitHubPush>), GhPushError> {
    state.config.webhook.check(headers, body)?;
    match event_type {
        "" => return Err(GhPushError::BadRequest("the X-GitHub-Event header is missing".into())),
        "ping" => return Ok((Outcome::ignored("pong"), None)),
        "installation" | "installation_repositories" => {
            return forward_to_git_event(state, headers, body).await.map(|o| (o, None))
        }
        "push" => {}
        "check_suite" | "check_run" => return rerun(state, body, delivery, event_type).await,
        "pull_request" => return previews::pull_request(state, body, delivery).await,
        "delete" => return previews::deleted_ref(state, body).await.map(|o| (o, None)),
        other => return Ok((Outcome::ignored(format!("ignored: `{other}` events are not built")), None)),
    }
    let mut push: GitHubPush = serde_json::from_slice(body)
        .map_err(|e| GhPushError::BadRequest(format!("the body is not a push event: {e}")))?;
    push.pushed_at = pushed_at_of(body).unwrap_or(0);
    let outcome = filter_and_queue(state, &push, delivery, None).await?;
    Ok((outcome, Some(push)))
}

/// A `rerequested` check suite or run (the "Re-run" buttons on the App's checks) builds its commit again: the
/// push of `head_sha` on `head_branch` goes through the same filters and queue as a pushed one. The whole commit is
/// rebuilt, also for one function's button, since git-tar builds a commit's functions together.
async fn rerun(
    state: &AppState,
    body: &[u8],
    delivery: &str,
    event_type: &str,
) -> Result<(Outcome, Option<GitHubPush>), GhPushError> {
    let check: GitHubCheckEvent = serde_json::from_slice(body)
        .map_err(|e| GhPushError::BadRequest(format!("the body is not a `{event_type}` event: {e}")))?;
    if check.action != "rerequested" {
        let reason = format!("ignored: `{event_type}` action `{}` does not build (only `rerequested`)", check.action);
        return Ok((Outcome::ignored(reason), None));
    }
    let Some(push) = check.to_push() else {
        return Ok((Outcome::ignored(format!("ignored: the re-requested `{event_type}` is on no branch")), None));
    };
    let outcome = filter_and_queue(state, &push, delivery, None).await?;
    Ok((outcome, Some(push)))
}

/// The filters, then the queue. `pull_request` is the pull request's preview (its head pushed), which the branch
/// filter does not apply to; a push to a branch that is not built becomes that branch's preview when previews are on.
async fn filter_and_queue(
    state: &AppState,
    push: &GitHubPush,
    delivery: &str,
    pull_request: Option<PreviewOf>,
) -> Result<Outcome, GhPushError> {
    if push.deleted || is_null_sha(&push.after) {
        return previews::branch_deleted(state, push).await;
    }
    let Some(branch) = push.branch() else {
        let what = if push.git_ref.starts_with("refs/tags/") { "tag pushes are" } else { "pushes to this ref are" };
        return Ok(Outcome::ignored(format!("ignored: {what} not built (`{}`)", push.git_ref)));
    };
    let after: CommitSha =
        push.after.parse().map_err(|e: NotACommitSha| GhPushError::BadRequest(format!("`after` is {e}")))?;
    let preview = match pull_request {
        Some(pull_request) => Some(pull_request),
        None => match previews::built_branch(state, push) {
            Some(built) if branch != built && state.config.previews => Some(PreviewOf::Branch(branch.to_owned())),
            Some(built) if branch != built => {
                return Ok(Outcome::ignored(format!("ignored: branch `{branch}` is not built (only `{built}` is)")));
            }
            _ => None,
        },
    };
    if let Some(customers) = &state.customers {
        let owner = &push.repository.owner.login;
        if !customers.contains(owner).await? {
            return Err(GhPushError::NotACustomer(owner.clone()));
        }
    }
    if delivery.is_empty() {
        return Err(GhPushError::BadRequest("the X-GitHub-Delivery header is missing".into()));
    }
    if !is_delivery_id(delivery) {
        return Err(GhPushError::BadRequest(format!(
            "the X-GitHub-Delivery header is not a delivery id (letters, digits, `-`, `_`, `.`; at most \
             {MAX_DELIVERY_ID})"
        )));
    }
    if claim(state, delivery).await? != Recorded::Claimed {
        return Ok(Outcome::ignored(format!("delivery {delivery} was already queued")));
    }
    match queue(state, push, after, delivery, preview).await {
        Ok(call_id) => {
            state.deliveries.confirm(delivery);
            if let Err(error) = state.records.confirm(delivery).await {
                // The claim still stands for `CLAIM_TIMEOUT`: only a redelivery after that could queue it again.
                tracing::warn!(%delivery, %error, "recording the queued delivery failed");
            }
            Ok(Outcome {
                status: StatusCode::ACCEPTED,
                message: format!("queued a build of {} at {}", push.repository.full_name, push.after),
                extra: json!({ "delivery": delivery, "repository": push.repository.full_name, "sha": push.after, "call_id": call_id }),
            })
        }
        Err(error) => {
            state.deliveries.release(delivery);
            if let Err(error) = state.records.release(delivery).await {
                tracing::warn!(%delivery, %error, "releasing the delivery's claim failed");
            }
            Err(error)
        }
    }
}

/// Claims `delivery` for this replica: the front cache answers a redelivery this replica queued itself without a
/// store read; anything else is decided by the shared record's create-if-absent write.
async fn claim(state: &AppState, delivery: &str) -> Result<Recorded, GhPushError> {
    if state.deliveries.claim(delivery) == Claim::Seen {
        return Ok(Recorded::Queued);
    }
    match state.records.claim(delivery, state.config.delivery_ttl).await {
        Ok(Recorded::Claimed) => Ok(Recorded::Claimed),
        Ok(Recorded::Queued) => {
            state.deliveries.confirm(delivery);
            Ok(Recorded::Queued)
        }
        // Another replica may still fail and release it: not cached, so a redelivery here asks the store again.
        Ok(Recorded::InFlight) => {
            state.deliveries.release(delivery);
            Ok(Recorded::InFlight)
        }
        Err(error) => {
            state.deliveries.release(delivery);
            Err(error.into())
        }
    }
}

/// Queues the pending status, then git-tar. If git-tar cannot be queued, the pending status is turned into an
/// error (best effort), so the commit does not stay pending forever.
async fn queue(
    state: &AppState,
    push: &GitHubPush,
    after: CommitSha,
    delivery: &str,
    preview: Option<PreviewOf>,
) -> Result<Option<String>, GhPushError> {
    let received_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let event = PushEvent { preview, ..push.to_push_event(after, delivery, received_at) };
    let status_event = StatusEvent::from(&event);
    let pending = CommitStatus::new(STACK_DEPLOY_CONTEXT, StatusState::Pending, "build queued");
    state.statuses.report(&status_event, vec![pending]).await?;
    let (body, callback) = git_tar_body(state, &event);
    let mut headers = ClientHeaders::new();
    headers.insert(
        "x-github-delivery",
        delivery.parse().map_err(|_| GhPushError::BadRequest("the X-GitHub-Delivery header is not valid".into()))?,
    );
    if let Some(callback) = callback {
        headers.insert("x-callback-url", callback);
    }
    match state.gateway.invoke_async(GIT_TAR, body, headers).await {
        Ok(call_id) => Ok(call_id),
        Err(error) => {
            let failed = CommitStatus::new(
                STACK_DEPLOY_CONTEXT,
                StatusState::Error,
                "the build could not be queued; push again or redeliver the webhook",
            );
            state.statuses.report_or_log(&status_event, vec![failed]).await;
            Err(error.into())
        }
    }
}

/// git-tar's body (the push event) and its `X-Callback-Url`: the queue posts git-tar's final answer there, and
/// github-status turns a failed one into an `error` status (see `shared::callback`). Both are written into one
/// buffer and split, so the callback costs the webhook no allocation of its own.
fn git_tar_body(state: &AppState, event: &PushEvent) -> (Bytes, Option<HeaderValue>) {
    let mut buffer = Vec::with_capacity(1024);
    serde_json::to_writer(&mut buffer, event).expect("push events serialise");
    let body_len = buffer.len();
    let written = event.installation_id.is_some_and(|installation_id| {
        let build = BuildRef {
            owner: &event.repository.owner.login,
            repo: &event.repository.name,
            sha: &event.after,
            installation_id,
            delivery: &event.delivery,
        };
        let secret = state.config.common.payload_secret.expose().as_bytes();
        build.write_url(&mut buffer, state.config.common.gateway_url.as_str(), secret)
    });
    let mut buffer = Bytes::from(buffer);
    let body = buffer.split_to(body_len);
    (body, written.then(|| HeaderValue::from_maybe_shared(buffer).ok()).flatten())
}

/// A GitHub App has one webhook URL, so the installation events that git-event acts on arrive here: they are passed
/// on unchanged (body and GitHub's headers, so git-event verifies the same signature).
async fn forward_to_git_event(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Outcome, GhPushError> {
    let mut forwarded = ClientHeaders::new();
    for name in ["x-github-event", "x-github-delivery", "x-hub-signature-256", "x-hub-signature", "content-type"] {
        if let Some(value) = headers.get(name).and_then(|v| reqwest::header::HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            forwarded.insert(name, value);
        }
    }
    state
        .gateway
        .invoke_ok(GIT_EVENT, Bytes::copy_from_slice(body), forwarded, std::time::Duration::from_secs(60))
        .await?;
    Ok(Outcome::ignored("passed on to git-event"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}
