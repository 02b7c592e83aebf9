//! The JSON that travels between the functions (DESIGN section 5), and the part of GitHub's webhook payloads we read.
//!
//! Field names follow GitHub's where GitHub has one; serde attributes make every JSON name visible at the type.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::naming::preview_tag;
pub use crate::naming::PreviewOf;

/// The `X-Ofc-Event` header: what buildshiprun needs to deploy one function of a push.
pub const OFC_EVENT_HEADER: &str = "X-Ofc-Event";

/// A push as gh-push hands it to git-tar: only what git-tar needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    /// GitHub's `X-GitHub-Delivery`, carried along so every log line of a push can be found by it.
    pub delivery: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The SHA that was pushed: the exact commit that is built.
    pub after: CommitSha,
    /// Absent when the hook is not a GitHub App's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    pub repository: Repository,
    /// Where the push moved the branch from, which decides whether it is newer than the branch's recorded head.
    #[serde(flatten)]
    pub order: PushOrder,
    /// Set when the push is built as a preview (a branch other than the default, or a pull request) rather than
    /// as the repository's own deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewOf>,
}

impl PushEvent {
    /// The preview's tag (`shared::naming::preview_tag`), when this push builds a preview.
    pub fn preview_tag(&self) -> Option<String> {
        self.preview.as_ref().map(|of| preview_tag(&self.repository.name, of))
    }

    /// The pushed branch, without `refs/heads/`.
    pub fn branch(&self) -> &str {
        self.git_ref.strip_prefix("refs/heads/").unwrap_or(&self.git_ref)
    }
}

/// What a push says of its place in its branch's history (GitHub's names), for `shared::branch_head`: the branch's
/// commit before it, whether it rewrote history, and when it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushOrder {
    /// The branch's commit before the push; empty when unknown (a re-run of a commit's checks).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub before: String,
    /// `true` for a force-push: `after` need not descend from `before`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// When the push happened, in Unix seconds: GitHub's `repository.pushed_at`, or when gh-push received it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pushed_at: u64,
}

/// A repository as GitHub names its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub name: String,
    pub full_name: String,
    pub clone_url: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    pub owner: Owner,
}

/// A repository's owner (user or organisation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub login: String,
    #[serde(default)]
    pub id: u64,
}

/// The fields of GitHub's `push` webhook payload that matter here; the rest is ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubPush {
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub forced: bool,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    /// `repository.pushed_at` when it is GitHub's Unix seconds (a push event's); 0 otherwise (a check event's is a
    /// date string of the repository's last push, not of this commit's).
    #[serde(skip)]
    pub pushed_at: u64,
}

/// Reads `repository.pushed_at` of a push payload: GitHub's Unix seconds, or `None`.
pub fn pushed_at_of(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Payload {
        repository: PushedAt,
    }
    #[derive(Deserialize)]
    struct PushedAt {
        #[serde(default)]
        pushed_at: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Payload>(body).ok()?.repository.pushed_at?.as_u64()
}

/// `installation` in an App's webhook payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Owner>,
}

/// A full commit SHA: 40 lower-case hex digits, the form git prints and the build-log store keys by
/// (`shared::log_store`). Parsed once where a SHA enters, so an upper-case one is refused there instead of being built
/// and its log silently not stored. Serialises as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitSha(String);

/// Why a text is not a [`CommitSha`]; the text itself is not repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a commit SHA (40 lower-case hex digits)")]
pub struct NotACommitSha;

impl CommitSha {
    /// The SHA as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true` for the all-zero SHA GitHub sends when a branch is deleted.
    pub fn is_null(&self) -> bool {
        is_null_sha(&self.0)
    }
}

impl std::str::FromStr for CommitSha {
    type Err = NotACommitSha;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower_hex = text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if text.len() == 40 && lower_hex {
            Ok(Self(text.to_owned()))
        } else {
            Err(NotACommitSha)
        }
    }
}

impl TryFrom<String> for CommitSha {
    type Error = NotACommitSha;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<CommitSha> for String {
    fn from(sha: CommitSha) -> Self {
        sha.0
    }
}

/// A `CommitSha` only exists when valid, so one with no other value in hand is GitHub's "no commit": the all-zero
/// SHA (for `..Default::default()` of the wire types that carry one).
impl Default for CommitSha {
    fn default() -> Self {
        Self("0".repeat(40))
    }
}

impl std::ops::Deref for CommitSha {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CommitSha {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CommitSha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for CommitSha {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for CommitSha {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for CommitSha {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// `true` for the all-zero SHA GitHub sends as `after` when a branch or tag is deleted.
pub fn is_null_sha(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b == b'0')
}

impl GitHubPush {
    /// The branch name when this push is to a branch (`refs/heads/<branch>`), `None` for tags and other refs.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }

    /// The event gh-push hands to git-tar, once `after` has been read as the SHA `after`; `received_at` (Unix
    /// seconds) stands for when a push happened when the payload did not say.
    pub fn to_push_event(&self, after: CommitSha, delivery: &str, received_at: u64) -> PushEvent {
        PushEvent {
            delivery: delivery.to_owned(),
            git_ref: self.git_ref.clone(),
            after,
            installation_id: self.installation.as_ref().map(|i| i.id),
            repository: self.repository.clone(),
            order: PushOrder {
                before: if is_null_sha(&self.before) { String::new() } else { self.before.clone() },
                forced: self.forced,
                // A re-run of a commit's checks (no `before`) was pushed at no time this delivery knows: git
                // ancestry orders it, rather than the time it was re-run.
                pushed_at: match (self.pushed_at, self.before.is_empty()) {
                    (0, true) => 0,
                    (0, false) => received_at,
                    (at, _) => at,
                },
            },
            preview: None,
        }
    }
}

/// The fields of GitHub's `pull_request` webhook payload that matter here.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubPullRequestEvent {
    /// `opened`, `synchronize` and `reopened` build a preview; `closed` removes it; the rest are ignored.
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequest,
    /// The base repository: the one the App is installed on and whose owner the preview belongs to.
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// A pull request: its head (the commit and the repository it comes from).
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub head: PullRequestHead,
    #[serde(default)]
    pub merged: bool,
}

/// The head of a pull request. `repo` is null when the fork was deleted.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestHead {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: CommitSha,
    #[serde(default)]
    pub repo: Option<HeadRepository>,
}

/// The repository a pull request's head is in.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadRepository {
    pub full_name: String,
}

impl GitHubPullRequestEvent {
    /// Whether the head is a branch of the base repository itself. A fork's code is its own author's, not the
    /// owner's, so it is never built under the owner's names and secrets.
    pub fn is_from_same_repository(&self) -> bool {
        self.pull_request
            .head
            .repo
            .as_ref()
            .is_some_and(|head| head.full_name.eq_ignore_ascii_case(&self.repository.full_name))
    }
}

/// GitHub's `delete` webhook payload: a branch or tag was deleted.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubDeleteEvent {
    /// The short name (`feature`), not `refs/heads/feature`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `branch` or `tag`.
    pub ref_type: String,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// A `check_suite` or `check_run` webhook payload (the part gh-push reads): a user pressed "Re-run" on the App's
/// checks, and the commit is built again as a push of it would be.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubCheckEvent {
    /// `rerequested` is the only action that builds; `requested`, `completed`, `created`… are ignored.
    pub action: String,
    /// Present in `check_suite` deliveries.
    #[serde(default)]
    pub check_suite: Option<CheckSuite>,
    /// Present in `check_run` deliveries; its suite carries the branch.
    #[serde(default)]
    pub check_run: Option<CheckRun>,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// A check suite: the commit (`head_sha`) and branch (`head_branch`, null for a commit on no branch of this
/// repository, such as a fork's pull request) the App's checks belong to.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckSuite {
    #[serde(default)]
    pub head_branch: Option<String>,
    pub head_sha: String,
}

/// A check run, with the suite it belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    pub head_sha: String,
    #[serde(default)]
    pub name: String,
    pub check_suite: CheckSuite,
}

impl GitHubCheckEvent {
    /// The suite the delivery is about: its own for `check_suite`, the run's for `check_run`.
    pub fn suite(&self) -> Option<&CheckSuite> {
        self.check_suite.as_ref().or_else(|| self.check_run.as_ref().map(|run| &run.check_suite))
    }

    /// The push that would have built this commit: `refs/heads/<head_branch>` at `head_sha`, so a re-run goes
    /// through the same filters (branch, customers, delivery id) and reaches git-tar as the same `PushEvent`.
    /// `None` when the suite has no branch.
    pub fn to_push(&self) -> Option<GitHubPush> {
        let suite = self.suite()?;
        let branch = suite.head_branch.as_deref().filter(|b| !b.is_empty())?;
        let head_sha = self.check_run.as_ref().map_or(suite.head_sha.as_str(), |run| run.head_sha.as_str());
        Some(GitHubPush {
            git_ref: format!("refs/heads/{branch}"),
            before: String::new(),
            after: head_sha.to_owned(),
            created: false,
            deleted: false,
            forced: false,
            repository: self.repository.clone(),
            installation: self.installation.clone(),
            pushed_at: 0,
        })
    }
}

/// CPU and memory for OpenFaaS `limits` and `requests` (e.g. `{"memory": "30Mi", "cpu": "100m"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

impl FunctionResources {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpu.is_none()
    }
}

/// The `X-Ofc-Event` header git-tar sends with each function's tar: everything buildshiprun needs to deploy it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildEvent {
    /// The deployed function's name: `<owner>-<function>-<n>` (`shared::naming::service_name`).
    pub service: String,
    /// The function's name in stack.yml: the context of its commit status.
    pub function: String,
    pub owner: String,
    pub repo: String,
    pub sha: CommitSha,
    pub clone_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// `X-GitHub-Delivery` of the push, for logs.
    #[serde(default)]
    pub delivery: String,
    /// The image reference to build and push (`<repository_url>/<image>:<tag>-<sha>`).
    pub image: String,
    /// `true` when stack.yml says `skip_build`: deploy `image` as it is, with no tar.
    #[serde(default)]
    pub skip_build: bool,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    /// The owner's numeric GitHub id: ownership of a deployed name is decided by it, as logins can be renamed.
    #[serde(default)]
    pub owner_id: u64,
    /// The pushed branch (without `refs/heads/`), for the deployment's labels.
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub private: bool,
    /// stack.yml's `fprocess`: the deployment's `envProcess`, as faas-cli sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fprocess: Option<String>,
    /// stack.yml's `readonly_root_filesystem`; `None` when it says nothing, so the operator's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_root_filesystem: Option<bool>,
    /// Placement constraints, passed to the deployment as stack.yml gives them.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// stack.yml's `lang`: buildshiprun refuses `dockerfile` unless the operator enables it.
    #[serde(default)]
    pub lang: String,
    /// stack.yml's own `build_args` (not the template's), checked against the operator's allowlist.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// The commit of the operator's template repository the build context came from (`None` for `lang:
    /// dockerfile` and the repository's own `template/`): deployed as the `com.openfaas.cloud.template-sha` label,
    /// so a function can be traced to the template it was built with. A field, not a label, because the policy
    /// refuses user labels under `com.openfaas.cloud.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_commit: Option<String>,
    /// Set when this is a preview's build: the function is deployed under the preview's names and URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewOf>,
}

impl BuildEvent {
    /// The preview's tag (`shared::naming::preview_tag`), when this build is a preview's.
    pub fn preview_tag(&self) -> Option<String> {
        self.preview.as_ref().map(|of| preview_tag(&self.repo, of))
    }

    /// JSON for an HTTP header: non-ASCII characters are escaped as `\uXXXX` so the value is plain ASCII.
    pub fn to_header_value(&self) -> String {
        ascii_json(&serde_json::to_string(self).expect("BuildEvent always serialises"))
    }

    /// Parses the header value.
    pub fn from_header_value(value: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(value)
    }

    /// The status event this build reports on.
    pub fn status_event(&self) -> StatusEvent {
        StatusEvent {
            owner: self.owner.clone(),
            owner_id: self.owner_id,
            repo: self.repo.clone(),
            sha: self.sha.clone(),
            installation_id: self.installation_id,
            delivery: (!self.delivery.is_empty()).then(|| self.delivery.clone()),
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Escapes every non-ASCII character of a JSON text as `\uXXXX` (surrogate pairs beyond the BMP).
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// A commit status state, as GitHub names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
        }
    }
}

/// The context of the status that sums up a whole push.
pub const STACK_DEPLOY_CONTEXT: &str = "stack-deploy";

/// One commit status to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStatus {
    /// `stack-deploy`, or a function's name in stack.yml.
    pub context: String,
    pub state: StatusState,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
}

impl CommitStatus {
    pub fn new(context: impl Into<String>, state: StatusState, description: impl Into<String>) -> Self {
        Self { context: context.into(), state, description: description.into(), target_url: None }
    }

    #[must_use]
    pub fn with_target_url(mut self, url: impl Into<String>) -> Self {
        self.target_url = Some(url.into());
        self
    }
}

/// Which commit a status is for, and which App installation may write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub owner: String,
    /// The owner's GitHub account id, which build logs are kept under; 0 when the sender did not say.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub owner_id: u64,
    pub repo: String,
    pub sha: CommitSha,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

impl From<&PushEvent> for StatusEvent {
    fn from(push: &PushEvent) -> Self {
        Self {
            owner: push.repository.owner.login.clone(),
            owner_id: push.repository.owner.id,
            repo: push.repository.name.clone(),
            sha: push.after.clone(),
            installation_id: push.installation_id,
            delivery: Some(push.delivery.clone()),
        }
    }
}

/// The body github-status receives: statuses for one commit, written in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub event: StatusEvent,
    pub statuses: Vec<CommitStatus>,
}

/// The path under github-status that writes a pull request's preview comment.
pub const PREVIEW_COMMENT_PATH: &str = "preview-comment";

/// What github-status is asked to say in a pull request's one preview comment (created on the first report,
/// edited on every later one): each function's preview URL and outcome, or that the preview was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewCommentReport {
    /// The repository and the head commit the comment speaks of, and the installation that writes it.
    pub event: StatusEvent,
    pub pull_request: u64,
    #[serde(default)]
    pub functions: Vec<PreviewFunction>,
    /// The whole push's outcome (the `stack-deploy` description).
    #[serde(default)]
    pub summary: String,
    /// The pull request was closed and its preview removed.
    #[serde(default)]
    pub removed: bool,
    /// With `removed`: how many of the preview's images garbage-collect could not delete from the registry.
    #[serde(default)]
    pub images_kept: usize,
}

/// One function's line in a preview comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewFunction {
    pub function: String,
    /// Where the preview serves it, when it was deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub deployed: bool,
    /// `deployed`, or why not.
    pub outcome: String,
}

/// What garbage-collect is asked: remove this repository's functions that are not in `functions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageCollectRequest {
    pub owner: String,
    pub repo: String,
    /// The owner's numeric id: when given, only functions deployed for this id are removed (see
    /// `FunctionStatus::is_cloud_function_of`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<u64>,
    /// Deployed names (`<owner>-<function>-<n>`) to keep; an empty list removes all of the repository's functions.
    #[serde(default)]
    pub functions: Vec<String>,
    /// The preview (`shared::naming::preview_tag`) whose functions are collected; `None` collects the repository's
    /// own, so neither ever removes the other's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// Also every preview of the repository (an uninstalled repository leaves nothing behind).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_previews: bool,
}

/// What garbage-collect answers: the functions it deleted, and their preview images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageCollected {
    pub owner: String,
    pub repo: String,
    /// Deployed names removed from the gateway.
    #[serde(default)]
    pub deleted: Vec<String>,
    /// The removed previews' manifests deleted from the registry (`<repository>@<digest>`).
    #[serde(default)]
    pub images_deleted: Vec<String>,
    /// The removed previews' images left in the registry, each with why (no account, the registry's refusal).
    #[serde(default)]
    pub images_kept: Vec<String>,
}

/// What buildshiprun answers git-tar for a function it deployed (a refusal is a [`crate::error::ErrorBody`]).
/// `deployed` is what marks a success; the other fields are informative and may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipResult {
    /// The function's name in stack.yml.
    #[serde(default)]
    pub function: String,
    /// The deployed name (`<owner>-<function>-<n>`).
    #[serde(default)]
    pub service: String,
    /// The image deployed, pinned by digest when it was built.
    #[serde(default)]
    pub image: String,
    /// The built image's digest; empty when the build was skipped.
    #[serde(default)]
    pub digest: String,
    /// `created` for a new function, `updated` for an existing one, `unchanged`, or `superseded` when a newer
    /// commit of the branch was pushed and this one was not deployed.
    pub deployed: String,
    /// The newer commit of the branch that superseded this push (when `deployed` is `superseded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// The signed, expiring pipeline-log link to this build's log; absent when no log was stored (a skipped build,
    /// a store that could not be written) and in answers from before build logs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// Where users reach the deployed function (the preview's URL for a preview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One audit record: which function did what with which delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The function that sends it (`gh-push`, `git-tar`…).
    pub source: String,
    /// What happened, in a short sentence.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// RFC 3339 time the event was created.
    pub time: String,
}

impl AuditEvent {
    pub fn new(source: &str, message: impl Into<String>) -> Self {
        Self {
            source: source.to_owned(),
            message: message.into(),
            owner: None,
            repo: None,
            sha: None,
            delivery: None,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// The bodies of the signed calls between functions, named for the 400 when a body is not one.
mod signed_bodies {
    use super::{AuditEvent, GarbageCollectRequest, PreviewCommentReport, PushEvent, StatusReport};
    use crate::signature::SignedBody;

    impl SignedBody for PushEvent {
        const WHAT: &'static str = "a push event";
    }
    impl SignedBody for StatusReport {
        const WHAT: &'static str = "a status report";
    }
    impl SignedBody for PreviewCommentReport {
        const WHAT: &'static str = "a preview comment";
    }
    impl SignedBody for GarbageCollectRequest {
        const WHAT: &'static str = "a garbage-collect request";
    }
    impl SignedBody for AuditEvent {
        const WHAT: &'static str = "an audit event";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_event_uses_the_designs_json_names() {
        let json = serde_json::json!({
            "delivery": "d-1", "ref": "refs/heads/main", "after": "a".repeat(40), "installation_id": 42,
            "repository": {"name": "fns", "full_name": "octo/fns", "clone_url": "https://github.com/octo/fns.git",
                           "private": false, "default_branch": "main", "owner": {"login": "octo", "id": 1}}
        });
        let event: PushEvent = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(event.git_ref, "refs/heads/main");
        assert_eq!(event.installation_id, Some(42));
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
    }

    #[test]
    fn push_event_accepts_a_null_installation() {
        let json = r#"{"delivery":"d","ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567","installation_id":null,
            "repository":{"name":"r","full_name":"o/r","clone_url":"http://127.0.0.1/r.git","owner":{"login":"o"}}}"#;
        let event: PushEvent = serde_json::from_str(json).unwrap();
        assert_eq!(event.installation_id, None);
    }

    #[test]
    fn build_event_header_is_ascii_and_round_trips() {
        let event = BuildEvent {
            service: "octo-fn".into(),
            environment: BTreeMap::from([("greeting".into(), "héllo 😀".into())]),
            ..BuildEvent::default()
        };
        let header = event.to_header_value();
        assert!(header.is_ascii(), "{header}");
        assert_eq!(BuildEvent::from_header_value(header.as_bytes()).unwrap(), event);
    }

    #[test]
    fn a_rerequested_check_suite_reads_as_the_push_of_its_commit() {
        let json = serde_json::json!({
            "action": "rerequested",
            "check_suite": {"id": 5, "head_branch": "main", "head_sha": "b".repeat(40), "status": "queued"},
            "repository": {"name": "fns", "full_name": "octo/fns", "clone_url": "https://github.com/octo/fns.git",
                           "default_branch": "main", "owner": {"login": "octo", "id": 1}},
            "installation": {"id": 42}
        });
        let check: GitHubCheckEvent = serde_json::from_value(json).unwrap();
        let push = check.to_push().unwrap();
        assert_eq!(push.git_ref, "refs/heads/main");
        assert_eq!(push.after, "b".repeat(40));
        assert_eq!(push.to_push_event(push.after.parse().unwrap(), "d", 0).installation_id, Some(42));
        let run = serde_json::json!({
            "action": "rerequested",
            "check_run": {"id": 9, "name": "hello", "head_sha": "c".repeat(40),
                          "check_suite": {"id": 5, "head_branch": null, "head_sha": "c".repeat(40)}},
            "repository": {"name": "fns", "full_name": "octo/fns", "clone_url": "https://github.com/octo/fns.git",
                           "owner": {"login": "octo", "id": 1}}
        });
        let check: GitHubCheckEvent = serde_json::from_value(run).unwrap();
        assert!(check.to_push().is_none(), "a suite on no branch is not built");
    }

    #[test]
    fn recognises_shas() {
        let sha: CommitSha = "0123456789abcdef".repeat(3)[..40].parse().unwrap();
        assert_eq!(serde_json::to_value(&sha).unwrap(), serde_json::json!(sha.as_str()), "the wire form is the text");
        for refused in ["abc", &"A".repeat(40), &"0123456789ABCDEF".repeat(3)[..40], &"g".repeat(40), &"a".repeat(41)] {
            assert!(refused.parse::<CommitSha>().is_err(), "{refused}");
            let error = serde_json::from_value::<CommitSha>(serde_json::json!(refused)).unwrap_err().to_string();
            assert!(error.contains("not a commit SHA (40 lower-case hex digits)"), "{error}");
        }
        assert!(is_null_sha(&"0".repeat(40)));
        assert!(!is_null_sha(""));
    }

    #[test]
    fn status_states_are_lowercase() {
        let status = CommitStatus::new("stack-deploy", StatusState::Pending, "queued");
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "pending");
        assert!(json.get("target_url").is_none());
    }

    #[test]
    fn a_ship_result_keeps_buildshiprun_s_names_and_needs_only_deployed() {
        let shipped = ShipResult {
            function: "hello".into(),
            service: "octo-hello-4".into(),
            image: "r/1/fns/hello@sha256:00".into(),
            digest: "sha256:00".into(),
            deployed: "created".into(),
            superseded_by: None,
            log_url: None,
            url: None,
        };
        let json = serde_json::to_value(&shipped).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"function": "hello", "service": "octo-hello-4", "image": "r/1/fns/hello@sha256:00",
                               "digest": "sha256:00", "deployed": "created"})
        );
        let short: ShipResult = serde_json::from_str(r#"{"deployed": "updated"}"#).unwrap();
        assert_eq!(short.deployed, "updated");
        assert_eq!(short.log_url, None, "an answer from before build logs reads without a link");
        assert!(serde_json::from_str::<ShipResult>(r#"{"error": "no"}"#).is_err());
    }
}
