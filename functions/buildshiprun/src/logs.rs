//! Every build's log, kept for the user who pushed it: what each step took, how the build ended, and the whole log
//! of-builder returned, written to the log store under `<owner>/<repo>/<sha>/<function>` with the secrets
//! buildshiprun knows scrubbed, so that a failed commit status can link to it.

use std::time::Instant;

use chrono::{DateTime, Utc};
use reqwest::Url;
use shared::event::{BuildEvent, ShipResult};
use shared::log_store::{LogKey, LogMeta, LogRecord, Outcome, StepTiming};

use crate::{Config, ShipError};

pub use shared::status::{cut_description, MAX_DESCRIPTION};
/// The step that sends the tar to of-builder, which builds the image and pushes it to the registry in one call.
pub const BUILD: &str = "build";
/// The step that creates or updates the function through the gateway.
pub const DEPLOY: &str = "deploy";
/// What of-builder writes last when its own `build_timeout` stopped a build.
const BUILDER_TIMEOUT_LINE: &str = "the build was stopped after";

/// What one request did, gathered while it runs so that the record says how far it got even when a step failed.
#[derive(Debug)]
pub struct BuildTrace {
    pub started: DateTime<Utc>,
    /// Every step that ran, the failed one last.
    pub steps: Vec<StepTiming>,
    /// of-builder's log lines, whole, as it answered them.
    pub log: Vec<String>,
    pub image: Option<String>,
    pub digest: Option<String>,
}

impl Default for BuildTrace {
    fn default() -> Self {
        Self { started: Utc::now(), steps: Vec::new(), log: Vec::new(), image: None, digest: None }
    }
}

impl BuildTrace {
    /// Records that `step` ran from `since` until now.
    pub fn step(&mut self, step: &str, since: Instant) {
        let duration_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.steps.push(StepTiming { step: step.to_owned(), duration_ms });
    }

    /// Whether of-builder was asked to build: only then is there a log worth keeping (a refused stack or a skipped
    /// build has none).
    pub fn built(&self) -> bool {
        self.steps.iter().any(|s| s.step == BUILD)
    }

    /// The step that failed: the last one that ran.
    pub fn failed_step(&self) -> Option<&str> {
        self.steps.last().map(|s| s.step.as_str())
    }

    /// How the build ended (`error` is the request's failure, if any): a timeout at buildshiprun or at
    /// of-builder reads as `timeout`.
    pub fn outcome(&self, error: Option<&ShipError>) -> Outcome {
        match error {
            None => Outcome::Success,
            Some(ShipError::BuildTimedOut { .. }) => Outcome::Timeout,
            Some(_) if self.log.last().is_some_and(|l| l.starts_with(BUILDER_TIMEOUT_LINE)) => Outcome::Timeout,
            Some(_) => Outcome::Failure,
        }
    }
}

/// The failing step and why, in full: the stored log's last line.
fn describe(trace: &BuildTrace, error: &ShipError) -> String {
    match (trace.failed_step(), trace.outcome(Some(error))) {
        (Some(step), Outcome::Timeout) => format!("{step} timed out: {}", error.reason()),
        (Some(step), _) => format!("{step} failed: {}", error.reason()),
        (None, _) => error.to_string(),
    }
}

/// The failure status's description: the failing step and why, cut to what GitHub keeps.
pub fn failure_description(trace: &BuildTrace, error: &ShipError) -> String {
    cut_description(&describe(trace, error))
}

/// Writes the build's record and answers the signed link to it. A store that cannot be written is logged and
/// answers `None`: the build's outcome still reaches the user through its status, only without a link.
pub async fn store(
    config: &Config,
    event: &BuildEvent,
    trace: &BuildTrace,
    result: &Result<ShipResult, ShipError>,
) -> Option<Url> {
    if !trace.built() {
        return None;
    }
    let function = match event.preview_tag() {
        Some(tag) => shared::naming::preview_log_name(&event.function, &tag),
        None => event.function.clone(),
    };
    let key = LogKey::new(event.owner_id, &event.repo, &event.sha, &function)
        .map_err(|error| tracing::warn!(%error, "no build log is stored"))
        .ok()?;
    let record = LogRecord { meta: meta(trace, result), text: text(trace, result) };
    let secrets = secrets(config);
    let started = Instant::now();
    match config.log_store.put(&key, &record, &secrets).await {
        Ok(bytes) => {
            let store_ms = started.elapsed().as_secs_f64() * 1000.0;
            tracing::info!(%key, bytes, store_ms, outcome = ?record.meta.outcome, "stored the build log");
            Some(log_link(config, &key))
        }
        Err(error) => {
            tracing::error!(%key, %error, location = config.log_store.location(), "the build log was not stored");
            None
        }
    }
}

fn meta(trace: &BuildTrace, result: &Result<ShipResult, ShipError>) -> LogMeta {
    LogMeta {
        outcome: trace.outcome(result.as_ref().err()),
        started: trace.started,
        finished: Utc::now(),
        steps: trace.steps.clone(),
        image: trace.image.clone(),
        digest: trace.digest.clone().filter(|d| !d.is_empty()),
    }
}

/// of-builder's whole log, then buildshiprun's own last word when it failed (an unreachable builder or a refused
/// deployment leaves no trace in of-builder's log).
fn text(trace: &BuildTrace, result: &Result<ShipResult, ShipError>) -> String {
    let mut text = trace.log.join("\n");
    if let Err(error) = result {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("buildshiprun: ");
        text.push_str(&describe(trace, error));
    }
    text.push('\n');
    text
}

/// Every secret buildshiprun holds that a build could print.
fn secrets(config: &Config) -> Vec<&str> {
    let mut secrets = vec![config.common.payload_secret.expose(), config.credentials.password.expose()];
    secrets.extend(config.registry_secrets.iter().map(shared::config::Secret::expose));
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
    fn a_long_description_is_cut_to_what_github_keeps_on_a_character_boundary() {
        let long = format!("build failed: {}", "é".repeat(200));
        let cut = cut_description(&long);
        assert_eq!(cut.chars().count(), MAX_DESCRIPTION);
        assert!(cut.starts_with("build failed: ") && cut.ends_with('…'));
        assert_eq!(cut_description("short"), "short");
    }

    #[test]
    fn a_timeout_reported_by_of_builder_reads_as_a_timeout() {
        let mut trace = BuildTrace::default();
        trace.step(BUILD, Instant::now());
        let failed = ShipError::BuildFailed { function: "f".into(), reason: "x".into() };
        assert_eq!(trace.outcome(Some(&failed)), Outcome::Failure);
        trace.log.push("the build was stopped after 240 s (build_timeout)".into());
        assert_eq!(trace.outcome(Some(&failed)), Outcome::Timeout);
        assert!(failure_description(&trace, &failed).starts_with("build timed out: "));
        assert_eq!(trace.outcome(None), Outcome::Success);
    }
}
