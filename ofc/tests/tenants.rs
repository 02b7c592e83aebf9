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

    /// `ofc logs OWNER/fns`: every stored build log of the owner's latest push, as printed.
    fn logs(&self, owner: &str) -> String {
        let output = Command::new(OFC)
            .args(["logs", &format!("{owner}/fns"), "--state"])
            .arg(self.state.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
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

/// What of an owner another push must leave alone: each function's name, image, labels and secrets.
fn deployments(functions: &[FunctionStatus]) -> Vec<(String, String, Option<Vec<String>>, String)> {
    functions.iter().map(|f| (f.name.clone(), f.image.clone(), f.secrets.clone(), format!("{:?}", f.labels))).collect()
}

fn secret_set(stack: &Stack, owner: &str, name: &str, value: &str) -> String {
    let mut child = Command::new(OFC)
        .args(["secret", "set", "--owner", owner, name, "--state"])
        .arg(stack.state.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn one_owner_cannot_take_touch_or_exceed_what_is_not_theirs() {
    let stack = up();
    let work = tempfile::tempdir().unwrap();
    let corp_id = ofc::push::account_id("acme-corp");
    let acme_id = ofc::push::account_id("acme");

    // `acme-corp` deploys `api` with its secret `db`.
    let printed = secret_set(&stack, "acme-corp", "db", "corp-password");
    assert!(printed.contains(&format!("{corp_id}--db")), "{printed}");
    let theirs =
        repo(&work.path().join("acme-corp"), &stack_of(&[function("api", "    secrets:\n      - db\n")]), &["api"]);
    let (ok, output) = stack.push(&theirs, "acme-corp");
    assert!(ok, "{output}");
    let before = stack.functions().await;
    assert_eq!(before.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), vec!["acme-corp-api-9"]);
    assert_eq!(before[0].secrets.as_deref().unwrap(), [format!("{corp_id}--db")]);
    let their_image = before[0].image.clone();
    assert!(
        their_image.contains(&format!("/{corp_id}/fns/api@sha256:")),
        "images lie under the owner's account id: {their_image}"
    );
    let their_logs = stack.logs("acme-corp");
    assert!(their_logs.contains("==> api: success"), "{their_logs}");
    let secret_file = stack.state.path().join(format!("function-secrets/{corp_id}--db"));
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), "corp-password");

    // `acme`, whose login is a hyphen-prefix of `acme-corp`'s, tries every way at it.
    let their_tag = their_image.split('@').next().unwrap().to_owned()
        + ":"
        + &before[0].labels.as_ref().unwrap()["com.openfaas.cloud.git-sha"];
    let functions = [
        // Was `acme-corp-api` and `acme-corp-db`: now its own names.
        function("corp-api", "    secrets:\n      - corp-db\n"),
        function("db", "    secrets:\n      - payload-secret\n"),
        function("big", "    limits:\n      memory: 1Gi\n"),
        function("claims", "    labels:\n      com.openfaas.cloud.git-owner: acme-corp\n"),
        function("placed", "    constraints:\n      - node.role == manager\n"),
        format!("  borrowed:\n    skip_build: true\n    image: {their_tag}\n"),
    ];
    let acme = repo(&work.path().join("acme"), &stack_of(&functions), &["corp-api", "db", "big", "claims", "placed"]);
    let (ok, output) = stack.push(&acme, "acme");
    assert!(!ok, "{output}");
    assert!(failure_of(&output, "db").contains("payload-secret"), "{output}");
    assert!(failure_of(&output, "big").contains("max_memory_limit"), "{output}");
    assert!(failure_of(&output, "claims").contains("com.openfaas.cloud.git-owner"), "{output}");
    assert!(failure_of(&output, "placed").contains("constraint `node.role == manager` is not allowed"), "{output}");
    assert!(failure_of(&output, "borrowed").contains("not one this owner may deploy"), "{output}");
    // `corp-db` is acme's own secret, which it never set (not acme-corp's `db`): refused naming it.
    assert!(
        failure_of(&output, "corp-api").contains(&format!("required secrets not found: {acme_id}--corp-db")),
        "{output}"
    );

    // Owner `edge`'s function `router` is `edge-router-4`, never the platform's edge router.
    let edge = repo(&work.path().join("edge"), &stack_of(&[function("router", "")]), &["router"]);
    let (ok, output) = stack.push(&edge, "edge");
    assert!(ok, "{output}");
    assert!(output.contains("edge-router-4"), "{output}");

    let after = stack.functions().await;
    let corp: Vec<_> = after
        .iter()
        .filter(|f| shared::naming::parse_service_name(&f.name).is_some_and(|(owner, _)| owner == "acme-corp"))
        .cloned()
        .collect();
    assert_eq!(deployments(&corp), deployments(&before), "acme-corp's functions are unchanged");
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), "corp-password", "its secret is unchanged");
    assert_eq!(stack.logs("acme-corp"), their_logs, "its build logs are unchanged");
    let stored: Vec<String> = std::fs::read_dir(stack.state.path().join("logs/builds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(stored.contains(&corp_id.to_string()) && stored.contains(&acme_id.to_string()), "{stored:?}");

    // And `acme-corp`'s own `api` is still its own to update: nobody else's name is in its way.
    std::fs::write(theirs.join("api/Dockerfile"), "FROM localhost/ofc/watchdog:latest\nENV greeting=\"v2\"\n").unwrap();
    commit(&theirs, "second");
    let (ok, output) = stack.push(&theirs, "acme-corp");
    assert!(ok, "{output}");
    assert!(output.contains("deployed acme-corp-api-9 (updated)"), "{output}");
}
