//! edge-auth: signs people in with GitHub and issues the session every other part of the platform verifies.
//!
//! # Layout
//! - [`Config`]: the OAuth App, where GitHub is, the public URLs, the cookie's domain, the signing key, customers.
//! - [`app`]: `GET /login/?r=` (to GitHub, with a state kept in a cookie), `GET /oauth2/authorized` (GitHub's
//!   answer: state checked, code exchanged, user and organisations read, customers applied, session cookie set,
//!   back to `r`), `GET|POST /logout/` (session revoked everywhere, cookie cleared), `GET /q/` (200 with `X-Ofc-Login`, or 401).
//! - [`return_target`]: where a sign-in may land (open-redirect protection).
//! - [`github`]: the token exchange and the two reads.
//! - [`error`]: the refusal pages.

pub mod config;
pub mod error;
pub mod github;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use rand::distributions::{Alphanumeric, DistString};
use reqwest::Url;
use shared::customers::Customers;
use shared::revocation::SessionGate;
use shared::session::{self, CookieSettings, Session, SessionSigner};
use subtle::ConstantTimeEq as _;

pub use crate::config::Config;
pub use crate::error::AuthError;
use crate::github::{GitHubClient, Identity};

/// The function's name on the gateway.
pub const FUNCTION_NAME: &str = shared::functions::EDGE_AUTH;
/// The cookie that ties GitHub's answer to the browser that asked: the state, then where to land.
pub const STATE_COOKIE: &str = "ofc_oauth_state";
/// How long a sign-in may take between `/login/` and GitHub's answer (GitHub's codes live as long).
const STATE_LIFETIME_SECONDS: u64 = 600;
/// The longest `r` followed: it travels in the state cookie, which browsers cap at about 4 KiB.
const MAX_RETURN_URL_BYTES: usize = 2048;

struct AppState {
    github: GitHubClient,
    redirect_uri: Url,
    dashboard_url: Url,
    cookie_root_domain: Option<String>,
    cookie: CookieSettings,
    session_lifetime: chrono::TimeDelta,
    signer: SessionSigner,
    sessions: SessionGate,
    customers: Option<Customers>,
}

pub fn app(config: Config) -> Router {
    let cookie = config.cookie_settings();
    let redirect_uri = config.redirect_uri();
    let http =
        shared::resolver::client_builder().timeout(std::time::Duration::from_secs(10)).build().expect("an HTTP client");
    let state = AppState {
        github: GitHubClient::new(config.oauth_base_url, config.github_api_url, config.client_id, config.client_secret),
        redirect_uri,
        dashboard_url: config.dashboard_url,
        cookie_root_domain: config.cookie_root_domain,
        cookie,
        session_lifetime: chrono::TimeDelta::from_std(config.session_lifetime).unwrap_or(chrono::TimeDelta::hours(12)),
        signer: config.signer,
        sessions: config.sessions,
        customers: config.customers.map(|source| Customers::new(source, config.customers_ttl, http)),
    };
    Router::new()
        .route("/login", get(login))
        .route("/login/", get(login))
        .route("/oauth2/authorized", get(authorized))
        .route("/logout", get(logout).post(logout))
        .route("/logout/", get(logout).post(logout))
        .route("/q", get(query_session))
        .route("/q/", get(query_session))
        .with_state(Arc::new(state))
}

/// Where a sign-in may send the browser back to: an absolute http(s) URL on `cookie_root_domain` or one of its
/// subdomains, or under `dashboard_url`; anything else (another host, `//evil`, `javascript:`, credentials in the
/// URL, a downgrade from an https dashboard to http, a URL over 2 KiB) lands on the dashboard. The URL is answered
/// as parsed, so the browser goes where the check looked.
pub fn return_target(requested: Option<&str>, dashboard_url: &Url, cookie_root_domain: Option<&str>) -> Url {
    let allowed = |url: &Url| {
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
            || url.as_str().len() > MAX_RETURN_URL_BYTES
        {
            return false;
        }
        if dashboard_url.scheme() == "https" && url.scheme() != "https" {
            return false;
        }
        let under_dashboard = url.origin() == dashboard_url.origin() && url.path().starts_with(dashboard_url.path());
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let on_root_domain = cookie_root_domain
            .filter(|root| !root.is_empty())
            .is_some_and(|root| host == root || host.strip_suffix(root).is_some_and(|sub| sub.ends_with('.')));
        under_dashboard || on_root_domain
    };
    requested.map(str::trim).and_then(|r| Url::parse(r).ok()).filter(allowed).unwrap_or_else(|| dashboard_url.clone())
}

fn state_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{STATE_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

fn redirect(location: &Url, cookies: &[String]) -> Response {
    let mut response = (StatusCode::FOUND, [(header::CACHE_CONTROL, "no-store")]).into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_str(location.as_str()).expect("a URL is a header value"));
    for cookie in cookies {
        headers.append(header::SET_COOKIE, HeaderValue::from_str(cookie).expect("cookies are ASCII"));
    }
    response
}

/// `GET /login/?r=<url>`: off to GitHub, with a fresh state that only this browser holds.
async fn login(State(state): State<Arc<AppState>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let target =
        return_target(query.get("r").map(String::as_str), &state.dashboard_url, state.cookie_root_domain.as_deref());
    let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    let value = format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(target.as_str()));
    let cookie = state_cookie(&value, STATE_LIFETIME_SECONDS, state.cookie.secure);
    redirect(&state.github.authorize_url(&state.redirect_uri, &nonce), &[cookie])
}

/// The state cookie's nonce and return URL, when it is one this function set.
fn read_state_cookie(headers: &HeaderMap) -> Option<(&str, String)> {
    let (nonce, target) = session::cookie(headers, STATE_COOKIE)?.split_once('.')?;
    let target = String::from_utf8(URL_SAFE_NO_PAD.decode(target).ok()?).ok()?;
    Some((nonce, target))
}

/// `GET /oauth2/authorized?code&state`: GitHub's answer.
async fn authorized(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, AuthError> {
    let (nonce, target) = read_state_cookie(&headers).ok_or(AuthError::StateMissing)?;
    let returned = query.get("state").map(String::as_str).unwrap_or_default();
    if nonce.is_empty() || !bool::from(nonce.as_bytes().ct_eq(returned.as_bytes())) {
        return Err(AuthError::StateMismatch);
    }
    if let Some(error) = query.get("error") {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return Err(AuthError::Declined(error));
    }
    let code = query.get("code").filter(|c| !c.is_empty()).ok_or(AuthError::MissingCode)?;
    let identity = state.github.identify(code, &state.redirect_uri).await?;
    let identity = admit(&state, identity).await?;
    let now = Utc::now();
    let session = Session {
        id: Session::new_id(),
        user: identity.user,
        name: identity.name,
        orgs: identity.orgs,
        issued: now,
        expires: now + state.session_lifetime,
    };
    tracing::info!(login = %session.user.login, orgs = session.orgs.len(), "signed in");
    // Checked again: the cookie is the browser's to change.
    let target = return_target(Some(&target), &state.dashboard_url, state.cookie_root_domain.as_deref());
    let cookies = [
        session::session_cookie(&state.signer.sign(&session), &state.cookie),
        state_cookie("", 0, state.cookie.secure),
    ];
    Ok(redirect(&target, &cookies))
}

/// The customers rule: with a list, the user is let in when they or one of their organisations is on it, and only
/// the organisations on it are kept; without one, everyone is.
async fn admit(state: &AppState, mut identity: Identity) -> Result<Identity, AuthError> {
    let Some(customers) = &state.customers else {
        return Ok(identity);
    };
    let mut orgs = Vec::with_capacity(identity.orgs.len());
    for org in identity.orgs {
        if customers.contains(&org.login).await? {
            orgs.push(org);
        }
    }
    identity.orgs = orgs;
    if customers.contains(&identity.user.login).await? || !identity.orgs.is_empty() {
        Ok(identity)
    } else {
        Err(AuthError::NotCustomer(identity.user.login))
    }
}

/// `GET` or `POST /logout/`: the session the request carries is signed out everywhere it is accepted (its id
/// recorded as revoked, [`shared::revocation`]) and the cookie removed. When the record cannot be written the
/// cookie is still removed, and the page says the session may still work elsewhere until it expires.
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let now = Utc::now();
    let revoked = match state.sessions.admit_request(&headers, now).await {
        Ok(session) => match state.sessions.revocations().revoke(&session).await {
            Ok(()) => {
                tracing::info!(login = %session.user.login, "signed out");
                if let Err(error) = state.sessions.revocations().sweep_expired(now).await {
                    tracing::warn!(%error, "expired revocations were not swept");
                }
                true
            }
            Err(error) => {
                tracing::error!(%error, login = %session.user.login, "the sign-out could not be recorded");
                false
            }
        },
        // No session, or one already ended: nothing to revoke.
        Err(_) => true,
    };
    let (status, page) = if revoked {
        (
            StatusCode::OK,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Signed out</title></head>\n\
             <body><h1>Signed out</h1>\n<p><a href=\"../login/\">Sign in again</a></p>\n</body></html>\n",
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Sign-out incomplete</title></head>\n\
             <body><h1>Sign-out incomplete</h1>\n<p>This browser is signed out, but the session could not be ended \
             everywhere: a copy of it may keep working until it expires. <a href=\"../logout/\">Try again</a></p>\n\
             </body></html>\n",
        )
    };
    let mut response = (status, [(header::CACHE_CONTROL, "no-store")], Html(page)).into_response();
    let clear = session::clear_session_cookie(&state.cookie);
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&clear).expect("cookies are ASCII"));
    response
}

/// `GET /q/`: whether the request carries a valid session (200, `X-Ofc-Login`) or not (401).
async fn query_session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match state.sessions.admit_request(&headers, Utc::now()).await {
        Ok(session) => {
            let login = HeaderValue::from_str(&session.user.login).unwrap_or_else(|_| HeaderValue::from_static(""));
            (StatusCode::OK, [("x-ofc-login", login)], "signed in\n").into_response()
        }
        Err(error) => (StatusCode::UNAUTHORIZED, format!("{error}\n")).into_response(),
    }
}
