//! The pages, as askama templates (`templates/`) and the rows they show. Everything a user pushed (names, log
//! text, commit SHAs) reaches the HTML through askama's escaping.

use askama::Template;
use chrono::{DateTime, Utc};
use shared::log_store::{LogMeta, Outcome, StepTiming, StoredBuild};
use shared::session::Session;

use crate::sources::{Invocations, LogLine, OwnedFunction};

/// The links every page builds, from `dashboard_url`, `github_url` and the gateway's public or pretty URL.
#[derive(Debug, Clone)]
pub struct Links {
    pub dashboard: String,
    pub github: String,
    pub gateway_public: String,
    pub gateway_pretty: Option<String>,
}

impl Links {
    pub fn function(&self, service: &str) -> String {
        format!("{}functions/{service}", self.dashboard)
    }

    pub fn build(&self, service: &str, sha: &str) -> String {
        format!("{}functions/{service}/builds/{sha}", self.dashboard)
    }

    pub fn follow(&self, service: &str) -> String {
        format!("{}functions/{service}/logs?follow=true&tail=100", self.dashboard)
    }

    fn commit(&self, owner: &str, repo: &str, sha: &str) -> String {
        format!("{}{owner}/{repo}/commit/{sha}", self.github)
    }
}

/// One function as the list and its page show it.
pub struct FunctionRow {
    pub service: String,
    pub page: String,
    pub owner: String,
    pub repo: String,
    pub ready: bool,
    pub replicas: u64,
    pub available_replicas: u64,
    pub invocations: u64,
    pub short_sha: String,
    pub commit_url: Option<String>,
    pub url: String,
}

impl FunctionRow {
    pub fn new(f: &OwnedFunction, links: &Links) -> Self {
        let status = &f.status;
        let has_commit = !f.sha.is_empty() && !f.repo.is_empty();
        Self {
            service: status.name.clone(),
            page: links.function(&status.name),
            owner: f.owner.clone(),
            repo: f.repo.clone(),
            ready: status.is_ready(),
            replicas: status.replicas,
            available_replicas: status.available_replicas,
            invocations: status.invocation_count.max(0.0).round() as u64,
            short_sha: f.sha.chars().take(7).collect(),
            commit_url: has_commit.then(|| links.commit(&f.owner, &f.repo, &f.sha)),
            url: match &f.preview {
                Some(tag) => shared::naming::preview_function_url(
                    &links.gateway_public,
                    links.gateway_pretty.as_deref(),
                    &f.owner,
                    &f.function,
                    &status.name,
                    tag,
                ),
                None => shared::naming::function_url(
                    &links.gateway_public,
                    links.gateway_pretty.as_deref(),
                    &f.owner,
                    &f.function,
                    &status.name,
                ),
            },
        }
    }
}

/// The functions of one preview: a branch's or a pull request's, of one repository.
pub struct PreviewGroup {
    /// `octo/fns · pull request #12`
    pub title: String,
    pub rows: Vec<FunctionRow>,
}

/// The default branches' functions, and each preview's functions under its own title (ordered by title).
pub fn grouped(functions: &[OwnedFunction], links: &Links) -> (Vec<FunctionRow>, Vec<PreviewGroup>) {
    let mut rows = Vec::new();
    let mut previews: std::collections::BTreeMap<(String, String, String), PreviewGroup> =
        std::collections::BTreeMap::new();
    for f in functions {
        let row = FunctionRow::new(f, links);
        match (&f.preview, &f.preview_of) {
            (Some(tag), of) => {
                let of = of.clone().unwrap_or_else(|| format!("preview {tag}"));
                let title = format!("{}/{} · {of}", f.owner, f.repo);
                let key = (f.owner.to_ascii_lowercase(), f.repo.to_ascii_lowercase(), tag.clone());
                previews.entry(key).or_insert_with(|| PreviewGroup { title, rows: Vec::new() }).rows.push(row);
            }
            (None, _) => rows.push(row),
        }
    }
    let mut previews: Vec<PreviewGroup> = previews.into_values().collect();
    previews.sort_by(|a, b| a.title.cmp(&b.title));
    (rows, previews)
}

/// Who is signed in, for every page's header.
pub struct Viewer {
    pub login: String,
    pub accounts: Vec<String>,
}

impl Viewer {
    pub fn new(session: &Session) -> Self {
        Self { login: session.user.login.clone(), accounts: session.accounts().map(|a| a.login.clone()).collect() }
    }
}

#[derive(Template)]
#[template(path = "list.html")]
pub struct ListPage {
    pub home: String,
    pub nonce: String,
    pub viewer: Viewer,
    pub rows: Vec<FunctionRow>,
    /// Previews, each a branch's or a pull request's, listed after the default branches' functions.
    pub previews: Vec<PreviewGroup>,
}

/// One build of a function, as its page lists it.
pub struct BuildRow {
    pub sha: String,
    pub short_sha: String,
    pub page: String,
    pub outcome: &'static str,
    pub when: String,
    pub duration: String,
}

impl BuildRow {
    /// `meta` is `None` when the record's metadata could not be read: the build is still listed, by its SHA.
    pub fn new(service: &str, build: &StoredBuild, meta: Option<&LogMeta>, links: &Links) -> Self {
        let sha = build.key.sha().to_owned();
        Self {
            short_sha: sha.chars().take(7).collect(),
            page: links.build(service, &sha),
            outcome: meta.map_or("unknown", |m| outcome(m.outcome)),
            when: when(meta.map_or(build.stored_at, |m| m.started)),
            duration: meta.map_or_else(|| "-".into(), |m| duration_ms(m.duration().as_millis() as u64)),
            sha,
        }
    }
}

/// A runtime log line, shortened for the page.
pub struct TailLine {
    pub time: String,
    pub instance: String,
    pub text: String,
}

impl From<LogLine> for TailLine {
    fn from(line: LogLine) -> Self {
        let time = DateTime::parse_from_rfc3339(&line.timestamp)
            .map_or(line.timestamp, |t| t.with_timezone(&Utc).format("%H:%M:%S").to_string());
        Self { time, instance: line.instance, text: line.text }
    }
}

#[derive(Template)]
#[template(path = "function.html")]
pub struct FunctionPage {
    pub home: String,
    pub nonce: String,
    pub viewer: Viewer,
    pub function: FunctionRow,
    pub builds: Vec<BuildRow>,
    /// `Err` holds why the metrics are unavailable.
    pub invocations: Result<Invocations, String>,
    pub logs: Result<Vec<TailLine>, String>,
    pub follow: String,
}

#[derive(Template)]
#[template(path = "build.html")]
pub struct BuildPage {
    pub home: String,
    pub nonce: String,
    pub viewer: Viewer,
    pub service: String,
    pub function_page: String,
    pub sha: String,
    pub outcome: &'static str,
    pub started: String,
    pub duration: String,
    pub steps: Vec<(String, String)>,
    pub image: Option<String>,
    pub log: String,
}

impl BuildPage {
    pub fn steps(steps: &[StepTiming]) -> Vec<(String, String)> {
        steps.iter().map(|s| (s.step.clone(), duration_ms(s.duration_ms))).collect()
    }
}

pub fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Timeout => "timeout",
    }
}

pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(3_500), "3.5 s");
        assert_eq!(duration_ms(83_500), "1m 23s");
        assert_eq!(duration_ms(3_600_000), "60m 00s");
    }

    #[test]
    fn log_times_are_shortened_and_an_odd_one_is_kept_as_written() {
        let line = |timestamp: &str| LogLine {
            name: "f".into(),
            namespace: "openfaas-fn".into(),
            instance: "f-1".into(),
            timestamp: timestamp.into(),
            text: "hi".into(),
        };
        assert_eq!(TailLine::from(line("2026-11-27T05:00:01.123456789Z")).time, "05:00:01");
        assert_eq!(TailLine::from(line("2026-11-27T06:00:01+01:00")).time, "05:00:01");
        assert_eq!(TailLine::from(line("yesterday")).time, "yesterday");
    }
}
