//! github-status: the only function that writes commit statuses (or, with `use_checks`, check runs) to GitHub.
//! Every other function queues its statuses here, signed; this one authenticates as the GitHub App and writes them
//! in order.
//!
//! # Layout
//! - [`config`]: `report_status`, `github_app_id`, `github_api_url`, the App key, retry bounds.
//! - [`writer`]: one status write, with token refresh on 401 and GitHub's retry rules: a wait GitHub asks for
//!   (`Retry-After`, or `x-ratelimit-reset` once `x-ratelimit-remaining` is 0) is made within the request's own time
//!   (`exec_timeout`/`write_timeout`, less a margin), with a little jitter; other faults are retried with a jittered
//!   backoff within that time. A status still not written is logged as lost and named in the answer (429/503 with
//!   `Retry-After`, or 502): nothing depends on a replay (the CE queue-worker calls once).
//! - [`checks`]: with `use_checks=true`, check runs instead of statuses: one run per context, created by the first
//!   `pending`, completed by the end, its text the build log's tail read from the log store; found again by the
//!   id stored here or, after a restart, by the `external_id` it carries.
//! - [`error`]: the answers: 401 unsigned, 400 malformed, 429/503/502 naming the statuses lost.
//! - [`comments`]: `POST /preview-comment`: a pull request's one preview comment, created once and edited after.
//! - `POST /failed`: the `X-Callback-Url` of git-tar's async call (see `shared::callback`): when the queue's final
//!   answer from git-tar is not a success, `stack-deploy` gets an `error` status saying the pipeline gave up.

pub mod checks;
pub mod comments;
pub mod config;
pub mod error;
pub mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{any, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shared::callback::{BuildRef, FAILED_PATH};
use shared::config::Secret;
use shared::error::ErrorBody;
use shared::event::{
    CommitSha, CommitStatus, NotACommitSha, PreviewCommentReport, StatusEvent, StatusReport, StatusState,
    PREVIEW_COMMENT_PATH, STACK_DEPLOY_CONTEXT,
};
use shared::functions::GIT_TAR;
use shared::github_app::InstallationTokens;
use shared::signature::{SignatureError, SignedCalls, SignedJson};

use crate::checks::CheckRuns;
use crate::comments::{Commented, PreviewComments};
pub use crate::config::Config;
pub use crate::error::{LostStatus, StatusError};
use crate::writer::{StatusWriter, WriteOutcome};

struct AppState {
    config: Config,
    writer: Option<StatusWriter>,
    /// `Some` with `use_checks`: the check runs written, and the log store their text comes from.
    checks: Option<CheckRuns>,
    comments: PreviewComments,
    /// How long a request may spend on GitHub, waits included: the handler's timeout less a margin to answer in.
    budget: Duration,
}

impl SignedCalls for AppState {
    type Error = StatusError;

    fn payload_secret(&self) -> &Secret {
        &self.config.common.payload_secret
    }
}

/// The time a request's writes may take: the runtime answers 504 at the handler's timeout, so they stop a little
/// before (a fifth of it, at most 2 s), leaving time to answer which statuses were lost.
fn budget(config: &Config) -> Duration {
    config
        .server
        .handler_timeout()
        .map_or(Duration::from_secs(300), |timeout| timeout.saturating_sub((timeout / 5).min(Duration::from_secs(2))))
}

/// The function's router, without the runtime layers (see `shared::server::with_runtime`).
pub fn app(config: Config) -> Router {
    let writer = config.app.clone().map(|credentials| {
        let http = shared::resolver::client_builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("static client settings");
        let tokens = InstallationTokens::new(config.github_api_url.clone(), credentials, http.clone());
        StatusWriter::new(config.github_api_url.clone(), tokens, http, config.max_retries, config.max_retry_wait)
    });
    let checks = config.use_checks.then(|| CheckRuns::new(config.log_store.clone()));
    let comments = PreviewComments::new(config.comment_store.clone());
    let state = Arc::new(AppState { budget: budget(&config), config, writer, checks, comments });
    Router::new()
        .route(&format!("/{FAILED_PATH}"), post(failed))
        .route(&format!("/{PREVIEW_COMMENT_PATH}"), post(preview_comment))
        .route("/", any(handle))
        .route("/{*path}", any(handle))
        .with_state(state)
}

async fn handle(
    State(state): State<Arc<AppState>>,
    SignedJson(report): SignedJson<StatusReport>,
) -> Result<Json<serde_json::Value>, StatusError> {
    let deadline = Instant::now() + state.budget;
    write_report(&state, &report, deadline).await
}

/// Validates `report`, then writes its statuses in order (or logs them when `report_status` is off).
async fn write_report(
    state: &AppState,
    report: &StatusReport,
    deadline: Instant,
) -> Result<Json<serde_json::Value>, StatusError> {
    validate(&report.event)?;
    let event = &report.event;
    let Some(writer) = state.writer.as_ref().filter(|_| state.config.report_status) else {
        for status in &report.statuses {
            tracing::info!(owner = %event.owner, repo = %event.repo, sha = %event.sha, context = %status.context,
                state = status.state.as_str(), description = %status.description, "status (report_status is off: logged only)");
        }
        return Ok(Json(json!({ "logged": report.statuses.len(), "written": [] })));
    };
    let installation_id = event.installation_id.ok_or_else(|| {
        StatusError::BadRequest(
            "the event has no installation_id: statuses are written as a GitHub App installation".into(),
        )
    })?;
    let mut written = Vec::new();
    let mut rejected = Vec::new();
    let mut lost = Vec::new();
    for status in &report.statuses {
        let outcome = match &state.checks {
            Some(checks) => checks.write(writer, installation_id, event, status, deadline).await,
            None => writer.write(installation_id, event, status, deadline).await,
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error @ (StatusError::GitHubUnavailable { .. } | StatusError::Deferred { .. })) => {
                tracing::error!(owner = %event.owner, repo = %event.repo, sha = %event.sha, context = %status.context,
                    state = status.state.as_str(), %error, "status lost: GitHub did not take it within this request's time");
                lost.push(LostStatus::from_error(&status.context, &error));
                continue;
            }
            Err(error) => return Err(error),
        };
        match outcome {
            WriteOutcome::Written => {
                tracing::info!(owner = %event.owner, repo = %event.repo, sha = %event.sha, context = %status.context, state = status.state.as_str(), "status written");
                written.push(status.context.clone());
            }
            WriteOutcome::Rejected(reason) => {
                tracing::warn!(owner = %event.owner, repo = %event.repo, sha = %event.sha, context = %status.context, %reason, "status refused by GitHub, not retried");
                rejected.push(json!({ "context": status.context, "reason": reason }));
            }
        }
    }
    if !lost.is_empty() {
        return Err(StatusError::Lost { written, rejected, lost });
    }
    Ok(Json(json!({ "written": written, "rejected": rejected })))
}

/// `POST /preview-comment`: creates or edits a pull request's preview comment (logged only with `report_status` off).
async fn preview_comment(
    State(state): State<Arc<AppState>>,
    SignedJson(report): SignedJson<PreviewCommentReport>,
) -> Result<Json<serde_json::Value>, StatusError> {
    let deadline = Instant::now() + state.budget;
    validate(&report.event)?;
    let event = &report.event;
    let Some(writer) = state.writer.as_ref().filter(|_| state.config.report_status) else {
        tracing::info!(owner = %event.owner, repo = %event.repo, pull_request = report.pull_request, "preview comment (report_status is off: logged only)");
        return Ok(Json(json!({ "comment": "logged" })));
    };
    let installation_id = event.installation_id.ok_or_else(|| {
        StatusError::BadRequest(
            "the event has no installation_id: comments are written as a GitHub App installation".into(),
        )
    })?;
    let outcome = state.comments.write(writer, installation_id, &report, deadline).await?;
    tracing::info!(owner = %event.owner, repo = %event.repo, pull_request = report.pull_request, ?outcome, "preview comment");
    let answer = match outcome {
        Commented::Created(id) => json!({ "comment": "created", "id": id }),
        Commented::Updated(id) => json!({ "comment": "updated", "id": id }),
        Commented::NothingToUpdate => json!({ "comment": "none" }),
        Commented::NotWritten(reason) => json!({ "comment": "not written", "reason": reason }),
    };
    Ok(Json(answer))
}

/// The commit a pipeline callback names, and the MAC gh-push put on it.
#[derive(Deserialize)]
struct FailedQuery {
    owner: String,
    repo: String,
    sha: String,
    installation: u64,
    delivery: String,
    sig: String,
}

/// `POST /failed?…`: the gateway's queue reports git-tar's final answer. A success, or a 422 (git-tar already put
/// the failure on the commit), needs nothing; anything else (the queue gave up on 429/502/503, or git-tar ran out
/// of time) turns `stack-deploy` into `error`, so the commit does not stay pending.
async fn failed(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FailedQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, StatusError> {
    let deadline = Instant::now() + state.budget;
    let build = BuildRef {
        owner: &query.owner,
        repo: &query.repo,
        sha: &query.sha,
        installation_id: query.installation,
        delivery: &query.delivery,
    };
    if !build.verify(&query.sig, state.config.common.payload_secret.expose().as_bytes()) {
        return Err(StatusError::Signature(SignatureError::Mismatch));
    }
    let code = header_text(&headers, "x-function-status")
        .and_then(|v| v.parse::<u16>().ok())
        .ok_or_else(|| StatusError::BadRequest("X-Function-Status is missing".into()))?;
    if (200..300).contains(&code) || code == 422 {
        return Ok(Json(json!({ "written": [] })));
    }
    let function = header_text(&headers, "x-function-name").unwrap_or(GIT_TAR);
    let description = format!("the build pipeline gave up: {function} answered {code}: {}", answer_text(&body));
    tracing::warn!(owner = %query.owner, repo = %query.repo, sha = %query.sha, delivery = %query.delivery, %function, code, "{description}");
    let sha: CommitSha =
        query.sha.parse().map_err(|e: NotACommitSha| StatusError::BadRequest(format!("`sha` is {e}")))?;
    let event = StatusEvent {
        owner: query.owner.clone(),
        owner_id: 0,
        repo: query.repo.clone(),
        sha,
        installation_id: Some(query.installation),
        delivery: Some(query.delivery.clone()),
    };
    let status = CommitStatus::new(STACK_DEPLOY_CONTEXT, StatusState::Error, description);
    write_report(&state, &StatusReport { event, statuses: vec![status] }, deadline).await
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// What the function said: the `error` of its JSON error body, else its text (the status cuts it to fit).
fn answer_text(body: &[u8]) -> String {
    let said = serde_json::from_slice::<ErrorBody>(body)
        .map_or_else(|_| String::from_utf8_lossy(body).trim().to_owned(), |b| b.error);
    if said.is_empty() {
        "no answer".to_owned()
    } else {
        said
    }
}

/// Owner, repository and SHA go into an API path: only names GitHub itself allows get there.
fn validate(event: &StatusEvent) -> Result<(), StatusError> {
    let owner_ok = !event.owner.is_empty()
        && event.owner.len() <= 39
        && event.owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let repo_ok = !event.repo.is_empty()
        && event.repo.len() <= 100
        && event.repo != "."
        && event.repo != ".."
        && event.repo.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !owner_ok || !repo_ok {
        return Err(StatusError::BadRequest(format!(
            "`{}/{}` is not a GitHub repository name",
            event.owner, event.repo
        )));
    }
    Ok(())
}
