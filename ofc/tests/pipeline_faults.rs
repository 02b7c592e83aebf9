//! Faults across the pipeline (issue 19), through the embedded gateway's queue: a GitHub rate limit longer than
//! github-status's own time still ends with the status written, and a build the queue gives up on ends as an
//! `error` on the commit rather than `pending` for ever.

use std::time::{Duration, Instant};

use doubles::github_double::{AppKey, Endpoint, GitHubDouble, RateLimit, RunningDouble};
use ofc::gateway::{Gateway, GatewayConfig};
use shared::config::{CommonConfig, Secret};
use shared::event::{CommitStatus, StatusEvent, StatusReport, StatusState};
use shared::github_app::AppCredentials;
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::{RecordingGateway, Reply, ServedFunction};

const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
const APP_ID: &str = "4242";
const INSTALLATION: u64 = 1_234_567;
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const PUSH: &str = include_str!("../../functions/gh-push/tests/fixtures/push.json");

struct Stack {
    gateway: Gateway,
    gateway_url: String,
    github: RunningDouble,
    _served: Vec<ServedFunction>,
    _state: tempfile::TempDir,
}

/// The gateway (queue worker running) with github-status behind it, writing to a GitHub double; github-status may
/// run `exec_timeout` at most, as on OpenFaaS.
async fn stack(exec_timeout: Duration, max_attempts: u32) -> Stack {
    let key = AppKey::generate();
    let double = GitHubDouble::new(APP_ID, &key.public_pem);
    double.add_installation(INSTALLATION, "octo");
    let github = double.start().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut config = GatewayConfig::new(state.path(), "admin", "pw");
    config.initial_retry_wait = Duration::from_millis(50);
    config.max_attempts = max_attempts;
    let gateway = Gateway::new(config).unwrap();
    let served_gateway = ServedFunction::serve(gateway.router()).await;
    let mut server = ServerConfig::for_tests(1 << 20);
    server.exec_timeout = exec_timeout;
    server.write_timeout = exec_timeout;
    let status_config = github_status::Config {
        common: common(&served_gateway.url()),
        report_status: true,
        use_checks: false,
        log_store: None,
        comment_store: None,
        github_api_url: github.url().parse().unwrap(),
        app: Some(AppCredentials::from_pem(APP_ID, &Secret::new(key.private_pem.clone())).unwrap()),
        max_retries: 3,
        max_retry_wait: Duration::from_secs(60),
        server: server.clone(),
    };
    let status = ServedFunction::start_with(github_status::app(status_config), &server).await;
    gateway.set_route("github-status", &status.url());
    gateway.spawn_worker();
    let gateway_url = served_gateway.url();
    Stack { gateway, gateway_url, github, _served: vec![served_gateway, status], _state: state }
}

fn common(gateway_url: &str) -> CommonConfig {
    CommonConfig {
        gateway_url: gateway_url.parse().unwrap(),
        audit_url: None,
        payload_secret: Secret::new(PAYLOAD_SECRET),
    }
}

/// Polls until the commit has `count` statuses, or panics after `within`.
async fn statuses(
    github: &RunningDouble,
    count: usize,
    within: Duration,
) -> Vec<doubles::github_double::RecordedStatus> {
    let deadline = Instant::now() + within;
    loop {
        let found = github.statuses("octo", "fns", SHA);
        if found.len() >= count {
            return found;
        }
        assert!(Instant::now() < deadline, "{} statuses after {within:?}: {found:?}", found.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rate_limit_longer_than_github_status_may_wait_still_ends_with_the_status_written() {
    // GitHub refuses for 5 s; github-status may run 1 s; the queue tries 4 times: short retries alone would lose it.
    let stack = stack(Duration::from_secs(1), 4).await;
    stack.github.rate_limit(Endpoint::Statuses, RateLimit::TooManyRequests, Duration::from_secs(5));
    let event = StatusEvent {
        owner: "octo".into(),
        owner_id: 0,
        repo: "fns".into(),
        sha: SHA.parse().unwrap(),
        installation_id: Some(INSTALLATION),
        delivery: Some("d-1".into()),
    };
    let report = StatusReport { event, statuses: vec![CommitStatus::new("hello", StatusState::Success, "deployed")] };
    let body = serde_json::to_vec(&report).unwrap();
    let started = Instant::now();
    let queued = reqwest::Client::new()
        .post(format!("{}async-function/github-status", stack.gateway_url))
        .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let written = statuses(&stack.github, 1, Duration::from_secs(20)).await;
    assert_eq!(written[0].context, "hello");
    assert!(started.elapsed() >= Duration::from_secs(4), "written after {:?}", started.elapsed());
    assert!(stack.github.status_requests() <= 3, "{} tries against GitHub", stack.github.status_requests());
}

#[tokio::test]
async fn a_build_the_queue_gives_up_on_ends_as_an_error_on_stack_deploy() {
    let stack = stack(Duration::from_secs(10), 3).await;
    let git_tar = RecordingGateway::start().await;
    git_tar.reply("POST", "/", vec![Reply::status(503); 10]);
    stack.gateway.set_route("git-tar", &git_tar.url());
    let records = tempfile::tempdir().unwrap();
    let mut config = gh_push::Config {
        common: common(&stack.gateway_url),
        webhook: shared::signature::WebhookCheck::Off,
        customers: None,
        customers_ttl: Duration::from_secs(60),
        build_branch: None,
        previews: false,
        delivery_ttl: Duration::from_secs(3600),
        delivery_log_max_bytes: gh_push::deliveries::DEFAULT_MAX_BYTES,
        delivery_records: gh_push::delivery_records::DeliveryRecords::open(&shared::log_store::LogStoreConfig::folder(
            records.path(),
        ))
        .unwrap(),
        server: ServerConfig::for_tests(1 << 20),
    };
    config.common.gateway_url = stack.gateway_url.parse().unwrap();
    let gh_push = ServedFunction::start_with(gh_push::app(config), &ServerConfig::for_tests(1 << 20)).await;
    let answer = reqwest::Client::new()
        .post(gh_push.url())
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header("Content-Type", "application/json")
        .body(PUSH)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let found = statuses(&stack.github, 2, Duration::from_secs(20)).await;
    assert_eq!(git_tar.requests_to("/").len(), 3, "the queue tried git-tar max_attempts times");
    let (newest, pending) = (&found[0], &found[1]);
    assert_eq!((pending.context.as_str(), pending.state.as_str()), ("stack-deploy", "pending"));
    assert_eq!((newest.context.as_str(), newest.state.as_str()), ("stack-deploy", "error"));
    let description = newest.description.as_deref().unwrap_or_default();
    assert!(description.starts_with("the build pipeline gave up: git-tar answered 503"), "{description}");
}
