//! github-status: the only function that writes commit statuses to GitHub. Every other function queues its
//! statuses here, signed; this one authenticates as the GitHub App and writes them in order.
//!
//! # Layout
//! - [`config`]: `report_status`, `github_app_id`, `github_api_url`, the App key, retry bounds.
//! - [`writer`]: one status write, with token refresh on 401 and GitHub's retry rules.
//! - [`error`]: the answers: 401 unsigned, 400 malformed, 502 when GitHub kept failing (the queue retries).

pub mod config;
pub mod error;
pub mod writer;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use axum::{Json, Router};
use serde_json::json;
use shared::event::{is_commit_sha, StatusReport};
use shared::github_app::InstallationTokens;
use shared::signature::verify_cloud;

pub use crate::config::Config;
pub use crate::error::StatusError;
use crate::writer::{StatusWriter, WriteOutcome};

struct AppState {
    config: Config,
    writer: Option<StatusWriter>,
}

/// The function's router, without the runtime layers (see `shared::server::with_runtime`).
pub fn app(config: Config) -> Router {
    let writer = config.app.clone().map(|credentials| {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("static client settings");
        let tokens = InstallationTokens::new(config.github_api_url.clone(), credentials, http.clone());
        StatusWriter::new(config.github_api_url.clone(), tokens, http, config.max_retries, config.max_retry_wait)
    });
    let state = Arc::new(AppState { config, writer });
    Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(state)
}

async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, StatusError> {
    verify_cloud(&headers, &body, state.config.common.payload_secret.expose().as_bytes())?;
    let report: StatusReport = serde_json::from_slice(&body)
        .map_err(|e| StatusError::BadRequest(format!("the body is not a status report: {e}")))?;
    validate(&report)?;
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
    for status in &report.statuses {
        match writer.write(installation_id, event, status).await? {
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
    Ok(Json(json!({ "written": written, "rejected": rejected })))
}

/// Owner, repository and SHA go into an API path: only names GitHub itself allows get there.
fn validate(report: &StatusReport) -> Result<(), StatusError> {
    let event = &report.event;
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
    if !is_commit_sha(&event.sha) {
        return Err(StatusError::BadRequest(format!("`{}` is not a commit SHA", event.sha)));
    }
    Ok(())
}
