//! A GitHub API double: the part of GitHub's REST API that github-status and git-tar use, behaving as GitHub
//! documents it. The local stack runs it as its GitHub; the tests run it to check the App's authentication.
//!
//! It verifies the App's JWT (RS256 signature against the App's public key, `iat`, `exp`, `iss`), issues
//! installation tokens that expire, checks the bearer token and its installation on every status write, records
//! statuses and lists them newest first, and can be told to fail (5xx, 429 with `retry-after`, secondary rate
//! limits, a 401, a slow answer), once per queued fault or for a whole rate-limit window. Check runs (create,
//! update, list for a commit) are checked as GitHub documents them (see `check_runs`) and recorded. It also serves
//! GitHub's OAuth web flow for a registered OAuth App, and `/user` and `/user/orgs` for the tokens it issues (see
//! `oauth`), so the local stack can sign people in. Accounts can be renamed, freeing their login for a new account
//! (see [`Accounts`]), so that a recycled login can be tried end to end. Pull requests' comments are created, edited
//! and listed (see `comments`), for the previews' one comment per pull request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use serde_json::json;
pub use shared::app_key::{to_pkcs8, AppKey};

mod accounts;
mod check_runs;
mod comments;
mod oauth;

pub use accounts::{AccountError, Accounts};
pub use comments::RecordedComment;

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /app/installations/{id}/access_tokens`
    AccessTokens,
    /// `POST /repos/{owner}/{repo}/statuses/{sha}`
    Statuses,
    /// `POST /repos/{owner}/{repo}/check-runs`, `PATCH …/check-runs/{id}`, `GET …/commits/{ref}/check-runs`
    CheckRuns,
}

/// A fault to answer with instead of the real thing, once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with a GitHub-style error body (500, 502, 422, 404…).
    Status(u16),
    /// 429 with `retry-after: N` seconds.
    TooManyRequests { retry_after: u64 },
    /// 403 "secondary rate limit" with `retry-after: N` seconds.
    SecondaryRateLimit { retry_after: u64 },
    /// 403 with `x-ratelimit-remaining: 0` and a reset time `reset_in` seconds ahead.
    PrimaryRateLimit { reset_in: u64 },
    /// 401 "Bad credentials", as when a token was revoked.
    Unauthorized,
    /// Waits this long, then answers normally.
    Delay(Duration),
}

/// How an endpoint answers while a rate-limit window lasts ([`GitHubDouble::rate_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// 429 with `retry-after`: the seconds left in the window.
    TooManyRequests,
    /// 403 "secondary rate limit" with `retry-after`.
    Secondary,
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` at the window's end.
    Primary,
}

/// A status as the double recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedStatus {
    pub id: u64,
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub created_at: String,
    /// The installation whose token wrote it.
    pub installation_id: u64,
    /// The `X-GitHub-Api-Version` the writer pinned, if any.
    pub api_version: Option<String>,
}

/// A check run as the double keeps it: GitHub's fields, and the installation that wrote it last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCheckRun {
    pub id: u64,
    pub owner: String,
    pub repo: String,
    pub name: String,
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    pub conclusion: Option<String>,
    pub external_id: Option<String>,
    pub details_url: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    pub installation_id: u64,
    /// How many times it was updated after its creation.
    pub updates: u32,
}

/// One call to a check-run route and the status it was answered with, refusals included, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRunCall {
    pub method: String,
    pub path: String,
    pub answered: u16,
    /// GitHub's `message` when the call was refused.
    pub message: Option<String>,
}

struct IssuedToken {
    installation_id: u64,
    expires_at: DateTime<Utc>,
}

struct DoubleState {
    app_id: String,
    public_key: DecodingKey,
    token_lifetime: chrono::TimeDelta,
    /// Installation id → the account (owner login, lower-case) it is installed on.
    installations: HashMap<u64, String>,
    tokens: HashMap<String, IssuedToken>,
    /// `(owner, repo, sha)` lower-cased → statuses, oldest first.
    statuses: HashMap<(String, String, String), Vec<RecordedStatus>>,
    /// Every check run, by id (ids are shared with statuses, as GitHub's are unique across a repository).
    check_runs: HashMap<u64, RecordedCheckRun>,
    check_run_calls: Vec<CheckRunCall>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    /// Rate-limit windows: every request to the endpoint is refused until the instant, as GitHub does.
    limited: HashMap<Endpoint, (RateLimit, std::time::Instant)>,
    token_requests: u64,
    status_requests: u64,
    next_id: u64,
    /// Issue and pull-request comments, by id (see `comments`).
    comments: HashMap<u64, RecordedComment>,
    /// OAuth Apps, authorization codes and user tokens.
    oauth: oauth::OAuthState,
    /// Which account each login is, and where renames are kept, if anywhere.
    accounts: Accounts,
    accounts_file: Option<std::path::PathBuf>,
}

/// The double's state; cheap to clone, shared with its router.
#[derive(Clone)]
pub struct GitHubDouble {
    state: Arc<Mutex<DoubleState>>,
}

impl GitHubDouble {
    /// A double for the App `app_id` whose public key is `public_pem` (SPKI or PKCS#1 PEM).
    pub fn new(app_id: &str, public_pem: &str) -> Self {
        let public_key = DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("a valid RSA public key PEM");
        Self {
            state: Arc::new(Mutex::new(DoubleState {
                app_id: app_id.to_owned(),
                public_key,
                token_lifetime: chrono::TimeDelta::hours(1),
                installations: HashMap::new(),
                tokens: HashMap::new(),
                statuses: HashMap::new(),
                check_runs: HashMap::new(),
                check_run_calls: Vec::new(),
                faults: HashMap::new(),
                limited: HashMap::new(),
                token_requests: 0,
                status_requests: 0,
                next_id: 1,
                comments: HashMap::new(),
                oauth: oauth::OAuthState::default(),
                accounts: Accounts::default(),
                accounts_file: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DoubleState> {
        self.state.lock().expect("GitHub double lock")
    }

    /// Installs the App on `owner`'s account as installation `id`; `*` stands for every account (the local stack).
    pub fn add_installation(&self, id: u64, owner: &str) {
        self.lock().installations.insert(id, owner.to_ascii_lowercase());
    }

    /// Keeps the accounts' renames in `path` (read now, written after each rename), where the local stack's
    /// commands find them too.
    pub fn keep_accounts_in(&self, path: &std::path::Path) -> Result<(), AccountError> {
        let accounts = Accounts::load(path)?;
        let mut state = self.lock();
        state.accounts = accounts;
        state.accounts_file = Some(path.to_owned());
        Ok(())
    }

    /// The account id behind `login` now.
    pub fn account_id_of(&self, login: &str) -> u64 {
        self.lock().accounts.id_of(login)
    }

    /// Renames `old`'s account to `new` (see [`Accounts::rename`]); answers the renamed account's id.
    pub fn rename_account(&self, old: &str, new: &str) -> Result<u64, AccountError> {
        let mut state = self.lock();
        let mut accounts = state.accounts.clone();
        let (moved, _) = accounts.rename(old, new)?;
        if let Some(path) = &state.accounts_file {
            accounts.save(path)?;
        }
        state.accounts = accounts;
        Ok(moved)
    }

    /// How long issued tokens live (GitHub: one hour).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = chrono::TimeDelta::from_std(lifetime).expect("a representable lifetime");
    }

    /// Queues faults for an endpoint, answered one per request before normal service resumes.
    pub fn push_faults(&self, endpoint: Endpoint, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.entry(endpoint).or_default().extend(faults);
    }

    /// Refuses every request to `endpoint` for `window` as a rate limit of this `kind`, each answer asking for the
    /// time left: unlike a queued [`Fault`], a client that comes back too early is refused again.
    pub fn rate_limit(&self, endpoint: Endpoint, kind: RateLimit, window: Duration) {
        self.lock().limited.insert(endpoint, (kind, std::time::Instant::now() + window));
    }

    /// Statuses written for a commit, newest first (as GitHub lists them).
    pub fn statuses(&self, owner: &str, repo: &str, sha: &str) -> Vec<RecordedStatus> {
        let key = (owner.to_ascii_lowercase(), repo.to_ascii_lowercase(), sha.to_ascii_lowercase());
        self.lock().statuses.get(&key).map(|s| s.iter().rev().cloned().collect()).unwrap_or_default()
    }

    /// The check runs of a commit, oldest first.
    pub fn check_runs(&self, owner: &str, repo: &str, sha: &str) -> Vec<RecordedCheckRun> {
        let state = self.lock();
        let mut runs: Vec<_> = state
            .check_runs
            .values()
            .filter(|r| {
                r.owner.eq_ignore_ascii_case(owner)
                    && r.repo.eq_ignore_ascii_case(repo)
                    && r.head_sha.eq_ignore_ascii_case(sha)
            })
            .cloned()
            .collect();
        runs.sort_by_key(|r| r.id);
        runs
    }

    /// Every call to the check-run routes, in order, with the status each was answered.
    pub fn check_run_calls(&self) -> Vec<CheckRunCall> {
        self.lock().check_run_calls.clone()
    }

    /// The comments of an issue or pull request, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, issue_number: u64) -> Vec<RecordedComment> {
        let state = self.lock();
        let mut comments: Vec<_> = state
            .comments
            .values()
            .filter(|c| {
                c.owner.eq_ignore_ascii_case(owner)
                    && c.repo.eq_ignore_ascii_case(repo)
                    && c.issue_number == issue_number
            })
            .cloned()
            .collect();
        comments.sort_by_key(|c| c.id);
        comments
    }

    /// How many installation tokens were issued or refused.
    pub fn token_requests(&self) -> u64 {
        self.lock().token_requests
    }

    /// How many status writes were attempted (including refused ones).
    pub fn status_requests(&self) -> u64 {
        self.lock().status_requests
    }

    /// The REST routes, to serve on their own or inside the local stack.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/app/installations/{id}/access_tokens", post(access_tokens))
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(create_status))
            .route("/repos/{owner}/{repo}/commits/{sha}/statuses", get(list_statuses))
            .route("/repos/{owner}/{repo}/commits/{sha}/status", get(combined_status))
            .route("/repos/{owner}/{repo}/check-runs", post(check_runs::create))
            .route("/repos/{owner}/{repo}/check-runs/{id}", axum::routing::patch(check_runs::update))
            .route("/repos/{owner}/{repo}/commits/{sha}/check-runs", get(check_runs::list))
            .route("/repos/{owner}/{repo}/issues/{issue_number}/comments", post(comments::create).get(comments::list))
            .route("/repos/{owner}/{repo}/issues/comments/{comment_id}", axum::routing::patch(comments::update))
            .route("/login/oauth/authorize", get(oauth::sign_in_page).post(oauth::authorize))
            .route("/login/oauth/access_token", post(oauth::access_token))
            .route("/user", get(oauth::user))
            .route("/user/orgs", get(oauth::user_orgs))
            .route("/users/{login}", get(accounts::user))
            .route("/admin/users/{login}", axum::routing::patch(accounts::rename))
            .fallback(|| async { github_error(StatusCode::NOT_FOUND, "Not Found") })
            .with_state(self.clone())
    }

    /// Serves the double on `127.0.0.1:<random port>` until the handle is dropped.
    pub async fn start(&self) -> std::io::Result<RunningDouble> {
        self.serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
    }

    /// Serves the double on an already bound listener until the handle is dropped.
    pub fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<RunningDouble> {
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.router();
        tokio::spawn(async move {
            let _ = shared::server::serve(listener, app, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(RunningDouble { address, double: self.clone(), _stop: stop })
    }

    fn take_fault(&self, endpoint: Endpoint) -> Option<Fault> {
        self.lock().faults.get_mut(&endpoint).and_then(VecDeque::pop_front)
    }
}

/// A double being served; stops when dropped.
pub struct RunningDouble {
    address: SocketAddr,
    double: GitHubDouble,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RunningDouble {
    /// The API base URL, ending in `/`, as `github_api_url` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    pub fn double(&self) -> &GitHubDouble {
        &self.double
    }
}

impl std::ops::Deref for RunningDouble {
    type Target = GitHubDouble;
    fn deref(&self) -> &GitHubDouble {
        &self.double
    }
}

/// The numeric id GitHub would give the account `owner`: one per login (case-insensitive), stable across runs, so
/// that ownership, decided by the id, separates the local stack's owners as it does GitHub's (FNV-1a, never 0).
/// `ofc push`'s events and the double's `/user` and `/user/orgs` agree on it until the account is renamed
/// ([`Accounts::id_of`] knows the renames).
pub fn account_id(owner: &str) -> u64 {
    let hash = owner
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    hash % 1_000_000_000 + 1
}

fn github_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }))).into_response()
}

/// The fault a rate-limit window stands for while it lasts, asking for the whole seconds left.
fn rate_limited(double: &GitHubDouble, endpoint: Endpoint) -> Option<Fault> {
    let (kind, until) = *double.lock().limited.get(&endpoint)?;
    let left = until.checked_duration_since(std::time::Instant::now()).filter(|left| !left.is_zero())?;
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Some(match kind {
        RateLimit::TooManyRequests => Fault::TooManyRequests { retry_after: seconds },
        RateLimit::Secondary => Fault::SecondaryRateLimit { retry_after: seconds },
        RateLimit::Primary => Fault::PrimaryRateLimit { reset_in: seconds },
    })
}

/// Answers a fault, or `None` to go on normally (after a delay, if that was the fault).
async fn fault_answer(double: &GitHubDouble, endpoint: Endpoint) -> Option<Response> {
    let fault = rate_limited(double, endpoint).or_else(|| double.take_fault(endpoint))?;
    let now = Utc::now().timestamp();
    Some(match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            github_error(status, status.canonical_reason().unwrap_or("error"))
        }
        Fault::TooManyRequests { retry_after } => {
            let mut response = github_error(StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded");
            response.headers_mut().insert("retry-after", retry_after.into());
            response
        }
        Fault::SecondaryRateLimit { retry_after } => {
            let mut response = github_error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            response.headers_mut().insert("retry-after", retry_after.into());
            response
        }
        Fault::PrimaryRateLimit { reset_in } => {
            let mut response = github_error(StatusCode::FORBIDDEN, "API rate limit exceeded for installation.");
            response.headers_mut().insert("x-ratelimit-remaining", 0.into());
            response.headers_mut().insert("x-ratelimit-reset", (now + i64::try_from(reset_in).unwrap_or(0)).into());
            response
        }
        Fault::Unauthorized => github_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
    })
}

#[derive(Deserialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
    iss: serde_json::Value,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .or_else(|| value.strip_prefix("token "))
        .map(str::trim)
}

/// Checks an App JWT as GitHub does; the error is GitHub's message.
fn verify_app_jwt(state: &DoubleState, jwt: &str) -> Result<(), &'static str> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<AppClaims>(jwt, &state.public_key, &validation)
        .map_err(|_| "A JSON web token could not be decoded")?
        .claims;
    let now = Utc::now().timestamp();
    if claims.iat > now + 60 {
        return Err("'Issued at' claim ('iat') must be an Integer representing a time in the past.");
    }
    if claims.exp > claims.iat + 660 || claims.exp > now + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future");
    }
    let issuer = match &claims.iss {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("'Issuer' claim ('iss') must be an Integer or a String"),
    };
    if issuer != state.app_id {
        return Err("Integration not found");
    }
    Ok(())
}

async fn access_tokens(State(double): State<GitHubDouble>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    double.lock().token_requests += 1;
    if let Some(answer) = fault_answer(&double, Endpoint::AccessTokens).await {
        return answer;
    }
    let Some(jwt) = bearer(&headers) else {
        return github_error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded");
    };
    let mut state = double.lock();
    if let Err(message) = verify_app_jwt(&state, jwt) {
        return github_error(StatusCode::UNAUTHORIZED, message);
    }
    if !state.installations.contains_key(&id) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let token = format!("ghs_{}", Alphanumeric.sample_string(&mut rand::thread_rng(), 36));
    let expires_at = Utc::now() + state.token_lifetime;
    state.tokens.insert(token.clone(), IssuedToken { installation_id: id, expires_at });
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": {"statuses": "write", "checks": "write", "contents": "read", "metadata": "read"},
            "repository_selection": "all",
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct NewStatus {
    state: String,
    #[serde(default)]
    target_url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    context: Option<String>,
}

async fn create_status(
    State(double): State<GitHubDouble>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    double.lock().status_requests += 1;
    if let Some(answer) = fault_answer(&double, Endpoint::Statuses).await {
        return answer;
    }
    if !headers.contains_key("user-agent") {
        return github_error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        );
    }
    let Some(token) = bearer(&headers).map(str::to_owned) else {
        return github_error(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let mut state = double.lock();
    let installation_id = match state.tokens.get(&token) {
        Some(issued) if issued.expires_at > Utc::now() => issued.installation_id,
        _ => return github_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    };
    // A token only reaches the repositories of its own installation's account; others look absent.
    let account = state.installations.get(&installation_id).map(String::as_str);
    if account != Some("*") && account != Some(owner.to_ascii_lowercase().as_str()) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let Ok(new) = serde_json::from_slice::<NewStatus>(&body) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    if !matches!(new.state.as_str(), "error" | "failure" | "pending" | "success") {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed: state is not included in the list");
    }
    if new.description.as_ref().is_some_and(|d| d.chars().count() > 140) {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: description is too long (maximum is 140 characters)",
        );
    }
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, &format!("No commit found for SHA: {sha}"));
    }
    let id = state.next_id;
    state.next_id += 1;
    let recorded = RecordedStatus {
        id,
        state: new.state,
        context: new.context.filter(|c| !c.is_empty()).unwrap_or_else(|| "default".into()),
        description: new.description,
        target_url: new.target_url,
        created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        installation_id,
        api_version: headers.get("x-github-api-version").and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    let key = (owner.to_ascii_lowercase(), repo.to_ascii_lowercase(), sha.to_ascii_lowercase());
    state.statuses.entry(key).or_default().push(recorded.clone());
    (StatusCode::CREATED, Json(status_json(&recorded))).into_response()
}

fn status_json(status: &RecordedStatus) -> serde_json::Value {
    json!({
        "url": format!("https://api.github.com/statuses/{}", status.id),
        "avatar_url": null,
        "node_id": format!("SC_{}", status.id),
        "creator": null,
        "id": status.id,
        "state": status.state,
        "description": status.description,
        "target_url": status.target_url,
        "context": status.context,
        "created_at": status.created_at,
        "updated_at": status.created_at,
    })
}

async fn list_statuses(
    State(double): State<GitHubDouble>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> Response {
    let statuses: Vec<_> = double.statuses(&owner, &repo, &sha).iter().map(status_json).collect();
    Json(statuses).into_response()
}

async fn combined_status(
    State(double): State<GitHubDouble>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> Response {
    let mut latest: Vec<RecordedStatus> = Vec::new();
    for status in double.statuses(&owner, &repo, &sha) {
        if !latest.iter().any(|s| s.context.eq_ignore_ascii_case(&status.context)) {
            latest.push(status);
        }
    }
    let state = if latest.iter().any(|s| s.state == "failure" || s.state == "error") {
        "failure"
    } else if !latest.is_empty() && latest.iter().all(|s| s.state == "success") {
        "success"
    } else {
        "pending"
    };
    let repository = format!("https://api.github.com/repos/{owner}/{repo}");
    Json(json!({
        "url": format!("{repository}/commits/{sha}/status"),
        "commit_url": format!("{repository}/commits/{sha}"),
        "repository": {"name": repo, "full_name": format!("{owner}/{repo}"), "owner": {"login": owner}, "url": repository},
        "state": state,
        "sha": sha,
        "total_count": latest.len(),
        "statuses": latest.iter().map(status_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn jwt(key: &AppKey, iat: i64, exp: i64, iss: &serde_json::Value) -> String {
        let claims = json!({ "iat": iat, "exp": exp, "iss": iss });
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn checks_the_app_jwt_as_github_does() {
        let key = AppKey::generate();
        let double = GitHubDouble::new("42", &key.public_pem);
        let state = double.lock();
        let now = Utc::now().timestamp();
        assert_eq!(verify_app_jwt(&state, &jwt(&key, now - 60, now + 540, &json!(42))), Ok(()));
        assert_eq!(verify_app_jwt(&state, &jwt(&key, now - 60, now + 540, &json!("42"))), Ok(()), "a string issuer");
        assert!(verify_app_jwt(&state, &jwt(&key, now - 60, now + 540, &json!(43))).is_err(), "another App");
        assert!(verify_app_jwt(&state, &jwt(&key, now - 60, now + 1200, &json!(42))).is_err(), "exp too far ahead");
        assert!(verify_app_jwt(&state, &jwt(&key, now - 700, now - 100, &json!(42))).is_err(), "expired");
        assert!(verify_app_jwt(&state, &jwt(&key, now + 300, now + 540, &json!(42))).is_err(), "iat in the future");
        let other = AppKey::generate();
        assert!(
            verify_app_jwt(&state, &jwt(&other, now - 60, now + 540, &json!(42))).is_err(),
            "signed with another key"
        );
    }
}
