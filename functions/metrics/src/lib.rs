//! metrics: a function's calls of the last hour (or a shorter window) by 2xx / 4xx / 5xx, for its owner, as the
//! dashboard shows them.
//!
//! `GET /?name=<service>&window=1h` with the session (`Authorization: Bearer` or the `openfaas_cloud_token`
//! cookie) answers [`Invocations`]: 401 without a valid session, 403 for a function that is not the session's,
//! 404 for none, 400 for a bad name or window (a duration up to [`MAX_WINDOW`]).
//!
//! # Layout
//! - [`Config`]: the gateway and its admin credentials, the session key, and where the counts come from.
//! - [`prometheus`]: the counts from Prometheus's query API (`prometheus_url`).
//! - [`sampler`]: without Prometheus, the gateway's own counters sampled in the background.
//! - [`exposition`]: the counter read from the gateway's Prometheus text format.
//! - [`Invocations`]: the answer.
//! - [`error`]: the answers of refusal.

pub mod error;
pub mod exposition;
pub mod prometheus;
pub mod sampler;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use reqwest::Url;
use shared::config::{duration_or, optional_base_url, optional_url, CommonConfig, ConfigError, SecretStore};
use shared::gateway::{BasicAuth, GatewayClient};
use shared::revocation::SessionGate;
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

pub use crate::error::MetricsError;
use crate::prometheus::Prometheus;
use crate::sampler::Sampler;

/// The function's name on the gateway.
pub const FUNCTION_NAME: &str = shared::functions::METRICS;
/// The longest window asked for, and the default; also how much the sampler keeps.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// The shortest window.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The namespace OpenFaaS puts user functions in, which the gateway's metrics append to their names.
pub const FUNCTION_NAMESPACE: &str = "openfaas-fn";
/// `metrics_sample_interval`'s default.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(30);

/// Where the counts come from.
#[derive(Debug, Clone)]
pub enum CountsFrom {
    /// `prometheus_url`: its query API, which keeps the history itself.
    Prometheus(Url),
    /// No Prometheus: the gateway's `/metrics`, sampled every `interval` (`metrics_sample_interval`).
    Gateway { metrics_url: Url, interval: Duration },
}

impl CountsFrom {
    /// `prometheus_url` when set; else `gateway_metrics_url` (default `{gateway_url}metrics`) every
    /// `metrics_sample_interval` (default 30s, at least 1s).
    pub fn from_env(common: &CommonConfig) -> Result<Self, ConfigError> {
        if let Some(url) = optional_base_url("prometheus_url")? {
            return Ok(Self::Prometheus(url));
        }
        let metrics_url = match optional_url("gateway_metrics_url")? {
            Some(url) => url,
            None => common.gateway_url.join("metrics").expect("a relative path joins"),
        };
        let interval = duration_or("metrics_sample_interval", DEFAULT_SAMPLE_INTERVAL)?;
        if interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                name: "metrics_sample_interval".into(),
                reason: "must be at least 1s".into(),
            });
        }
        Ok(Self::Gateway { metrics_url, interval })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// For `/system/functions`, which says whose a function is.
    pub credentials: BasicAuth,
    /// `jwt-public-key` and the signed-out sessions (the log store's settings): admits the sessions edge-auth
    /// signed and has not seen signed out.
    pub sessions: SessionGate,
    pub counts: CountsFrom,
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
        let common = CommonConfig::from_env(&secrets)?;
        let counts = CountsFrom::from_env(&common)?;
        Ok(Self {
            credentials: BasicAuth::from_secrets(&secrets)?,
            sessions: SessionGate::from_secrets(&secrets)?,
            common,
            counts,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

pub use shared::invocations::{Invocations, Source};

/// `service` as the gateway's metrics label it: `NAME.openfaas-fn`.
pub fn service_label(service: &str) -> String {
    format!("{service}.{FUNCTION_NAMESPACE}")
}

/// The `window` query parameter: a duration (`1h`, `15m`, `300`) from [`MIN_WINDOW`] to [`MAX_WINDOW`], default
/// the longest; counted in whole seconds.
pub fn parse_window(value: Option<&str>) -> Result<Duration, MetricsError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(MAX_WINDOW) };
    let refused = |why: String| MetricsError::BadRequest(format!("`window` {why}: use a duration up to 1h, like 5m"));
    let window = shared::config::parse_duration(value).map_err(refused)?;
    if window < MIN_WINDOW || window > MAX_WINDOW {
        return Err(refused(format!("`{value}` is not between 1s and 1h")));
    }
    Ok(Duration::from_secs(window.as_secs()))
}

enum Counter {
    Prometheus(Prometheus),
    Gateway(Arc<Sampler>),
}

struct AppState {
    gateway: GatewayClient,
    sessions: SessionGate,
    counter: Counter,
}

/// The router; without Prometheus, also starts the sampler (its first sample at once).
pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials);
    let counter = match config.counts {
        CountsFrom::Prometheus(url) => {
            tracing::info!(%url, "invocation counts from Prometheus");
            Counter::Prometheus(Prometheus::new(&url, gateway.http().clone()))
        }
        CountsFrom::Gateway { metrics_url, interval } => {
            tracing::info!(url = %metrics_url, ?interval, "invocation counts sampled from the gateway");
            let sampler = Arc::new(Sampler::new(metrics_url, gateway.http().clone(), interval));
            tokio::spawn(sampler.clone().run());
            Counter::Gateway(sampler)
        }
    };
    let state = Arc::new(AppState { gateway, sessions: config.sessions, counter });
    Router::new().route("/", get(invocations)).route("/{*path}", get(invocations)).with_state(state)
}

async fn invocations(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Invocations>, MetricsError> {
    let session = state.sessions.admit_request(&headers, chrono::Utc::now()).await?;
    let name = shared::ownership::requested_function(&query)?;
    let window = parse_window(query.get("window").map(String::as_str))?;
    shared::ownership::owned_function(&state.gateway, &session, name).await?;
    let answer = match &state.counter {
        Counter::Prometheus(prometheus) => {
            let codes = prometheus.increase(name, window).await?;
            Invocations::from_codes(name, window, &codes, Source::Prometheus)
        }
        Counter::Gateway(sampler) => {
            let codes = sampler.increase(name, window).await?;
            Invocations::from_codes(name, window, &codes, Source::Gateway)
        }
    };
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_durations_up_to_an_hour() {
        assert_eq!(parse_window(None).unwrap(), MAX_WINDOW);
        assert_eq!(parse_window(Some("")).unwrap(), MAX_WINDOW);
        assert_eq!(parse_window(Some("15m")).unwrap(), Duration::from_secs(900));
        assert_eq!(parse_window(Some("300")).unwrap(), Duration::from_secs(300));
        for bad in ["2h", "61m", "0", "500ms", "soon", "-5m"] {
            assert!(matches!(parse_window(Some(bad)), Err(MetricsError::BadRequest(_))), "{bad}");
        }
    }
}
