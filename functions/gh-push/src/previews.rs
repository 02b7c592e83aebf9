//! Previews at the webhook: a pull request of the repository's own branches is queued as its preview, and a branch
//! deleted or a pull request closed has its preview removed (functions and images, through garbage-collect). All of it only with
//! the operator's `previews` on; whether a repository wants them is its stack.yml's say, read by git-tar.

use axum::http::StatusCode;
use serde_json::json;
use shared::event::{
    GarbageCollectRequest, GitHubDeleteEvent, GitHubPullRequestEvent, GitHubPush, PreviewCommentReport, PreviewOf,
    Repository, StatusEvent,
};
use shared::garbage_collect::GarbageCollectClient;
use shared::naming::preview_tag;

use crate::{filter_and_queue, AppState, GhPushError, Outcome};

/// The branch that is built as the repository's own deployment: `build_branch`, else the default branch.
pub(crate) fn built_branch<'a>(state: &'a AppState, push: &'a GitHubPush) -> Option<&'a str> {
    state.config.build_branch.as_deref().or(push.repository.default_branch.as_deref())
}

/// A `pull_request` delivery: `opened`, `synchronize` and `reopened` queue the head as the pull request's preview;
/// `closed` (merged or not) removes it. A fork's pull request is not built: its code is not the owner's.
pub(crate) async fn pull_request(
    state: &AppState,
    body: &[u8],
    delivery: &str,
) -> Result<(Outcome, Option<GitHubPush>), GhPushError> {
    let event: GitHubPullRequestEvent = serde_json::from_slice(body)
        .map_err(|e| GhPushError::BadRequest(format!("the body is not a `pull_request` event: {e}")))?;
    if !state.config.previews {
        return Ok((Outcome::ignored("ignored: previews are off (previews)"), None));
    }
    match event.action.as_str() {
        "opened" | "synchronize" | "reopened" => {
            if !event.is_from_same_repository() {
                return Ok((Outcome::ignored("ignored: pull requests from forks are not previewed"), None));
            }
            let push = GitHubPush {
                git_ref: format!("refs/heads/{}", event.pull_request.head.git_ref),
                before: String::new(),
                after: event.pull_request.head.sha.to_string(),
                created: false,
                deleted: false,
                forced: false,
                repository: event.repository.clone(),
                installation: event.installation.clone(),
                // No push time: the head branch's record orders the commit by git ancestry.
                pushed_at: 0,
            };
            let outcome = filter_and_queue(state, &push, delivery, Some(PreviewOf::PullRequest(event.number))).await?;
            Ok((outcome, Some(push)))
        }
        "closed" => {
            let outcome = remove(state, &event.repository, &PreviewOf::PullRequest(event.number)).await?;
            let images_kept = outcome.extra["images_kept"].as_array().map_or(0, Vec::len);
            tell_the_pull_request(state, &event, images_kept).await;
            Ok((outcome, None))
        }
        other => Ok((Outcome::ignored(format!("ignored: `pull_request` action `{other}` does not build")), None)),
    }
}

/// The pull request's preview comment says the preview was removed, and how many of its images are left
/// (github-status edits it; one never posted stays unposted).
async fn tell_the_pull_request(state: &AppState, event: &GitHubPullRequestEvent, images_kept: usize) {
    let Some(installation_id) = event.installation.as_ref().map(|i| i.id) else { return };
    let report = PreviewCommentReport {
        event: StatusEvent {
            owner: event.repository.owner.login.clone(),
            owner_id: event.repository.owner.id,
            repo: event.repository.name.clone(),
            sha: event.pull_request.head.sha.clone(),
            installation_id: Some(installation_id),
            delivery: None,
        },
        pull_request: event.number,
        functions: Vec::new(),
        summary: String::new(),
        removed: true,
        images_kept,
    };
    state.statuses.comment_or_log(&report).await;
}

/// A `delete` delivery: a deleted branch's preview is removed.
pub(crate) async fn deleted_ref(state: &AppState, body: &[u8]) -> Result<Outcome, GhPushError> {
    let event: GitHubDeleteEvent = serde_json::from_slice(body)
        .map_err(|e| GhPushError::BadRequest(format!("the body is not a `delete` event: {e}")))?;
    if event.ref_type != "branch" || !state.config.previews {
        return Ok(Outcome::ignored(format!("ignored: deleting `{}` removes no preview", event.git_ref)));
    }
    let built = state.config.build_branch.as_deref().or(event.repository.default_branch.as_deref());
    if built == Some(event.git_ref.as_str()) {
        return Ok(Outcome::ignored(format!("ignored: `{}` is the built branch, not a preview", event.git_ref)));
    }
    remove(state, &event.repository, &PreviewOf::Branch(event.git_ref.clone())).await
}

/// A push that deletes a ref (`deleted: true`): a branch's preview is removed; anything else is ignored as before.
pub(crate) async fn branch_deleted(state: &AppState, push: &GitHubPush) -> Result<Outcome, GhPushError> {
    let ignored = || Ok(Outcome::ignored(format!("ignored: `{}` was deleted", push.git_ref)));
    let Some(branch) = push.branch() else { return ignored() };
    if !state.config.previews || built_branch(state, push) == Some(branch) {
        return ignored();
    }
    remove(state, &push.repository, &PreviewOf::Branch(branch.to_owned())).await
}

/// Removes every function of the preview `of` of `repository` through garbage-collect (synchronously, so the
/// answer says what was removed). Removing a preview that is not there removes nothing and succeeds.
async fn remove(state: &AppState, repository: &Repository, of: &PreviewOf) -> Result<Outcome, GhPushError> {
    let tag = preview_tag(&repository.name, of);
    let request = GarbageCollectRequest {
        owner: repository.owner.login.clone(),
        repo: repository.name.clone(),
        owner_id: Some(repository.owner.id).filter(|id| *id != 0),
        functions: Vec::new(),
        preview: Some(tag.clone()),
        with_previews: false,
    };
    let collected = GarbageCollectClient::new(state.gateway.clone()).collect(&request).await?;
    let (deleted, images_deleted, images_kept) =
        collected.map(|c| (c.deleted, c.images_deleted, c.images_kept)).unwrap_or_default();
    tracing::info!(repo = %repository.full_name, preview = %tag, ?deleted, ?images_deleted, ?images_kept, "preview removed");
    let kept =
        if images_kept.is_empty() { String::new() } else { format!("; {} left in the registry", images_kept.len()) };
    Ok(Outcome {
        status: StatusCode::OK,
        message: format!(
            "removed the preview {tag} of {} ({} functions, {} images{kept})",
            repository.full_name,
            deleted.len(),
            images_deleted.len()
        ),
        extra: json!({ "preview": tag, "deleted": deleted, "images_deleted": images_deleted, "images_kept": images_kept }),
    })
}
