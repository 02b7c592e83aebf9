//! dashboard: a signed-in user's functions, their builds, runtime logs and traffic, as server-rendered HTML.
//!
//! # Layout
//! - [`config`]: `dashboard_url`, `auth_url`, the gateway's public and pretty URLs, `github_url`, the log store, and
//!   the secrets `jwt-public-key` (sessions) and `basic-auth-*` (`/system/functions`).
//! - [`sources`]: where the facts come from: `/system/functions`, the `metrics` and `function-logs` functions
//!   (called with the user's own session as the bearer), the build-log store.
//! - [`pages`]: the askama templates (`templates/`) and their rows.
//! - [`error`]: every failure, and the one place it becomes a login redirect or an HTML error page.
//! - below: the routes, the session every route requires ([`SignedIn`]), and the layer that gives every answer
//!   `Cache-Control: no-store` and a Content-Security-Policy whose only script and style carry its nonce.
//!
//! Routes (under `dashboard_url`): `GET /` the session's functions across its accounts; `GET /functions/<service>`
//! one function; `GET /functions/<service>/logs` its runtime logs as NDJSON (what "follow" streams);
//! `GET /functions/<service>/builds/<sha>` one build's log.

pub mod config;
pub mod error;
pub mod pages;
pub mod sources;

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use chrono::Utc;
use futures_util::future::join_all;
use serde::Deserialize;
use shared::gateway::GatewayClient;
use shared::log_store::{LogKey, LogStore};
use shared::revocation::SessionGate;
use shared::session::{Session, SessionError};

pub use crate::config::Config;
pub use crate::error::PageError;
use crate::error::{render_failure, Failure};
use crate::pages::{BuildPage, BuildRow, FunctionPage, FunctionRow, Links, ListPage, TailLine, Viewer};
use crate::sources::Sources;

/// How many of a function's newest builds its page lists.
pub const BUILDS_SHOWN: usize = 10;

struct AppState {
    sources: Sources,
    store: Arc<LogStore>,
    sessions: SessionGate,
    links: Links,
    /// `{auth_url}login/`: where a request without a valid session is sent.
    login_url: String,
}

pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone())
        .with_credentials(config.credentials);
    let links = Links {
        dashboard: config.dashboard_url.to_string(),
        github: config.github_url.to_string(),
        gateway_public: config.gateway_public_url.to_string(),
        gateway_pretty: config.gateway_pretty_url,
    };
    let state = Arc::new(AppState {
        sources: Sources::new(gateway),
        store: config.store,
        sessions: config.sessions,
        login_url: format!("{}login/", config.auth_url),
        links,
    });
    Router::new()
        .route("/", get(list))
        .route("/functions/{service}", get(function))
        .route("/functions/{service}/logs", get(follow_logs))
        .route("/functions/{service}/builds/{sha}", get(build))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), secure_pages))
        .with_state(state)
}

/// The random value that lets this one response's inline style and script run, and nothing else.
#[derive(Debug, Clone)]
pub struct Nonce(pub String);

/// Every answer: a fresh nonce for the page, `no-store` (a page holds one user's data), a strict CSP, an HTML
/// error page for a failure, and `Server-Timing`.
async fn secure_pages(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let nonce = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    request.extensions_mut().insert(Nonce(nonce.clone()));
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    if let Some(failure) = response.extensions_mut().remove::<Failure>() {
        let page = render_failure(response.status(), &failure, &state.links.dashboard, &nonce);
        response = (response.status(), Html(page)).into_response();
    }
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("base64 is a header value"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // The page's own time (a streamed body's time to its headers), for browsers' developer tools and the tests.
    let timing = format!("app;dur={:.1}", started.elapsed().as_secs_f64() * 1000.0);
    headers.insert("server-timing", HeaderValue::from_str(&timing).expect("a number is a header value"));
    response
}

/// A request's verified session and the token that carries it (passed on to metrics and function-logs). Without a
/// valid one the request is redirected to the login, which comes back to the same page under `dashboard_url`.
/// Handlers take it first, so nothing else of a request is looked at before its session.
pub struct SignedIn {
    pub session: Session,
    pub token: String,
}

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = shared::session::token_from_headers(&parts.headers).unwrap_or_default().to_owned();
        match state.sessions.admit(&token, Utc::now()).await {
            Ok(session) => Ok(Self { session, token }),
            // Sending the user to sign in again would come back to the same refusal.
            Err(SessionError::Unchecked) => Err(PageError::Upstream("the session could not be checked".into())),
            Err(error) => {
                tracing::debug!(%error, path = parts.uri.path(), "no valid session: to the login");
                // Built by concatenation under `dashboard_url`, so no path can make it point elsewhere.
                let path = parts.uri.path_and_query().map_or("", |p| p.as_str()).trim_start_matches('/');
                let requested = format!("{}{path}", state.links.dashboard);
                let login_url = reqwest::Url::parse_with_params(&state.login_url, [("r", requested.as_str())])
                    .map_or_else(|_| state.login_url.clone(), String::from);
                Err(PageError::SignIn { login_url })
            }
        }
    }
}

fn html(page: &impl Template) -> Result<Response, PageError> {
    Ok(Html(page.render()?).into_response())
}

async fn list(
    signed_in: SignedIn,
    State(state): State<Arc<AppState>>,
    Extension(Nonce(nonce)): Extension<Nonce>,
) -> Result<Response, PageError> {
    let functions = state.sources.functions_of(&signed_in.session).await?;
    let (rows, previews) = pages::grouped(&functions, &state.links);
    html(&ListPage {
        home: state.links.dashboard.clone(),
        nonce,
        viewer: Viewer::new(&signed_in.session),
        rows,
        previews,
    })
}

async fn function(
    signed_in: SignedIn,
    State(state): State<Arc<AppState>>,
    Extension(Nonce(nonce)): Extension<Nonce>,
    Path(service): Path<String>,
) -> Result<Response, PageError> {
    let owned = state.sources.function_of(&signed_in.session, &service).await?;
    let token = signed_in.token.as_str();
    let (builds, invocations, logs) = tokio::join!(
        builds_of(&state, &owned),
        state.sources.invocations(&service, token),
        state.sources.log_tail(&service, token),
    );
    // The page says only "unavailable": the reason can name internal addresses, so it goes to the log.
    if let Err(why) = &invocations {
        tracing::warn!(%service, %why, "invocations unavailable");
    }
    if let Err(why) = &logs {
        tracing::warn!(%service, %why, "runtime logs unavailable");
    }
    html(&FunctionPage {
        home: state.links.dashboard.clone(),
        nonce,
        viewer: Viewer::new(&signed_in.session),
        function: FunctionRow::new(&owned, &state.links),
        builds: builds?,
        invocations,
        logs: logs.map(|lines| lines.into_iter().map(TailLine::from).collect()),
        follow: state.links.follow(&service),
    })
}

/// The function's newest builds with their outcomes; a record that cannot be read still lists its SHA.
async fn builds_of(state: &AppState, owned: &sources::OwnedFunction) -> Result<Vec<BuildRow>, PageError> {
    // Logs are kept under the account id: a deployment without one (before the id label) has none to show.
    if owned.repo.is_empty() || owned.owner_id == 0 {
        return Ok(Vec::new());
    }
    let builds = state.store.builds(owned.owner_id, &owned.repo, &owned.log_name(), BUILDS_SHOWN).await?;
    let metas = join_all(builds.iter().map(|b| state.store.meta(&b.key))).await;
    Ok(builds
        .iter()
        .zip(metas)
        .map(|(build, meta)| BuildRow::new(&owned.status.name, build, meta.ok().as_ref(), &state.links))
        .collect())
}

async fn build(
    signed_in: SignedIn,
    State(state): State<Arc<AppState>>,
    Extension(Nonce(nonce)): Extension<Nonce>,
    Path((service, sha)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let owned = state.sources.function_of(&signed_in.session, &service).await?;
    let key = LogKey::new(owned.owner_id, &owned.repo, &sha, &owned.log_name())?;
    let record = match state.store.get(&key).await {
        Ok(record) => record,
        // The stack.yml name may differ in case from the service's: find the record as it was stored.
        Err(shared::log_store::LogStoreError::NotFound(_)) => {
            let builds = state.store.builds(owned.owner_id, &owned.repo, &owned.log_name(), usize::MAX).await?;
            let stored = builds.into_iter().find(|b| b.key.sha() == sha);
            let stored = stored.ok_or_else(|| PageError::NotFound(format!("no build log of `{service}` at {sha}")))?;
            state.store.get(&stored.key).await?
        }
        Err(other) => return Err(other.into()),
    };
    html(&BuildPage {
        home: state.links.dashboard.clone(),
        nonce,
        viewer: Viewer::new(&signed_in.session),
        function_page: state.links.function(&service),
        service,
        sha,
        outcome: pages::outcome(record.meta.outcome),
        started: pages::when(record.meta.started),
        duration: pages::duration_ms(record.meta.duration().as_millis() as u64),
        steps: BuildPage::steps(&record.meta.steps),
        image: record.meta.image,
        log: record.text,
    })
}

/// Any other path: a page for a signed-in user only, like every other.
async fn not_found(_signed_in: SignedIn) -> PageError {
    PageError::NotFound("there is no such page".into())
}

#[derive(Debug, Deserialize)]
struct FollowQuery {
    follow: Option<bool>,
    tail: Option<u32>,
}

/// `function-logs`' NDJSON for the function, streamed through as it arrives (`follow=true` keeps it open).
async fn follow_logs(
    signed_in: SignedIn,
    State(state): State<Arc<AppState>>,
    Path(service): Path<String>,
    Query(query): Query<FollowQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    state.sources.function_of(&signed_in.session, &service).await?;
    let follow = query.follow.unwrap_or(true).to_string();
    let tail = query.tail.unwrap_or(sources::LOG_TAIL).to_string();
    let upstream = state
        .sources
        .logs_stream(&[("name", &service), ("tail", &tail), ("follow", &follow)], &signed_in.token)
        .await
        .map_err(PageError::Upstream)?;
    // The page's script asks for NDJSON; a browser that opens the link without script shows plain text inline
    // (an unknown type would be downloaded instead).
    let wants_ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson") || accept.contains("application/json"));
    let content_type = if wants_ndjson { "application/x-ndjson; charset=utf-8" } else { "text/plain; charset=utf-8" };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(upstream.bytes_stream())).into_response())
}
