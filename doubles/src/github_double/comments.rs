//! The double's issue comments (a pull request's conversation is its issue's): `POST
//! /repos/{owner}/{repo}/issues/{issue_number}/comments`, `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`
//! and `GET /repos/{owner}/{repo}/issues/{issue_number}/comments`, as GitHub documents them: `body` is required
//! (422 without it, or over 65,536 characters), an unknown comment is 404, and only a token of an installation on
//! the repository's account may write.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::check_runs::authorize;
use super::{github_error, DoubleState, GitHubDouble};

/// GitHub's limit on a comment's body.
pub const MAX_BODY_CHARS: usize = 65_536;

/// A comment as the double keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedComment {
    pub id: u64,
    pub owner: String,
    pub repo: String,
    pub issue_number: u64,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
    /// How many times it was edited after its creation.
    pub updates: u32,
    pub installation_id: u64,
}

#[derive(Deserialize)]
struct CommentBody {
    body: Option<String>,
}

/// The `body` of a create or update, or GitHub's refusal (its status and message).
fn body_of(raw: &[u8]) -> Result<String, (StatusCode, &'static str)> {
    let parsed: CommentBody =
        serde_json::from_slice(raw).map_err(|_| (StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
    let body = parsed.body.ok_or((StatusCode::UNPROCESSABLE_ENTITY, "Invalid request: \"body\" wasn't supplied."))?;
    if body.chars().count() > MAX_BODY_CHARS {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: body is too long (maximum is 65536 characters)",
        ));
    }
    Ok(body)
}

/// The installation a write is authorised for and the comment's new body, or GitHub's refusal.
fn authorized_write(
    state: &DoubleState,
    headers: &HeaderMap,
    owner: &str,
    raw: &[u8],
) -> Result<(u64, String), (StatusCode, String)> {
    let installation_id = authorize(state, headers, owner)?;
    let body = body_of(raw).map_err(|(status, message)| (status, message.to_owned()))?;
    Ok((installation_id, body))
}

fn comment_json(comment: &RecordedComment) -> serde_json::Value {
    let base = format!("https://api.github.com/repos/{}/{}", comment.owner, comment.repo);
    json!({
        "id": comment.id,
        "node_id": format!("IC_{}", comment.id),
        "url": format!("{base}/issues/comments/{}", comment.id),
        "html_url": format!("https://github.com/{}/{}/pull/{}#issuecomment-{}", comment.owner, comment.repo, comment.issue_number, comment.id),
        "issue_url": format!("{base}/issues/{}", comment.issue_number),
        "body": comment.body,
        "user": {"login": "openfaas-cloud[bot]", "id": 1, "type": "Bot"},
        "author_association": "NONE",
        "created_at": comment.created_at,
        "updated_at": comment.updated_at,
    })
}

fn refused((status, message): (StatusCode, String)) -> Response {
    github_error(status, &message)
}

pub(super) async fn create(
    State(double): State<GitHubDouble>,
    Path((owner, repo, issue_number)): Path<(String, String, u64)>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    let mut state = double.lock();
    let (installation_id, body) = match authorized_write(&state, &headers, &owner, &raw) {
        Ok(write) => write,
        Err(refusal) => return refused(refusal),
    };
    let id = state.next_id;
    state.next_id += 1;
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let comment = RecordedComment {
        id,
        owner: owner.to_ascii_lowercase(),
        repo: repo.to_ascii_lowercase(),
        issue_number,
        body,
        created_at: now.clone(),
        updated_at: now,
        updates: 0,
        installation_id,
    };
    state.comments.insert(id, comment.clone());
    (StatusCode::CREATED, Json(comment_json(&comment))).into_response()
}

pub(super) async fn update(
    State(double): State<GitHubDouble>,
    Path((owner, repo, comment_id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    let mut state = double.lock();
    let (installation_id, body) = match authorized_write(&state, &headers, &owner, &raw) {
        Ok(write) => write,
        Err(refusal) => return refused(refusal),
    };
    let Some(comment) = state
        .comments
        .get_mut(&comment_id)
        .filter(|c| c.owner.eq_ignore_ascii_case(&owner) && c.repo.eq_ignore_ascii_case(&repo))
    else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    comment.body = body;
    comment.updates += 1;
    comment.installation_id = installation_id;
    comment.updated_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Json(comment_json(comment)).into_response()
}

pub(super) async fn list(
    State(double): State<GitHubDouble>,
    Path((owner, repo, issue_number)): Path<(String, String, u64)>,
) -> Response {
    let comments: Vec<_> = double.comments(&owner, &repo, issue_number).iter().map(comment_json).collect();
    Json(comments).into_response()
}
