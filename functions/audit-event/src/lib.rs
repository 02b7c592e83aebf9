//! audit-event: receives the audit events every function sends, writes each as one JSON line on stdout, and
//! forwards a one-line summary to Slack when `slack_url` is set, without making the sender wait for Slack.
//!
//! # Layout
//! - [`Config`]: the payload secret and `slack_url`.
//! - [`summary`]: the line Slack gets.
//! - [`error`]: the answers.

pub mod error;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use reqwest::Url;
use shared::config::{optional_url, CommonConfig, ConfigError, Secret, SecretStore};
use shared::event::AuditEvent;
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
use shared::signature::{SignedCalls, SignedJson};

pub use crate::error::AuditError;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `slack_url`: an incoming-webhook URL; unset sends nothing to Slack.
    pub slack_url: Option<Url>,
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
            slack_url: optional_url("slack_url")?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

struct AppState {
    config: Config,
    http: reqwest::Client,
}

impl SignedCalls for AppState {
    type Error = AuditError;

    fn payload_secret(&self) -> &Secret {
        &self.config.common.payload_secret
    }
}

pub fn app(config: Config) -> Router {
    Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(Arc::new(AppState {
        config,
        http: shared::resolver::client_builder().build().expect("static client settings"),
    }))
}

/// `[source] message (owner/repo@sha7)`: what a channel reads at a glance.
pub fn summary(event: &AuditEvent) -> String {
    let source = format!("[{}] {}", event.source, event.message);
    match (&event.owner, &event.repo) {
        (Some(owner), Some(repo)) => {
            let sha = event.sha.as_deref().map(|s| format!("@{}", s.get(..7).unwrap_or(s))).unwrap_or_default();
            format!("{source} ({owner}/{repo}{sha})")
        }
        _ => source,
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    SignedJson(event): SignedJson<AuditEvent>,
) -> Result<StatusCode, AuditError> {
    println!("{}", serde_json::to_string(&event).expect("audit events serialise"));
    if let Some(url) = state.config.slack_url.clone() {
        let http = state.http.clone();
        let text = summary(&event);
        tokio::spawn(async move {
            let sent = http
                .post(url)
                .json(&serde_json::json!({ "text": text }))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            if let Err(error) = sent {
                tracing::warn!(error = %shared::error::error_chain(&error), "the audit summary did not reach Slack");
            }
        });
    }
    Ok(StatusCode::ACCEPTED)
}
