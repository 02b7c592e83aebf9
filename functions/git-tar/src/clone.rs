//! Cloning a repository at exactly one SHA with `git`, safely: an argument list (never a shell), `--` before user
//! values, no hooks, no prompts, only http(s) transports, a time limit, and a token only ever in an env var.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use shared::config::Secret;

/// Why a clone failed; the text never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("`git` cannot run: {0}")]
    GitMissing(String),
    #[error("the clone took longer than {0} s (clone_timeout)")]
    Timeout(u64),
    #[error("the repository could not be cloned: {0}")]
    Failed(String),
    #[error("commit {0} was not found in the repository")]
    ShaNotFound(String),
}

struct Git<'a> {
    dir: &'a Path,
    token: Option<&'a Secret>,
    deadline: Instant,
    timeout: Duration,
}

impl Git<'_> {
    async fn run(&self, args: &[&str]) -> Result<String, CloneError> {
        let output = self.output(args).await?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("git failed").to_owned();
            Err(CloneError::Failed(reason))
        }
    }

    /// Runs a command whose exit status is its answer (`cat-file -e`, `merge-base --is-ancestor`): 0 is yes, 1 is
    /// no, anything else a failure.
    async fn answers(&self, args: &[&str]) -> Result<bool, CloneError> {
        let output = self.output(args).await?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                Err(CloneError::Failed(
                    stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("git failed").to_owned(),
                ))
            }
        }
    }

    async fn output(&self, args: &[&str]) -> Result<std::process::Output, CloneError> {
        let mut command = tokio::process::Command::new("git");
        command
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "credential.helper=",
                "-c",
                "protocol.allow=never",
                "-c",
                "protocol.http.allow=always",
                "-c",
                "protocol.https.allow=always",
                "-c",
                "advice.detachedHead=false",
            ])
            .args(args)
            .current_dir(self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = self.token {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", token.expose()));
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let child = command.spawn().map_err(|e| CloneError::GitMissing(e.to_string()))?;
        let output = tokio::time::timeout(remaining, child.wait_with_output())
            .await
            .map_err(|_| CloneError::Timeout(self.timeout.as_secs()))?
            .map_err(|e| CloneError::Failed(e.to_string()))?;
        Ok(output)
    }
}

/// Clones `url` into `dest` (an empty folder) and checks out exactly `sha`, shallowly where the server allows.
pub async fn clone_at(
    url: &str,
    sha: &str,
    dest: &Path,
    token: Option<&Secret>,
    timeout: Duration,
) -> Result<(), CloneError> {
    let git = Git { dir: dest, token, deadline: Instant::now() + timeout, timeout };
    git.run(&["init", "-q"]).await?;
    git.run(&["remote", "add", "origin", "--", url]).await?;
    // A SHA is fetched directly where the server allows it (GitHub does); otherwise every branch is fetched.
    if git.run(&["fetch", "-q", "--no-tags", "--depth", "1", "--", "origin", sha]).await.is_err() {
        git.run(&["fetch", "-q", "--no-tags", "--", "origin", "+refs/heads/*:refs/remotes/origin/*"]).await?;
    }
    if git.run(&["cat-file", "-e", &format!("{sha}^{{commit}}")]).await.is_err() {
        return Err(CloneError::ShaNotFound(sha.to_owned()));
    }
    git.run(&["checkout", "-q", "--detach", sha]).await?;
    let head = git.run(&["rev-parse", "HEAD"]).await?;
    if !head.eq_ignore_ascii_case(sha) {
        return Err(CloneError::ShaNotFound(sha.to_owned()));
    }
    Ok(())
}

/// Fetches `reference` of `url` (a branch, a tag, a full commit SHA, or the remote's HEAD when `None`) shallowly
/// into `dest` (an empty folder), checks it out and returns its commit: how template repositories are fetched, with
/// the same hardened `git` as a push's clone and no token (they are public).
pub async fn fetch_ref(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    timeout: Duration,
) -> Result<String, CloneError> {
    let git = Git { dir: dest, token: None, deadline: Instant::now() + timeout, timeout };
    git.run(&["init", "-q"]).await?;
    git.run(&["remote", "add", "origin", "--", url]).await?;
    git.run(&["fetch", "-q", "--no-tags", "--depth", "1", "--", "origin", reference.unwrap_or("HEAD")]).await?;
    let commit = git.run(&["rev-parse", "--verify", "-q", "FETCH_HEAD^{commit}"]).await?;
    git.run(&["checkout", "-q", "--detach", &commit]).await?;
    Ok(commit)
}

/// The commit `reference` names at `url` now, asked with `git ls-remote` (one round trip, nothing downloaded), so
/// that an unchanged template repository is not fetched again. `dir` is any existing folder (git's working folder).
pub async fn remote_commit(
    url: &str,
    reference: Option<&str>,
    dir: &Path,
    timeout: Duration,
) -> Result<String, CloneError> {
    let git = Git { dir, token: None, deadline: Instant::now() + timeout, timeout };
    let pattern = reference.unwrap_or("HEAD");
    let listed = git.run(&["ls-remote", "--", url, pattern]).await?;
    let refs: Vec<(&str, &str)> = listed.lines().filter_map(|line| line.split_once('\t')).collect();
    let wanted = match reference {
        None => vec!["HEAD".to_owned()],
        Some(r) => {
            vec![format!("refs/heads/{r}"), format!("refs/tags/{r}^{{}}"), format!("refs/tags/{r}"), r.to_owned()]
        }
    };
    wanted
        .iter()
        .find_map(|name| refs.iter().find(|(_, listed)| listed == name).map(|(commit, _)| (*commit).to_owned()))
        .ok_or_else(|| CloneError::Failed(format!("`{pattern}` is neither a branch nor a tag of {url}")))
}

/// Whether commit `ancestor` is in the history of `descendant`, in `repo` (a clone made by [`clone_at`]): both
/// histories are fetched as commits only (`--filter=tree:0`, which servers that do not filter ignore), deepening a
/// shallow clone. A commit the server no longer serves (and the clone lacks) is in no history it serves: no ancestor.
pub async fn is_ancestor(
    repo: &Path,
    url: &str,
    token: Option<&Secret>,
    ancestor: &str,
    descendant: &str,
    timeout: Duration,
) -> Result<bool, CloneError> {
    debug_assert!(!url.is_empty(), "the clone's origin is the push's URL");
    let git = Git { dir: repo, token, deadline: Instant::now() + timeout, timeout };
    let shallow = git.run(&["rev-parse", "--is-shallow-repository"]).await? == "true";
    for (index, sha) in [descendant, ancestor].into_iter().enumerate() {
        let mut fetch = vec!["fetch", "-q", "--no-tags", "--filter=tree:0"];
        if shallow && index == 0 {
            fetch.push("--unshallow");
        }
        fetch.extend(["--", "origin", sha]);
        if git.run(&fetch).await.is_err()
            && !git.answers(&["rev-parse", "--verify", "-q", &format!("{sha}^{{commit}}")]).await?
        {
            return Ok(false);
        }
    }
    git.answers(&["merge-base", "--is-ancestor", ancestor, descendant]).await
}
