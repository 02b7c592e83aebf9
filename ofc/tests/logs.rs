//! Build logs as a user meets them: a push whose Dockerfile fails prints the failing function's log tail, `ofc logs`
//! prints the log again, and the failure status's link answers it through the gateway's `/function/pipeline-log`.
//! Runs the real `ofc up` (`cargo build --workspace --bins` first).

use std::path::{Path, PathBuf};
use std::process::Command;

use ofc::state::StateDir;
use serde_json::Value;
use testkit::git::{commit, git, init_repo};
use testkit::local_stack::{copy_dir, LocalStack, Up};

use testkit::process::ProcessGuard;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

/// A running `ofc up --runtime none` (nothing here needs a deployed function to run), stopped when dropped.
struct Stack {
    _child: ProcessGuard,
    state: tempfile::TempDir,
}

fn up() -> Stack {
    let LocalStack { child, state, .. } = Up::new(OFC).start();
    Stack { _child: child, state }
}

impl Stack {
    /// Runs `ofc ARGS --state <state>`: whether it succeeded, and its output (stdout then stderr).
    fn ofc(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(OFC).args(args).arg("--state").arg(self.state.path()).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    async fn statuses(&self, repo: &str, sha: &str) -> Vec<Value> {
        let endpoints = StateDir::new(self.state.path()).endpoints().unwrap();
        let url = format!("{}repos/octo/{repo}/commits/{sha}/statuses", endpoints.github_api);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }
}

/// The example repository with `hello`'s Dockerfile broken at its last step, as its own git repository.
fn broken_example(parent: &Path) -> PathBuf {
    let repo = parent.join("fns");
    copy_dir(&testkit::local_stack::repository_root().join("examples/hello"), &repo);
    let dockerfile = repo.join("hello/Dockerfile");
    let mut text = std::fs::read_to_string(&dockerfile).unwrap();
    text.push_str("COPY nowhere.txt /home/app/\n");
    std::fs::write(&dockerfile, text).unwrap();
    init_repo(&repo);
    commit(&repo, "broken");
    repo
}

#[tokio::test]
async fn a_failed_build_s_log_is_printed_by_push_and_logs_and_served_through_its_status_link() {
    let stack = up();
    let work = tempfile::tempdir().unwrap();
    let repo = broken_example(work.path());
    let sha = git(&repo, &["rev-parse", "HEAD"]);

    let (ok, output) = stack.ofc(&["push", repo.to_str().unwrap(), "--owner", "octo", "--timeout", "180"]);
    assert!(!ok, "a failed build fails the push: {output}");
    assert!(output.contains("==> hello: failure in"), "the failing function's log tail: {output}");
    assert!(output.contains("    Error: building at STEP \"COPY nowhere.txt"), "{output}");
    assert!(!output.contains("==> greet:"), "only failed functions' tails are printed: {output}");

    let (ok, logs) = stack.ofc(&["logs", "octo/fns"]);
    assert!(ok, "{logs}");
    assert!(logs.starts_with(&format!("octo/fns at {sha}")), "the newest push: {logs}");
    assert!(logs.contains("==> hello: failure in") && logs.contains("nowhere.txt"), "{logs}");
    assert!(logs.contains("==> greet: success in"), "every function of the push: {logs}");
    let (ok, one) = stack.ofc(&["logs", "octo/fns", "hello", "--sha", &sha[..8]]);
    assert!(ok && one.contains("STEP 1/") && !one.contains("==> greet"), "{one}");

    let statuses = stack.statuses("fns", &sha).await;
    let failure = statuses.iter().find(|s| s["context"] == "hello" && s["state"] == "failure").expect("hello failed");
    assert!(failure["description"].as_str().unwrap().starts_with("build failed: "), "{failure}");
    let link = failure["target_url"].as_str().expect("the failure links to its log");
    let owner_id = ofc::push::account_id("octo");
    assert!(link.contains(&format!("/function/pipeline-log?owner_id={owner_id}&repo=fns")), "{link}");
    let answer = reqwest::get(link).await.unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(text.contains("COPY nowhere.txt") && text.contains("buildshiprun: build failed:"), "{text}");
}
