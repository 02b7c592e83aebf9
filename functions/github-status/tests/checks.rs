//! github-status with `use_checks=true`, over real HTTP against the GitHub API double, which checks every
//! check-run call as GitHub documents it; and the double's own refusals of malformed calls.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use doubles::github_double::{AppKey, Endpoint, Fault, GitHubDouble, RunningDouble};
use github_status::Config;
use serde_json::{json, Value};
use shared::config::{CommonConfig, Secret};
use shared::event::{CommitStatus, StatusEvent, StatusReport, StatusState};
use shared::github_app::{AppCredentials, InstallationTokens};
use shared::log_store::{LogKey, LogMeta, LogRecord, LogStore, LogStoreConfig, Outcome};
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::ServedFunction;

const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
const APP_ID: &str = "4242";
const OCTO: u64 = 101;
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const LOG_LINK: &str = "http://127.0.0.1:8080/function/pipeline-log?owner=octo&repo=fns&sig=abc";
const FUNCTION_URL: &str = "https://cloud.example.com/function/octo-hello-4";

fn app_key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(AppKey::generate)
}

fn credentials() -> AppCredentials {
    AppCredentials::from_pem(APP_ID, &Secret::new(app_key().private_pem.clone())).unwrap()
}

async fn github() -> RunningDouble {
    let double = GitHubDouble::new(APP_ID, &app_key().public_pem);
    double.add_installation(OCTO, "octo");
    double.start().await.unwrap()
}

struct Harness {
    address: SocketAddr,
    http: reqwest::Client,
    _served: ServedFunction,
}

async fn start(github: &RunningDouble, logs: Option<LogStore>) -> Harness {
    let config = Config {
        common: CommonConfig {
            gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        report_status: true,
        use_checks: true,
        log_store: logs,
        comment_store: None,
        github_api_url: github.url().parse().unwrap(),
        app: Some(credentials()),
        max_retries: 3,
        max_retry_wait: Duration::from_secs(2),
        server: ServerConfig::for_tests(1 << 20),
    };
    let server = config.server.clone();
    let served = ServedFunction::start_with(github_status::app(config), &server).await;
    Harness { address: served.address, http: reqwest::Client::new(), _served: served }
}

fn event(delivery: &str) -> StatusEvent {
    StatusEvent {
        owner: "octo".into(),
        owner_id: 1,
        repo: "fns".into(),
        sha: SHA.parse().unwrap(),
        installation_id: Some(OCTO),
        delivery: Some(delivery.into()),
    }
}

impl Harness {
    async fn send(&self, delivery: &str, statuses: Vec<CommitStatus>) -> Value {
        let body = serde_json::to_vec(&StatusReport { event: event(delivery), statuses }).unwrap();
        let signature = sign_sha256(PAYLOAD_SECRET.as_bytes(), &body);
        let response = self
            .http
            .post(format!("http://{}/", self.address))
            .header("X-Cloud-Signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["rejected"], json!([]), "{answer}");
        answer
    }
}

/// A log store holding `text` as hello's build log of SHA.
async fn store_with_log(dir: &std::path::Path, text: String) -> LogStore {
    let store = LogStore::open(&LogStoreConfig::folder(dir)).unwrap();
    let now = chrono::Utc::now();
    let meta =
        LogMeta { outcome: Outcome::Failure, started: now, finished: now, steps: vec![], image: None, digest: None };
    store.put(&LogKey::new(1, "fns", SHA, "hello").unwrap(), &LogRecord { meta, text }, &[]).await.unwrap();
    store
}

fn pending(context: &str) -> CommitStatus {
    CommitStatus::new(context, StatusState::Pending, "building")
}

#[tokio::test]
async fn a_failing_build_completes_its_run_with_the_log_s_tail_bounded_by_github_s_limit() {
    let github = github().await;
    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for n in 0..30_000 {
        log.push_str("STEP ");
        log.push_str(&n.to_string());
        log.push_str(": RUN make é\n");
    }
    log.push_str("Error: building at STEP \"COPY nowhere.txt /home/app/\": no such file\n");
    let harness = start(&github, Some(store_with_log(dir.path(), log).await)).await;

    harness.send("d-1", vec![pending("stack-deploy"), pending("hello")]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.status == "in_progress" && r.conclusion.is_none() && r.started_at.is_some()));
    assert_eq!(runs[1].name, "hello");
    assert_eq!(runs[1].external_id.as_deref(), Some("ofc/d-1/hello"));

    let failed = CommitStatus::new("hello", StatusState::Failure, "build failed: Error: building at STEP")
        .with_target_url(LOG_LINK);
    harness.send("d-1", vec![failed]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!(runs.len(), 2, "the run is updated, not a new one created");
    let hello = &runs[1];
    assert_eq!((hello.status.as_str(), hello.conclusion.as_deref()), ("completed", Some("failure")));
    assert_eq!(hello.updates, 1);
    assert_eq!(hello.details_url.as_deref(), Some(LOG_LINK));
    assert_eq!(hello.title.as_deref(), Some("hello: failed"));
    assert!(hello.summary.as_deref().unwrap().contains("build failed"), "{:?}", hello.summary);
    let text = hello.text.as_deref().unwrap();
    assert!(text.chars().count() <= 65_535, "{} characters", text.chars().count());
    assert!(text.contains("COPY nowhere.txt"), "the tail ends with the error");
    assert!(text.starts_with("The first "), "says that the head was left out");
    assert!(github.statuses("octo", "fns", SHA).is_empty(), "no commit statuses with use_checks");
    assert!(github.check_run_calls().iter().all(|c| c.answered < 300), "{:?}", github.check_run_calls());
}

#[tokio::test]
async fn a_success_completes_the_run_with_the_function_url() {
    let github = github().await;
    let harness = start(&github, None).await;
    harness.send("d-1", vec![pending("hello")]).await;
    let deployed = CommitStatus::new("hello", StatusState::Success, "deployed octo-hello-4 (created)")
        .with_target_url(FUNCTION_URL);
    harness.send("d-1", vec![deployed]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].status.as_str(), runs[0].conclusion.as_deref()), ("completed", Some("success")));
    assert_eq!(runs[0].details_url.as_deref(), Some(FUNCTION_URL));
    assert!(runs[0].summary.as_deref().unwrap().contains(FUNCTION_URL));
    assert_eq!(runs[0].text, None, "no log store configured: no text");
    let posts = github.check_run_calls().iter().filter(|c| c.method == "POST").count();
    assert_eq!(posts, 1, "created once, then updated");
}

#[tokio::test]
async fn a_pipeline_error_concludes_failure() {
    let github = github().await;
    let harness = start(&github, None).await;
    harness.send("d-1", vec![CommitStatus::new("stack-deploy", StatusState::Error, "the pipeline gave up")]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!(runs.len(), 1, "a run first seen at its end is created completed");
    assert_eq!(runs[0].conclusion.as_deref(), Some("failure"));
    assert!(runs[0].completed_at.is_some());
}

#[tokio::test]
async fn a_rebuild_of_the_commit_resets_and_updates_the_same_runs() {
    let github = github().await;
    let harness = start(&github, None).await;
    harness.send("d-1", vec![pending("hello")]).await;
    harness.send("d-1", vec![CommitStatus::new("hello", StatusState::Failure, "build failed")]).await;
    let id = github.check_runs("octo", "fns", SHA)[0].id;

    harness.send("d-2", vec![pending("hello")]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!((runs.len(), runs[0].id), (1, id));
    assert_eq!((runs[0].status.as_str(), runs[0].conclusion.as_deref()), ("in_progress", None));
    assert_eq!(runs[0].external_id.as_deref(), Some("ofc/d-2/hello"));

    harness.send("d-1", vec![CommitStatus::new("hello", StatusState::Failure, "late")]).await;
    assert_eq!(github.check_runs("octo", "fns", SHA)[0].status, "in_progress", "an older build's end is skipped");
    harness.send("d-2", vec![CommitStatus::new("hello", StatusState::Success, "deployed")]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!((runs.len(), runs[0].id, runs[0].conclusion.as_deref()), (1, id, Some("success")));
    harness.send("d-2", vec![pending("hello")]).await;
    assert_eq!(github.check_runs("octo", "fns", SHA)[0].status, "completed", "a late pending does not reopen it");
}

#[tokio::test]
async fn after_a_restart_the_run_is_found_again_by_its_external_id() {
    let github = github().await;
    let before = start(&github, None).await;
    before.send("d-1", vec![pending("hello"), pending("stack-deploy")]).await;
    drop(before);
    let after = start(&github, None).await;
    after.send("d-1", vec![CommitStatus::new("hello", StatusState::Success, "deployed")]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
    let calls = github.check_run_calls();
    assert_eq!(calls.iter().filter(|c| c.method == "GET").count(), 2, "one list per commit and process: {calls:?}");
}

/// A token of installation OCTO, issued by the double against the App's JWT.
async fn installation_token(github: &RunningDouble) -> String {
    let tokens = InstallationTokens::new(github.url().parse().unwrap(), credentials(), reqwest::Client::new());
    tokens.token(OCTO).await.unwrap().expose().to_owned()
}

async fn call(github: &RunningDouble, method: reqwest::Method, path: &str, token: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .request(method, format!("{}{path}", github.url()))
        .bearer_auth(token)
        .header("User-Agent", "tests")
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_double_refuses_malformed_check_run_calls() {
    let github = github().await;
    let token = installation_token(&github).await;
    let post = reqwest::Method::POST;
    let path = "repos/octo/fns/check-runs";
    let ok = json!({"name": "hello", "head_sha": SHA, "status": "in_progress"});
    assert_eq!(call(&github, post.clone(), path, &token, &ok).await, 201);
    let refused = [
        json!({"head_sha": SHA}),
        json!({"name": "hello", "head_sha": "abc"}),
        json!({"name": "hello", "head_sha": SHA, "status": "done"}),
        json!({"name": "hello", "head_sha": SHA, "status": "completed"}),
        json!({"name": "hello", "head_sha": SHA, "status": "completed", "conclusion": "error"}),
        json!({"name": "hello", "head_sha": SHA, "status": "in_progress", "conclusion": "success"}),
        json!({"name": "hello", "head_sha": SHA, "output": {"title": "t"}}),
        json!({"name": "hello", "head_sha": SHA, "output": {"title": "t", "summary": "s", "text": "x".repeat(65_536)}}),
        json!({"name": "hello", "head_sha": SHA, "details_url": "javascript:alert(1)"}),
    ];
    for body in &refused {
        assert_eq!(call(&github, post.clone(), path, &token, body).await, 422, "{body}");
    }
    let jwt = credentials().jwt(chrono::Utc::now()).unwrap().expose().to_owned();
    assert_eq!(call(&github, post.clone(), path, &jwt, &ok).await, 401, "an App JWT is not an installation token");
    assert_eq!(call(&github, post.clone(), "repos/hubot/fns/check-runs", &token, &ok).await, 404, "another account");
    let patch = json!({"status": "completed", "conclusion": "success"});
    assert_eq!(call(&github, reqwest::Method::PATCH, "repos/octo/fns/check-runs/999", &token, &patch).await, 404);
    let calls = github.check_run_calls();
    assert_eq!(calls.len(), 13);
    assert_eq!(calls.iter().filter(|c| c.answered == 422).count(), 9);
    assert_eq!(github.check_runs("octo", "fns", SHA).len(), 1, "only the valid one was kept");
}

#[tokio::test]
async fn a_github_fault_on_a_check_run_call_is_retried_and_the_run_written_once() {
    let github = github().await;
    github.push_faults(Endpoint::CheckRuns, [Fault::Status(502), Fault::Status(500), Fault::Status(502)]);
    let harness = start(&github, None).await;
    harness.send("d-1", vec![pending("hello")]).await;
    let runs = github.check_runs("octo", "fns", SHA);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "in_progress");
}
