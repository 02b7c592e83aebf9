//! Writes one commit status to GitHub as the App's installation, with GitHub's faults handled as it asks.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde_json::json;
use shared::event::{CommitStatus, StatusEvent};
use shared::github_app::{github_message, InstallationTokens, API_VERSION, USER_AGENT};
use shared::retry::Backoff;

use crate::error::StatusError;

/// GitHub refuses longer descriptions with 422.
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// What became of one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// GitHub refused it for good (unknown SHA, no access…): logged, not retried.
    Rejected(String),
}

/// Why one try failed.
enum TryFailure {
    /// Worth another try, after GitHub's requested wait when it gave one.
    Transient {
        reason: String,
        wait: Option<Duration>,
    },
    /// The token was refused: refresh it once.
    Unauthorized(String),
    Rejected(String),
}

pub struct StatusWriter {
    api_url: Url,
    tokens: InstallationTokens,
    http: reqwest::Client,
    max_retries: u32,
    /// From 1 s, doubling, capped at `status_max_retry_wait`; GitHub's `Retry-After` wins within the cap.
    backoff: Backoff,
}

impl StatusWriter {
    pub fn new(
        api_url: Url,
        tokens: InstallationTokens,
        http: reqwest::Client,
        max_retries: u32,
        max_retry_wait: Duration,
    ) -> Self {
        let backoff = Backoff::new(Duration::from_secs(1), max_retry_wait);
        Self { api_url, tokens, http, max_retries, backoff }
    }

    pub fn tokens(&self) -> &InstallationTokens {
        &self.tokens
    }

    /// Writes `status` for the commit in `event` as installation `installation_id`.
    pub async fn write(
        &self,
        installation_id: u64,
        event: &StatusEvent,
        status: &CommitStatus,
    ) -> Result<WriteOutcome, StatusError> {
        let url = self
            .api_url
            .join(&format!("repos/{}/{}/statuses/{}", event.owner, event.repo, event.sha))
            .map_err(|e| StatusError::BadRequest(format!("the repository name cannot form a URL: {e}")))?;
        let mut body = json!({
            "state": status.state.as_str(),
            "context": status.context,
            "description": cut_description(&status.description),
        });
        if let Some(target_url) = checked_target_url(status.target_url.as_deref()) {
            body["target_url"] = target_url.into();
        } else if let Some(dropped) = &status.target_url {
            tracing::warn!(context = %status.context, target_url = %dropped, "target_url dropped: only http and https URLs are linked");
        }
        let mut tries = 0u32;
        let mut refreshed = false;
        loop {
            tries += 1;
            let failure = match self.try_write(installation_id, &url, &body).await {
                Ok(()) => return Ok(WriteOutcome::Written),
                Err(failure) => failure,
            };
            match failure {
                TryFailure::Rejected(reason) => return Ok(WriteOutcome::Rejected(reason)),
                TryFailure::Unauthorized(reason) if refreshed => return Ok(WriteOutcome::Rejected(reason)),
                TryFailure::Unauthorized(_) => {
                    // GitHub revoked or expired the token early: one fresh token, and this try does not count.
                    refreshed = true;
                    tries -= 1;
                }
                TryFailure::Transient { reason, wait } => {
                    if tries > self.max_retries {
                        return Err(StatusError::GitHubUnavailable { context: status.context.clone(), tries, reason });
                    }
                    let wait = self.backoff.wait_or_asked(tries, wait);
                    tracing::warn!(context = %status.context, try_number = tries, wait_ms = wait.as_millis() as u64, %reason, "GitHub fault, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn try_write(&self, installation_id: u64, url: &Url, body: &serde_json::Value) -> Result<(), TryFailure> {
        let token = self.tokens.token(installation_id).await.map_err(|e| {
            if e.is_transient() {
                TryFailure::Transient { reason: e.to_string(), wait: None }
            } else {
                TryFailure::Rejected(e.to_string())
            }
        })?;
        let response = self
            .http
            .post(url.clone())
            .bearer_auth(token.expose())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header("User-Agent", USER_AGENT)
            .json(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| TryFailure::Transient { reason: shared::gateway::error_chain(&e), wait: None })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let message = format!("{status}: {}", github_message(&response.text().await.unwrap_or_default()));
        if status == StatusCode::UNAUTHORIZED {
            self.tokens.invalidate(installation_id, &token).await;
            return Err(TryFailure::Unauthorized(message));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(TryFailure::Transient { reason: message, wait: requested_wait(&headers) });
        }
        if status == StatusCode::FORBIDDEN && is_rate_limited(&headers) {
            return Err(TryFailure::Transient { reason: message, wait: requested_wait(&headers) });
        }
        Err(TryFailure::Rejected(message))
    }
}

/// A 403 that is a rate limit rather than a refusal.
fn is_rate_limited(headers: &HeaderMap) -> bool {
    headers.contains_key("retry-after") || header_u64(headers, "x-ratelimit-remaining") == Some(0)
}

/// The wait GitHub asks for: `retry-after` seconds, else until `x-ratelimit-reset` when the limit is used up.
fn requested_wait(headers: &HeaderMap) -> Option<Duration> {
    if let Some(seconds) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
        let reset = header_u64(headers, "x-ratelimit-reset")?;
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    None
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// At most 140 characters, cut on a character boundary with an ellipsis.
pub fn cut_description(description: &str) -> String {
    if description.chars().count() <= MAX_DESCRIPTION_CHARS {
        return description.to_owned();
    }
    let mut cut: String = description.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The URL when it is an absolute http or https URL; anything else is not linked from a status.
pub fn checked_target_url(url: Option<&str>) -> Option<String> {
    let parsed = Url::parse(url?.trim()).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_descriptions_are_cut_on_a_character_boundary() {
        let long = "é".repeat(300);
        let cut = cut_description(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
        assert_eq!(cut_description("short"), "short");
        let exact = "x".repeat(140);
        assert_eq!(cut_description(&exact), exact);
    }

    #[test]
    fn only_http_and_https_urls_are_linked() {
        assert_eq!(
            checked_target_url(Some("https://cloud.example.com/function/octo-fn")).as_deref(),
            Some("https://cloud.example.com/function/octo-fn")
        );
        assert_eq!(checked_target_url(Some("javascript:alert(1)")), None);
        assert_eq!(checked_target_url(Some("/relative")), None);
        assert_eq!(checked_target_url(None), None);
    }
}
