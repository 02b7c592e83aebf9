//! Build logs from the command line: `ofc logs OWNER/REPO` prints what the stack's log store keeps (the same
//! records pipeline-log serves behind signed links), and a failed `ofc push` prints the failing functions' last
//! lines, so that the reason a build failed is on the terminal without a browser.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use shared::log_store::{LogKey, LogRecord, LogStore, LogStoreConfig, Outcome};

use crate::state::StateDir;

/// How many of a failed build's last lines `ofc push` prints: the end of a log is where a failure is explained.
pub const TAIL_LINES: usize = 30;

/// What `ofc logs` is run with.
#[derive(Debug, Clone)]
pub struct LogsOptions {
    /// `OWNER/REPO`, as pushed.
    pub target: String,
    /// One function of the stack; every function of the push when absent.
    pub function: Option<String>,
    /// The commit (full SHA or a prefix of at least 7 digits); the newest push when absent.
    pub sha: Option<String>,
    pub state: PathBuf,
}

/// The folder `ofc up` gives every function as `log_store_path`.
pub fn builds_dir(state: &StateDir) -> PathBuf {
    state.logs().join("builds")
}

/// The stack's log store, read in place; an absent folder means nothing was ever built with this state folder.
fn open(state: &StateDir) -> anyhow::Result<LogStore> {
    let dir = builds_dir(state);
    if !dir.is_dir() {
        bail!("no build logs in {} (push a repository with `ofc push` first)", dir.display());
    }
    LogStore::open(&LogStoreConfig::folder(dir)).context("the log store cannot be opened")
}

/// One line that says how a build ended and how long it took.
fn header(function: &str, record: &LogRecord) -> String {
    let outcome = match record.meta.outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Timeout => "timeout",
    };
    let steps: Vec<String> =
        record.meta.steps.iter().map(|s| format!("{} {:.1}s", s.step, s.duration_ms as f64 / 1000.0)).collect();
    let steps = if steps.is_empty() { String::new() } else { format!(" ({})", steps.join(", ")) };
    format!("==> {function}: {outcome} in {:.1}s{steps}", record.meta.duration().as_secs_f64())
}

/// Prints the last [`TAIL_LINES`] lines of each of `functions`' logs for a failed push; a function without a
/// record (refused before its build) is skipped, as its status already said why.
pub async fn print_failure_tails(state: &StateDir, owner: &str, repo: &str, sha: &str, functions: &[String]) {
    let Ok(store) = open(state) else { return };
    let Ok(owner_id) = state.account_id(owner) else { return };
    for function in functions {
        let Ok(key) = LogKey::new(owner_id, repo, sha, function) else { continue };
        let Ok(record) = store.get(&key).await else { continue };
        let lines: Vec<&str> = record.text.lines().collect();
        let shown = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        eprintln!("{}", header(function, &record));
        if shown.len() < lines.len() {
            eprintln!(
                "    … {} earlier lines: `ofc logs {owner}/{repo} {function}` prints them all",
                lines.len() - shown.len()
            );
        }
        for line in shown {
            eprintln!("    {line}");
        }
    }
}

/// `ofc logs`: prints the stored logs of one push, each under its header.
pub async fn logs(options: &LogsOptions) -> anyhow::Result<()> {
    let state = StateDir::new(&options.state);
    let (owner, repo) = options.target.split_once('/').context("name the repository as OWNER/REPO")?;
    let owner_id = state.account_id(owner)?;
    let store = open(&state)?;
    let sha = match &options.sha {
        Some(sha) => resolve_sha(&state, owner, repo, sha)?,
        None => store
            .latest(owner_id, repo)
            .await?
            .with_context(|| format!("no build of {owner}/{repo} is stored (was it pushed with this --state?)"))?,
    };
    let functions = match &options.function {
        Some(function) => vec![function.clone()],
        None => store.list(owner_id, repo, &sha).await?.into_iter().map(|listed| listed.function).collect(),
    };
    if functions.is_empty() {
        bail!("no build log is stored for {owner}/{repo} at {sha}");
    }
    let mut out = std::io::stdout().lock();
    let mut printed = writeln!(out, "{owner}/{repo} at {sha}");
    for function in &functions {
        if printed.is_err() {
            break;
        }
        let record = store.get(&LogKey::new(owner_id, repo, &sha, function)?).await?;
        printed = print_record(&mut out, function, &record);
    }
    match printed.and_then(|()| out.flush()) {
        // A reader that stopped early (`ofc logs … | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing the build log to stdout"),
        _ => Ok(()),
    }
}

fn print_record(out: &mut impl Write, function: &str, record: &LogRecord) -> std::io::Result<()> {
    writeln!(out, "{}", header(function, record))?;
    out.write_all(record.text.as_bytes())?;
    if !record.text.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// A full SHA, or the one stored commit of `owner/repo` that starts with `prefix`.
fn resolve_sha(state: &StateDir, owner: &str, repo: &str, prefix: &str) -> anyhow::Result<String> {
    let prefix = prefix.trim().to_ascii_lowercase();
    // Checks the prefix's form with the store's own rules (hex, 7 to 64 digits) before it names a folder.
    let key = LogKey::new(state.account_id(owner)?, repo, &prefix, "x")?;
    let dir = builds_dir(state).join(key.owner_id().to_string()).join(key.repo());
    let matches: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("no build of {owner}/{repo} is stored"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|sha| sha.starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [sha] => Ok(sha.clone()),
        [] => bail!("no build of {owner}/{repo} at {prefix} is stored"),
        _ => bail!("{prefix} names {} stored commits of {owner}/{repo}: give more digits", matches.len()),
    }
}
