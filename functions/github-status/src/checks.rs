//! Check runs instead of commit statuses (`use_checks=true`): one run per function and one for `stack-deploy`,
//! created `in_progress` by the first `pending` report and completed by the `success`, `failure` or `error` one
//! (`error` concludes `failure`), its output saying what happened and, for a function, holding its build log's tail.
//!
//! A run is found again by the id this process stored for (owner, repo, sha, context). Each run carries the
//! `external_id` `ofc/<delivery>/<context>`, so after a restart (or once a commit has fallen out of the bounded map)
//! the commit's runs are listed once (`GET /repos/{owner}/{repo}/commits/{sha}/check-runs`) and ours are recognised
//! by that id rather than by name. A rebuild of the same commit (a re-requested check, a redelivery) resets and
//! updates the same runs: GitHub leaves a re-requested run as it is and lets the App reset it through the update
//! endpoint, so run ids stay the same and the `external_id` takes the new delivery.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use shared::event::{CommitStatus, StatusEvent, StatusState, STACK_DEPLOY_CONTEXT};
use shared::log_store::{LogKey, LogStore, LogStoreError};

use crate::error::StatusError;
use crate::writer::{checked_target_url, Sent, StatusWriter, WriteOutcome};

/// GitHub's limit on each of a check run's `output.title`, `summary` and `text`, in characters.
pub const MAX_OUTPUT_CHARS: usize = 65_535;
/// How many commits' runs are remembered; past it the oldest are forgotten, and listed again if they come back.
const MAX_COMMITS: usize = 10_000;
const EXTERNAL_ID_PREFIX: &str = "ofc/";

/// A run this process knows: its id, the build (delivery) it last reported, and whether that build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunEntry {
    id: u64,
    delivery: Option<String>,
    completed: bool,
}

/// One commit's runs by context; `None` until GitHub's list of them has been read.
type CommitRuns = Arc<tokio::sync::Mutex<Option<HashMap<String, RunEntry>>>>;

#[derive(Default)]
struct Remembered {
    commits: HashMap<(String, String, String), CommitRuns>,
    /// Insertion order, so the bound forgets the oldest commit first.
    order: VecDeque<(String, String, String)>,
}

/// Writes check runs; one per process, shared by every request.
pub struct CheckRuns {
    remembered: Mutex<Remembered>,
    /// Where buildshiprun keeps build logs, when github-status is given it: a run's text is its log's tail.
    logs: Option<LogStore>,
}

/// What one report asks of a run.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Create,
    Update(u64),
    /// Nothing to write, and why (a late report of a build that already ended or was superseded).
    Skip(&'static str),
}

/// The decision for a report in `state` from build `delivery`, given the run known for its context. Reports of
/// different builds only match when both name their delivery, so a report without one never skips.
fn plan(known: Option<&RunEntry>, state: StatusState, delivery: Option<&str>) -> Plan {
    let Some(known) = known else { return Plan::Create };
    let same_build = match (known.delivery.as_deref(), delivery) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    match state {
        StatusState::Pending if same_build && known.completed => Plan::Skip("that build has already ended"),
        StatusState::Pending => Plan::Update(known.id),
        _ if !same_build && !known.completed => Plan::Skip("a newer build of this commit is under way"),
        _ => Plan::Update(known.id),
    }
}

/// `ofc/<delivery>/<context>`: which build last wrote the run, and for which context.
fn external_id(delivery: Option<&str>, context: &str) -> String {
    format!("{EXTERNAL_ID_PREFIX}{}/{context}", delivery.unwrap_or("-"))
}

/// The delivery and context of one of our external ids.
fn parse_external_id(id: &str) -> Option<(Option<String>, String)> {
    let (delivery, context) = id.strip_prefix(EXTERNAL_ID_PREFIX)?.split_once('/')?;
    Some(((delivery != "-").then(|| delivery.to_owned()), context.to_owned()))
}

#[derive(Deserialize)]
struct ListedRun {
    id: u64,
    status: String,
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Deserialize)]
struct RunList {
    check_runs: Vec<ListedRun>,
}

#[derive(Deserialize)]
struct CreatedRun {
    id: u64,
}

impl CheckRuns {
    pub fn new(logs: Option<LogStore>) -> Self {
        Self { remembered: Mutex::default(), logs }
    }

    /// The runs of the commit in `event`, shared by concurrent requests for it.
    fn commit(&self, event: &StatusEvent) -> CommitRuns {
        let key = (event.owner.to_ascii_lowercase(), event.repo.to_ascii_lowercase(), event.sha.to_ascii_lowercase());
        let mut remembered = self.remembered.lock().expect("check runs lock");
        if let Some(runs) = remembered.commits.get(&key) {
            return runs.clone();
        }
        while remembered.order.len() >= MAX_COMMITS {
            if let Some(oldest) = remembered.order.pop_front() {
                remembered.commits.remove(&oldest);
            }
        }
        remembered.order.push_back(key.clone());
        remembered.commits.entry(key).or_default().clone()
    }

    /// Writes `status` as its context's check run. Reports for one commit are written one at a time, so a run
    /// is never created twice by two concurrent reports.
    pub async fn write(
        &self,
        writer: &StatusWriter,
        installation_id: u64,
        event: &StatusEvent,
        status: &CommitStatus,
        deadline: Instant,
    ) -> Result<WriteOutcome, StatusError> {
        let commit = self.commit(event);
        let mut guard = commit.lock().await;
        if guard.is_none() {
            *guard = Some(list_ours(writer, installation_id, event, &status.context, deadline).await?);
        }
        let runs = guard.as_mut().expect("listed above");
        let delivery = event.delivery.as_deref();
        let planned = plan(runs.get(&status.context), status.state, delivery);
        let body = match &planned {
            Plan::Skip(why) => {
                tracing::info!(owner = %event.owner, repo = %event.repo, sha = %event.sha, context = %status.context, state = status.state.as_str(), "check run not updated: {why}");
                return Ok(WriteOutcome::Written);
            }
            Plan::Create => self.run_body(event, status, true).await,
            Plan::Update(_) => self.run_body(event, status, false).await,
        };
        let id = match planned {
            Plan::Update(id) => update(writer, installation_id, event, status, id, &body, deadline).await?,
            _ => create(writer, installation_id, event, status, &body, deadline).await?,
        };
        match id {
            Ok(id) => {
                let completed = status.state != StatusState::Pending;
                runs.insert(status.context.clone(), RunEntry { id, delivery: delivery.map(str::to_owned), completed });
                Ok(WriteOutcome::Written)
            }
            Err(reason) => Ok(WriteOutcome::Rejected(reason)),
        }
    }

    /// The create or update body: a new build (`pending`) restarts the run, an end completes it.
    async fn run_body(&self, event: &StatusEvent, status: &CommitStatus, creating: bool) -> serde_json::Value {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let details_url = checked_target_url(status.target_url.as_deref());
        let text = match status.state {
            StatusState::Pending => None,
            _ => self.log_text(event, &status.context, details_url.as_deref()).await,
        };
        let mut body = json!({
            "external_id": external_id(event.delivery.as_deref(), &status.context),
            "output": output(status, details_url.as_deref(), text),
        });
        if creating {
            body["name"] = status.context.clone().into();
            body["head_sha"] = event.sha.to_ascii_lowercase().into();
        }
        if let Some(url) = details_url {
            body["details_url"] = url.into();
        }
        match conclusion(status.state) {
            None => {
                body["status"] = "in_progress".into();
                body["started_at"] = now.into();
            }
            Some(conclusion) => {
                body["status"] = "completed".into();
                body["conclusion"] = conclusion.into();
                body["completed_at"] = now.into();
            }
        }
        body
    }

    /// The tail of the function's stored build log, fenced, within GitHub's limit; `None` for `stack-deploy`,
    /// without a log store, or when no log was stored (a store fault is logged: the run is written without it).
    async fn log_text(&self, event: &StatusEvent, context: &str, link: Option<&str>) -> Option<String> {
        let logs = self.logs.as_ref().filter(|_| context != STACK_DEPLOY_CONTEXT)?;
        let key = LogKey::new(event.owner_id, &event.repo, &event.sha.to_ascii_lowercase(), context).ok()?;
        match logs.get(&key).await {
            Ok(record) => Some(log_tail(&record.text, link, MAX_OUTPUT_CHARS)),
            Err(LogStoreError::NotFound(_)) => None,
            Err(error) => {
                tracing::warn!(%key, %error, "the build log could not be read for the check run");
                None
            }
        }
    }
}

/// The check run conclusion of a final state (`error`, the platform's own failure, is a `failure` for the user);
/// `None` while the build runs.
fn conclusion(state: StatusState) -> Option<&'static str> {
    match state {
        StatusState::Pending => None,
        StatusState::Success => Some("success"),
        StatusState::Failure | StatusState::Error => Some("failure"),
    }
}

/// `title` says how it went, `summary` what happened (the status's description) and where to look.
fn output(status: &CommitStatus, details_url: Option<&str>, text: Option<String>) -> serde_json::Value {
    let title = match status.state {
        StatusState::Pending => format!("{}: in progress", status.context),
        StatusState::Success => format!("{}: succeeded", status.context),
        StatusState::Failure => format!("{}: failed", status.context),
        StatusState::Error => format!("{}: the build pipeline failed", status.context),
    };
    let mut summary = status.description.clone();
    if let Some(url) = details_url {
        let what = if status.state == StatusState::Success { "The function" } else { "The whole log" };
        let _ = write!(summary, "\n\n{what}: {url}");
    }
    let mut output = json!({ "title": cut_chars(&title, 255), "summary": cut_chars(&summary, MAX_OUTPUT_CHARS) });
    if let Some(text) = text {
        output["text"] = text.into();
    }
    output
}

/// At most `max` characters, the end replaced by `…` when cut.
fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// The last lines of `log` that fit `limit` characters once fenced as a code block, with a first line saying
/// how much was left out and where the whole log is. The fence is longer than any run of backticks in the log, so
/// no log line can end it.
pub fn log_tail(log: &str, link: Option<&str>, limit: usize) -> String {
    let log = log.trim_end();
    let total = log.chars().count();
    let mut budget = limit.saturating_sub(200 + link.map_or(0, str::len));
    let mut tail = suffix_at_line(log, budget);
    let mut fence = fence_for(tail);
    if fence.len() > 3 {
        budget = budget.saturating_sub(2 * fence.len());
        tail = suffix_at_line(log, budget);
        fence = fence_for(tail);
    }
    let left_out = total - tail.chars().count();
    let mut text = String::with_capacity(tail.len() + 256);
    if left_out > 0 {
        let _ = write!(text, "The first {left_out} characters of the log are left out");
        match link {
            Some(link) => {
                let _ = write!(text, "; the whole log: {link}\n\n");
            }
            None => text.push_str(".\n\n"),
        }
    }
    let _ = write!(text, "{fence}text\n{tail}\n{fence}\n");
    text
}

/// The end of `log` of at most `max` characters, starting at a line's beginning when a line break is in it.
fn suffix_at_line(log: &str, max: usize) -> &str {
    let total = log.chars().count();
    if total <= max {
        return log;
    }
    let start = log.char_indices().nth(total - max).map_or(log.len(), |(i, _)| i);
    let tail = &log[start..];
    match tail.find('\n') {
        Some(newline) if start > 0 && newline + 1 < tail.len() => &tail[newline + 1..],
        _ => tail,
    }
}

/// Three backticks, or one more than the longest run of them in `text`.
fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

/// Our runs of the commit, by context, from GitHub's list (newest first, so the first one of a context wins). A
/// list GitHub refuses is logged and taken as empty: the runs are then created anew.
async fn list_ours(
    writer: &StatusWriter,
    installation_id: u64,
    event: &StatusEvent,
    label: &str,
    deadline: Instant,
) -> Result<HashMap<String, RunEntry>, StatusError> {
    let mut url = writer.repo_url(event, &format!("commits/{}/check-runs", event.sha.to_ascii_lowercase()))?;
    url.query_pairs_mut().append_pair("filter", "all").append_pair("per_page", "100");
    let listed = match writer.send(installation_id, Method::GET, &url, None, label, deadline).await? {
        Sent::Answered(response) => response.json::<RunList>().await.map_err(|e| e.to_string()),
        Sent::Rejected(reason, _) => Err(reason),
    };
    let mut ours = HashMap::new();
    match listed {
        Ok(list) => {
            for run in list.check_runs {
                let Some((delivery, context)) = run.external_id.as_deref().and_then(parse_external_id) else {
                    continue;
                };
                let entry = RunEntry { id: run.id, delivery, completed: run.status == "completed" };
                ours.entry(context).or_insert(entry);
            }
        }
        Err(reason) => {
            tracing::warn!(owner = %event.owner, repo = %event.repo, sha = %event.sha, %reason, "the commit's check runs could not be listed; new ones are created");
        }
    }
    Ok(ours)
}

/// Creates the run: its id, or GitHub's refusal.
async fn create(
    writer: &StatusWriter,
    installation_id: u64,
    event: &StatusEvent,
    status: &CommitStatus,
    body: &serde_json::Value,
    deadline: Instant,
) -> Result<Result<u64, String>, StatusError> {
    let url = writer.repo_url(event, "check-runs")?;
    match writer.send(installation_id, Method::POST, &url, Some(body), &status.context, deadline).await? {
        Sent::Answered(response) => Ok(response
            .json::<CreatedRun>()
            .await
            .map(|run| run.id)
            .map_err(|e| format!("GitHub's answer to a new check run has no id: {e}"))),
        Sent::Rejected(reason, _) => Ok(Err(reason)),
    }
}

/// Updates run `id`; one that is gone (404: deleted with its repository's history) is created again.
async fn update(
    writer: &StatusWriter,
    installation_id: u64,
    event: &StatusEvent,
    status: &CommitStatus,
    id: u64,
    body: &serde_json::Value,
    deadline: Instant,
) -> Result<Result<u64, String>, StatusError> {
    let url = writer.repo_url(event, &format!("check-runs/{id}"))?;
    match writer.send(installation_id, Method::PATCH, &url, Some(body), &status.context, deadline).await? {
        Sent::Answered(_) => Ok(Ok(id)),
        Sent::Rejected(_, Some(StatusCode::NOT_FOUND)) => {
            let mut body = body.clone();
            body["name"] = status.context.clone().into();
            body["head_sha"] = event.sha.to_ascii_lowercase().into();
            create(writer, installation_id, event, status, &body, deadline).await
        }
        Sent::Rejected(reason, _) => Ok(Err(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(delivery: &str, completed: bool) -> RunEntry {
        RunEntry { id: 7, delivery: Some(delivery.into()), completed }
    }

    #[test]
    fn a_new_build_reopens_the_run_and_a_late_report_of_an_old_one_is_skipped() {
        assert_eq!(plan(None, StatusState::Pending, Some("a")), Plan::Create);
        assert_eq!(plan(Some(&entry("a", false)), StatusState::Pending, Some("a")), Plan::Update(7));
        assert_eq!(plan(Some(&entry("a", true)), StatusState::Pending, Some("b")), Plan::Update(7), "a re-run");
        assert!(matches!(plan(Some(&entry("a", true)), StatusState::Pending, Some("a")), Plan::Skip(_)));
        assert!(matches!(plan(Some(&entry("b", false)), StatusState::Failure, Some("a")), Plan::Skip(_)));
        assert_eq!(plan(Some(&entry("a", false)), StatusState::Success, None), Plan::Update(7));
    }

    #[test]
    fn external_ids_carry_the_build_and_the_context() {
        let id = external_id(Some("d-1"), "hello");
        assert_eq!(parse_external_id(&id), Some((Some("d-1".into()), "hello".into())));
        assert_eq!(parse_external_id(&external_id(None, "a/b")), Some((None, "a/b".into())));
        assert_eq!(parse_external_id("someone-else"), None);
    }

    #[test]
    fn a_long_log_keeps_its_last_lines_within_the_limit() {
        let mut log = String::new();
        for n in 0..20_000 {
            let _ = writeln!(log, "line {n} é");
        }
        let text = log_tail(&log, Some("https://example.com/log"), MAX_OUTPUT_CHARS);
        assert!(text.chars().count() <= MAX_OUTPUT_CHARS, "{}", text.chars().count());
        assert!(text.starts_with("The first "), "{}", &text[..80]);
        assert!(text.contains("https://example.com/log"));
        assert!(text.contains("\nline 19999 é\n```\n"), "the last line is kept");
        let body = text.split_once("```text\n").unwrap().1;
        assert!(body.starts_with("line "), "cut at a line's start: {}", &body[..20]);
    }

    #[test]
    fn a_short_log_is_whole_and_backticks_cannot_end_its_fence() {
        let text = log_tail("STEP 1\n```\nError: ````x\n", None, MAX_OUTPUT_CHARS);
        assert_eq!(text, "`````text\nSTEP 1\n```\nError: ````x\n`````\n");
        let tight = log_tail(&"x".repeat(1_000), None, 500);
        assert!(tight.chars().count() <= 500);
    }
}
