//! Where a page's facts come from: the gateway's `/system/functions` (the functions and who owns them), the
//! `metrics` and `function-logs` functions (called as the signed-in user, with their session as the bearer), and
//! the build-log store.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use shared::error::error_chain;
use shared::functions::{FUNCTION_LOGS, METRICS};
use shared::gateway::{GatewayClient, GatewayError};
use shared::openfaas::{labels, FunctionStatus};
use shared::ownership::{owned_function, AccessError};
use shared::session::Session;

use crate::error::PageError;

/// The most of a log tail a page reads: a function prints what it likes, and one page must not hold it all.
const MAX_LOG_TAIL_BYTES: usize = 1 << 20;

/// `response`'s body up to `limit` bytes (the rest is not read); lines cut at the limit are dropped by the caller's
/// JSON parse.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{FUNCTION_LOGS}: {}", error_chain(&e)))? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// How many runtime log lines a function's page shows.
pub const LOG_TAIL: u32 = 100;
/// How long metrics or a log tail may take before the page shows them as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub use shared::invocations::Invocations;

/// One line of `function-logs`' NDJSON (OpenFaaS' logs API).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogLine {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub instance: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub text: String,
}

/// A cloud function the session may see, with what its labels say.
#[derive(Debug, Clone)]
pub struct OwnedFunction {
    pub status: FunctionStatus,
    /// The GitHub login it was deployed for.
    pub owner: String,
    /// The GitHub account id it was deployed for (0 when its labels have none): its build logs are kept under it.
    pub owner_id: u64,
    pub repo: String,
    /// The function's name in stack.yml (its service name without the owner's prefix).
    pub function: String,
    pub sha: String,
    /// The preview's tag when this is a preview's function (`shared::naming::preview_tag`).
    pub preview: Option<String>,
    /// What the preview is of, for people (`pull request #12`, `branch feature/x`).
    pub preview_of: Option<String>,
}

impl OwnedFunction {
    /// The name its builds are kept under in the log store: the function's, or `<function>__<tag>` for a preview.
    pub fn log_name(&self) -> String {
        match &self.preview {
            Some(tag) => shared::naming::preview_log_name(&self.function, tag),
            None => self.function.clone(),
        }
    }

    /// What the labels of a function the session may see ([`Session::may_see`]) say.
    fn read(status: FunctionStatus) -> Self {
        let owner = status.label(labels::OWNER).or_else(|| status.label(labels::GIT_OWNER)).unwrap_or_default();
        let owner = owner.to_owned();
        let repo = status.repo().unwrap_or_default().to_owned();
        let sha = status.label(labels::SHA).or_else(|| status.label(labels::GIT_SHA)).unwrap_or_default().to_owned();
        // The last release's `<owner>-<function>` when the name is not `<owner>-<function>-<n>`, until redeployed.
        let preview = status.preview().filter(|tag| shared::naming::is_preview_tag(tag)).map(str::to_owned);
        let preview_of = preview
            .as_ref()
            .map(|tag| status.annotation(labels::PREVIEW_OF).map_or_else(|| format!("preview {tag}"), str::to_owned));
        let function = if let Some((_, function, _)) = shared::naming::parse_preview_service_name(&status.name) {
            function.to_owned()
        } else if let Some((_, function)) = shared::naming::parse_service_name(&status.name) {
            function.to_owned()
        } else {
            let prefix = format!("{}-", owner.to_ascii_lowercase());
            status.name.strip_prefix(&prefix).unwrap_or(&status.name).to_owned()
        };
        let owner_id = status.owner_id().unwrap_or_default();
        Self { status, owner, owner_id, repo, function, sha, preview, preview_of }
    }
}

/// The calls a page makes.
#[derive(Debug, Clone)]
pub struct Sources {
    gateway: GatewayClient,
}

impl Sources {
    pub fn new(gateway: GatewayClient) -> Self {
        Self { gateway }
    }

    /// Every cloud function of the session's accounts (one `/system/functions?owner=` for each, so a gateway that
    /// selects by owner sends only theirs), by name.
    pub async fn functions_of(&self, session: &Session) -> Result<Vec<OwnedFunction>, GatewayError> {
        // By name: each function kept once.
        let mut seen: std::collections::BTreeMap<String, FunctionStatus> = std::collections::BTreeMap::new();
        for account in session.accounts() {
            let listed = self.gateway.list_functions_of(&account.login, Some(account.id)).await?;
            // Another owner's function in the answer: the gateway ignored the query (OpenFaaS's does) and listed
            // every function, which then serves every account at once.
            let whole = listed.iter().any(|f| !f.is_cloud_function_of(&account.login, Some(account.id)));
            for function in listed.into_iter().filter(|f| session.may_see(f)) {
                seen.entry(function.name.clone()).or_insert(function);
            }
            if whole {
                break;
            }
        }
        let functions: Vec<FunctionStatus> = seen.into_values().collect();
        // Readiness as `GET /system/function/NAME` counts it where the list does not (faasd's list never does).
        let mut owned: Vec<OwnedFunction> =
            self.gateway.with_readiness(functions).await.into_iter().map(OwnedFunction::read).collect();
        owned.sort_by(|a, b| a.status.name.cmp(&b.status.name));
        Ok(owned)
    }

    /// The function `service` if the session may see it, by the rule function-logs and metrics apply too
    /// ([`shared::ownership`]): 404 when none is deployed, 403 when it is another owner's, the platform's own, or one
    /// deployed by hand.
    pub async fn function_of(&self, session: &Session, service: &str) -> Result<OwnedFunction, PageError> {
        if !shared::naming::is_dns1123_label(service) {
            return Err(PageError::NotFound(format!("there is no function `{service}`")));
        }
        let status = owned_function(&self.gateway, session, service).await.map_err(|error| match error {
            AccessError::BadName(_) | AccessError::NotFound(_) => {
                PageError::NotFound(format!("there is no function `{service}`"))
            }
            AccessError::Forbidden(_) => PageError::NotYours(service.to_owned()),
            AccessError::Gateway(error) => PageError::Gateway(error),
        })?;
        Ok(OwnedFunction::read(status))
    }

    /// The last hour's invocations of `service`, or why they are unavailable.
    pub async fn invocations(&self, service: &str, token: &str) -> Result<Invocations, String> {
        let response = self.call(METRICS, &[("name", service), ("window", "1h")], token, Some(CALL_TIMEOUT)).await?;
        response.json().await.map_err(|e| format!("{METRICS} answered something else: {e}"))
    }

    /// The last [`LOG_TAIL`] lines `service` printed, or why they are unavailable.
    pub async fn log_tail(&self, service: &str, token: &str) -> Result<Vec<LogLine>, String> {
        let tail = LOG_TAIL.to_string();
        let response =
            self.call(FUNCTION_LOGS, &[("name", service), ("tail", &tail)], token, Some(CALL_TIMEOUT)).await?;
        let body = read_bounded(response, MAX_LOG_TAIL_BYTES).await?;
        Ok(body.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect())
    }

    /// `function-logs` as it answers, to stream on (`follow=true` keeps it open); no timeout past the connection.
    pub async fn logs_stream(&self, query: &[(&str, &str)], token: &str) -> Result<reqwest::Response, String> {
        self.call(FUNCTION_LOGS, query, token, None).await
    }

    /// `GET {gateway_url}function/<name>?query` as the session's user; an answer other than 2xx is an error.
    async fn call(
        &self,
        name: &str,
        query: &[(&str, &str)],
        token: &str,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, String> {
        let mut url: Url = self.gateway.base_url().join(&format!("function/{name}")).expect("a relative path joins");
        url.query_pairs_mut().extend_pairs(query);
        let mut request = self.gateway.http().get(url).bearer_auth(token);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(|e| format!("{name} could not be reached: {}", error_chain(&e)))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(format!("{name} answered {}", response.status()))
        }
    }
}
