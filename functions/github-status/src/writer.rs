//! Writes one commit status to GitHub as the App's installation, with GitHub's faults handled as it asks; the same
//! calls ([`StatusWriter::send`]) carry the check runs of [`crate::checks`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde_json::json;
use shared::event::{CommitStatus, StatusEvent};
use shared::github_app::{github_message, InstallationTokens, API_VERSION, USER_AGENT};
use shared::retry::{retry_after, Backoff};

use crate::error::StatusError;

/// GitHub refuses longer descriptions with 422.
pub use shared::status::MAX_DESCRIPTION as MAX_DESCRIPTION_CHARS;

/// What became of one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// GitHub refused it for good (unknown SHA, no access…): logged, not retried.
    Rejected(String),
}

/// What GitHub answered a call, once its faults were handled.
#[derive(Debug)]
pub enum Sent {
    /// A 2xx answer, its body unread.
    Answered(reqwest::Response),
    /// Refused for good: the reason, and GitHub's status code when it answered one.
    Rejected(String, Option<StatusCode>),
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
    Rejected(String, Option<StatusCode>),
}

pub struct StatusWriter {
    api_url: Url,
    tokens: InstallationTokens,
    http: reqwest::Client,
    max_retries: u32,
    /// From 1 s, doubling, capped at `status_max_retry_wait`.
    backoff: Backoff,
    /// Installations GitHub asked to wait (rate limits are per installation), until when: later writes for them wait
    /// or are deferred without calling GitHub, so queued calls cannot hammer it while the window lasts.
    blocked: Mutex<HashMap<u64, Instant>>,
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
        Self { api_url, tokens, http, max_retries, backoff, blocked: Mutex::default() }
    }

    pub fn tokens(&self) -> &InstallationTokens {
        &self.tokens
    }

    /// Writes `status` for the commit in `event` as installation `installation_id`, finishing by `deadline` (the
    /// request's own time): a wait GitHub asks for is made here when it fits; otherwise the error says so (no queue
    /// replays the call: the CE queue-worker calls once).
    pub async fn write(
        &self,
        installation_id: u64,
        event: &StatusEvent,
        status: &CommitStatus,
        deadline: Instant,
    ) -> Result<WriteOutcome, StatusError> {
        let url = self.repo_url(event, &format!("statuses/{}", event.sha))?;
        let body = status_body(status);
        match self.send(installation_id, Method::POST, &url, Some(&body), &status.context, deadline).await? {
            Sent::Answered(_) => Ok(WriteOutcome::Written),
            Sent::Rejected(reason, _) => Ok(WriteOutcome::Rejected(reason)),
        }
    }

    /// `repos/{owner}/{repo}/{rest}` under the API's base URL.
    pub fn repo_url(&self, event: &StatusEvent, rest: &str) -> Result<Url, StatusError> {
        self.api_url
            .join(&format!("repos/{}/{}/{rest}", event.owner, event.repo))
            .map_err(|e| StatusError::BadRequest(format!("the repository name cannot form a URL: {e}")))
    }

    /// One call to GitHub's API as installation `installation_id`, with GitHub's faults handled as it asks: a
    /// refreshed token after a 401, waits it asks for within `deadline`, backoff after other faults; `label` names
    /// the status or check run in logs and errors.
    pub async fn send(
        &self,
        installation_id: u64,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        label: &str,
        deadline: Instant,
    ) -> Result<Sent, StatusError> {
        let mut tries = 0u32;
        let mut refreshed = false;
        loop {
            self.wait_out_block(installation_id, label, deadline).await?;
            tries += 1;
            let failure = match self.try_send(installation_id, &method, url, body, deadline).await {
                Ok(response) => return Ok(Sent::Answered(response)),
                Err(failure) => failure,
            };
            match failure {
                TryFailure::Rejected(reason, code) => return Ok(Sent::Rejected(reason, code)),
                TryFailure::Unauthorized(reason) if refreshed => {
                    return Ok(Sent::Rejected(reason, Some(StatusCode::UNAUTHORIZED)))
                }
                TryFailure::Unauthorized(_) => {
                    // GitHub revoked or expired the token early: one fresh token, and this try does not count.
                    refreshed = true;
                    tries -= 1;
                }
                TryFailure::Transient { reason, wait } => {
                    self.after_fault(installation_id, label, tries, reason, wait, deadline).await?;
                }
            }
        }
    }

    /// After a transient fault: GitHub's own wait is recorded for the installation (never shortened, or the next
    /// try would only be refused again), else a backoff is slept; past `max_retries` or the deadline, an error.
    async fn after_fault(
        &self,
        installation_id: u64,
        label: &str,
        tries: u32,
        reason: String,
        wait: Option<Duration>,
        deadline: Instant,
    ) -> Result<(), StatusError> {
        let context = label.to_owned();
        if let Some(asked) = wait {
            if tries > self.max_retries {
                return Err(StatusError::Deferred { context, reason, retry_after: asked, rate_limited: true });
            }
            // Jitter spreads the writes one window held, but never pushes a wait that fits past the bound.
            let asked = Backoff::asked_with_jitter(asked).min(self.backoff.max.max(asked));
            tracing::warn!(context = %label, try_number = tries, wait_ms = asked.as_millis() as u64, %reason, "GitHub asked to wait");
            self.block(installation_id, Instant::now() + asked);
            return Ok(());
        }
        if tries > self.max_retries {
            return Err(StatusError::GitHubUnavailable { context, tries, reason });
        }
        let wait = self.backoff.jittered(tries);
        if Instant::now() + wait > deadline {
            return Err(StatusError::Deferred { context, reason, retry_after: wait, rate_limited: false });
        }
        tracing::warn!(context = %label, try_number = tries, wait_ms = wait.as_millis() as u64, %reason, "GitHub fault, retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn block(&self, installation_id: u64, until: Instant) {
        let mut blocked = self.blocked.lock().expect("blocked installations lock");
        let entry = blocked.entry(installation_id).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Waits out GitHub's ask for this installation when it ends before `deadline` (or is at most
    /// `status_max_retry_wait`); otherwise the write fails at once (no call to GitHub) with the time left.
    async fn wait_out_block(&self, installation_id: u64, context: &str, deadline: Instant) -> Result<(), StatusError> {
        let until = {
            let mut blocked = self.blocked.lock().expect("blocked installations lock");
            match blocked.get(&installation_id) {
                Some(until) if *until > Instant::now() => *until,
                Some(_) => {
                    blocked.remove(&installation_id);
                    return Ok(());
                }
                None => return Ok(()),
            }
        };
        let left = until - Instant::now();
        if until > deadline || left > self.backoff.max {
            return Err(StatusError::Deferred {
                context: context.to_owned(),
                reason: "GitHub's rate limit for this installation has not reset yet".into(),
                retry_after: left,
                rate_limited: true,
            });
        }
        tokio::time::sleep_until(until.into()).await;
        Ok(())
    }

    async fn try_send(
        &self,
        installation_id: u64,
        method: &Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        deadline: Instant,
    ) -> Result<reqwest::Response, TryFailure> {
        // A try that would outlast the request is not started: the answer would come after the 504.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TryFailure::Transient { reason: "no time left for another try".into(), wait: None });
        }
        let token = self.tokens.token(installation_id).await.map_err(|e| {
            if e.is_transient() {
                TryFailure::Transient { reason: e.to_string(), wait: None }
            } else {
                TryFailure::Rejected(e.to_string(), None)
            }
        })?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.expose())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header("User-Agent", USER_AGENT)
            .timeout(left.min(Duration::from_secs(30)));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TryFailure::Transient { reason: shared::error::error_chain(&e), wait: None })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
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
        Err(TryFailure::Rejected(message, Some(status)))
    }
}

/// The JSON GitHub takes for `status`: the description cut to 140 characters, a target URL only if http(s).
fn status_body(status: &CommitStatus) -> serde_json::Value {
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
    body
}

/// A 403 that is a rate limit rather than a refusal.
fn is_rate_limited(headers: &HeaderMap) -> bool {
    headers.contains_key("retry-after") || header_u64(headers, "x-ratelimit-remaining") == Some(0)
}

/// The wait GitHub asks for: `retry-after` (seconds or a date), else until `x-ratelimit-reset` when the limit is
/// used up.
fn requested_wait(headers: &HeaderMap) -> Option<Duration> {
    if let Some(asked) = retry_after(headers) {
        return Some(asked);
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

pub use shared::status::cut_description;

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
