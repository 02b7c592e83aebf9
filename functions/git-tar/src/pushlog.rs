//! Each push's own record, so a push that fails in git-tar (before any build) is as readable as a failed build:
//! the steps git-tar ran with their timings, what became of each function, and the error in full, stored under
//! `<owner>/<repo>/<sha>/stack-deploy` (and, for a refusal that belongs to one function, under that function's key
//! too), with the secrets git-tar knows scrubbed. The failing `stack-deploy` status links to it through
//! pipeline-log, since a status description keeps only 140 characters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use chrono::{DateTime, Utc};
use reqwest::Url;
use shared::config::Secret;
use shared::event::{PushEvent, STACK_DEPLOY_CONTEXT};
use shared::log_store::{LogKey, LogMeta, LogRecord, Outcome, StepTiming};

use crate::{Config, GitTarError};

pub use shared::status::{cut_description, MAX_DESCRIPTION};
/// Cloning the push at its SHA (with the installation token and the size check).
pub const CLONE: &str = "clone";
/// Reading stack.yml: parsing, substitution, limits, env files, deployed names.
pub const PARSE: &str = "parse";
/// Choosing each function's template.
pub const TEMPLATES: &str = "templates";
/// Shrinkwrapping and tarring every function.
pub const SHRINKWRAP: &str = "shrinkwrap";
/// Comparing the push with its branch's newest known commit (`crate::order`).
pub const ORDER: &str = "order";
/// Handing every tar to buildshiprun and waiting for its answers.
pub const HAND_OFF: &str = "hand-off";
/// What a function of stack.yml becomes until git-tar hands it on.
const NOT_HANDED_ON: &str = "not handed on";
/// PEM lines shorter than this are not worth scrubbing on their own (they would hide ordinary words).
const MIN_SECRET_LINE: usize = 16;

/// What one push did, gathered while it runs so the record says how far it got even when a step failed.
#[derive(Debug)]
pub struct PushTrace {
    started: DateTime<Utc>,
    /// The steps that finished, in order.
    steps: Vec<StepTiming>,
    /// The step under way: a failure is that step's.
    current: Option<(&'static str, Instant)>,
    /// Each function of stack.yml and what became of it, in the stack's order.
    functions: Vec<(String, String)>,
    /// Secrets met during the push (an installation token), scrubbed from its records.
    secrets: Vec<Secret>,
    /// Whether the failure was a time limit (`clone_timeout`), which the record's outcome says apart.
    timed_out: bool,
    /// The newer commit of the branch that superseded the push, when one did.
    superseded_by: Option<String>,
}

impl Default for PushTrace {
    fn default() -> Self {
        Self {
            started: Utc::now(),
            steps: Vec::new(),
            current: None,
            functions: Vec::new(),
            secrets: Vec::new(),
            timed_out: false,
            superseded_by: None,
        }
    }
}

impl PushTrace {
    /// Ends the step under way, if any, and starts `step`.
    pub fn begin(&mut self, step: &'static str) {
        self.finish();
        self.current = Some((step, Instant::now()));
    }

    /// Ends the step under way, recording how long it took.
    pub fn finish(&mut self) {
        if let Some((step, since)) = self.current.take() {
            let duration_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.steps.push(StepTiming { step: step.to_owned(), duration_ms });
        }
    }

    /// The step under way, else the last one that ran: where a failure happened.
    pub fn step(&self) -> Option<&str> {
        self.current.map(|(step, _)| step).or_else(|| self.steps.last().map(|s| s.step.as_str()))
    }

    /// The functions stack.yml lists, none handed on yet.
    pub fn listed<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        self.functions = names.into_iter().map(|n| (n.clone(), NOT_HANDED_ON.to_owned())).collect();
    }

    /// What became of `function`.
    pub fn became(&mut self, function: &str, what: String) {
        match self.functions.iter_mut().find(|(name, _)| name == function) {
            Some((_, was)) => *was = what,
            None => self.functions.push((function.to_owned(), what)),
        }
    }

    /// Notes that the step under way ran out of time.
    pub fn timed_out(&mut self) {
        self.timed_out = true;
    }

    /// How the push ended: a time limit reads as `timeout`.
    pub fn outcome<T>(&self, result: &Result<T, GitTarError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) if self.timed_out => Outcome::Timeout,
            Err(_) => Outcome::Failure,
        }
    }

    /// Notes that a newer commit of the branch, `by`, superseded the push.
    pub fn superseded(&mut self, by: &str) {
        self.superseded_by = Some(by.to_owned());
    }

    /// The newer commit that superseded the push, if one did.
    pub fn superseded_by(&self) -> Option<&str> {
        self.superseded_by.as_deref()
    }

    /// The functions stack.yml listed and what became of each.
    pub fn functions(&self) -> &[(String, String)] {
        &self.functions
    }

    /// A secret the push used, kept out of its records.
    pub fn secret(&mut self, secret: Secret) {
        self.secrets.push(secret);
    }
}

/// The failing step and why, in full: the record's last line. A `Reported` summary already reads `failed: …`.
pub fn describe(trace: &PushTrace, error: &GitTarError) -> String {
    match (trace.step(), error) {
        (Some(step), GitTarError::Reported(summary)) => format!("{step} {summary}"),
        (Some(step), error) if trace.timed_out => format!("{step} timed out: {error}"),
        (Some(step), error) => format!("{step} failed: {error}"),
        (None, error) => error.to_string(),
    }
}

/// The failing `stack-deploy` status's description: the failing step and why, cut to what GitHub keeps.
pub fn failure_description(trace: &PushTrace, error: &GitTarError) -> String {
    cut_description(&describe(trace, error))
}

/// The links to the records stored for one push: `stack-deploy`'s and each refused function's.
#[derive(Debug, Default)]
pub struct Links {
    pub stack: Option<Url>,
    pub functions: BTreeMap<String, Url>,
}

/// Writes the push's records and answers the links to them. A store that cannot be written is logged and leaves
/// the link out: the statuses are still sent.
pub async fn store(
    config: &Config,
    push: &PushEvent,
    trace: &mut PushTrace,
    result: &Result<String, GitTarError>,
) -> Links {
    trace.finish();
    let secrets = secrets(config, trace);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let meta = LogMeta {
        outcome: trace.outcome(result),
        started: trace.started,
        finished: Utc::now(),
        steps: trace.steps.clone(),
        image: None,
        digest: None,
    };
    let mut links = Links::default();
    let record = LogRecord { meta: meta.clone(), text: text(push, trace, result) };
    links.stack = put(config, push, STACK_DEPLOY_CONTEXT, &record, &secrets).await;
    if let Err(GitTarError::Refused { functions, .. }) = result {
        for (function, why) in functions {
            let text = format!("{}git-tar refused the function `{function}`: {why}\n", header(push));
            let record = LogRecord { meta: meta.clone(), text };
            if let Some(link) = put(config, push, function, &record, &secrets).await {
                links.functions.insert(function.clone(), link);
            }
        }
    }
    links
}

/// Stores one record under `function`'s key and answers its link, or logs why it could not.
async fn put(config: &Config, push: &PushEvent, function: &str, record: &LogRecord, secrets: &[&str]) -> Option<Url> {
    let function = match push.preview_tag() {
        Some(tag) => shared::naming::preview_log_name(function, &tag),
        None => function.to_owned(),
    };
    let key = LogKey::new(push.repository.owner.id, &push.repository.name, &push.after, &function)
        .map_err(|error| tracing::warn!(%error, function, "no push record is stored"))
        .ok()?;
    match config.log_store.put(&key, record, secrets).await {
        Ok(bytes) => {
            tracing::info!(%key, bytes, outcome = ?record.meta.outcome, "stored the push record");
            Some(log_link(config, &key))
        }
        Err(error) => {
            tracing::error!(%key, %error, location = config.log_store.location(), "the push record was not stored");
            None
        }
    }
}

fn header(push: &PushEvent) -> String {
    format!(
        "git-tar: push of {} at {} ({}, delivery {})\n",
        push.repository.full_name, push.after, push.git_ref, push.delivery
    )
}

/// The record's text: the push, each step with its timing, each function's fate, and how the push ended.
fn text(push: &PushEvent, trace: &PushTrace, result: &Result<String, GitTarError>) -> String {
    let mut text = header(push);
    for step in &trace.steps {
        let _ = writeln!(text, "step {}: {} ms", step.step, step.duration_ms);
    }
    if !trace.functions.is_empty() {
        text.push_str("functions:\n");
        for (function, what) in &trace.functions {
            let _ = writeln!(text, "  {function}: {what}");
        }
    }
    match result {
        Ok(summary) => {
            let _ = writeln!(text, "git-tar: {summary}");
        }
        Err(error) => {
            let _ = writeln!(text, "git-tar: {}", describe(trace, error));
        }
    }
    text
}

/// Every secret git-tar knows that a record could hold: `payload-secret`, the App's private key (whole, and each
/// line of it, since a message could quote one), and the push's installation token.
fn secrets(config: &Config, trace: &PushTrace) -> Vec<String> {
    let mut secrets = vec![config.common.payload_secret.expose().to_owned()];
    if let Some(key) = &config.app_private_key {
        secrets.push(key.expose().to_owned());
        secrets.extend(
            key.expose()
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= MIN_SECRET_LINE && !l.starts_with("-----"))
                .map(str::to_owned),
        );
    }
    secrets.extend(trace.secrets.iter().map(|s| s.expose().to_owned()));
    secrets.retain(|s| !s.is_empty());
    secrets
}

/// pipeline-log's link to `key`, valid for as long as the record is kept.
pub fn log_link(config: &Config, key: &LogKey) -> Url {
    config.log_store.link(&config.gateway_public_url, key, &config.common.payload_secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_its_step_and_is_cut_to_what_github_keeps() {
        let mut trace = PushTrace::default();
        trace.begin(CLONE);
        trace.begin(PARSE);
        let error = GitTarError::Push(format!("stack.yml: {}", "é".repeat(200)));
        let description = failure_description(&trace, &error);
        assert!(description.starts_with("parse failed: stack.yml: "), "{description}");
        assert_eq!(description.chars().count(), MAX_DESCRIPTION);
        assert!(description.ends_with('…'));
        trace.begin(HAND_OFF);
        trace.finish();
        let reported = GitTarError::Reported("failed: f (no)".into());
        assert_eq!(describe(&trace, &reported), "hand-off failed: f (no)");
        let steps: Vec<&str> = trace.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(steps, [CLONE, PARSE, HAND_OFF]);
    }

    #[test]
    fn a_clone_that_runs_out_of_time_reads_as_a_timeout() {
        let mut trace = PushTrace::default();
        trace.begin(CLONE);
        let error = GitTarError::Push("the clone took longer than 1 s (clone_timeout)".into());
        assert_eq!(trace.outcome(&Err::<(), _>(GitTarError::Push("x".into()))), Outcome::Failure);
        trace.timed_out();
        assert_eq!(trace.outcome(&Err::<(), _>(error)), Outcome::Timeout);
        let error = GitTarError::Push("the clone took longer than 1 s (clone_timeout)".into());
        assert_eq!(describe(&trace, &error), "clone timed out: the clone took longer than 1 s (clone_timeout)");
        assert_eq!(trace.outcome(&Ok::<(), GitTarError>(())), Outcome::Success);
    }

    #[test]
    fn a_function_keeps_its_place_and_takes_its_latest_fate() {
        let mut trace = PushTrace::default();
        let names = ["a".to_owned(), "b".to_owned()];
        trace.listed(&names);
        trace.became("b", "deployed (created)".into());
        assert_eq!(trace.functions[0], ("a".to_owned(), NOT_HANDED_ON.to_owned()));
        assert_eq!(trace.functions[1], ("b".to_owned(), "deployed (created)".to_owned()));
    }
}
