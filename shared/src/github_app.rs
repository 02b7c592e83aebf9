//! Authenticating as the GitHub App: a JWT signed with the App's key, exchanged for installation tokens that are
//! cached per installation until shortly before they expire.
//!
//! Tokens, the JWT and the key are held as [`Secret`]s, so none of them can reach a log line or an error message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// Sent as `User-Agent` on every GitHub API call (GitHub requires one).
pub const USER_AGENT: &str = concat!("openfaas-cloud-rs/", env!("CARGO_PKG_VERSION"));
/// The REST API version pinned on every call.
pub const API_VERSION: &str = "2022-11-28";
/// A token is renewed when it has less than this left, so it never expires mid-request.
const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// What went wrong while authenticating; never carries a token, a JWT or the key.
#[derive(Debug, thiserror::Error)]
pub enum GitHubAppError {
    #[error("the GitHub App private key (secret `private-key`) is not a valid RSA PEM key: {0}")]
    InvalidKey(String),
    #[error("the GitHub App id `{0}` is empty")]
    MissingAppId(String),
    #[error("GitHub could not be reached at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("GitHub refused an installation token for installation {installation_id}: {status} {message}")]
    Refused { installation_id: u64, status: StatusCode, message: String },
    #[error("GitHub's token answer could not be read: {0}")]
    BadAnswer(String),
}

impl GitHubAppError {
    /// Faults that may pass: worth retrying later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
            _ => false,
        }
    }
}

/// The App's id and signing key.
#[derive(Clone)]
pub struct AppCredentials {
    app_id: String,
    key: EncodingKey,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials").field("app_id", &self.app_id).field("key", &"***").finish()
    }
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    /// The App id as a number when it is one, else the client id string, as GitHub accepts both.
    iss: serde_json::Value,
}

impl AppCredentials {
    /// Reads a PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM key.
    pub fn from_pem(app_id: &str, pem: &Secret) -> Result<Self, GitHubAppError> {
        if app_id.trim().is_empty() {
            return Err(GitHubAppError::MissingAppId(app_id.to_owned()));
        }
        let key = EncodingKey::from_rsa_pem(pem.expose().as_bytes())
            .map_err(|e| GitHubAppError::InvalidKey(e.to_string()))?;
        Ok(Self { app_id: app_id.trim().to_owned(), key })
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// A JWT valid from 60 s ago (clock drift) for 9 minutes, under GitHub's 10-minute limit.
    pub fn jwt(&self, now: DateTime<Utc>) -> Result<Secret, GitHubAppError> {
        let iss = self
            .app_id
            .parse::<u64>()
            .map_or_else(|_| serde_json::Value::String(self.app_id.clone()), serde_json::Value::from);
        let claims = Claims { iat: now.timestamp() - 60, exp: now.timestamp() + 540, iss };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| GitHubAppError::InvalidKey(e.to_string()))
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: DateTime<Utc>,
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    expires_at: DateTime<Utc>,
}

/// One slot per installation; the slot's async lock makes concurrent callers wait for a single token request.
type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Installation tokens, cached per installation. Tokens of different installations never share a slot.
pub struct InstallationTokens {
    api_url: Url,
    credentials: AppCredentials,
    http: reqwest::Client,
    slots: Mutex<HashMap<u64, Slot>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for InstallationTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationTokens").field("api_url", &self.api_url.as_str()).finish_non_exhaustive()
    }
}

impl InstallationTokens {
    /// `api_url` ends in `/` (e.g. `https://api.github.com/`).
    pub fn new(api_url: Url, credentials: AppCredentials, http: reqwest::Client) -> Self {
        Self { api_url, credentials, http, slots: Mutex::new(HashMap::new()), requests: AtomicU64::new(0) }
    }

    fn slot(&self, installation_id: u64) -> Slot {
        self.slots.lock().expect("token slots lock").entry(installation_id).or_default().clone()
    }

    /// A token for `installation_id`: the cached one while it has more than a few minutes left, else a new one.
    pub async fn token(&self, installation_id: u64) -> Result<Secret, GitHubAppError> {
        let slot = self.slot(installation_id);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.expires_at - Utc::now() > REFRESH_MARGIN) {
            return Ok(token.token.clone());
        }
        let fresh = self.request_token(installation_id).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets `token` after GitHub refused it (401), unless another caller already replaced it.
    pub async fn invalidate(&self, installation_id: u64, token: &Secret) {
        let slot = self.slot(installation_id);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| &c.token == token) {
            *cached = None;
        }
    }

    /// How many tokens were requested from GitHub so far (for benchmarks and tests).
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn request_token(&self, installation_id: u64) -> Result<CachedToken, GitHubAppError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let url = self
            .api_url
            .join(&format!("app/installations/{installation_id}/access_tokens"))
            .expect("a relative API path joins");
        let jwt = self.credentials.jwt(Utc::now())?;
        let response = self
            .http
            .post(url.clone())
            .bearer_auth(jwt.expose())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header("User-Agent", USER_AGENT)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| GitHubAppError::Unreachable { url: url.to_string(), reason: crate::error::error_chain(&e) })?;
        let status = response.status();
        if !status.is_success() {
            let message = github_message(&response.text().await.unwrap_or_default());
            return Err(GitHubAppError::Refused { installation_id, status, message });
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| GitHubAppError::BadAnswer(e.to_string()))?;
        Ok(CachedToken { token: Secret::new(answer.token), expires_at: answer.expires_at })
    }
}

/// GitHub's `message` from an error body, or the body itself, cut short.
pub fn github_message(body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    message.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_key_that_is_not_pem_and_names_the_secret() {
        let err = AppCredentials::from_pem("1", &Secret::new("not a key")).unwrap_err().to_string();
        assert!(err.contains("private-key"), "{err}");
        assert!(!err.contains("not a key"), "the key's text never appears: {err}");
    }

    #[test]
    fn github_messages_are_read_from_json_bodies() {
        assert_eq!(github_message(r#"{"message":"Bad credentials","documentation_url":"x"}"#), "Bad credentials");
        assert_eq!(github_message("  plain  "), "plain");
    }
}
