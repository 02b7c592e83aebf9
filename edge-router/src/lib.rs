//! edge-router: the platform's pretty URLs, in front of the gateway (the last OpenFaaS Cloud release's
//! edge-router). `<owner>.<domain>/<function>` reaches the function `<owner>-<function>-<n>`,
//! `system.<domain>/dashboard/` the dashboard and `auth.system.<domain>` the login (edge-auth).
//!
//! It is not an OpenFaaS function but the platform's front door: a deployment of its own, or `ofc up`'s router
//! port, where browsers reach `*.localhost`. The session cookie is scoped to `system.<domain>` by edge-auth, and
//! the router strips it from calls to users' functions as well, so no user's code ever sees another's session.
//!
//! # Layout
//! - [`route`]: host and path → gateway path (pure).
//! - [`Config`]: `domain`, `upstream_url`, `upstream_timeout`.
//! - [`app`]: the router; every request is proxied with its body and answer streamed.
//! - [`error`]: the answers of refusal.

pub mod error;
pub mod route;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, COOKIE, HOST, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use reqwest::Url;
use shared::config::{base_url, duration_or, required, ConfigError};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

pub use crate::error::RouteError;
use crate::route::{host_name, resolve, Route};

#[derive(Debug, Clone)]
pub struct Config {
    /// `domain`: the platform's domain, e.g. `o6s.io`; locally `localhost`.
    pub domain: String,
    /// `upstream_url`: the gateway, with its trailing slash.
    pub upstream_url: Url,
    /// `upstream_timeout` (default 60 s): how long the gateway may take to start answering; a streamed answer (a
    /// followed log) may then last as long as the client stays.
    pub upstream_timeout: Duration,
    pub server: ServerConfig,
}

impl shared::server::FunctionConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let domain = required("domain")?.trim().trim_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['/', ':', ' ']) {
            return Err(ConfigError::Invalid {
                name: "domain".into(),
                reason: format!("`{domain}` is not a domain name (no scheme, port or path)"),
            });
        }
        Ok(Self {
            domain,
            upstream_url: base_url("upstream_url")?,
            upstream_timeout: duration_or("upstream_timeout", Duration::from_secs(60))?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}

struct AppState {
    config: Config,
    http: reqwest::Client,
}

pub fn app(config: Config) -> Router {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with these settings always builds");
    Router::new().fallback(forward).with_state(Arc::new(AppState { config, http }))
}

async fn forward(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, RouteError> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .map(host_name)
        .ok_or(RouteError::NoHost)?;
    let route = resolve(&state.config.domain, &host, request.uri().path())?;
    let (path, user_function) = match route {
        Route::Redirect(to) => {
            return Ok((StatusCode::FOUND, [(LOCATION, to)]).into_response());
        }
        Route::Upstream { path, user_function } => (path, user_function),
    };
    let mut url = state.config.upstream_url.join(&path).map_err(|e| RouteError::Unreachable(e.to_string()))?;
    // The join must stay under `function/<name>/`, whatever the path held (`route` refuses dot segments already).
    let prefix =
        format!("{}{}/", state.config.upstream_url.path(), path.splitn(3, '/').take(2).collect::<Vec<_>>().join("/"));
    if !url.path().starts_with(&prefix) {
        return Err(RouteError::DotSegment);
    }
    url.set_query(request.uri().query());
    let (parts, body) = request.into_parts();
    let limit = state.config.server.max_body_bytes;
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(RouteError::TooLarge { limit });
    }
    let mut upstream =
        state.http.request(parts.method.clone(), url).body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name.as_str()) || name == COOKIE {
            continue;
        }
        upstream = upstream.header(name, value);
    }
    if let Some(cookie) = forwarded_cookie(&parts.headers, user_function) {
        upstream = upstream.header(COOKIE, cookie);
    }
    upstream = upstream.header("X-Forwarded-Host", host.as_str()).header("X-Forwarded-Proto", "http");
    let timeout = state.config.upstream_timeout;
    let answer = match tokio::time::timeout(timeout, upstream.send()).await {
        Err(_) => return Err(RouteError::TimedOut(timeout.as_secs())),
        Ok(Err(error)) => return Err(RouteError::Unreachable(shared::error::error_chain(&error))),
        Ok(Ok(answer)) => answer,
    };
    tracing::info!(%host, path = %parts.uri.path(), status = answer.status().as_u16(), "routed");
    Ok(respond(answer, user_function))
}

/// The `Cookie` header passed on: whole to the platform's own pages, without the session to a user's function.
fn forwarded_cookie(headers: &HeaderMap, user_function: bool) -> Option<HeaderValue> {
    let cookies: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            !user_function || pair.split_once('=').is_none_or(|(name, _)| name.trim() != shared::session::COOKIE_NAME)
        })
        .collect();
    if cookies.is_empty() {
        return None;
    }
    HeaderValue::from_str(&cookies.join("; ")).ok()
}

/// The gateway's answer, streamed back. A user's function may set cookies for its own host only: one with a
/// `Domain` would reach the platform's hosts too (a planted session or sign-in state), so it is dropped.
fn respond(answer: reqwest::Response, user_function: bool) -> Response {
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if is_hop_by_hop(name.as_str()) || (user_function && name == SET_COOKIE && sets_a_domain(value)) {
            continue;
        }
        response = response.header(name.as_str(), value.as_bytes());
    }
    let body = Body::from_stream(answer.bytes_stream());
    response.body(body).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// Whether a `Set-Cookie` value has a `Domain` attribute (or cannot be read, and so cannot be vouched for).
fn sets_a_domain(value: &HeaderValue) -> bool {
    value.to_str().map_or(true, |text| {
        text.split(';').skip(1).any(|attribute| attribute.trim().to_ascii_lowercase().starts_with("domain"))
    })
}

/// Headers that describe one connection, not the message, and are not passed on.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "host"
    )
}
