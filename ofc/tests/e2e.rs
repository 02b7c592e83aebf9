//! The whole pipeline as a user runs it: the real `ofc up` process (gateway, GitHub double, git server, registry,
//! of-builder with Buildah, every function as its own process) and `ofc push` of real git repositories.
//! `cargo test --workspace` builds every function binary next to `ofc` before this runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use doubles::registry::RegistryClient;
use ofc::state::StateDir;
use serde_json::Value;
use shared::openfaas::FunctionStatus;
use testkit::git::{commit, git};
use testkit::local_stack::{LocalStack, Up};
use testkit::ports::free_port;
use testkit::process::ProcessGuard;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

/// A running `ofc up`, stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Stack {
    child: ProcessGuard,
    state: tempfile::TempDir,
    gateway: String,
}

fn up() -> Stack {
    up_in(tempfile::tempdir().unwrap(), free_port())
}

fn up_in(state: tempfile::TempDir, port: u16) -> Stack {
    let LocalStack { child, state, gateway, .. } = Up::new(OFC).runtime("buildah").port(port).start_in(state);
    Stack { child, state, gateway }
}

/// The example repository, as its own git repository.
fn example_repo(parent: &Path) -> PathBuf {
    testkit::local_stack::example_repo(parent, "fns")
}

impl Stack {
    fn push(&self, repo: &Path) -> (bool, String) {
        let output = Command::new(OFC)
            .args([
                "push",
                repo.to_str().unwrap(),
                "--owner",
                "octo",
                "--state",
                self.state.path().to_str().unwrap(),
                "--timeout",
                "120",
            ])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    fn state(&self) -> StateDir {
        StateDir::new(self.state.path())
    }

    async fn functions(&self) -> Vec<FunctionStatus> {
        testkit::local_stack::deployed_functions(self.state.path(), &self.gateway).await
    }

    /// Invokes `function` until it answers with `expected` in its body (a replica starts after the deployment).
    async fn invoke_when_live(&self, function: &str, expected: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = reqwest::get(format!("{}function/{function}", self.gateway)).await.unwrap();
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            if status == 200 && body.contains(expected) {
                return status;
            }
            assert!(Instant::now() < deadline, "{function} did not answer with {expected:?}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn statuses(&self, repo: &str, sha: &str) -> Vec<Value> {
        let endpoints = self.state().endpoints().unwrap();
        reqwest::get(format!("{}repos/octo/{repo}/commits/{sha}/statuses", endpoints.github_api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_push_builds_deploys_and_reports_then_a_second_push_updates_and_collects() {
    let stack = up();
    let work = tempfile::tempdir().unwrap();
    let repo = example_repo(work.path());
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    let (ok, output) = stack.push(&repo);
    assert!(ok, "{output}");
    assert!(output.contains("stack-deploy   success"), "{output}");

    let endpoints = stack.state().endpoints().unwrap();
    let registry = RegistryClient::new(&endpoints.registry);
    let functions = stack.functions().await;
    assert_eq!(functions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), vec!["octo-greet-4", "octo-hello-4"]);
    let octo = ofc::push::account_id("octo");
    for (function, image) in
        [("octo-hello-4", format!("{octo}/fns/hello")), ("octo-greet-4", format!("{octo}/fns/greet"))]
    {
        let manifest = registry.manifest(&image, &sha).await.unwrap_or_else(|e| panic!("{image} in the registry: {e}"));
        let deployed = functions.iter().find(|f| f.name == function).unwrap();
        assert_eq!(deployed.image, format!("{}/{image}@{}", endpoints.registry, manifest.digest), "pinned by digest");
        assert_eq!(deployed.label("Git-Owner"), Some("octo"));
        assert_eq!(deployed.label("Git-Repo"), Some("fns"));
        assert_eq!(deployed.label("Git-SHA"), Some(sha.as_str()));
    }
    let hello = functions.iter().find(|f| f.name == "octo-hello-4").unwrap();
    assert_eq!(hello.env_vars.as_ref().unwrap()["greeting"], "Hello from OpenFaaS Cloud");

    let statuses = stack.statuses("fns", &sha).await;
    for context in ["stack-deploy", "hello", "greet"] {
        let states: Vec<&str> =
            statuses.iter().rev().filter(|s| s["context"] == context).map(|s| s["state"].as_str().unwrap()).collect();
        assert_eq!(states.first(), Some(&"pending"), "{context}: {states:?}");
        assert_eq!(states.last(), Some(&"success"), "{context}: {states:?}");
    }
    let hello_status = statuses.iter().find(|s| s["context"] == "hello" && s["state"] == "success").unwrap();
    // The status links to the function's pretty URL on `ofc up`'s edge router (`gateway_pretty_url`).
    let router = stack.state().endpoints().unwrap().router;
    let port = router.trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
    assert_eq!(hello_status["target_url"], format!("http://octo.localhost:{port}/hello"));
    // Both run: `buildah run` starts them FROM the watchdog image, and the gateway reaches them.
    assert_eq!(stack.invoke_when_live("octo-hello-4", "Hello from OpenFaaS Cloud").await, 200);
    assert_eq!(stack.invoke_when_live("octo-greet-4", "Greetings").await, 200);
    let pretty = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/hello"))
        .header("host", format!("octo.localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(pretty.status(), 200);
    assert!(pretty.text().await.unwrap().contains("Hello from OpenFaaS Cloud"), "the pretty URL reaches octo-hello-4");
    let functions = stack.functions().await;
    assert!(functions.iter().all(|f| f.available_replicas == 1 && f.replicas == 1), "{functions:?}");

    // The same commit pushed again is built again, and followed to its own end, not to the earlier success.
    let (ok, output) = stack.push(&repo);
    assert!(ok, "{output}");
    assert!(output.contains("stack-deploy   pending"), "the new run's statuses are followed: {output}");
    assert!(output.contains("stack-deploy   success"), "{output}");
    assert_eq!(
        output.matches("stack-deploy   success").count(),
        1,
        "the earlier run's statuses are not shown: {output}"
    );

    // Second push: greet is removed from stack.yml, hello changes.
    let stack_yml = std::fs::read_to_string(repo.join("stack.yml")).unwrap();
    let without_greet = stack_yml.split("  greet:").next().unwrap().to_owned();
    std::fs::write(repo.join("stack.yml"), without_greet).unwrap();
    std::fs::write(repo.join("hello/index.html"), "<h1>v2</h1>\n").unwrap();
    let second = commit(&repo, "second");
    let (ok, output) = stack.push(&repo);
    assert!(ok, "{output}");
    assert!(output.contains("deployed octo-hello-4 (updated)"), "an update is a PUT: {output}");
    let functions = stack.functions().await;
    assert_eq!(
        functions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        vec!["octo-hello-4"],
        "greet was garbage-collected"
    );
    assert_eq!(functions[0].label("Git-SHA"), Some(second.as_str()));
    // The new replica replaces the old one; the collected function is gone.
    stack.invoke_when_live("octo-hello-4", "v2").await;
    let gone = reqwest::get(format!("{}function/octo-greet-4", stack.gateway)).await.unwrap();
    assert_eq!(gone.status(), 404);
    let state = stop(stack);
    let left: Vec<String> = replica_processes(state.path());
    assert!(left.is_empty(), "replicas left running after the stack stopped: {left:?}");
}

/// Processes still running from the state folder's runtime storage (the replicas' `buildah run`).
fn replica_processes(state: &Path) -> Vec<String> {
    let needle = state.join("runtime").display().to_string();
    let output = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_broken_dockerfile_fails_with_its_reason_and_a_bad_signature_is_refused() {
    let stack = up();
    let work = tempfile::tempdir().unwrap();
    let repo = example_repo(work.path());
    std::fs::write(repo.join("hello/Dockerfile"), "FROM scratch\nCOPY missing-file.txt /\n").unwrap();
    commit(&repo, "broken");
    let (ok, output) = stack.push(&repo);
    assert!(!ok, "{output}");
    assert!(output.contains("stack-deploy   failure"), "{output}");
    assert!(output.contains("missing-file.txt"), "the reason is shown: {output}");

    let before = stack.functions().await.len();
    let response = reqwest::Client::new()
        .post(format!("{}function/gh-push", stack.gateway))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "forged")
        .header("X-Hub-Signature-256", "sha256=0000000000000000000000000000000000000000000000000000000000000000")
        .body(r#"{"ref":"refs/heads/main"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(stack.functions().await.len(), before, "nothing was built");
}

/// Stops `ofc up` as Ctrl-C would, and hands back its state folder.
fn stop(stack: Stack) -> tempfile::TempDir {
    let Stack { child, state, .. } = stack;
    let _ = child.stop();
    state
}

fn queued_for(state: &Path, function: &str) -> usize {
    let needle = format!("\"function\":\"{function}\"");
    let Ok(entries) = std::fs::read_dir(state.join("queue")) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle)))
        .count()
}

#[tokio::test]
async fn a_job_waiting_in_the_queue_completes_after_the_stack_restarts() {
    let port = free_port();
    let stack = up_in(tempfile::tempdir().unwrap(), port);
    let work = tempfile::tempdir().unwrap();
    let repo = example_repo(work.path());
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    let mut push = Command::new(OFC)
        .args([
            "push",
            repo.to_str().unwrap(),
            "--owner",
            "octo",
            "--state",
            stack.state.path().to_str().unwrap(),
            "--timeout",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued_for(stack.state.path(), "git-tar") == 0 {
        assert!(Instant::now() < deadline, "the push never reached the queue");
        std::thread::sleep(Duration::from_millis(10));
    }
    let state = stop(stack);
    let _ = push.kill();
    let _ = push.wait();
    assert_eq!(queued_for(state.path(), "git-tar"), 1, "the git-tar call is still in the queue after the stop");

    let stack = up_in(state, port);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let statuses = stack.statuses("fns", &sha).await;
        let done = statuses.iter().find(|s| s["context"] == "stack-deploy" && s["state"] != "pending");
        if let Some(done) = done {
            assert_eq!(done["state"], "success", "{done}");
            break;
        }
        assert!(Instant::now() < deadline, "the queued job did not complete after the restart: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names: Vec<String> = stack.functions().await.into_iter().map(|f| f.name).collect();
    assert_eq!(names, vec!["octo-greet-4", "octo-hello-4"]);

    // Deployed functions come back with the stack, as they would on a cluster.
    let stack = up_in(stop(stack), port);
    stack.invoke_when_live("octo-hello-4", "Hello from OpenFaaS Cloud").await;
}

#[test]
fn up_refuses_a_port_in_use_and_a_broken_stack_with_a_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let state = tempfile::tempdir().unwrap();
    let output = Command::new(OFC)
        .args(["up", "--state", state.path().to_str().unwrap(), "--gateway-port", &port])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is in use"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("stack.yml"), "functions:\n  a: [oops\n").unwrap();
    let output = Command::new(OFC)
        .args([
            "up",
            "--state",
            state.path().to_str().unwrap(),
            "--gateway-port",
            &free_port().to_string(),
            "--stack",
            broken.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stack.yml") && stderr.contains("line"), "{stderr}");

    let output = Command::new(OFC)
        .args(["up", "--state", state.path().to_str().unwrap(), "--gateway-port", &free_port().to_string()])
        .args(["--router-port", &port, "--runtime", "none", "--sandbox", "none"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is in use") && stderr.contains("--router-port"), "{stderr}");
    assert!(stderr.contains(ofc::up::SANDBOX_NONE_WARNING), "--sandbox none says what builds give up: {stderr}");
}
