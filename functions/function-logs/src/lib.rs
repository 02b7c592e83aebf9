//! function-logs: a function's runtime log for its owner, as the dashboard shows it.
//!
//! `GET /?name=<service>&tail=&since=&follow=` with the session (`Authorization: Bearer` or the
//! `openfaas_cloud_token` cookie): 401 without a valid session, 403 for a function that is not the session's, 404
//! for none, 400 for a malformed parameter; otherwise the gateway's `/system/logs` answer, newline-delimited JSON
//! (`name`, `namespace`, `instance`, `timestamp`, `text` a line), streamed through unchanged as it arrives. With
//! `follow=true` the answer stays open and ends when the client goes away (the gateway's request is dropped with
//! it) or when the gateway ends it.
//!
//! # Layout
//! - [`Config`]: the gateway and its admin credentials, and the key that verifies sessions.
//! - [`LogQuery`]: the parameters, checked before they go on to the gateway.
//! - [`error`]: the answers of refusal.

pub mod error;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use shared::config::{parse_bool, CommonConfig, ConfigError, SecretStore};
use shared::error::error_chain;
use shared::gateway::{BasicAuth, GatewayClient, GatewayError};
use shared::revocation::SessionGate;
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

pub use crate::error::LogsError;

/// The function's name on the gateway.
pub const FUNCTION_NAME: &str = shared::functions::FUNCTION_LOGS;
/// How long the gateway may take to answer a log that is not followed (a followed one has no deadline).
const TAIL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// For `/system/functions` (whose a function is) and `/system/logs`.
    pub credentials: BasicAuth,
    /// `jwt-public-key` and the signed-out sessions (the log store's settings): admits the sessions edge-auth
    /// signed and has not seen signed out.
    pub sessions: SessionGate,
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
            credentials: BasicAuth::from_secrets(&secrets)?,
            sessions: SessionGate::from_secrets(&secrets)?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

/// What `/system/logs` is asked for, as OpenFaaS's logs API names it; checked here so a malformed value is a
/// 400 that names it rather than the gateway's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub name: String,
    /// The last lines of what is written (the gateway's own bound applies).
    pub tail: Option<i64>,
    /// Only lines after this RFC 3339 time.
    pub since: Option<String>,
    pub follow: bool,
}

impl LogQuery {
    pub fn parse<S: std::hash::BuildHasher>(query: &HashMap<String, String, S>) -> Result<Self, LogsError> {
        let value = |name: &str| query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let name = shared::ownership::requested_function(query)?.to_owned();
        let tail = value("tail")
            .map(|t| t.parse::<i64>().map_err(|_| LogsError::BadRequest(format!("`tail` {t:?} is not a number"))))
            .transpose()?;
        let since = value("since")
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true))
                    .map_err(|_| LogsError::BadRequest(format!("`since` {s:?} is not an RFC 3339 time")))
            })
            .transpose()?;
        let follow = match value("follow") {
            None => false,
            Some(f) => {
                parse_bool(f).ok_or_else(|| LogsError::BadRequest(format!("`follow` {f:?} is not true or false")))?
            }
        };
        Ok(Self { name, tail, since, follow })
    }

    /// The query string's pairs for `/system/logs`.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("name", self.name.clone())];
        if let Some(tail) = self.tail {
            pairs.push(("tail", tail.to_string()));
        }
        if let Some(since) = &self.since {
            pairs.push(("since", since.clone()));
        }
        pairs.push(("follow", self.follow.to_string()));
        pairs
    }
}

struct AppState {
    gateway: GatewayClient,
    credentials: BasicAuth,
    sessions: SessionGate,
}

pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials.clone());
    let state = Arc::new(AppState { gateway, credentials: config.credentials, sessions: config.sessions });
    Router::new().route("/", get(logs)).route("/{*path}", get(logs)).with_state(state)
}

async fn logs(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, LogsError> {
    let session = state.sessions.admit_request(&headers, chrono::Utc::now()).await?;
    let query = LogQuery::parse(&query)?;
    shared::ownership::owned_function(&state.gateway, &session, &query.name).await?;
    let upstream = gateway_logs(&state, &query).await?;
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/x-ndjson"));
    tracing::info!(function = %query.name, user = %session.user.login, follow = query.follow, "streaming a log");
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "private, no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        // A proxy in front must pass a followed log on line by line rather than hold it back.
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(upstream.bytes_stream()))
        .expect("a valid response"))
}

/// The gateway's `/system/logs` answer for `query`, once its status says the lines follow.
async fn gateway_logs(state: &AppState, query: &LogQuery) -> Result<reqwest::Response, LogsError> {
    let url = state.gateway.base_url().join("system/logs").expect("a relative path joins");
    let mut request = state
        .gateway
        .http()
        .get(url.clone())
        .query(&query.pairs())
        .basic_auth(&state.credentials.user, Some(state.credentials.password.expose()));
    if !query.follow {
        request = request.timeout(TAIL_TIMEOUT);
    }
    let response = request
        .send()
        .await
        .map_err(|e| GatewayError::Unreachable { url: url.to_string(), reason: error_chain(&e) })?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(shared::ownership::AccessError::NotFound(query.name.clone()).into());
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default().trim().chars().take(300).collect();
        return Err(GatewayError::Status { what: "GET /system/logs".into(), status, body }.into());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn parameters_are_checked_and_passed_on_in_the_gateway_s_terms() {
        let parsed =
            LogQuery::parse(&query(&[("name", "octo-fn"), ("tail", "5"), ("since", "2026-11-27T05:00:00+01:00")]))
                .unwrap();
        assert_eq!(
            parsed.pairs(),
            vec![
                ("name", "octo-fn".to_owned()),
                ("tail", "5".to_owned()),
                ("since", "2026-11-27T04:00:00Z".to_owned()),
                ("follow", "false".to_owned())
            ]
        );
        assert!(LogQuery::parse(&query(&[("name", "octo-fn"), ("follow", "1")])).unwrap().follow);
        for bad in [
            vec![],
            vec![("name", "Octo/../x")],
            vec![("name", "octo-fn"), ("tail", "many")],
            vec![("name", "octo-fn"), ("since", "yesterday")],
            vec![("name", "octo-fn"), ("follow", "please")],
        ] {
            let refused =
                LogQuery::parse(&query(&bad)).err().map(|e| axum::response::IntoResponse::into_response(e).status());
            assert_eq!(refused, Some(axum::http::StatusCode::BAD_REQUEST), "{bad:?}");
        }
    }
}
