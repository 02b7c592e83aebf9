//! A pull request's one preview comment: created by the first report of its preview, edited (never posted again)
//! by every later one, and told when the preview is removed. The comment's id is kept in the shared store
//! (`preview-comments/<owner id>/<repo>/<number>`, the build-log store's folder or bucket), claimed with a
//! create-if-absent write, so two replicas never both post one. Without a store, the pull request's comments are
//! listed and ours is found by its marker.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use reqwest::{Method, StatusCode};
use serde_json::json;
use shared::event::{PreviewCommentReport, StatusEvent};

use crate::error::StatusError;
use crate::writer::{Sent, StatusWriter};

/// The first line of every preview comment: how it is found again without a store.
pub const MARKER: &str = "<!-- openfaas-cloud preview -->";
/// A claim older than this was left by a replica that stopped between its claim and its post: it is taken over.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica that lost the claim waits for the winner's comment id.
const WAIT_FOR_ID: Duration = Duration::from_secs(10);
/// The longest outcome shown per function; the whole comment stays far below GitHub's 65,536 characters.
const MAX_OUTCOME_CHARS: usize = 300;
const PREFIX: &str = "preview-comments";

/// What became of one report's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commented {
    Created(u64),
    Updated(u64),
    /// A removal with no comment to edit: nothing is posted.
    NothingToUpdate,
    /// GitHub refused (the reason), or the claim's winner did not record an id in time.
    NotWritten(String),
}

/// The comment ids, in the shared store when there is one.
pub struct PreviewComments {
    objects: Option<Arc<dyn ObjectStore>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The comment's text. Names and reasons come from a pushed repository: `|`, `<`, `>` and line breaks are
/// escaped or flattened so a row stays a row, and each reason is cut.
pub fn render(report: &PreviewCommentReport) -> String {
    let short = report.event.sha.get(..7).unwrap_or(&report.event.sha);
    if report.removed {
        let what = match report.images_kept {
            0 => "its preview's functions and images were removed".to_owned(),
            kept => format!(
                "its preview's functions were removed; {kept} of its images could not be deleted and stay in the \
                 registry until its operator removes them"
            ),
        };
        return format!(
            "{MARKER}\n### Preview of #{}: removed\n\nThe pull request was closed, so {what}. The last commit \
             previewed was `{short}`.\n",
            report.pull_request
        );
    }
    let mut text = format!("{MARKER}\n### Preview of #{} at `{short}`\n\n", report.pull_request);
    let _ = write!(text, "{}\n\n| Function | Preview | Outcome |\n|---|---|---|\n", cell(&report.summary));
    for function in &report.functions {
        let link = function.url.as_deref().map_or_else(|| "—".to_owned(), |url| format!("<{}>", cell(url)));
        let mark = if function.deployed { "✅" } else { "❌" };
        let _ = writeln!(text, "| {} | {link} | {mark} {} |", cell(&function.function), cell(&function.outcome));
    }
    text.push_str("\nThis comment is updated on every push, and says so when the preview is removed.\n");
    text
}

/// One table cell of untrusted text.
fn cell(value: &str) -> String {
    let flat: String = value
        .chars()
        .take(MAX_OUTCOME_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    flat.trim().to_owned()
}

/// What the store holds for a pull request.
enum Record {
    Id(u64),
    Claimed(u64),
    Unreadable,
}

fn parse(bytes: &[u8]) -> Record {
    let text = String::from_utf8_lossy(bytes);
    match text.trim().split_once(' ') {
        Some(("id", id)) => id.parse().map_or(Record::Unreadable, Record::Id),
        Some(("claimed", at)) => at.parse().map_or(Record::Unreadable, Record::Claimed),
        _ => Record::Unreadable,
    }
}

impl PreviewComments {
    pub fn new(objects: Option<Arc<dyn ObjectStore>>) -> Self {
        Self { objects }
    }

    fn path(event: &StatusEvent, number: u64) -> ObjectPath {
        ObjectPath::from(format!("{PREFIX}/{}/{}/{number}", event.owner_id, event.repo.to_ascii_lowercase()))
    }

    /// Creates or edits the pull request's comment for `report`.
    pub async fn write(
        &self,
        writer: &StatusWriter,
        installation_id: u64,
        report: &PreviewCommentReport,
        deadline: Instant,
    ) -> Result<Commented, StatusError> {
        let body = json!({ "body": render(report) });
        let call = Call { writer, installation_id, event: &report.event, number: report.pull_request, deadline };
        let Some(objects) = &self.objects else {
            return match call.find_by_marker().await? {
                Some(id) => call
                    .update(id, &body)
                    .await
                    .map(|done| done.unwrap_or_else(|| Commented::NotWritten("the comment is gone".into()))),
                None if report.removed => Ok(Commented::NothingToUpdate),
                None => call.create(&body).await.map(|(commented, _)| commented),
            };
        };
        let path = Self::path(&report.event, report.pull_request);
        let waited_until = Instant::now() + WAIT_FOR_ID;
        for _ in 0..50 {
            let record = match objects.get(&path).await {
                Ok(found) => Some(parse(&found.bytes().await.map_err(store_error)?)),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(error) => return Err(store_error(error)),
            };
            match record {
                Some(Record::Id(id)) => match call.update(id, &body).await? {
                    Some(done) => return Ok(done),
                    // Deleted on GitHub: forgotten, and a new one posted.
                    None => drop(objects.delete(&path).await),
                },
                Some(Record::Claimed(at)) if Duration::from_millis(now_ms().saturating_sub(at)) < CLAIM_TIMEOUT => {
                    if Instant::now() > waited_until {
                        return Ok(Commented::NotWritten("another replica is posting the comment".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(_) => drop(objects.delete(&path).await),
                None if report.removed => return Ok(Commented::NothingToUpdate),
                None => {
                    let claim = PutPayload::from(format!("claimed {}", now_ms()).into_bytes());
                    let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
                    match objects.put_opts(&path, claim, create).await {
                        Ok(_) => {}
                        Err(object_store::Error::AlreadyExists { .. }) => continue,
                        Err(error) => return Err(store_error(error)),
                    }
                    let created = call.create(&body).await;
                    match &created {
                        Ok((_, Some(id))) => {
                            let record = PutPayload::from(format!("id {id}").into_bytes());
                            objects.put(&path, record).await.map_err(store_error)?;
                        }
                        _ => drop(objects.delete(&path).await),
                    }
                    return created.map(|(commented, _)| commented);
                }
            }
        }
        Ok(Commented::NotWritten("the comment's record kept changing".into()))
    }
}

#[allow(clippy::needless_pass_by_value)] // the shape `map_err` passes
fn store_error(error: object_store::Error) -> StatusError {
    StatusError::Store(error.to_string())
}

/// The calls for one pull request's comment.
struct Call<'a> {
    writer: &'a StatusWriter,
    installation_id: u64,
    event: &'a StatusEvent,
    number: u64,
    deadline: Instant,
}

impl Call<'_> {
    async fn create(&self, body: &serde_json::Value) -> Result<(Commented, Option<u64>), StatusError> {
        let url = self.writer.repo_url(self.event, &format!("issues/{}/comments", self.number))?;
        match self
            .writer
            .send(self.installation_id, Method::POST, &url, Some(body), "preview comment", self.deadline)
            .await?
        {
            Sent::Answered(response) => {
                let answer: serde_json::Value = response.json().await.unwrap_or_default();
                let id = answer["id"].as_u64();
                Ok((
                    id.map_or_else(
                        || Commented::NotWritten("GitHub answered no comment id".into()),
                        Commented::Created,
                    ),
                    id,
                ))
            }
            Sent::Rejected(reason, _) => Ok((Commented::NotWritten(reason), None)),
        }
    }

    /// `None` when the comment no longer exists.
    async fn update(&self, id: u64, body: &serde_json::Value) -> Result<Option<Commented>, StatusError> {
        let url = self.writer.repo_url(self.event, &format!("issues/comments/{id}"))?;
        match self
            .writer
            .send(self.installation_id, Method::PATCH, &url, Some(body), "preview comment", self.deadline)
            .await?
        {
            Sent::Answered(_) => Ok(Some(Commented::Updated(id))),
            Sent::Rejected(_, Some(StatusCode::NOT_FOUND)) => Ok(None),
            Sent::Rejected(reason, _) => Ok(Some(Commented::NotWritten(reason))),
        }
    }

    /// Our comment among the pull request's first 100, found by its marker.
    async fn find_by_marker(&self) -> Result<Option<u64>, StatusError> {
        let url = self.writer.repo_url(self.event, &format!("issues/{}/comments?per_page=100", self.number))?;
        match self.writer.send(self.installation_id, Method::GET, &url, None, "preview comment", self.deadline).await? {
            Sent::Answered(response) => {
                let comments: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
                Ok(comments
                    .iter()
                    .find(|c| c["body"].as_str().is_some_and(|b| b.starts_with(MARKER)))
                    .and_then(|c| c["id"].as_u64()))
            }
            Sent::Rejected(reason, _) => {
                Err(StatusError::BadRequest(format!("the pull request's comments could not be listed: {reason}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::event::PreviewFunction;

    fn report(removed: bool) -> PreviewCommentReport {
        PreviewCommentReport {
            event: StatusEvent {
                owner: "octo".into(),
                owner_id: 1,
                repo: "fns".into(),
                sha: "a10867b14bb761a232cd80139fbd4c0d33264240".parse().unwrap(),
                installation_id: Some(7),
                delivery: None,
            },
            pull_request: 12,
            functions: vec![
                PreviewFunction {
                    function: "hello".into(),
                    url: Some("http://octo--p1.localhost/hello".into()),
                    deployed: true,
                    outcome: "deployed".into(),
                },
                PreviewFunction {
                    function: "bad".into(),
                    url: None,
                    deployed: false,
                    outcome: "a | b\n<script>".into(),
                },
            ],
            summary: "failed: bad".into(),
            removed,
            images_kept: 0,
        }
    }

    #[test]
    fn the_comment_lists_each_function_s_url_and_outcome_with_untrusted_text_escaped() {
        let text = render(&report(false));
        assert!(text.starts_with(MARKER));
        assert!(text.contains("### Preview of #12 at `a10867b`"), "{text}");
        assert!(text.contains("| hello | <http://octo--p1.localhost/hello> | ✅ deployed |"), "{text}");
        assert!(text.contains("| bad | — | ❌ a \\| b &lt;script&gt; |"), "{text}");
        let removed = render(&report(true));
        assert!(removed.contains("removed") && !removed.contains("hello"), "{removed}");
        assert!(removed.contains("functions and images were removed"), "{removed}");
        let partly = render(&PreviewCommentReport { images_kept: 2, ..report(true) });
        assert!(partly.contains("2 of its images could not be deleted"), "{partly}");
    }
}
