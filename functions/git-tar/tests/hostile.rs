//! The repository is hostile (issue 19): every path it names is resolved inside it with every link followed, its
//! `.git` is never shipped, no error quotes a file, oversized or deeply nested files are refused at once, and two
//! functions that would deploy under one name are refused. Each test pushes a real repository with real links.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use shared::event::StatusState;

const STACK_HEAD: &str = "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n";
const SECRET: &str = "ghp_R0bustSecretValue0123456789abcdef";

/// A push whose every status, answer and audit event is kept, to look for a secret in them (with [`LOGS`]).
struct Watched {
    harness: Harness,
}

/// Every log line of this test binary: git-tar's server tasks may run on any thread, so the subscriber is global,
/// and no test here may log the secret.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    let buffer = LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buffer.clone());
        let subscriber = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    });
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

async fn watched() -> Watched {
    logs();
    let harness = start_with(|c| {
        c.common.audit_url = Some(c.common.gateway_url.join("function/audit-event").unwrap());
    })
    .await;
    Watched { harness }
}

impl Watched {
    /// Everything git-tar said about the push: statuses, its answer, its logs, its audit events.
    async fn everything_said(&self, answer: &serde_json::Value) -> String {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let statuses = serde_json::to_string(&self.harness.statuses()).unwrap();
        let audits: Vec<String> = self
            .harness
            .gateway
            .requests_to("/function/audit-event")
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        assert!(!audits.is_empty(), "the push was audited");
        let logs = logs();
        assert!(logs.contains("push failed"), "the failure was logged: {logs}");
        format!("{statuses}\n{answer}\n{logs}\n{}", audits.join("\n"))
    }
}

#[tokio::test]
async fn a_malformed_stack_file_holding_a_secret_is_never_quoted() {
    for stack in [
        format!("{STACK_HEAD}  f: {SECRET}\n"),
        format!("{STACK_HEAD}  f:\n    image: f\n    environment: {SECRET}\n"),
        format!("{STACK_HEAD}  f:\n    labels: {{a: [{SECRET}]}}\n"),
        format!("{SECRET}: [\n  - }}\n"),
        format!("{STACK_HEAD}  {SECRET}:\n    image: a\n  {SECRET}:\n    image: b\n"),
    ] {
        let watched = watched().await;
        let repo = watched.harness.repo("leaky");
        repo.write("stack.yml", &stack);
        let sha = repo.commit("leaky");
        let (status, answer) = watched.harness.send(&watched.harness.push_event("leaky", &sha)).await;
        assert_eq!(status, 422, "{answer}");
        let description = watched.harness.stack_deploy().description;
        assert!(description.contains("line"), "says where: {description}");
        let said = watched.everything_said(&answer).await;
        assert!(!said.contains("ghp_"), "the secret leaked for {stack:?}:\n{said}");
    }
}

#[tokio::test]
async fn a_stack_file_linking_outside_the_repository_is_refused_unread() {
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), format!("token: {SECRET}\n  - ]\n")).unwrap();
    let watched = watched().await;
    let repo = watched.harness.repo("linked");
    repo.symlink("stack.yml", secret_file.path().to_str().unwrap());
    let sha = repo.commit("linked stack");
    let (status, answer) = watched.harness.send(&watched.harness.push_event("linked", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    let description = watched.harness.stack_deploy().description;
    assert!(description.contains("leaves the repository"), "{description}");
    let said = watched.everything_said(&answer).await;
    assert!(!said.contains("ghp_"), "{said}");
}

#[tokio::test]
async fn an_environment_file_linking_outside_the_repository_is_refused() {
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), format!("environment:\n  token: {SECRET}\n")).unwrap();
    let harness = start().await;
    let repo = harness.repo("envlink");
    repo.write(
        "stack.yml",
        &format!(
            "{STACK_HEAD}  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\n    environment_file: [env.yml]\n"
        ),
    )
    .write("f/Dockerfile", "FROM scratch\n")
    .symlink("env.yml", secret_file.path().to_str().unwrap());
    let sha = repo.commit("linked env");
    let (status, answer) = harness.send(&harness.push_event("envlink", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(harness.stack_deploy().description.contains("leaves the repository"));
    assert!(harness.gateway.requests_to("/function/buildshiprun").is_empty());
    let f = harness.statuses().iter().flat_map(|r| r.statuses.clone()).find(|s| s.context == "f").unwrap();
    assert_eq!(f.state, StatusState::Failure);
    assert!(!serde_json::to_string(&harness.statuses()).unwrap().contains("ghp_"));
}

#[tokio::test]
async fn a_handler_through_a_committed_link_to_a_folder_outside_is_refused() {
    // A plain folder outside, with nothing in it that would trip any other check.
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("inner")).unwrap();
    std::fs::write(outside.path().join("inner/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(outside.path().join("inner/secret.txt"), SECRET).unwrap();
    for (handler, target) in [("./esc/etc", "/"), ("./esc/inner", outside.path().to_str().unwrap())] {
        assert_push_fails(
            |r| {
                r.write(
                    "stack.yml",
                    &format!("{STACK_HEAD}  f:\n    lang: dockerfile\n    handler: {handler}\n    image: f\n"),
                )
                .symlink("esc", target);
            },
            "leaves the repository",
        )
        .await;
    }
}

#[tokio::test]
async fn a_copy_path_through_a_link_to_a_folder_outside_is_refused() {
    for copy in ["esc/etc/hostname", "esc"] {
        assert_push_fails(
            |r| {
                r.write(
                    "stack.yml",
                    &format!(
                        "{STACK_HEAD}  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\nconfiguration:\n  copy: [{copy}]\n"
                    ),
                )
                .write("f/Dockerfile", "FROM scratch\n")
                .symlink("esc", "/");
            },
            "leaves the repository",
        )
        .await;
    }
}

#[tokio::test]
async fn a_link_inside_the_handler_to_the_git_folder_is_refused() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", &format!("{STACK_HEAD}  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\n"))
                .write("f/Dockerfile", "FROM scratch\n")
                .symlink("f/history", "../.git");
        },
        "f/history",
    )
    .await;
}

#[tokio::test]
async fn a_link_inside_the_repository_is_copied_as_its_targets_content() {
    let harness = start().await;
    let repo = harness.repo("links");
    repo.write("stack.yml", &format!("{STACK_HEAD}  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\n"))
        .write("f/Dockerfile", "FROM scratch\n")
        .write("lib/config.txt", "shared config\n")
        .write("lib/deep/x.txt", "x\n")
        .symlink("f/config.txt", "../lib/config.txt")
        .symlink("f/lib", "../lib");
    let sha = repo.commit("links");
    let (status, answer) = harness.send(&harness.push_event("links", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let (_, entries) = &harness.tars()["f"];
    assert_eq!(entries["context/config.txt"], b"shared config\n");
    assert_eq!(entries["context/lib/config.txt"], b"shared config\n");
    assert_eq!(entries["context/lib/deep/x.txt"], b"x\n");
}

#[tokio::test]
async fn a_link_loop_inside_the_handler_is_refused() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", &format!("{STACK_HEAD}  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\n"))
                .write("f/Dockerfile", "FROM scratch\n")
                .symlink("f/sub/up", "..");
        },
        "links back",
    )
    .await;
}

#[tokio::test]
async fn the_git_folder_is_never_shipped_even_with_the_whole_repository_as_handler() {
    let harness = start().await;
    let repo = harness.repo("whole");
    repo.write("stack.yml", &format!("{STACK_HEAD}  f:\n    lang: dockerfile\n    handler: ./\n    image: f\n"))
        .write("Dockerfile", "FROM scratch\n")
        .write("src/main.txt", "main\n");
    let sha = repo.commit("whole");
    let (status, answer) = harness.send(&harness.push_event("whole", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let (_, entries) = &harness.tars()["f"];
    assert!(entries.contains_key("context/src/main.txt"), "{:?}", entries.keys());
    assert!(!entries.keys().any(|p| p.starts_with("context/.git")), "{:?}", entries.keys());
}

#[tokio::test]
async fn a_deeply_nested_stack_file_is_refused_at_once() {
    let started = Instant::now();
    assert_push_fails(
        |r| {
            r.write("stack.yml", &format!("{STACK_HEAD}  f: {}\n", "[".repeat(100_000)));
        },
        "nested more than",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_oversized_stack_file_is_refused() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", &format!("{STACK_HEAD}# {}\n", "x".repeat(1 << 20)));
        },
        "larger than",
    )
    .await;
}

#[tokio::test]
async fn functions_whose_deployed_names_clash_are_refused_and_nothing_is_deployed() {
    let harness = start().await;
    let repo = harness.repo("clash");
    repo.write(
        "stack.yml",
        &format!(
            "{STACK_HEAD}  hello:\n    lang: dockerfile\n    handler: ./f\n    image: f\n  Hello:\n    lang: dockerfile\n    handler: ./f\n    image: g\n  other:\n    lang: dockerfile\n    handler: ./f\n    image: o\n"
        ),
    )
    .write("f/Dockerfile", "FROM scratch\n");
    let sha = repo.commit("clash");
    let (status, answer) = harness.send(&harness.push_event("clash", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(harness.gateway.requests_to("/function/buildshiprun").is_empty(), "nothing deployed");
    let statuses: Vec<_> = harness.statuses().iter().flat_map(|r| r.statuses.clone()).collect();
    for name in ["hello", "Hello"] {
        let status = statuses.iter().find(|s| s.context == name).unwrap_or_else(|| panic!("a status for {name}"));
        assert_eq!(status.state, StatusState::Failure);
        assert!(
            status.description.contains("`Hello` and `hello`") && status.description.contains("octo-hello-4"),
            "{}",
            status.description
        );
    }
    let stack_deploy = harness.stack_deploy();
    assert_eq!(stack_deploy.state, StatusState::Failure);
    assert!(stack_deploy.description.contains("octo-hello-4"), "{}", stack_deploy.description);
}
