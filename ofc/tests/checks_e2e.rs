//! Check runs end to end: the real `ofc up` with github-status set to `use_checks=true` (a copy of this
//! repository's stack files), a signed push of the example, then a signed `check_suite` `rerequested` delivery, the
//! "Re-run all checks" button: the commit is built again and the same check runs are reset and completed again.

use std::path::Path;
use std::time::{Duration, Instant};

use ofc::state::{StateDir, APP_ID, INSTALLATION_ID};
use serde_json::{json, Value};
use shared::config::Secret;
use shared::github_app::{AppCredentials, InstallationTokens};
use testkit::git::git;
use testkit::local_stack::{example_repo, Up};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// This repository's stack files, with `use_checks: "true"` added to github.yml (read by github-status).
fn stack_with_checks(dir: &Path) {
    let files = ["stack.yml", "gateway_config.yml", "buildshiprun_limits_swarm.yml", "buildshiprun_limits_k8s.yml"];
    for file in files {
        std::fs::copy(Path::new(ROOT).join(file), dir.join(file)).unwrap();
    }
    let mut github = std::fs::read_to_string(Path::new(ROOT).join("github.yml")).unwrap();
    github.push_str("\n  use_checks: \"true\"\n");
    std::fs::write(dir.join("github.yml"), github).unwrap();
}

struct Local {
    state: StateDir,
    http: reqwest::Client,
    tokens: InstallationTokens,
}

impl Local {
    fn new(state: &Path) -> Self {
        let state = StateDir::new(state);
        let key = Secret::new(state.secret("private-key").unwrap());
        let api = state.endpoints().unwrap().github_api.parse().unwrap();
        let tokens =
            InstallationTokens::new(api, AppCredentials::from_pem(APP_ID, &key).unwrap(), reqwest::Client::new());
        Self { state, http: reqwest::Client::new(), tokens }
    }

    /// Sends a signed delivery of `event` to gh-push through the gateway; answers its status and id.
    async fn deliver(&self, event: &str, body: &Value) -> (u16, String) {
        let body = serde_json::to_vec(body).unwrap();
        let secret = self.state.secret("github-webhook-secret").unwrap();
        let delivery = uuid::Uuid::new_v4().to_string();
        let response = self
            .http
            .post(format!("{}function/gh-push", self.state.endpoints().unwrap().gateway))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", &delivery)
            .header("X-Hub-Signature-256", shared::signature::sign_sha256(secret.as_bytes(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), delivery)
    }

    /// Every check run of the commit, newest first, read as the App's installation.
    async fn check_runs(&self, sha: &str) -> Vec<Value> {
        let token = self.tokens.token(INSTALLATION_ID).await.unwrap();
        let api = self.state.endpoints().unwrap().github_api;
        let url = format!("{api}repos/octo/fns/commits/{sha}/check-runs?filter=all&per_page=100");
        let answer: Value = self
            .http
            .get(url)
            .bearer_auth(token.expose())
            .header("User-Agent", "ofc-tests")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["check_runs"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `stack-deploy`'s run was completed by build `delivery`; answers the commit's runs.
    async fn wait_completed(&self, sha: &str, delivery: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(240);
        let external_id = format!("ofc/{delivery}/stack-deploy");
        loop {
            let runs = self.check_runs(sha).await;
            let done = runs.iter().any(|r| r["external_id"] == external_id.as_str() && r["status"] == "completed");
            if done {
                return runs;
            }
            assert!(Instant::now() < deadline, "stack-deploy was not completed by {delivery}: {runs:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The repository part of GitHub's payloads for octo/fns on the local git server.
fn repository(state: &StateDir) -> Value {
    let clone_url = format!("{}octo/fns.git", state.endpoints().unwrap().git);
    json!({"id": 1, "name": "fns", "full_name": "octo/fns", "private": false, "clone_url": clone_url,
           "default_branch": "main", "owner": {"login": "octo", "id": ofc::push::account_id("octo")}})
}

fn summary(runs: &[Value]) -> Vec<(u64, String, String, String)> {
    let mut listed: Vec<_> = runs
        .iter()
        .map(|r| {
            let field = |name: &str| r[name].as_str().unwrap_or_default().to_owned();
            (r["id"].as_u64().unwrap(), field("name"), field("status"), field("conclusion"))
        })
        .collect();
    listed.sort();
    listed
}

#[tokio::test]
async fn a_pushed_commit_gets_check_runs_and_a_re_run_rebuilds_it_into_the_same_runs() {
    let root = tempfile::tempdir().unwrap();
    let stack_dir = root.path().join("stack");
    std::fs::create_dir_all(&stack_dir).unwrap();
    stack_with_checks(&stack_dir);
    let ofc = Up::new(OFC).stack(&stack_dir).start();
    let local = Local::new(ofc.state_path());

    let repo = example_repo(root.path(), "fns");
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    let bare = local.state.repos().join("octo/fns.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    git(&repo, &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"]);

    let push = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": sha, "created": true,
                      "deleted": false, "forced": false, "repository": repository(&local.state),
                      "installation": {"id": INSTALLATION_ID}});
    let (status, delivery) = local.deliver("push", &push).await;
    assert_eq!(status, 202);
    let first = summary(&local.wait_completed(&sha, &delivery).await);
    let names: Vec<&str> = first.iter().map(|(_, name, _, _)| name.as_str()).collect();
    assert_eq!(names.len(), 3, "a run per function and one for stack-deploy: {first:?}");
    assert!(
        first.iter().all(|(_, _, status, conclusion)| status == "completed" && conclusion == "success"),
        "{first:?}"
    );

    let rerun = json!({"action": "rerequested", "check_suite": {"id": 1, "head_branch": "main", "head_sha": sha},
                       "repository": repository(&local.state), "installation": {"id": INSTALLATION_ID}});
    let (status, delivery) = local.deliver("check_suite", &rerun).await;
    assert_eq!(status, 202);
    let runs = local.wait_completed(&sha, &delivery).await;
    assert_eq!(summary(&runs), first, "the same runs, completed again");
    for run in runs.iter().filter(|r| r["name"] != "stack-deploy") {
        assert!(run["external_id"].as_str().unwrap().contains(&delivery), "{run}");
        assert!(run["output"]["text"].as_str().is_some_and(|t| t.contains("```")), "the log's tail: {run}");
    }
}
