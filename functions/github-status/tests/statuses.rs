//! github-status over real HTTP on loopback against the GitHub API double, which checks the App's JWT and tokens
//! as GitHub does.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use doubles::github_double::{to_pkcs8, AppKey, Endpoint, Fault, GitHubDouble, RateLimit, RunningDouble};
use github_status::Config;
use serde_json::{json, Value};
use shared::callback::BuildRef;
use shared::config::{CommonConfig, Secret};
use shared::event::{CommitStatus, StatusEvent, StatusReport, StatusState};
use shared::github_app::AppCredentials;
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::ServedFunction;

const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
const APP_ID: &str = "4242";
const OCTO: u64 = 101;
const HUBOT: u64 = 202;
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

fn app_key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(AppKey::generate)
}

struct Harness {
    github: RunningDouble,
    address: SocketAddr,
    http: reqwest::Client,
    _served: ServedFunction,
}

async fn github() -> RunningDouble {
    let double = GitHubDouble::new(APP_ID, &app_key().public_pem);
    double.add_installation(OCTO, "octo");
    double.add_installation(HUBOT, "hubot");
    double.start().await.unwrap()
}

fn config(github: &RunningDouble, private_pem: &str) -> Config {
    Config {
        common: CommonConfig {
            gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        report_status: true,
        use_checks: false,
        log_store: None,
        comment_store: None,
        github_api_url: github.url().parse().unwrap(),
        app: Some(AppCredentials::from_pem(APP_ID, &Secret::new(private_pem)).unwrap()),
        max_retries: 3,
        max_retry_wait: Duration::from_secs(2),
        server: ServerConfig::for_tests(1 << 20),
    }
}

async fn start_with(github: RunningDouble, edit: impl FnOnce(&mut Config)) -> Harness {
    let mut config = config(&github, &app_key().private_pem);
    edit(&mut config);
    let server = config.server.clone();
    let served = ServedFunction::start_with(github_status::app(config), &server).await;
    Harness { github, address: served.address, http: reqwest::Client::new(), _served: served }
}

async fn start() -> Harness {
    start_with(github().await, |_| {}).await
}

fn event(owner: &str, installation_id: Option<u64>) -> StatusEvent {
    StatusEvent {
        owner: owner.into(),
        owner_id: 0,
        repo: "fns".into(),
        sha: SHA.parse().unwrap(),
        installation_id,
        delivery: Some("d-1".into()),
    }
}

fn report(owner: &str, installation_id: u64, statuses: Vec<CommitStatus>) -> StatusReport {
    StatusReport { event: event(owner, Some(installation_id)), statuses }
}

fn status(context: &str, state: StatusState, description: &str) -> CommitStatus {
    CommitStatus::new(context, state, description)
}

impl Harness {
    async fn send_raw(&self, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
        let mut request = self.http.post(format!("http://{}/", self.address)).body(body);
        if let Some(signature) = signature {
            request = request.header("X-Cloud-Signature", signature);
        }
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, report: &StatusReport) -> (u16, Value) {
        let body = serde_json::to_vec(report).unwrap();
        let signature = sign_sha256(PAYLOAD_SECRET.as_bytes(), &body);
        self.send_raw(body, Some(signature)).await
    }
}

#[tokio::test]
async fn writes_each_status_in_order_as_the_apps_installation() {
    let harness = start().await;
    let statuses = vec![
        status("stack-deploy", StatusState::Pending, "building 2 functions"),
        status("hello", StatusState::Success, "deployed")
            .with_target_url("https://cloud.example.com/function/octo-hello-4"),
    ];
    let (code, answer) = harness.send(&report("octo", OCTO, statuses)).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["written"], json!(["stack-deploy", "hello"]));
    let written = harness.github.statuses("octo", "fns", SHA);
    assert_eq!(written.len(), 2);
    assert_eq!(written[0].context, "hello", "newest first");
    assert_eq!(written[0].state, "success");
    assert_eq!(written[0].target_url.as_deref(), Some("https://cloud.example.com/function/octo-hello-4"));
    assert_eq!(written[1].context, "stack-deploy");
    assert_eq!(written[1].description.as_deref(), Some("building 2 functions"));
    assert!(written.iter().all(|s| s.installation_id == OCTO && s.api_version.as_deref() == Some("2022-11-28")));
}

#[tokio::test]
async fn requests_one_token_for_many_statuses() {
    let harness = start().await;
    let burst: Vec<_> = (0..10)
        .map(|i| {
            let harness = &harness;
            async move {
                harness
                    .send(&report("octo", OCTO, vec![status(&format!("fn-{i}"), StatusState::Success, "ok")]))
                    .await
                    .0
            }
        })
        .collect();
    let codes = futures_util::future::join_all(burst).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let many: Vec<_> = (0..20).map(|i| status(&format!("ctx-{i}"), StatusState::Pending, "queued")).collect();
    assert_eq!(harness.send(&report("octo", OCTO, many)).await.0, 200);
    assert_eq!(harness.github.statuses("octo", "fns", SHA).len(), 30);
    assert_eq!(harness.github.token_requests(), 1, "one token serves every status of the installation");
}

#[tokio::test]
async fn renews_a_token_that_is_about_to_expire() {
    let github = github().await;
    github.set_token_lifetime(Duration::from_secs(120));
    let harness = start_with(github, |_| {}).await;
    for i in 0..3 {
        assert_eq!(
            harness.send(&report("octo", OCTO, vec![status(&format!("c{i}"), StatusState::Success, "ok")])).await.0,
            200
        );
    }
    assert_eq!(harness.github.token_requests(), 3, "a token with two minutes left is not trusted for a write");
}

#[tokio::test]
async fn refreshes_the_token_once_when_github_answers_401() {
    let harness = start().await;
    assert_eq!(harness.send(&report("octo", OCTO, vec![status("a", StatusState::Pending, "")])).await.0, 200);
    harness.github.push_faults(Endpoint::Statuses, [Fault::Unauthorized]);
    let (code, answer) = harness.send(&report("octo", OCTO, vec![status("b", StatusState::Success, "")])).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["written"], json!(["b"]));
    assert_eq!(harness.github.token_requests(), 2);

    harness.github.push_faults(Endpoint::Statuses, [Fault::Unauthorized, Fault::Unauthorized]);
    let (code, answer) = harness.send(&report("octo", OCTO, vec![status("c", StatusState::Success, "")])).await;
    assert_eq!(code, 200);
    assert_eq!(answer["rejected"][0]["context"], "c", "a second 401 is not retried: {answer}");
}

#[tokio::test]
async fn retries_server_errors_then_writes() {
    let harness = start().await;
    harness.github.push_faults(Endpoint::Statuses, [Fault::Status(500), Fault::Status(502)]);
    let (code, answer) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(harness.github.statuses("octo", "fns", SHA).len(), 1);
    assert_eq!(harness.github.status_requests(), 3);
}

#[tokio::test]
async fn waits_as_long_as_retry_after_asks_on_429() {
    let harness = start().await;
    harness.github.push_faults(Endpoint::Statuses, [Fault::TooManyRequests { retry_after: 1 }]);
    let started = Instant::now();
    let (code, _) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 200);
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
    assert_eq!(harness.github.statuses("octo", "fns", SHA).len(), 1);
}

#[tokio::test]
async fn retries_secondary_and_primary_rate_limits() {
    let harness = start().await;
    harness.github.push_faults(
        Endpoint::Statuses,
        [Fault::SecondaryRateLimit { retry_after: 0 }, Fault::PrimaryRateLimit { reset_in: 0 }],
    );
    let (code, answer) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["written"], json!(["a"]));
    assert_eq!(harness.github.status_requests(), 3);
}

#[tokio::test]
async fn answers_502_after_a_bounded_number_of_tries() {
    let github = github().await;
    github.push_faults(Endpoint::Statuses, std::iter::repeat_n(Fault::Status(503), 10));
    let harness = start_with(github, |c| c.max_retry_wait = Duration::from_millis(20)).await;
    let (code, answer) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 502, "{answer}");
    assert!(answer["error"].as_str().unwrap().ends_with(": a"), "{answer}");
    assert_eq!(answer["lost"][0]["context"], "a", "{answer}");
    assert!(answer["lost"][0]["reason"].as_str().unwrap().contains("4 tries"), "{answer}");
    assert_eq!(harness.github.status_requests(), 4, "the first try and max_retries=3 more");
}

/// The CE queue-worker calls once and never replays: a 503 from GitHub on every try ends, after the function's own
/// retries, in an answer that names what was lost.
#[tokio::test]
async fn github_answering_503_always_loses_the_statuses_after_its_own_retries_and_says_which() {
    let github = github().await;
    github.push_faults(Endpoint::Statuses, std::iter::repeat_n(Fault::Status(503), 20));
    let harness = start_with(github, |c| c.max_retry_wait = Duration::from_millis(40)).await;
    let statuses = vec![status("a", StatusState::Pending, ""), status("b", StatusState::Success, "")];
    let (code, retry_after, answer) = send_with_headers(&harness, &report("octo", OCTO, statuses)).await;
    assert_eq!(code, 502, "{answer}");
    assert_eq!(retry_after, None, "every try was made: no wait is asked for");
    let lost: Vec<_> = answer["lost"].as_array().unwrap().iter().map(|l| l["context"].clone()).collect();
    assert_eq!(lost, [json!("a"), json!("b")], "{answer}");
    assert_eq!(answer["written"], json!([]), "{answer}");
    assert_eq!(harness.github.status_requests(), 8, "four tries for each status");
}

#[tokio::test]
async fn github_answering_429_then_200_is_written_in_one_call_without_a_queue() {
    let harness = start().await;
    harness.github.push_faults(Endpoint::Statuses, [Fault::TooManyRequests { retry_after: 1 }]);
    let statuses = vec![status("a", StatusState::Pending, ""), status("b", StatusState::Success, "")];
    let started = Instant::now();
    let (code, retry_after, answer) = send_with_headers(&harness, &report("octo", OCTO, statuses)).await;
    let took = started.elapsed();
    assert_eq!(code, 200, "{answer}");
    assert_eq!(retry_after, None);
    assert_eq!(answer["written"], json!(["a", "b"]), "{answer}");
    // GitHub's second is honoured, with at most a tenth more of jitter.
    assert!(took >= Duration::from_secs(1) && took < Duration::from_millis(1900), "took {took:?}");
    assert_eq!(harness.github.status_requests(), 3);
}

#[tokio::test]
async fn does_not_retry_an_unknown_sha_or_a_missing_repository() {
    let harness = start().await;
    harness.github.push_faults(Endpoint::Statuses, [Fault::Status(422), Fault::Status(404)]);
    let statuses = vec![
        status("a", StatusState::Success, ""),
        status("b", StatusState::Success, ""),
        status("c", StatusState::Success, ""),
    ];
    let (code, answer) = harness.send(&report("octo", OCTO, statuses)).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["rejected"].as_array().unwrap().len(), 2, "{answer}");
    assert_eq!(answer["written"], json!(["c"]), "later statuses are still written");
    assert_eq!(harness.github.status_requests(), 3);
}

#[tokio::test]
async fn survives_a_slow_github() {
    let harness = start().await;
    harness.github.push_faults(Endpoint::Statuses, [Fault::Delay(Duration::from_millis(500))]);
    harness.github.push_faults(Endpoint::AccessTokens, [Fault::Delay(Duration::from_millis(500))]);
    let (code, _) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 200);
    assert_eq!(harness.github.statuses("octo", "fns", SHA).len(), 1);
}

#[tokio::test]
async fn cuts_a_300_character_description_to_140() {
    let harness = start().await;
    let long = "The build failed: ".to_owned() + &"ü".repeat(282);
    assert_eq!(long.chars().count(), 300);
    let (code, _) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Failure, &long)])).await;
    assert_eq!(code, 200);
    let written = harness.github.statuses("octo", "fns", SHA);
    let description = written[0].description.as_deref().unwrap();
    assert_eq!(description.chars().count(), 140);
    assert!(description.starts_with("The build failed: ü") && description.ends_with('…'));
}

#[tokio::test]
async fn drops_a_target_url_that_is_not_http() {
    let harness = start().await;
    let bad = status("a", StatusState::Success, "").with_target_url("javascript:alert(document.cookie)");
    let (code, _) = harness.send(&report("octo", OCTO, vec![bad])).await;
    assert_eq!(code, 200);
    assert_eq!(harness.github.statuses("octo", "fns", SHA)[0].target_url, None);
}

#[tokio::test]
async fn never_mixes_tokens_between_installations_under_concurrency() {
    let harness = start().await;
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let harness = &harness;
            async move {
                let (owner, installation) = if i % 2 == 0 { ("octo", OCTO) } else { ("hubot", HUBOT) };
                harness
                    .send(&report(owner, installation, vec![status(&format!("c{i}"), StatusState::Success, "")]))
                    .await
                    .0
            }
        })
        .collect();
    let codes = futures_util::future::join_all(sends).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let octo = harness.github.statuses("octo", "fns", SHA);
    let hubot = harness.github.statuses("hubot", "fns", SHA);
    assert_eq!((octo.len(), hubot.len()), (10, 10), "the double answers 404 to a token of the other installation");
    assert!(octo.iter().all(|s| s.installation_id == OCTO));
    assert!(hubot.iter().all(|s| s.installation_id == HUBOT));
    assert_eq!(harness.github.token_requests(), 2);
}

#[tokio::test]
async fn only_logs_when_report_status_is_off() {
    let harness = start_with(github().await, |c| {
        c.report_status = false;
        c.app = None;
    })
    .await;
    let (code, answer) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 200);
    assert_eq!(answer["logged"], 1);
    assert!(harness.github.statuses("octo", "fns", SHA).is_empty());
    assert_eq!(harness.github.token_requests(), 0);
}

#[tokio::test]
async fn accepts_a_pkcs8_key() {
    let pkcs8 = to_pkcs8(&app_key().private_pem);
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
    let github = github().await;
    let harness =
        start_with(github, |c| c.app = Some(AppCredentials::from_pem(APP_ID, &Secret::new(pkcs8)).unwrap())).await;
    assert_eq!(harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await.0, 200);
    assert_eq!(harness.github.statuses("octo", "fns", SHA).len(), 1);
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_gets_no_token() {
    let other = AppKey::generate();
    let harness = start_with(github().await, |c| {
        c.app = Some(AppCredentials::from_pem(APP_ID, &Secret::new(other.private_pem.clone())).unwrap());
    })
    .await;
    let (code, answer) = harness.send(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 200);
    assert!(answer["rejected"][0]["reason"].as_str().unwrap().contains("401"), "{answer}");
    assert!(harness.github.statuses("octo", "fns", SHA).is_empty());
}

#[tokio::test]
async fn refuses_unsigned_and_mis_signed_requests() {
    let harness = start().await;
    let body = serde_json::to_vec(&report("octo", OCTO, vec![status("a", StatusState::Success, "")])).unwrap();
    assert_eq!(harness.send_raw(body.clone(), None).await.0, 401);
    assert_eq!(harness.send_raw(body, Some(sign_sha256(b"wrong", b"{}"))).await.0, 401);
    assert_eq!(harness.github.status_requests(), 0);
}

#[tokio::test]
async fn refuses_malformed_reports() {
    let harness = start().await;
    let body = b"{\"event\":{}}".to_vec();
    let signature = sign_sha256(PAYLOAD_SECRET.as_bytes(), &body);
    assert_eq!(harness.send_raw(body, Some(signature)).await.0, 400);
    let mut traversal = report("octo", OCTO, vec![status("a", StatusState::Success, "")]);
    traversal.event.repo = "../../app".into();
    assert_eq!(harness.send(&traversal).await.0, 400);
    let no_installation =
        StatusReport { event: event("octo", None), statuses: vec![status("a", StatusState::Success, "")] };
    let (code, answer) = harness.send(&no_installation).await;
    assert_eq!(code, 400);
    assert!(answer["error"].as_str().unwrap().contains("installation_id"), "{answer}");
}

/// Sends `report` signed; the status, the `Retry-After` header and the body.
async fn send_with_headers(harness: &Harness, report: &StatusReport) -> (u16, Option<u64>, Value) {
    let body = serde_json::to_vec(report).unwrap();
    let signature = sign_sha256(PAYLOAD_SECRET.as_bytes(), &body);
    let response = harness
        .http
        .post(format!("http://{}/", harness.address))
        .header("X-Cloud-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (code, retry_after, response.json().await.unwrap_or(Value::Null))
}

/// A handler timeout of `seconds`, as `exec_timeout` sets it.
fn exec_timeout(config: &mut Config, seconds: u64) {
    config.server.exec_timeout = Duration::from_secs(seconds);
    config.server.write_timeout = Duration::from_secs(seconds);
}

#[tokio::test]
async fn a_rate_limit_longer_than_its_time_loses_the_status_at_once_says_so_and_when_to_call_again() {
    let github = github().await;
    github.rate_limit(Endpoint::Statuses, RateLimit::TooManyRequests, Duration::from_secs(120));
    let harness = start_with(github, |c| exec_timeout(c, 2)).await;
    let one = report("octo", OCTO, vec![status("a", StatusState::Success, "")]);
    let started = Instant::now();
    let (code, retry_after, answer) = send_with_headers(&harness, &one).await;
    assert_eq!(code, 429, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered before the 504, after {:?}", started.elapsed());
    assert!(retry_after.is_some_and(|s| (115..=120).contains(&s)), "Retry-After {retry_after:?}");
    assert_eq!(answer["lost"][0]["context"], "a", "the answer names what was lost: {answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("lost unless it is made again"), "{error}");
    // The window is the installation's: the next call fails without asking GitHub again.
    let (code, retry_after, answer) = send_with_headers(&harness, &one).await;
    assert_eq!(code, 429);
    assert!(retry_after.is_some_and(|s| s >= 115));
    assert!(answer["lost"][0]["reason"].as_str().unwrap().contains("rate limit"), "{answer}");
    assert_eq!(harness.github.status_requests(), 1, "no tight loop against GitHub");
}

#[tokio::test]
async fn waits_out_a_primary_rate_limit_that_fits_its_time() {
    let github = github().await;
    github.rate_limit(Endpoint::Statuses, RateLimit::Primary, Duration::from_secs(2));
    let harness = start_with(github, |c| exec_timeout(c, 10)).await;
    let started = Instant::now();
    let (code, _, answer) =
        send_with_headers(&harness, &report("octo", OCTO, vec![status("a", StatusState::Success, "")])).await;
    assert_eq!(code, 200, "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for the reset: {:?}", started.elapsed());
    assert_eq!(harness.github.statuses("octo", "fns", SHA).len(), 1);
    assert!(harness.github.status_requests() <= 3, "{} tries", harness.github.status_requests());
}

/// The callback URL gh-push would give git-tar's call, as a path and query on github-status.
fn failed_path(installation_id: u64, secret: &str) -> String {
    let build = BuildRef { owner: "octo", repo: "fns", sha: SHA, installation_id, delivery: "d-1" };
    let mut url = Vec::new();
    assert!(build.write_url(&mut url, "http://gateway/", secret.as_bytes()));
    let url = String::from_utf8(url).unwrap();
    format!("/failed?{}", url.split_once('?').unwrap().1)
}

async fn post_failed(harness: &Harness, path: &str, function_status: Option<&str>, body: &str) -> u16 {
    let mut request = harness.http.post(format!("http://{}{path}", harness.address)).body(body.to_owned());
    if let Some(status) = function_status {
        request = request.header("X-Function-Status", status).header("X-Function-Name", "git-tar");
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_pipeline_that_gave_up_ends_as_an_error_on_stack_deploy() {
    let harness = start().await;
    let path = failed_path(OCTO, PAYLOAD_SECRET);
    assert_eq!(post_failed(&harness, &path, Some("200"), "{}").await, 200);
    assert_eq!(post_failed(&harness, &path, Some("422"), "{}").await, 200, "git-tar reported that one itself");
    assert!(harness.github.statuses("octo", "fns", SHA).is_empty());
    let answer = r#"{"error":"function git-tar could not be reached: connection refused"}"#;
    assert_eq!(post_failed(&harness, &path, Some("503"), answer).await, 200);
    let statuses = harness.github.statuses("octo", "fns", SHA);
    assert_eq!(statuses.len(), 1);
    assert_eq!((statuses[0].context.as_str(), statuses[0].state.as_str()), ("stack-deploy", "error"));
    let description = statuses[0].description.as_deref().unwrap();
    assert!(
        description.starts_with("the build pipeline gave up: git-tar answered 503: function git-tar could not"),
        "{description}"
    );
}

#[tokio::test]
async fn a_callback_not_signed_by_gh_push_writes_nothing() {
    let harness = start().await;
    assert_eq!(post_failed(&harness, &failed_path(OCTO, "another secret"), Some("503"), "").await, 401);
    let tampered = failed_path(OCTO, PAYLOAD_SECRET).replace("owner=octo", "owner=hubot");
    assert_eq!(post_failed(&harness, &tampered, Some("503"), "").await, 401);
    assert_eq!(post_failed(&harness, "/failed?owner=octo", Some("503"), "").await, 400);
    assert_eq!(post_failed(&harness, &failed_path(OCTO, PAYLOAD_SECRET), None, "").await, 400);
    assert_eq!(harness.github.status_requests(), 0);
}
