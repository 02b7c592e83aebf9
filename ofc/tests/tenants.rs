//! Tenant isolation through the real pipeline (`ofc up`, `ofc push --owner`): a deployed name has one owner, the
//! platform's names and secrets are not a user's, and the operator's bounds are refused with a reason. Each refusal
//! ends in a failure status that says why, and the other owner's deployment is left as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use shared::openfaas::FunctionStatus;
use testkit::git::{commit, init_repo};
use testkit::local_stack::{LocalStack, Up};

use testkit::process::ProcessGuard;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

/// A running `ofc up` (no function runtime: only deployments matter here), stopped when dropped.
struct Stack {
    _child: ProcessGuard,
    state: tempfile::TempDir,
    gateway: String,
}

fn up() -> Stack {
    let LocalStack { child, state, gateway, .. } = Up::new(OFC).start();
    Stack { _child: child, state, gateway }
}

/// A repository `fns` whose stack.yml is `stack` and whose every function `f` builds from `f/Dockerfile`.
fn repo(parent: &Path, stack: &str, functions: &[&str]) -> PathBuf {
    let repo = parent.join("fns");
    for function in functions {
        std::fs::create_dir_all(repo.join(function)).unwrap();
        let dockerfile = format!("FROM localhost/ofc/watchdog:latest\nENV greeting=\"{function}\"\n");
        std::fs::write(repo.join(function).join("Dockerfile"), dockerfile).unwrap();
    }
    std::fs::write(repo.join("stack.yml"), stack).unwrap();
    init_repo(&repo);
    commit(&repo, "first");
    repo
}

fn function(name: &str, extra: &str) -> String {
    format!("  {name}:\n    lang: dockerfile\n    handler: ./{name}\n    image: {name}\n{extra}")
}

fn stack_of(functions: &[String]) -> String {
    format!("version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n{}", functions.concat())
}

impl Stack {
    fn push(&self, repo: &Path, owner: &str) -> (bool, String) {
        let output = Command::new(OFC)
            .args(["push", repo.to_str().unwrap(), "--owner", owner, "--timeout", "120", "--state"])
            .arg(self.state.path())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    async fn functions(&self) -> Vec<FunctionStatus> {
        testkit::local_stack::deployed_functions(self.state.path(), &self.gateway).await
    }
}

/// The failure line of `context` in `ofc push`'s output.
fn failure_of<'a>(output: &'a str, context: &str) -> &'a str {
    output
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some(context) && line.contains("failure"))
        .unwrap_or_else(|| panic!("a failure status for {context} in:\n{output}"))
}

#[tokio::test]
async fn one_owner_cannot_take_touch_or_exceed_what_is_not_theirs() {
    let stack = up();
    let work = tempfile::tempdir().unwrap();

    let theirs = repo(&work.path().join("alex-ellis"), &stack_of(&[function("x", "")]), &["x"]);
    let (ok, output) = stack.push(&theirs, "alex-ellis");
    assert!(ok, "{output}");
    let before = stack.functions().await;
    assert_eq!(before.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), vec!["alex-ellis-x"]);

    let functions = [
        function("ellis-x", ""),
        function("db", "    secrets:\n      - payload-secret\n"),
        function("big", "    limits:\n      memory: 1Gi\n"),
        function("claims", "    labels:\n      com.openfaas.cloud.git-owner: alex-ellis\n"),
    ];
    let alex = repo(&work.path().join("alex"), &stack_of(&functions), &["ellis-x", "db", "big", "claims"]);
    let (ok, output) = stack.push(&alex, "alex");
    assert!(!ok, "{output}");
    assert!(failure_of(&output, "ellis-x").contains("belongs to another owner"), "{output}");
    assert!(failure_of(&output, "db").contains("payload-secret"), "{output}");
    assert!(failure_of(&output, "big").contains("max_memory_limit"), "{output}");
    assert!(failure_of(&output, "claims").contains("com.openfaas.cloud.git-owner"), "{output}");

    let gh = repo(&work.path().join("gh"), &stack_of(&[function("push", "")]), &["push"]);
    let (ok, output) = stack.push(&gh, "gh");
    assert!(!ok, "{output}");
    assert!(failure_of(&output, "push").contains("gh-push"), "{output}");

    let after = stack.functions().await;
    let unchanged = |f: &FunctionStatus| (f.name.clone(), f.image.clone(), f.labels.clone());
    assert_eq!(after.iter().map(unchanged).collect::<Vec<_>>(), before.iter().map(unchanged).collect::<Vec<_>>());
}
