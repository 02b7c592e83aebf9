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

/// The repository's HEAD, as the push event describes it.
struct Head {
    sha: String,
    tree: String,
    /// The first parent; `None` for a first commit.
    parent: Option<String>,
    /// The commit message's subject.
    message: String,
    /// The checked-out branch; `None` on a detached HEAD.
    branch: Option<String>,
    /// The repository's object folder, which the served copy borrows objects from.
    objects: PathBuf,
}

impl Head {
    /// Two `git` calls: `ofc push` is on the path of every push a user times.
    fn read(path: &Path) -> anyhow::Result<Self> {
        let top = git(path, &["rev-parse", "--show-toplevel"])
            .with_context(|| format!("{} is not a git repository (run `git init` and commit there)", path.display()))?;
        if Path::new(&top) != path {
            bail!(
                "{} is inside the git repository {top}, not its root: push a repository's root folder",
                path.display()
            );
        }
        let revs = git(path, &["rev-parse", "--git-common-dir", "HEAD", "HEAD^{tree}", "--abbrev-ref", "HEAD"])
            .context("the repository has no commit yet")?;
        let mut lines = revs.lines().map(str::to_owned);
        let mut next = || lines.next().context("git rev-parse answered fewer lines than asked");
        let (common, sha, tree, branch) = (next()?, next()?, next()?, next()?);
        let log = git(path, &["log", "-1", "--format=%P%x00%s"])?;
        let (parents, message) = log.split_once('\0').unwrap_or((&log, ""));
        Ok(Self {
            sha,
            tree,
            parent: parents.split_whitespace().next().map(str::to_owned),
            message: message.to_owned(),
            branch: Some(branch).filter(|b| b != "HEAD"),
            objects: path.join(common).join("objects"),
        })
    }
}

/// Makes `head` the served copy's `branch`. The copy borrows the repository's objects (git's alternates) rather
/// than receiving a pack, so publishing is one ref update however large the repository is; objects the
/// repository later prunes (an amended commit after `git gc`) are gone from the copy too, until pushed again.
fn publish(bare: &Path, head: &Head, branch: &str) -> anyhow::Result<()> {
    if !bare.join("HEAD").exists() {
        std::fs::create_dir_all(bare)?;
        git(bare, &["init", "-q", "--bare"])?;
    }
    let alternates = bare.join("objects/info/alternates");
    let objects = head.objects.canonicalize().with_context(|| format!("{} is missing", head.objects.display()))?;
    let line = format!("{}\n", objects.display());
    if std::fs::read_to_string(&alternates).ok().as_deref() != Some(line.as_str()) {
        std::fs::create_dir_all(alternates.parent().context("a parent folder")?)?;
        std::fs::write(&alternates, line)?;
    }
    git(bare, &["update-ref", &format!("refs/heads/{branch}"), &head.sha])?;
    Ok(())
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
    let head = Head::read(&path)?;
    let branch = options.branch.clone().or_else(|| head.branch.clone()).unwrap_or_else(|| "main".into());
    let bare = state.repos().join(&options.owner).join(format!("{name}.git"));
    publish(&bare, &head, &branch)?;
    let sha = head.sha.clone();
    let clone_url = format!("{}{}/{name}.git", endpoints.git, options.owner);
    let delivery = uuid::Uuid::new_v4().to_string();
    let owner_id = state.account_id(&options.owner)?;
    let payload = payload(&options.owner, owner_id, &name, &branch, &head, &clone_url);
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

/// The numeric id GitHub would give the account `owner` while nobody renamed it (the GitHub double's, which signs
/// the same owners in); [`StateDir::account_id`] knows the renames.
pub use doubles::github_double::account_id;

/// The push event GitHub sends, in its shape.
fn payload(owner: &str, owner_id: u64, name: &str, branch: &str, head: &Head, clone_url: &str) -> Value {
    let (sha, message) = (&head.sha, &head.message);
    let before = head.parent.clone().unwrap_or_else(|| "0".repeat(40));
    let now = chrono::Utc::now();
    let commit = json!({
        "id": sha, "tree_id": head.tree, "distinct": true, "message": message,
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
            "owner": {"login": owner, "id": owner_id, "type": "User"},
            "html_url": clone_url, "clone_url": clone_url, "default_branch": branch, "master_branch": branch,
            "created_at": now.timestamp(), "pushed_at": now.timestamp()
        },
        "pusher": {"name": owner, "email": format!("{owner}@localhost")},
        "sender": {"login": owner, "id": owner_id, "type": "User"},
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
        // Often at first, when an unchanged push ends within a few tenths of a second; then gently.
        let pause =
            if started.elapsed() < FAST_POLL_FOR { Duration::from_millis(20) } else { Duration::from_millis(100) };
        tokio::time::sleep(pause).await;
    }
}

/// How long the statuses are polled every 20 ms before every 100 ms.
const FAST_POLL_FOR: Duration = Duration::from_secs(5);
