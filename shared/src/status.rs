//! Queues commit statuses to github-status through the gateway's async route.

use bytes::Bytes;
use reqwest::header::HeaderMap;

use crate::event::{CommitStatus, StatusEvent, StatusReport};
use crate::functions::GITHUB_STATUS;
use crate::gateway::{GatewayClient, GatewayError};

/// What GitHub keeps of a commit status's description.
pub const MAX_DESCRIPTION: usize = 140;

/// `text` in at most [`MAX_DESCRIPTION`] characters, cut on a character boundary with an ellipsis: every writer of a
/// description cuts it the same way, so the ellipsis always marks a cut.
pub fn cut_description(text: &str) -> String {
    if text.chars().count() <= MAX_DESCRIPTION {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    kept.push('…');
    kept
}

/// Sends statuses to github-status; every function reports through it.
#[derive(Debug, Clone)]
pub struct StatusClient {
    gateway: GatewayClient,
}

impl StatusClient {
    pub fn new(gateway: GatewayClient) -> Self {
        Self { gateway }
    }

    /// Queues `statuses` for the commit in `event`, signed, to `async-function/github-status`.
    pub async fn report(&self, event: &StatusEvent, statuses: Vec<CommitStatus>) -> Result<(), GatewayError> {
        let report = StatusReport { event: event.clone(), statuses };
        let body = Bytes::from(serde_json::to_vec(&report).expect("status reports serialise"));
        self.gateway.invoke_async(GITHUB_STATUS, body, HeaderMap::new()).await.map(drop)
    }

    /// Queues a pull request's preview comment, signed, to `async-function/github-status/preview-comment`; a
    /// failure is only logged, as the statuses carry the same outcome.
    pub async fn comment_or_log(&self, report: &crate::event::PreviewCommentReport) {
        let body = Bytes::from(serde_json::to_vec(report).expect("preview comments serialise"));
        let path = format!("{GITHUB_STATUS}/{}", crate::event::PREVIEW_COMMENT_PATH);
        if let Err(error) = self.gateway.invoke_async(&path, body, HeaderMap::new()).await {
            let event = &report.event;
            tracing::warn!(owner = %event.owner, repo = %event.repo, pull_request = report.pull_request, %error, "could not queue the preview comment");
        }
    }

    /// Like [`report`](Self::report), but a failure is only logged: for statuses that must not stop the work.
    pub async fn report_or_log(&self, event: &StatusEvent, statuses: Vec<CommitStatus>) {
        if let Err(error) = self.report(event, statuses).await {
            tracing::warn!(owner = %event.owner, repo = %event.repo, sha = %event.sha, %error, "could not queue a commit status");
        }
    }
}
