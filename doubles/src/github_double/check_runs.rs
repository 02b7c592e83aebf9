//! The double's check runs: `POST /repos/{owner}/{repo}/check-runs`, `PATCH …/check-runs/{id}` and
//! `GET …/commits/{ref}/check-runs`, refusing what GitHub refuses (a missing `name` or `head_sha`, an unknown
//! `status` or `conclusion`, `completed` without a conclusion, an `output` without `title` and `summary` or with a
//! field over 65,535 characters, more than 50 annotations), and a little more: a `conclusion` beside a `status`
//! other than `completed` is refused (GitHub would silently complete the run), so a writer's confusion shows.
//! Only an installation token works, as only Apps may write checks. Updating a completed run back to `queued` or
//! `in_progress` clears its conclusion: GitHub leaves a re-requested run as it is for the App to reset.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{bearer, fault_answer, github_error, CheckRunCall, DoubleState, Endpoint, GitHubDouble, RecordedCheckRun};

/// GitHub's limit on each of `output.title`, `summary` and `text`.
pub const MAX_OUTPUT_CHARS: usize = 65_535;
/// GitHub's limit on annotations in one request.
pub const MAX_ANNOTATIONS: usize = 50;
const STATUSES: &[&str] = &["queued", "in_progress", "completed"];
const CONCLUSIONS: &[&str] = &["action_required", "cancelled", "failure", "neutral", "success", "skipped", "timed_out"];

/// A refusal: the status and GitHub's message.
type Refusal = (StatusCode, String);

#[derive(Deserialize, Default)]
struct Output {
    title: Option<String>,
    summary: Option<String>,
    text: Option<String>,
    #[serde(default)]
    annotations: Vec<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct CheckRunBody {
    name: Option<String>,
    head_sha: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    details_url: Option<String>,
    external_id: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    output: Option<Output>,
}

fn unprocessable(message: impl Into<String>) -> Refusal {
    (StatusCode::UNPROCESSABLE_ENTITY, message.into())
}

/// The installation whose valid token the request carries, when it may reach `owner`'s repositories.
pub(super) fn authorize(state: &DoubleState, headers: &HeaderMap, owner: &str) -> Result<u64, Refusal> {
    if !headers.contains_key("user-agent") {
        return Err((StatusCode::FORBIDDEN, "Request forbidden by administrative rules: no User-Agent".into()));
    }
    let token = bearer(headers).ok_or((StatusCode::UNAUTHORIZED, "Requires authentication".into()))?;
    let installation_id = match state.tokens.get(token) {
        Some(issued) if issued.expires_at > Utc::now() => issued.installation_id,
        _ => return Err((StatusCode::UNAUTHORIZED, "Bad credentials".into())),
    };
    let account = state.installations.get(&installation_id).map(String::as_str);
    if account != Some("*") && account != Some(owner.to_ascii_lowercase().as_str()) {
        return Err((StatusCode::NOT_FOUND, "Not Found".into()));
    }
    Ok(installation_id)
}

/// The checks every create and update makes; `creating` adds the required `name` and `head_sha`.
fn validate(body: &CheckRunBody, creating: bool) -> Result<(), Refusal> {
    if creating {
        if body.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(unprocessable("Invalid request: \"name\" wasn't supplied."));
        }
        let sha = body.head_sha.as_deref().unwrap_or_default();
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unprocessable(format!("No commit found for SHA: {sha}")));
        }
    }
    if let Some(status) = body.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(unprocessable(format!("Invalid request: status `{status}` is not a member of {STATUSES:?}")));
    }
    if let Some(conclusion) = body.conclusion.as_deref().filter(|c| !CONCLUSIONS.contains(c)) {
        return Err(unprocessable(format!("Invalid request: conclusion `{conclusion}` is not a member of the list")));
    }
    let completed = body.status.as_deref() == Some("completed");
    if (completed || body.completed_at.is_some()) && body.conclusion.is_none() {
        return Err(unprocessable("Invalid request: conclusion is required when the run is completed"));
    }
    if body.conclusion.is_some() && body.status.as_deref().is_some_and(|s| s != "completed") {
        return Err(unprocessable("Invalid request: a conclusion needs status `completed`"));
    }
    for (name, time) in [("started_at", &body.started_at), ("completed_at", &body.completed_at)] {
        if time.as_deref().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_err()) {
            return Err(unprocessable(format!("Invalid request: `{name}` is not an ISO 8601 time")));
        }
    }
    if let Some(url) = body.details_url.as_deref() {
        let http = url.starts_with("http://") || url.starts_with("https://");
        if !http || url.contains(char::is_whitespace) {
            return Err(unprocessable("Invalid request: `details_url` is not an http(s) URL"));
        }
    }
    validate_output(body.output.as_ref())
}

fn validate_output(output: Option<&Output>) -> Result<(), Refusal> {
    let Some(output) = output else { return Ok(()) };
    if output.title.is_none() || output.summary.is_none() {
        return Err(unprocessable("Invalid request: `output` needs `title` and `summary`"));
    }
    for (name, value) in [("title", &output.title), ("summary", &output.summary), ("text", &output.text)] {
        if value.as_deref().is_some_and(|v| v.chars().count() > MAX_OUTPUT_CHARS) {
            return Err(unprocessable(format!("Invalid request: output.{name} is longer than {MAX_OUTPUT_CHARS}")));
        }
    }
    if output.annotations.len() > MAX_ANNOTATIONS {
        return Err(unprocessable(format!("Invalid request: more than {MAX_ANNOTATIONS} annotations")));
    }
    Ok(())
}

/// Applies a valid body to `run`: a conclusion completes it, a `queued`/`in_progress` status reopens it.
fn apply(run: &mut RecordedCheckRun, body: CheckRunBody) {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if let Some(name) = body.name {
        run.name = name;
    }
    if let Some(status) = body.status {
        run.status = status;
    }
    if body.conclusion.is_some() {
        run.status = "completed".into();
        run.conclusion = body.conclusion;
        run.completed_at = Some(body.completed_at.unwrap_or_else(|| now.clone()));
    } else if run.status != "completed" {
        run.conclusion = None;
        run.completed_at = None;
    }
    if body.details_url.is_some() {
        run.details_url = body.details_url;
    }
    if body.external_id.is_some() {
        run.external_id = body.external_id;
    }
    if let Some(started_at) = body.started_at {
        run.started_at = Some(started_at);
    } else if run.started_at.is_none() && run.status != "queued" {
        run.started_at = Some(now);
    }
    if let Some(output) = body.output {
        run.title = output.title;
        run.summary = output.summary;
        run.text = output.text;
    }
}

fn run_json(run: &RecordedCheckRun) -> serde_json::Value {
    let repository = format!("https://api.github.com/repos/{}/{}", run.owner, run.repo);
    json!({
        "id": run.id,
        "node_id": format!("CR_{}", run.id),
        "url": format!("{repository}/check-runs/{}", run.id),
        "html_url": format!("https://github.com/{}/{}/runs/{}", run.owner, run.repo, run.id),
        "check_suite": {"id": 1},
        "pull_requests": [],
        "name": run.name,
        "head_sha": run.head_sha,
        "status": run.status,
        "conclusion": run.conclusion,
        "external_id": run.external_id,
        "details_url": run.details_url,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "output": {"title": run.title, "summary": run.summary, "text": run.text, "annotations_count": 0},
        "app": {"id": 1},
    })
}

/// Answers `result` and records the call.
fn answer(
    double: &GitHubDouble,
    method: &str,
    path: String,
    result: Result<(StatusCode, serde_json::Value), Refusal>,
) -> Response {
    let (answered, message, response) = match result {
        Ok((status, body)) => (status, None, (status, Json(body)).into_response()),
        Err((status, message)) => (status, Some(message.clone()), github_error(status, &message)),
    };
    double.lock().check_run_calls.push(CheckRunCall {
        method: method.to_owned(),
        path,
        answered: answered.as_u16(),
        message,
    });
    response
}

fn parse_body(body: &[u8]) -> Result<CheckRunBody, Refusal> {
    serde_json::from_slice(body).map_err(|_| (StatusCode::BAD_REQUEST, "Problems parsing JSON".to_owned()))
}

pub(super) async fn create(
    State(double): State<GitHubDouble>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/check-runs");
    if let Some(fault) = fault_answer(&double, Endpoint::CheckRuns).await {
        return fault;
    }
    let result = (|| {
        let mut state = double.lock();
        let installation_id = authorize(&state, &headers, &owner)?;
        let body = parse_body(&body)?;
        validate(&body, true)?;
        let id = state.next_id;
        state.next_id += 1;
        let mut run = RecordedCheckRun {
            id,
            owner: owner.clone(),
            repo: repo.clone(),
            name: String::new(),
            head_sha: body.head_sha.clone().unwrap_or_default().to_ascii_lowercase(),
            status: "queued".into(),
            conclusion: None,
            external_id: None,
            details_url: None,
            started_at: None,
            completed_at: None,
            title: None,
            summary: None,
            text: None,
            installation_id,
            updates: 0,
        };
        apply(&mut run, body);
        let json = run_json(&run);
        state.check_runs.insert(id, run);
        Ok((StatusCode::CREATED, json))
    })();
    answer(&double, "POST", path, result)
}

pub(super) async fn update(
    State(double): State<GitHubDouble>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/check-runs/{id}");
    if let Some(fault) = fault_answer(&double, Endpoint::CheckRuns).await {
        return fault;
    }
    let result = (|| {
        let mut state = double.lock();
        let installation_id = authorize(&state, &headers, &owner)?;
        let body = parse_body(&body)?;
        validate(&body, false)?;
        let run = state
            .check_runs
            .get_mut(&id)
            .filter(|r| r.owner.eq_ignore_ascii_case(&owner) && r.repo.eq_ignore_ascii_case(&repo))
            .ok_or((StatusCode::NOT_FOUND, "Not Found".to_owned()))?;
        apply(run, body);
        run.installation_id = installation_id;
        run.updates += 1;
        Ok((StatusCode::OK, run_json(run)))
    })();
    answer(&double, "PATCH", path, result)
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    check_name: Option<String>,
    status: Option<String>,
    filter: Option<String>,
    per_page: Option<usize>,
    page: Option<usize>,
}

pub(super) async fn list(
    State(double): State<GitHubDouble>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/commits/{sha}/check-runs");
    if let Some(fault) = fault_answer(&double, Endpoint::CheckRuns).await {
        return fault;
    }
    let result = (|| {
        authorize(&double.lock(), &headers, &owner)?;
        let mut runs = double.check_runs(&owner, &repo, &sha);
        runs.reverse();
        runs.retain(|r| query.check_name.as_ref().is_none_or(|n| n == &r.name));
        runs.retain(|r| query.status.as_ref().is_none_or(|s| s == &r.status));
        if query.filter.as_deref() != Some("all") {
            // `latest` (the default): the newest run of each name.
            let mut seen = std::collections::HashSet::new();
            runs.retain(|r| seen.insert(r.name.clone()));
        }
        let per_page = query.per_page.unwrap_or(30).clamp(1, 100);
        let page = query.page.unwrap_or(1).max(1);
        let total = runs.len();
        let listed: Vec<_> = runs.iter().skip((page - 1) * per_page).take(per_page).map(run_json).collect();
        Ok((StatusCode::OK, json!({ "total_count": total, "check_runs": listed })))
    })();
    answer(&double, "GET", path, result)
}
