//! pipeline-log: a build's log for the user who pushed it, behind a signed, expiring link.
//!
//! # Layout
//! - [`Config`]: the log store, `payload-secret` (which signs links) and the sweep interval.
//! - [`app`]: `GET /` serves a log (text, or JSON with `Accept: application/json` or `format=json`).
//! - [`LogView`]: the JSON answer.
//! - [`error`]: the answers of refusal.

pub mod error;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::config::{duration_or, CommonConfig, ConfigError, SecretStore};
use shared::log_store::{verify_log_link, LinkError, LogKey, LogStore, Outcome, StepTiming};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

pub use crate::error::LogError;

/// The function's name on the gateway.
pub const FUNCTION_NAME: &str = shared::log_store::PIPELINE_LOG;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// Opened at start, so a bucket or folder that cannot be used stops the start rather than the first request.
    pub store: Arc<LogStore>,
    /// `log_sweep_interval` (default 1h): how often records past `log_retention` are removed; `None` never.
    pub sweep_interval: Option<Duration>,
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
        let store = LogStore::from_env(&secrets)?;
        let sweep = duration_or("log_sweep_interval", Duration::from_secs(3600))?;
        Ok(Self {
            common: CommonConfig::from_env(&secrets)?,
            store: Arc::new(store),
            sweep_interval: Some(sweep).filter(|d| !d.is_zero()),
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

/// The JSON answer: the key, how the build ended, its timings, and the whole log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogView {
    pub owner_id: u64,
    pub repo: String,
    pub sha: String,
    pub function: String,
    pub outcome: Outcome,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub duration_ms: u64,
    pub steps: Vec<StepTiming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub log: String,
}

struct AppState {
    store: Arc<LogStore>,
    common: CommonConfig,
}

pub fn app(config: Config) -> Router {
    tracing::info!(location = config.store.location(), retention = ?config.store.retention(), "log store");
    if let Some(every) = config.sweep_interval {
        tokio::spawn(sweep_every(config.store.clone(), every));
    }
    let state = Arc::new(AppState { store: config.store, common: config.common });
    Router::new().route("/", get(serve_log)).route("/{*path}", get(serve_log)).with_state(state)
}

/// Removes expired records at start and then every `every`; a failed sweep is logged and tried again next time.
async fn sweep_every(store: Arc<LogStore>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.sweep().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed build logs past their retention"),
            Err(error) => tracing::warn!(%error, "sweeping old build logs failed"),
        }
    }
}

fn query_value<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The key a link names, checked before anything is verified or read.
fn key_from_query(query: &HashMap<String, String>) -> Result<LogKey, LogError> {
    let part = |name: &str| {
        query_value(query, name)
            .ok_or_else(|| LogError::BadRequest(format!("the `{name}` query parameter is required")))
    };
    Ok(LogKey::parse(part("owner_id")?, part("repo")?, part("sha")?, part("function")?)?)
}

fn wants_json(query: &HashMap<String, String>, headers: &HeaderMap) -> bool {
    if let Some(format) = query_value(query, "format") {
        return format.eq_ignore_ascii_case("json");
    }
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("application/json"))
}

async fn serve_log(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, LogError> {
    let key = key_from_query(&query)?;
    let (Some(expires), Some(sig)) = (query_value(&query, "expires"), query_value(&query, "sig")) else {
        return Err(LinkError::Unsigned.into());
    };
    let expires: i64 =
        expires.parse().map_err(|_| LogError::BadRequest("`expires` must be a Unix time in seconds".into()))?;
    verify_log_link(&key, expires, sig, &state.common.payload_secret, Utc::now())?;
    let record = state.store.get(&key).await?;
    if wants_json(&query, &headers) {
        let view = LogView {
            owner_id: key.owner_id(),
            repo: key.repo().to_owned(),
            sha: key.sha().to_owned(),
            function: key.function().to_owned(),
            outcome: record.meta.outcome,
            started: record.meta.started,
            finished: record.meta.finished,
            duration_ms: record.meta.duration().as_millis() as u64,
            steps: record.meta.steps,
            image: record.meta.image,
            digest: record.meta.digest,
            log: record.text,
        };
        return Ok(Json(view).into_response());
    }
    // Plain text that no browser will sniff into HTML: a log holds whatever the build printed.
    let text_headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "private, no-store"),
    ];
    Ok((text_headers, record.text).into_response())
}
