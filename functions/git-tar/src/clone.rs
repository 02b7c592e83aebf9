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
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("git failed").to_owned();
            Err(CloneError::Failed(reason))
        }
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
