//! git-tar: turns a push into one build context per function. It clones the repository at exactly the pushed SHA,
//! reads `stack.yml`, shrinkwraps each function as `faas-cli build --shrinkwrap` does, tars it, and hands every tar
//! to buildshiprun, then reports the whole push on the `stack-deploy` status.
//!
//! # Layout
//! - [`config`]: `repository_url`, `clone_timeout`, `max_parallel_builds`, limits, the App key for private clones.
//! - [`clone`]: `git` at one SHA, safely.
//! - [`shrinkwrap`]: the faas-cli build-context layout, every path resolved inside the repository through its links
//!   (public: the repository's own stack is checked with it).
//! - [`templates`]: the operator's template store (`custom_templates`), fetched, cached by commit and refreshed.
//! - [`resolve`]: which template each function is built with (the store; the repository's own only where allowed).
//! - [`order`]: whether the push is the newest of its branch; a superseded one is not built.
//! - [`tarball`]: the build tar and its signature.
//! - [`pushlog`]: each push's own record in the log store, which a failing `stack-deploy` status links to.
//! - [`error`]: the answers; failures a user can fix are also commit statuses.

pub mod clone;
pub mod config;
pub mod error;
pub mod order;
pub mod pushlog;
pub mod resolve;
pub mod shrinkwrap;
pub mod tarball;
pub mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::any;
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use pushlog::PushTrace;
use reqwest::header::{HeaderMap as ClientHeaders, HeaderValue};
use shared::audit::AuditClient;
use shared::branch_head::superseded_description;
use shared::build::BuildConfig;
use shared::config::Secret;
use shared::error::ErrorBody;
use shared::event::{
    AuditEvent, BuildEvent, CommitStatus, GarbageCollectRequest, PreviewCommentReport, PreviewFunction, PreviewOf,
    PushEvent, ShipResult, StatusEvent, StatusState, OFC_EVENT_HEADER, STACK_DEPLOY_CONTEXT,
};
use shared::functions::{BUILDSHIPRUN, GIT_TAR};
use shared::garbage_collect::GarbageCollectClient;
use shared::gateway::{GatewayClient, GatewayError};
use shared::github_app::InstallationTokens;
use shared::naming::{build_image_name, deployed_name, preview_image_name};
use shared::signature::{SignedCalls, SignedJson};
use shared::stack::Stack;
use shared::status::StatusClient;
use templates::TemplateStore;

pub use crate::config::Config;
pub use crate::error::GitTarError;

struct AppState {
    config: Config,
    gateway: GatewayClient,
    statuses: StatusClient,
    audit: AuditClient,
    collector: GarbageCollectClient,
    tokens: Option<InstallationTokens>,
    /// The operator's templates, shared by every push.
    templates: Arc<TemplateStore>,
}

impl SignedCalls for AppState {
    type Error = GitTarError;

    fn payload_secret(&self) -> &Secret {
        &self.config.common.payload_secret
    }
}

/// The function's router, without the runtime layers (see `shared::server::with_runtime`).
pub fn app(config: Config) -> Router {
    let gateway = GatewayClient::new(config.common.gateway_url.clone(), config.common.payload_secret.clone());
    let tokens = config
        .app
        .clone()
        .map(|app| InstallationTokens::new(config.github_api_url.clone(), app, gateway.http().clone()));
    let templates = Arc::new(TemplateStore::new(
        config.custom_templates.clone(),
        config.templates_cache.clone(),
        config.templates_refresh,
        config.clone_timeout,
    ));
    // Fetched once at start, so the first push does not wait for the clones.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let warming = templates.clone();
        runtime.spawn(async move { drop(warming.catalogue().await) });
    }
    let state = AppState {
        templates,
        statuses: StatusClient::new(gateway.clone()),
        collector: GarbageCollectClient::new(gateway.clone()),
        audit: AuditClient::new(config.common.audit_url.clone(), config.common.payload_secret.clone()),
        gateway,
        tokens,
        config,
    };
    Router::new().route("/", any(handle)).route("/{*path}", any(handle)).with_state(Arc::new(state))
}

/// git-tar's answer when every function was deployed (a failure is a [`GitTarError`]'s body).
#[derive(serde::Serialize)]
struct Handed {
    status: &'static str,
    message: String,
}

/// What became of one function.
struct FunctionOutcome {
    function: String,
    /// What buildshiprun answered it became (`created`, `updated`, `unchanged`, `superseded`), or why it failed.
    result: Result<String, String>,
    /// The newer commit of the branch that kept it from being deployed.
    superseded_by: Option<String>,
    /// Where the deployed function is served, as buildshiprun answered.
    url: Option<String>,
}

async fn handle(
    State(state): State<Arc<AppState>>,
    SignedJson(push): SignedJson<PushEvent>,
) -> Result<Json<Handed>, GitTarError> {
    let status_event = StatusEvent::from(&push);
    let started = std::time::Instant::now();
    let mut trace = PushTrace::default();
    let mut lines = Vec::new();
    let result = process(&state, &push, &status_event, &mut trace, &mut lines).await;
    // Stored before `stack-deploy` is reported, so the status can link to the record.
    let links = pushlog::store(&state.config, &push, &mut trace, &result).await;
    report(&state, &status_event, &trace, &result, links).await;
    if let Some(PreviewOf::PullRequest(number)) = push.preview {
        comment(&state, status_event, number, &trace, &result, lines).await;
    }
    let mut audit = AuditEvent::new(GIT_TAR, String::new());
    audit.owner = Some(push.repository.owner.login.clone());
    audit.repo = Some(push.repository.name.clone());
    audit.sha = Some(push.after.to_string());
    audit.delivery = Some(push.delivery.clone());
    match &result {
        Ok(summary) => {
            audit.message = format!("handed on: {summary}");
            tracing::info!(delivery = %push.delivery, repo = %push.repository.full_name, sha = %push.after, seconds = started.elapsed().as_secs_f64(), "{summary}");
        }
        Err(error) => {
            audit.message = format!("failed: {error}");
            tracing::warn!(delivery = %push.delivery, repo = %push.repository.full_name, sha = %push.after, %error, "push failed");
        }
    }
    state.audit.record(audit);
    result.map(|message| Json(Handed { status: "success", message }))
}

/// Reports how the push ended on `stack-deploy` (and, for a refusal, on each refused function), a failure linking
/// to its stored record when there is one.
async fn report(
    state: &AppState,
    status_event: &StatusEvent,
    trace: &PushTrace,
    result: &Result<String, GitTarError>,
    links: pushlog::Links,
) {
    let statuses = match result {
        // Superseded before anything was handed on: each function's context says so too (none was pending).
        Ok(summary) if trace.superseded_by().is_some() && trace.step() != Some(pushlog::HAND_OFF) => trace
            .functions()
            .iter()
            .map(|(function, _)| CommitStatus::new(function, StatusState::Success, summary.clone()))
            .chain([CommitStatus::new(STACK_DEPLOY_CONTEXT, StatusState::Success, summary.clone())])
            .collect(),
        Ok(summary) => vec![CommitStatus::new(STACK_DEPLOY_CONTEXT, StatusState::Success, summary.clone())],
        // Refused before any push was read: there is no commit to report on.
        Err(GitTarError::Signature(_) | GitTarError::BadRequest(_)) => return,
        Err(error) => {
            let mut statuses = Vec::new();
            if let GitTarError::Refused { functions, .. } = error {
                statuses.extend(functions.iter().map(|(function, why)| {
                    linked(CommitStatus::new(function, StatusState::Failure, why), links.functions.get(function))
                }));
            }
            let description = pushlog::failure_description(trace, error);
            let stack = CommitStatus::new(STACK_DEPLOY_CONTEXT, StatusState::Failure, description);
            statuses.push(linked(stack, links.stack.as_ref()));
            statuses
        }
    };
    state.statuses.report_or_log(status_event, statuses).await;
}

/// Updates the pull request's preview comment with each function's URL and outcome. A push refused before it was
/// read, or a repository that does not ask for previews (no function was handed on), says nothing there; nor does
/// a push a newer commit superseded: the newer push writes the comment, and an older one finishing later must not
/// overwrite it.
async fn comment(
    state: &AppState,
    event: StatusEvent,
    pull_request: u64,
    trace: &PushTrace,
    result: &Result<String, GitTarError>,
    functions: Vec<PreviewFunction>,
) {
    if trace.superseded_by().is_some() {
        return;
    }
    let summary = match result {
        Err(GitTarError::Signature(_) | GitTarError::BadRequest(_)) => return,
        Ok(_) if functions.is_empty() => return,
        Ok(summary) => summary.clone(),
        Err(error) => pushlog::failure_description(trace, error),
    };
    let report = PreviewCommentReport { event, pull_request, functions, summary, removed: false, images_kept: 0 };
    state.statuses.comment_or_log(&report).await;
}

/// `status` with a link to its record, when one was stored.
fn linked(status: CommitStatus, link: Option<&reqwest::Url>) -> CommitStatus {
    match link {
        Some(link) => status.with_target_url(link.as_str()),
        None => status,
    }
}

/// Clone, read, shrinkwrap, hand on. The work folder is removed whatever happens.
async fn process(
    state: &AppState,
    push: &PushEvent,
    status_event: &StatusEvent,
    trace: &mut PushTrace,
    lines: &mut Vec<PreviewFunction>,
) -> Result<String, GitTarError> {
    trace.begin(pushlog::CLONE);
    let clone_url = &push.repository.clone_url;
    if !(clone_url.starts_with("https://") || clone_url.starts_with("http://")) {
        return Err(GitTarError::Push(format!("the clone URL `{clone_url}` is not http(s)")));
    }
    let work = blocking(|| tempfile::Builder::new().prefix("git-tar-").tempdir().map_err(GitTarError::from)).await?;
    let result = build_and_hand_on(state, push, status_event, work.path(), trace, lines).await;
    // Removing a checkout is file IO too: on a blocking thread, finished before the answer.
    if let Err(error) = tokio::task::spawn_blocking(move || drop(work)).await {
        tracing::warn!(%error, "the work folder could not be removed");
    }
    result
}

/// The steps of a push inside its work folder, in order, each timed in `trace`.
async fn build_and_hand_on(
    state: &AppState,
    push: &PushEvent,
    status_event: &StatusEvent,
    work: &Path,
    trace: &mut PushTrace,
    lines: &mut Vec<PreviewFunction>,
) -> Result<String, GitTarError> {
    let repo = checkout(state, push, work, trace).await?;
    trace.begin(pushlog::ORDER);
    if let order::Verdict::Superseded { by } = newest(state, push, &repo).await? {
        return Ok(superseded_before_build(state, push, repo, &by, trace).await);
    }
    trace.begin(pushlog::PARSE);
    let (stack, events) = read_stack(state, push, repo.clone()).await.inspect_err(|e| refused(trace, e))?;
    if push.preview.is_some() && !asks_for_previews(&stack) {
        return Ok("no preview: stack.yml does not ask for previews (`previews: true` under `configuration:`)".into());
    }
    trace.listed(stack.functions.keys());
    trace.begin(pushlog::TEMPLATES);
    let templates = choose(state, &stack, &repo, work).await.inspect_err(|e| refused(trace, e))?;
    trace.begin(pushlog::SHRINKWRAP);
    let prepared =
        prepare_tars(stack, events, templates, repo, work.to_owned(), state.config.registry_push_url.clone())
            .await
            .inspect_err(|e| refused(trace, e))?;
    trace.begin(pushlog::HAND_OFF);
    let pending =
        prepared.iter().map(|(e, _)| CommitStatus::new(&e.function, StatusState::Pending, "building")).collect();
    state.statuses.report_or_log(status_event, pending).await;
    let hand_ons: Vec<_> = prepared.iter().map(|(event, tar)| hand_on(state, event, tar.as_deref())).collect();
    let outcomes: Vec<FunctionOutcome> =
        stream::iter(hand_ons).buffer_unordered(state.config.max_parallel_builds).collect().await;
    for outcome in &outcomes {
        let what = match (&outcome.result, &outcome.superseded_by) {
            (Ok(_), Some(by)) => format!("superseded by {by}: not deployed"),
            (Ok(deployed), None) => format!("deployed ({deployed})"),
            (Err(reason), _) => format!("failed: {reason}"),
        };
        trace.became(&outcome.function, what);
    }
    let branch = push.git_ref.strip_prefix("refs/heads/").unwrap_or(&push.git_ref);
    lines.extend(outcomes.iter().map(|o| PreviewFunction {
        function: o.function.clone(),
        url: o.url.clone(),
        deployed: o.result.is_ok() && o.superseded_by.is_none(),
        outcome: match (&o.result, &o.superseded_by) {
            (Ok(_), Some(by)) => format!("superseded by {}", &by[..by.len().min(7)]),
            (Ok(_), None) => "deployed".to_owned(),
            (Err(reason), _) => reason.clone(),
        },
    }));
    lines.sort_by(|a, b| a.function.cmp(&b.function));
    let (mut summary, all_deployed) = summarise(&outcomes);
    if let Some(by) = outcomes.iter().find_map(|o| o.superseded_by.as_deref()) {
        trace.superseded(by);
    }
    // Collected before `stack-deploy` is reported, so a green commit means the functions it removed are gone; a
    // superseded push removes nothing, as the newer commit's stack decides what the repository deploys.
    match still_newest(state, push).await {
        Ok(true) if trace.superseded_by().is_none() => {
            let keep: Vec<String> = prepared.iter().map(|(e, _)| e.service.clone()).collect();
            garbage_collect(state, push, keep).await;
        }
        Ok(_) => tracing::info!(sha = %push.after, "superseded: functions no longer in its stack.yml are left"),
        Err(error) => tracing::warn!(%error, "garbage-collect skipped: the branch's newest commit could not be read"),
    }
    if all_deployed {
        if let Some(by) = trace.superseded_by().map(str::to_owned) {
            summary = superseded_description(&by, branch, &summary);
        }
        Ok(summary)
    } else {
        Err(GitTarError::Reported(summary))
    }
}

/// Notes each function a refusal names, with its reason.
fn refused(trace: &mut PushTrace, error: &GitTarError) {
    if let GitTarError::Refused { functions, .. } = error {
        for (function, why) in functions {
            trace.became(function, format!("refused: {why}"));
        }
    }
}

/// Whether the push is the newest of its branch (recording it as the head when it is): see [`order`].
async fn newest(state: &AppState, push: &PushEvent, repo: &Path) -> Result<order::Verdict, GitTarError> {
    let token = installation_token(state, push).await?;
    let checkout = order::Checkout { repo, token: token.as_ref(), timeout: state.config.clone_timeout };
    order::decide(&state.config.branch_heads, push, &checkout).await
}

/// Whether the branch's head is still this push's commit (`true` when the push is not ordered).
async fn still_newest(state: &AppState, push: &PushEvent) -> Result<bool, shared::branch_head::BranchHeadError> {
    let Some(branch) = push.git_ref.strip_prefix("refs/heads/") else { return Ok(true) };
    if push.repository.owner.id == 0 {
        return Ok(true);
    }
    let key = shared::branch_head::BranchKey::new(push.repository.owner.id, &push.repository.name, branch)?;
    Ok(state.config.branch_heads.superseded(&key, &push.after).await?.is_none())
}

/// A push superseded before anything was built: its functions (read from stack.yml when it can be, for their
/// statuses) are noted as not built, and the summary says by which commit.
async fn superseded_before_build(
    state: &AppState,
    push: &PushEvent,
    repo: PathBuf,
    by: &str,
    trace: &mut PushTrace,
) -> String {
    let branch = push.git_ref.strip_prefix("refs/heads/").unwrap_or(&push.git_ref);
    let summary = superseded_description(by, branch, "not built");
    trace.superseded(by);
    // The stale commit's stack.yml only names the statuses: one that does not read costs the user nothing.
    if let Ok((stack, _)) = read_stack(state, push, repo).await {
        trace.listed(stack.functions.keys());
        for name in stack.functions.keys() {
            trace.became(name, format!("superseded by {by}: not built"));
        }
    }
    trace.finish();
    tracing::info!(sha = %push.after, superseded_by = %by, "superseded: nothing built");
    summary
}

/// Clones the push at its SHA into `work/repo` and checks the checkout's size; returns the checkout's path.
async fn checkout(
    state: &AppState,
    push: &PushEvent,
    work: &Path,
    trace: &mut PushTrace,
) -> Result<PathBuf, GitTarError> {
    let repo = work.join("repo");
    tokio::fs::create_dir(&repo).await?;
    let token = installation_token(state, push).await?;
    if let Some(token) = &token {
        trace.secret(token.clone());
    }
    let started = std::time::Instant::now();
    clone::clone_at(&push.repository.clone_url, &push.after, &repo, token.as_ref(), state.config.clone_timeout)
        .await
        .map_err(|e| {
        if matches!(e, clone::CloneError::Timeout(_)) {
            trace.timed_out();
        }
        GitTarError::Push(e.to_string())
    })?;
    // The time inside git, which the pipeline-overhead benchmark subtracts.
    tracing::info!(sha = %push.after, seconds = started.elapsed().as_secs_f64(), "cloned");
    let max_repo_bytes = state.config.max_repo_bytes;
    let size = blocking({
        let repo = repo.clone();
        move || tree_size(&repo).map_err(GitTarError::from)
    })
    .await?;
    if size > max_repo_bytes {
        return Err(GitTarError::Push(format!(
            "the repository is {size} bytes, over the limit of {max_repo_bytes} (max_repo_bytes)"
        )));
    }
    Ok(repo)
}

/// Reads stack.yml and turns each of its functions into the event buildshiprun gets (env files are read here).
async fn read_stack(
    state: &AppState,
    push: &PushEvent,
    repo: PathBuf,
) -> Result<(Stack, Vec<BuildEvent>), GitTarError> {
    let max_functions = state.config.max_functions;
    let repository_url = state.config.repository_url.clone();
    let push = push.clone();
    blocking(move || {
        let stack = Stack::read(&repo).map_err(|e| GitTarError::Push(e.to_string()))?;
        if stack.functions.len() > max_functions {
            return Err(GitTarError::Push(format!(
                "stack.yml has {} functions, over the limit of {max_functions}",
                stack.functions.len()
            )));
        }
        if push.preview.is_some() && !asks_for_previews(&stack) {
            // Nothing of it is built, so none of its names is formed (or refused).
            return Ok((stack, Vec::new()));
        }
        let events = build_events(&stack, &push, &repo, &repository_url)?;
        Ok((stack, events))
    })
    .await
}

/// Whether the repository's stack.yml asks for previews (`previews: true` under `configuration:`).
fn asks_for_previews(stack: &Stack) -> bool {
    stack.configuration.as_ref().is_some_and(|c| c.previews)
}

/// One [`BuildEvent`] per function of `stack`, with its deployed name, image and resolved environment.
fn build_events(
    stack: &Stack,
    push: &PushEvent,
    repo: &Path,
    repository_url: &str,
) -> Result<Vec<BuildEvent>, GitTarError> {
    let owner = &push.repository.owner.login;
    let tag = push.preview_tag();
    let services = deployed_names(stack, owner, tag.as_deref())?;
    let mut events = Vec::new();
    for ((name, function), service) in stack.functions.iter().zip(services) {
        if function.image.trim().is_empty() {
            return Err(GitTarError::Push(format!("function `{name}` has no image in stack.yml")));
        }
        let environment = function.resolved_environment(name, repo).map_err(|e| GitTarError::Refused {
            summary: format!("nothing deployed: {e}"),
            functions: vec![(name.clone(), e.to_string())],
        })?;
        let image = if function.skip_build {
            function.image.clone()
        } else {
            let (owner_id, repo) = (push.repository.owner.id, &push.repository.name);
            match &tag {
                Some(tag) => preview_image_name(repository_url, owner_id, repo, name, tag, &push.after),
                None => build_image_name(repository_url, owner_id, repo, name, &push.after),
            }
            .map_err(|e| GitTarError::Refused {
                summary: format!("nothing deployed: {e}"),
                functions: vec![(name.clone(), e.to_string())],
            })?
        };
        events.push(BuildEvent {
            service,
            function: name.clone(),
            owner: owner.clone(),
            repo: push.repository.name.clone(),
            sha: push.after.clone(),
            clone_url: push.repository.clone_url.clone(),
            installation_id: push.installation_id,
            delivery: push.delivery.clone(),
            image,
            skip_build: function.skip_build,
            environment,
            secrets: function.secrets.clone(),
            labels: function.labels.clone(),
            annotations: function.annotations.clone(),
            limits: function.limits.clone(),
            requests: function.requests.clone(),
            owner_id: push.repository.owner.id,
            branch: push.git_ref.strip_prefix("refs/heads/").unwrap_or(&push.git_ref).to_owned(),
            private: push.repository.private,
            fprocess: function.fprocess.clone(),
            readonly_root_filesystem: function.readonly_root_filesystem,
            constraints: function.constraints.clone(),
            lang: function.lang.clone(),
            build_args: function.build_args.clone(),
            template_commit: None,
            preview: push.preview.clone(),
        });
    }
    Ok(events)
}

/// Each function's deployed name, in the stack's order. Two functions whose names become the same deployed name
/// (`hello` and `Hello` both deploy as `<owner>-hello-<n>`) would overwrite each other, so both are refused.
fn deployed_names(stack: &Stack, owner: &str, tag: Option<&str>) -> Result<Vec<String>, GitTarError> {
    let mut services = Vec::new();
    let mut by_service: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for name in stack.functions.keys() {
        let service = deployed_name(owner, name, tag).map_err(|e| GitTarError::Push(e.to_string()))?;
        by_service.entry(service.clone()).or_default().push(name);
        services.push(service);
    }
    let mut functions = Vec::new();
    let mut clashes = Vec::new();
    for (service, names) in by_service.iter().filter(|(_, names)| names.len() > 1) {
        let listed = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" and ");
        let reason = format!("the function names {listed} would both be deployed as `{service}`: rename one");
        functions.extend(names.iter().map(|n| ((*n).to_owned(), reason.clone())));
        clashes.push(reason);
    }
    if clashes.is_empty() {
        Ok(services)
    } else {
        Err(GitTarError::Refused { summary: format!("nothing deployed: {}", clashes.join("; ")), functions })
    }
}

/// The template of every function that needs one (see [`resolve`]); a function that has none refuses the push,
/// each such function with its own reason.
async fn choose(
    state: &AppState,
    stack: &Stack,
    repo: &Path,
    work: &Path,
) -> Result<BTreeMap<String, resolve::Chosen>, GitTarError> {
    let catalogue = state.templates.catalogue().await;
    let choosing = resolve::Choosing {
        catalogue: &catalogue,
        allow_user_templates: state.config.allow_user_templates,
        repo,
        work,
        timeout: state.config.clone_timeout,
        max_bytes: state.config.max_repo_bytes,
    };
    resolve::choose_templates(&choosing, stack).await.map_err(|functions| GitTarError::Refused {
        summary: format!(
            "nothing deployed: {}",
            functions.iter().map(|(_, why)| why.as_str()).collect::<Vec<_>>().join("; ")
        ),
        functions,
    })
}

/// Shrinkwraps and tars every function that is built (`work/tars/<function>.tar`), then removes the checkout. The
/// tar's `image_ref` names the registry at `push_host` (of-builder's address for it) when set; the event keeps the
/// name the node pulls.
async fn prepare_tars(
    stack: Stack,
    events: Vec<BuildEvent>,
    mut templates: BTreeMap<String, resolve::Chosen>,
    repo: PathBuf,
    work: PathBuf,
    push_host: Option<String>,
) -> Result<Vec<(BuildEvent, Option<PathBuf>)>, GitTarError> {
    blocking(move || {
        let tars = work.join("tars");
        let contexts = work.join("build");
        std::fs::create_dir_all(&tars)?;
        let extra_copy = stack.configuration.as_ref().map(|c| c.copy.clone()).unwrap_or_default();
        let mut prepared = Vec::new();
        for mut event in events {
            let tar = if event.skip_build {
                None
            } else {
                let function = &stack.functions[&event.function];
                let chosen = templates.remove(&event.function);
                event.template_commit = chosen.as_ref().and_then(|c| c.commit.clone());
                let template = chosen.as_ref().map(|c| &c.template);
                let wrapped =
                    shrinkwrap::shrinkwrap_with(&repo, &event.function, function, &extra_copy, template, &contexts)
                        .map_err(|e| GitTarError::Refused {
                            summary: format!("nothing deployed: {e}"),
                            functions: vec![(event.function.clone(), e.to_string())],
                        })?;
                let image_ref = match &push_host {
                    Some(host) => shared::registry::with_registry_host(&event.image, host),
                    None => event.image.clone(),
                };
                let config = BuildConfig { image_ref, build_args: wrapped.build_args, platforms: Vec::new() };
                let path = tars.join(format!("{}.tar", event.function));
                tarball::write_build_tar(&wrapped.context, &config, &path)?;
                Some(path)
            };
            prepared.push((event, tar));
        }
        drop(std::fs::remove_dir_all(&repo));
        Ok(prepared)
    })
    .await
}

/// The `stack-deploy` description, and whether every function ended well (deployed, or superseded by a newer
/// commit, which the caller's description names).
fn summarise(outcomes: &[FunctionOutcome]) -> (String, bool) {
    let (deployed, failed): (Vec<_>, Vec<_>) = outcomes.iter().partition(|o| o.result.is_ok());
    if failed.is_empty() {
        let (superseded, deployed): (Vec<_>, Vec<_>) = deployed.into_iter().partition(|o| o.superseded_by.is_some());
        let mut names: Vec<&str> = deployed.iter().map(|o| o.function.as_str()).collect();
        names.sort_unstable();
        if superseded.is_empty() {
            return (format!("deployed {}", names.join(", ")), true);
        }
        let mut stale: Vec<&str> = superseded.iter().map(|o| o.function.as_str()).collect();
        stale.sort_unstable();
        let what = if names.is_empty() {
            "not deployed".to_owned()
        } else {
            format!("deployed {}; not deployed {}", names.join(", "), stale.join(", "))
        };
        (what, true)
    } else {
        let failures: Vec<String> = failed
            .iter()
            .map(|o| format!("{} ({})", o.function, o.result.as_ref().err().map_or("", String::as_str)))
            .collect();
        (format!("failed: {}", failures.join("; ")), false)
    }
}

/// Runs file work on tokio's blocking threads, so a large checkout does not stall the server's.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GitTarError> + Send + 'static,
) -> Result<T, GitTarError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| GitTarError::Io(std::io::Error::other(e)))?
}

/// An installation token for a private repository; public ones are cloned anonymously.
async fn installation_token(state: &AppState, push: &PushEvent) -> Result<Option<Secret>, GitTarError> {
    if !push.repository.private {
        return Ok(None);
    }
    let (Some(tokens), Some(installation)) = (&state.tokens, push.installation_id) else {
        return Err(GitTarError::Push("the repository is private: git-tar needs the GitHub App (github_app_id and the private-key secret) and an installation to clone it".into()));
    };
    tokens
        .token(installation)
        .await
        .map(Some)
        .map_err(|e| GitTarError::Push(format!("no token to clone the private repository: {e}")))
}

/// Sends one function to buildshiprun and waits for its answer.
async fn hand_on(state: &AppState, event: &BuildEvent, tar: Option<&Path>) -> FunctionOutcome {
    let (result, url, superseded_by) = match send(state, event, tar).await {
        Ok(shipped) => (Ok(shipped.deployed), shipped.url, shipped.superseded_by),
        Err(reason) => {
            tracing::warn!(function = %event.function, %reason, "function not deployed");
            (Err(reason), None, None)
        }
    };
    FunctionOutcome { function: event.function.clone(), result, url, superseded_by }
}

async fn send(state: &AppState, event: &BuildEvent, tar: Option<&Path>) -> Result<ShipResult, String> {
    let mut headers = ClientHeaders::new();
    headers.insert(OFC_EVENT_HEADER, HeaderValue::from_str(&event.to_header_value()).map_err(|e| e.to_string())?);
    headers.insert("content-type", HeaderValue::from_static("application/x-tar"));
    let secret = state.config.common.payload_secret.clone();
    let (body, signature) = match tar {
        Some(path) => {
            let signature = {
                let path = path.to_owned();
                tokio::task::spawn_blocking(move || tarball::sign_file(&path, secret.expose().as_bytes()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
            };
            let file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
            (reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)), signature)
        }
        None => {
            (reqwest::Body::from(Vec::<u8>::new()), shared::signature::sign_sha256(secret.expose().as_bytes(), b""))
        }
    };
    let response = state
        .gateway
        .invoke_presigned(BUILDSHIPRUN, body, &signature, headers, state.config.build_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response.bytes().await.unwrap_or_default();
    if status.is_success() {
        if let Ok(shipped) = serde_json::from_slice::<ShipResult>(&answer) {
            return Ok(shipped);
        }
    }
    Err(serde_json::from_slice::<ErrorBody>(&answer)
        .map_or_else(|_| format!("buildshiprun answered {status}"), |e| e.error))
}

/// Asks garbage-collect to remove this repository's functions that are no longer in stack.yml.
async fn garbage_collect(state: &AppState, push: &PushEvent, keep: Vec<String>) {
    let request = GarbageCollectRequest {
        owner: push.repository.owner.login.clone(),
        repo: push.repository.name.clone(),
        owner_id: Some(push.repository.owner.id).filter(|id| *id != 0),
        functions: keep,
        preview: push.preview_tag(),
        with_previews: false,
    };
    match state.collector.collect(&request).await {
        Ok(Some(collected)) if !collected.deleted.is_empty() => {
            tracing::info!(deleted = ?collected.deleted, "functions no longer in stack.yml removed");
        }
        Ok(_) => {}
        Err(GatewayError::Status { status, .. }) => {
            tracing::warn!(status = status.as_u16(), "garbage-collect did not succeed");
        }
        Err(error) => tracing::warn!(%error, "garbage-collect could not be reached"),
    }
}

/// The bytes of every file in the checkout, `.git` excluded.
pub(crate) fn tree_size(root: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && entry.file_name() != ".git" {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
            }
        }
    }
    Ok(total)
}
