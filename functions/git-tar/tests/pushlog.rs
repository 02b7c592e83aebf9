//! Each push's own record: a push that fails in git-tar leaves a `stack-deploy` record saying why, linked from its
//! failing status through a signed pipeline-log link; a successful push leaves one with its timings.

mod common;

use std::collections::HashMap;

use chrono::Utc;
use common::*;
use shared::config::Secret;
use shared::event::{CommitStatus, StatusState};
use shared::log_store::{verify_log_link, LogKey, LogRecord, Outcome};

const STACK_HEAD: &str = "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n";

async fn record(harness: &Harness, repo: &str, sha: &str, function: &str) -> LogRecord {
    let key = LogKey::new(1, repo, sha, function).unwrap();
    harness.logs.get(&key).await.unwrap()
}

/// Checks that `status` links to `function`'s record of `repo` at `sha` with a link pipeline-log accepts.
fn assert_linked(status: &CommitStatus, repo: &str, sha: &str, function: &str) {
    let url: reqwest::Url = status.target_url.as_deref().expect("a link to the record").parse().unwrap();
    assert!(url.as_str().starts_with("https://ofc.example/function/pipeline-log?"), "{url}");
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let key = LogKey::parse(&query["owner_id"], &query["repo"], &query["sha"], &query["function"]).unwrap();
    assert_eq!(key, LogKey::new(1, repo, sha, function).unwrap());
    let expires: i64 = query["expires"].parse().unwrap();
    verify_log_link(&key, expires, &query["sig"], &Secret::new(PAYLOAD_SECRET), Utc::now()).unwrap();
}

#[tokio::test]
async fn a_malformed_stack_yml_leaves_a_record_saying_why_linked_from_the_status() {
    let harness = start().await;
    let repo = harness.repo("malformed");
    repo.write("stack.yml", "functions: [this is: not, a map\n");
    let sha = repo.commit("malformed");
    let (status, answer) = harness.send(&harness.push_event("malformed", &sha)).await;
    assert_eq!(status, 422, "{answer}");

    let failure = harness.stack_deploy();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.starts_with("parse failed: "), "{}", failure.description);
    assert!(failure.description.chars().count() <= 140);
    assert_linked(&failure, "malformed", &sha, "stack-deploy");

    let stored = record(&harness, "malformed", &sha, "stack-deploy").await;
    assert_eq!(stored.meta.outcome, Outcome::Failure);
    assert!(stored.text.contains("git-tar: parse failed: "), "{}", stored.text);
    assert!(stored.text.contains("stack.yml"), "the record says why: {}", stored.text);
    let steps: Vec<&str> = stored.meta.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["clone", "order", "parse"]);
}

#[tokio::test]
async fn a_clone_failure_leaves_a_record_linked_from_the_status() {
    let harness = start().await;
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let (status, answer) = harness.send(&harness.push_event("missing", sha)).await;
    assert_eq!(status, 422, "{answer}");

    let failure = harness.stack_deploy();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.starts_with("clone failed: "), "{}", failure.description);
    assert_linked(&failure, "missing", sha, "stack-deploy");
    let stored = record(&harness, "missing", sha, "stack-deploy").await;
    assert_eq!(stored.meta.outcome, Outcome::Failure);
    assert!(stored.text.contains("git-tar: clone failed: "), "{}", stored.text);
}

#[tokio::test]
async fn a_successful_push_leaves_a_success_record_with_timings() {
    let harness = start().await;
    let repo = harness.repo("fine");
    repo.write(
        "stack.yml",
        &format!("{STACK_HEAD}  web:\n    lang: dockerfile\n    handler: ./web\n    image: octo/web\n"),
    )
    .write("web/Dockerfile", "FROM scratch\n");
    let sha = repo.commit("fine");
    let (status, answer) = harness.send(&harness.push_event("fine", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let success = harness.stack_deploy();
    assert_eq!(success.state, StatusState::Success);

    let stored = record(&harness, "fine", &sha, "stack-deploy").await;
    assert_eq!(stored.meta.outcome, Outcome::Success);
    let steps: Vec<&str> = stored.meta.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["clone", "order", "parse", "templates", "shrinkwrap", "hand-off"]);
    assert!(stored.text.contains("  web: deployed (created)"), "{}", stored.text);
    assert!(stored.text.contains("step clone: "), "{}", stored.text);
}

/// One line of the App's private key, as a function name: a message that quotes it must not keep it.
const KEY_LINE: &str = "mii-key-line-0123456789abcdef";

#[tokio::test]
async fn a_refused_function_gets_its_own_record_and_secrets_are_scrubbed_from_both() {
    let harness = start_with(|config| {
        let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{KEY_LINE}\n-----END RSA PRIVATE KEY-----\n");
        config.app_private_key = Some(Secret::new(pem));
    })
    .await;
    let repo = harness.repo("clash");
    let upper = PAYLOAD_SECRET.to_uppercase();
    let function = |name: &str| format!("  {name}:\n    lang: dockerfile\n    handler: ./a\n    image: octo/a\n");
    let stack = [PAYLOAD_SECRET, &upper, KEY_LINE, &KEY_LINE.to_uppercase()].map(function).concat();
    repo.write("stack.yml", &format!("{STACK_HEAD}{stack}")).write("a/Dockerfile", "FROM scratch\n");
    let sha = repo.commit("clash");
    let (status, answer) = harness.send(&harness.push_event("clash", &sha)).await;
    assert_eq!(status, 422, "{answer}");

    let stored = record(&harness, "clash", &sha, "stack-deploy").await;
    assert!(stored.text.contains("would both be deployed as"), "{}", stored.text);
    for secret in [PAYLOAD_SECRET, KEY_LINE] {
        assert!(!stored.text.contains(secret), "{}", stored.text);
    }
    assert!(stored.text.contains("***"), "{}", stored.text);
    let statuses: Vec<CommitStatus> = harness.statuses().iter().flat_map(|r| r.statuses.clone()).collect();
    let own = statuses.iter().find(|s| s.context == upper).expect("the refused function's status");
    assert_linked(own, "clash", &sha, &upper);
    let function = record(&harness, "clash", &sha, &upper).await;
    assert!(function.text.contains("refused"), "{}", function.text);
    assert!(!function.text.contains(PAYLOAD_SECRET), "{}", function.text);
}

#[tokio::test]
async fn a_store_that_cannot_be_written_still_leaves_the_status_without_a_link() {
    let harness = start().await;
    let logs = harness.root.path().join("logs");
    std::fs::remove_dir_all(&logs).unwrap();
    std::fs::write(&logs, "not a folder").unwrap();
    let repo = harness.repo("unstored");
    repo.write("stack.yml", "functions: [this is: not, a map\n");
    let sha = repo.commit("malformed");
    let (status, answer) = harness.send(&harness.push_event("unstored", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    let failure = harness.stack_deploy();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.starts_with("parse failed: "), "{}", failure.description);
    assert_eq!(failure.target_url, None, "no link to a record that is not there");
}

#[tokio::test]
async fn a_clone_that_runs_out_of_time_is_recorded_as_a_timeout() {
    let harness = start_with(|config| config.clone_timeout = std::time::Duration::from_nanos(1)).await;
    let repo = harness.repo("slow");
    repo.write("stack.yml", STACK_HEAD);
    let sha = repo.commit("slow");
    let (status, answer) = harness.send(&harness.push_event("slow", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    let failure = harness.stack_deploy();
    assert!(failure.description.starts_with("clone timed out: "), "{}", failure.description);
    let stored = record(&harness, "slow", &sha, "stack-deploy").await;
    assert_eq!(stored.meta.outcome, Outcome::Timeout);
    assert!(stored.text.contains("(clone_timeout)"), "{}", stored.text);
}
