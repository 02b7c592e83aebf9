//! `ofc push PATH`: sends the push webhook GitHub would send for the local repository's HEAD, through the gateway to
//! gh-push, then follows the commit's statuses until `stack-deploy` ends. It commits nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::state::{StateDir, INSTALLATION_ID};

/// What `ofc push` is run with.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub path: PathBuf,
    pub branch: Option<String>,
    pub owner: String,
    pub state: PathBuf,
    /// How long to follow the statuses before giving up.
    pub timeout: Duration,
}

/// The owner pushes are made as when `--owner` is not given.
pub const DEFAULT_OWNER: &str = "local";

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git").args(args).current_dir(dir).output().context("`git` cannot run")?;
    if !output.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Pushes, follows, and returns whether `stack-deploy` ended in success; on a failure, prints the failing
/// functions' log tails from the stack's log store.
pub async fn push(options: &PushOptions) -> anyhow::Result<bool> {
    let state = StateDir::new(&options.state);
    let endpoints = state
        .endpoints()
        .with_context(|| format!("no running stack in {} (start it with `ofc up`)", state.root.display()))?;
    let path = options.path.canonicalize().with_context(|| format!("{} does not exist", options.path.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).context("the repository folder has no name")?.to_owned();
    let top = git(&path, &["rev-parse", "--show-toplevel"])
        .with_context(|| format!("{} is not a git repository (run `git init` and commit there)", path.display()))?;
    if Path::new(&top) != path {
        bail!("{} is inside the git repository {top}, not its root: push a repository's root folder", path.display());
    }
    let sha = git(&path, &["rev-parse", "HEAD"]).context("the repository has no commit yet")?;
    let branch = match &options.branch {
        Some(branch) => branch.clone(),
        None => git(&path, &["rev-parse", "--abbrev-ref", "HEAD"])
            .ok()
            .filter(|b| b != "HEAD")
            .unwrap_or_else(|| "main".into()),
    };
    let bare = state.repos().join(&options.owner).join(format!("{name}.git"));
    if !bare.exists() {
        std::fs::create_dir_all(&bare)?;
        git(&bare, &["init", "-q", "--bare"])?;
    }
    git(
        &path,
        &["push", "-q", "--force", bare.to_str().context("a UTF-8 path")?, &format!("HEAD:refs/heads/{branch}")],
    )?;
    let clone_url = format!("{}{}/{name}.git", endpoints.git, options.owner);
    let delivery = uuid::Uuid::new_v4().to_string();
    let payload = payload(&options.owner, &name, &branch, &sha, &clone_url, &path);
    let body = serde_json::to_vec(&payload)?;
    let secret = state.secret("github-webhook-secret")?;
    let http = reqwest::Client::new();
    // A commit pushed before already carries statuses (its last `stack-deploy` among them): only newer ones count.
    let earlier = statuses(&http, &endpoints.github_api, &options.owner, &name, &sha).await?.len();
    let response = http
        .post(format!("{}function/gh-push", endpoints.gateway))
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitHub-Hookshot/ofc")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", &delivery)
        .header("X-GitHub-Hook-ID", "1")
        .header("X-Hub-Signature-256", shared::signature::sign_sha256(secret.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .context("the gateway could not be reached")?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    if status.as_u16() != 202 {
        bail!("gh-push did not queue the build ({status}): {answer}");
    }
    println!("pushed {}/{name} {branch} at {sha} (delivery {delivery})", options.owner);
    let states = follow(&http, &endpoints.github_api, &options.owner, &name, &sha, earlier, options.timeout).await?;
    let succeeded = states.get("stack-deploy").is_some_and(|state| state == "success");
    if !succeeded {
        let failed: Vec<String> = states
            .iter()
            .filter(|(context, state)| *context != "stack-deploy" && matches!(state.as_str(), "failure" | "error"))
            .map(|(context, _)| context.clone())
            .collect();
        crate::logs::print_failure_tails(&state, &options.owner, &name, &sha, &failed).await;
    }
    Ok(succeeded)
}

/// The commit's statuses, newest first, as GitHub lists them.
async fn statuses(
    http: &reqwest::Client,
    github_api: &str,
    owner: &str,
    repo: &str,
    sha: &str,
) -> anyhow::Result<Vec<Value>> {
    let url = format!("{github_api}repos/{owner}/{repo}/commits/{sha}/statuses");
    let response = http.get(&url).send().await.context("the GitHub double could not be reached")?;
    let status = response.status();
    if !status.is_success() {
        bail!("the GitHub double answered {status} for the statuses of {sha}");
    }
    Ok(response.json().await?)
}

/// The numeric id GitHub would give the account `owner` (the GitHub double's, which signs the same owners in).
pub use doubles::github_double::account_id;

/// The push event GitHub sends, in its shape.
fn payload(owner: &str, name: &str, branch: &str, sha: &str, clone_url: &str, path: &Path) -> Value {
    let message = git(path, &["log", "-1", "--format=%s"]).unwrap_or_default();
    let before = git(path, &["rev-parse", "HEAD~1"]).unwrap_or_else(|_| "0".repeat(40));
    let now = chrono::Utc::now();
    let commit = json!({
        "id": sha, "tree_id": git(path, &["rev-parse", "HEAD^{tree}"]).unwrap_or_default(), "distinct": true, "message": message,
        "timestamp": now.to_rfc3339(), "url": format!("{clone_url}/commit/{sha}"),
        "author": {"name": owner, "email": format!("{owner}@localhost"), "username": owner},
        "committer": {"name": owner, "email": format!("{owner}@localhost"), "username": owner},
        "added": [], "removed": [], "modified": []
    });
    json!({
        "ref": format!("refs/heads/{branch}"), "before": before, "after": sha,
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": format!("{clone_url}/compare/{before}...{sha}"),
        "commits": [commit.clone()], "head_commit": commit,
        "repository": {
            "id": 1, "name": name, "full_name": format!("{owner}/{name}"), "private": false,
            "owner": {"login": owner, "id": account_id(owner), "type": "User"},
            "html_url": clone_url, "clone_url": clone_url, "default_branch": branch, "master_branch": branch,
            "created_at": now.timestamp(), "pushed_at": now.timestamp()
        },
        "pusher": {"name": owner, "email": format!("{owner}@localhost")},
        "sender": {"login": owner, "id": account_id(owner), "type": "User"},
        "installation": {"id": INSTALLATION_ID}
    })
}

/// Prints each status written after the first `earlier` ones as it appears, until `stack-deploy` is no longer
/// pending; answers each context's last state.
async fn follow(
    http: &reqwest::Client,
    github_api: &str,
    owner: &str,
    repo: &str,
    sha: &str,
    earlier: usize,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, String>> {
    let started = Instant::now();
    let mut seen = earlier;
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let statuses = statuses(http, github_api, owner, repo, sha).await?;
        // The API lists newest first; print oldest first.
        for status in statuses.iter().rev().skip(seen) {
            let context = status["context"].as_str().unwrap_or_default();
            let state = status["state"].as_str().unwrap_or_default();
            let description = status["description"].as_str().unwrap_or_default();
            let url = status["target_url"].as_str().map(|u| format!(" {u}")).unwrap_or_default();
            println!("[{:>6.1}s] {context:<14} {state:<8} {description}{url}", started.elapsed().as_secs_f64());
            latest.insert(context.to_owned(), state.to_owned());
        }
        seen = statuses.len();
        if latest.get("stack-deploy").is_some_and(|state| matches!(state.as_str(), "success" | "failure" | "error")) {
            return Ok(latest);
        }
        if started.elapsed() > timeout {
            bail!("stack-deploy did not end within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
