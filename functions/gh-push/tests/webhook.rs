//! gh-push driven over real HTTP on loopback, with a recording gateway double behind it.

use std::net::SocketAddr;
use std::time::Duration;

use gh_push::config::CustomersSource;
use gh_push::delivery_records::DeliveryRecords;
use gh_push::Config;
use serde_json::Value;
use shared::config::{CommonConfig, Secret};
use shared::event::{PushEvent, PushOrder, StatusReport, StatusState};
use shared::log_store::LogStoreConfig;
use shared::server::ServerConfig;
use shared::signature::{sign_sha1, sign_sha256, verify_cloud, WebhookCheck};
use testkit::ports::free_port;
use testkit::{RecordingGateway, Reply, ServedFunction};

const WEBHOOK_SECRET: &str = "webhook-secret-for-tests";
const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
const PUSH: &str = include_str!("fixtures/push.json");
const PING: &str = include_str!("fixtures/ping.json");
const INSTALLATION: &str = include_str!("fixtures/installation.json");
const CHECK_SUITE: &str = include_str!("fixtures/check_suite_rerequested.json");
const CHECK_RUN: &str = include_str!("fixtures/check_run_rerequested.json");

struct GhPush {
    address: SocketAddr,
    http: reqwest::Client,
    _served: ServedFunction,
}

fn config(gateway: &RecordingGateway) -> Config {
    Config {
        common: CommonConfig {
            gateway_url: gateway.url().parse().unwrap(),
            audit_url: Some(format!("{}function/audit-event", gateway.url()).parse().unwrap()),
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        webhook: WebhookCheck::Verify(Secret::new(WEBHOOK_SECRET)),
        customers: None,
        customers_ttl: Duration::from_secs(60),
        build_branch: None,
        previews: false,
        delivery_ttl: Duration::from_secs(3600),
        delivery_log_max_bytes: gh_push::deliveries::DEFAULT_MAX_BYTES,
        delivery_records: records_folder(),
        server: ServerConfig::for_tests(1 << 20),
    }
}

/// A store folder of its own for each gh-push of these tests (in cargo's scratch folder for tests).
fn records_folder() -> DeliveryRecords {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let folder =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gh-push-records-{}-{n}", std::process::id()));
    DeliveryRecords::open(&LogStoreConfig::folder(folder)).unwrap()
}

async fn start(config: Config) -> GhPush {
    let server = config.server.clone();
    let served = ServedFunction::start_with(gh_push::app(config), &server).await;
    GhPush { address: served.address, http: reqwest::Client::new(), _served: served }
}

struct Delivery {
    event: &'static str,
    id: String,
    body: Vec<u8>,
    signature: Option<String>,
}

impl Delivery {
    fn new(event: &'static str, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let signature = Some(sign_sha256(WEBHOOK_SECRET.as_bytes(), &body));
        Self { event, id: uuid_like(), body, signature }
    }

    fn push(edit: impl FnOnce(&mut Value)) -> Self {
        let mut push: Value = serde_json::from_str(PUSH).unwrap();
        edit(&mut push);
        Self::new("push", serde_json::to_vec(&push).unwrap())
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("72d3162e-cc78-11e3-81ab-{:012x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl GhPush {
    async fn send(&self, delivery: &Delivery) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("http://{}/", self.address))
            .header("Content-Type", "application/json")
            .header("User-Agent", "GitHub-Hookshot/044aadd")
            .header("X-GitHub-Event", delivery.event)
            .header("X-GitHub-Delivery", &delivery.id)
            .header("X-GitHub-Hook-ID", "109948940")
            .body(delivery.body.clone());
        if let Some(signature) = &delivery.signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// Requests that queue work (audit events are not work).
fn queued(gateway: &RecordingGateway) -> Vec<testkit::RecordedRequest> {
    gateway.requests_to("/async-function/")
}

#[tokio::test]
async fn queues_git_tar_and_a_pending_status_for_a_signed_push_to_the_default_branch() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let delivery = Delivery::push(|_| {});
    let (status, answer) = gh_push.send(&delivery).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["sha"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");

    let status_calls = gateway.requests_to("/async-function/github-status");
    assert_eq!(status_calls.len(), 1);
    verify_cloud(&status_calls[0].headers, &status_calls[0].body, PAYLOAD_SECRET.as_bytes()).unwrap();
    let report: StatusReport = status_calls[0].json();
    assert_eq!(report.event.owner, "Octo");
    assert_eq!(report.event.repo, "fns");
    assert_eq!(report.event.installation_id, Some(1_234_567));
    assert_eq!(report.statuses.len(), 1);
    assert_eq!(report.statuses[0].context, "stack-deploy");
    assert_eq!(report.statuses[0].state, StatusState::Pending);

    let git_tar = gateway.requests_to("/async-function/git-tar");
    assert_eq!(git_tar.len(), 1);
    verify_cloud(&git_tar[0].headers, &git_tar[0].body, PAYLOAD_SECRET.as_bytes()).unwrap();
    assert_eq!(git_tar[0].header("x-github-delivery"), Some(delivery.id.as_str()));
    let event: PushEvent = git_tar[0].json();
    assert_eq!(event.delivery, delivery.id);
    assert_eq!(event.git_ref, "refs/heads/main");
    assert_eq!(event.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(event.installation_id, Some(1_234_567));
    assert_eq!(event.repository.full_name, "Octo/fns");
    assert_eq!(event.repository.clone_url, "https://github.com/Octo/fns.git");
    assert_eq!(event.repository.owner.login, "Octo");
    assert_eq!(event.repository.owner.id, 21_031_067);
    // Where the push moved the branch from, and when: what orders it against the branch's newest commit.
    assert_eq!(event.order.before, "9049f1265b7d61be4a8904a9a27120d2064dab3b");
    assert!(!event.order.forced);
    assert_eq!(event.order.pushed_at, 1_763_645_000, "GitHub's repository.pushed_at");
    let raw: Value = git_tar[0].json();
    assert!(raw.get("commits").is_none(), "only what git-tar needs travels: {raw}");
}

#[tokio::test]
async fn refuses_a_push_with_a_wrong_signature_and_queues_nothing() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let mut delivery = Delivery::push(|_| {});
    delivery.signature = Some(sign_sha256(b"not the secret", &delivery.body));
    let (status, answer) = gh_push.send(&delivery).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("does not match"), "{answer}");
    assert!(!answer.to_string().contains(WEBHOOK_SECRET));
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn refuses_an_unsigned_push_and_a_body_changed_after_signing() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let mut unsigned = Delivery::push(|_| {});
    unsigned.signature = None;
    assert_eq!(gh_push.send(&unsigned).await.0, 401);
    let mut tampered = Delivery::push(|_| {});
    tampered.body.extend_from_slice(b" ");
    assert_eq!(gh_push.send(&tampered).await.0, 401);
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn accepts_the_legacy_sha1_signature() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let delivery = Delivery::push(|_| {});
    let response = gh_push
        .http
        .post(format!("http://{}/", gh_push.address))
        .header("x-github-event", "push")
        .header("x-github-delivery", &delivery.id)
        .header("x-hub-signature", sign_sha1(WEBHOOK_SECRET.as_bytes(), &delivery.body))
        .body(delivery.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn answers_a_ping_with_pong() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let (status, answer) = gh_push.send(&Delivery::new("ping", PING)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["message"], "pong");
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn ignores_other_event_types() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let (status, answer) = gh_push.send(&Delivery::new("issues", r#"{"action":"opened"}"#)).await;
    assert_eq!(status, 200);
    assert!(answer["message"].as_str().unwrap().contains("issues"), "{answer}");
    assert!(queued(&gateway).is_empty());
    assert!(gateway.requests_to("/function/git-event").is_empty());
}

#[tokio::test]
async fn passes_installation_events_on_to_git_event_unchanged() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let delivery = Delivery::new("installation", INSTALLATION);
    let (status, answer) = gh_push.send(&delivery).await;
    assert_eq!(status, 200, "{answer}");
    let forwarded = gateway.requests_to("/function/git-event");
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].body, delivery.body, "the body is unchanged, so git-event verifies the same signature");
    assert_eq!(forwarded[0].header("x-hub-signature-256"), delivery.signature.as_deref());
    assert_eq!(forwarded[0].header("x-github-event"), Some("installation"));
    assert_eq!(forwarded[0].header("x-github-delivery"), Some(delivery.id.as_str()));
    assert!(queued(&gateway).is_empty());

    gateway.reply("POST", "/function/git-event", vec![Reply::status(500)]);
    let (status, _) = gh_push.send(&Delivery::new("installation_repositories", INSTALLATION)).await;
    assert_eq!(status, 502, "a failure there shows as a failed delivery, so GitHub can redeliver it");
}

#[tokio::test]
async fn ignores_tag_pushes() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let (status, answer) = gh_push.send(&Delivery::push(|p| p["ref"] = "refs/tags/v1.0.0".into())).await;
    assert_eq!(status, 200);
    assert!(answer["message"].as_str().unwrap().contains("tag"), "{answer}");
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn ignores_branch_deletions() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let deleted = Delivery::push(|p| {
        p["deleted"] = true.into();
        p["after"] = "0".repeat(40).into();
        p["head_commit"] = Value::Null;
        p["commits"] = Value::Array(vec![]);
    });
    let (status, answer) = gh_push.send(&deleted).await;
    assert_eq!(status, 200);
    assert!(answer["message"].as_str().unwrap().contains("deleted"), "{answer}");
    let zeros_only = Delivery::push(|p| p["after"] = "0".repeat(40).into());
    assert_eq!(gh_push.send(&zeros_only).await.0, 200);
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn builds_a_new_default_branch_but_ignores_other_branches() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let feature = Delivery::push(|p| {
        p["ref"] = "refs/heads/feature/login".into();
        p["created"] = true.into();
        p["before"] = "0".repeat(40).into();
    });
    let (status, answer) = gh_push.send(&feature).await;
    assert_eq!(status, 200);
    assert!(answer["message"].as_str().unwrap().contains("feature/login"), "{answer}");
    assert!(queued(&gateway).is_empty());

    let created_main = Delivery::push(|p| {
        p["created"] = true.into();
        p["before"] = "0".repeat(40).into();
    });
    assert_eq!(gh_push.send(&created_main).await.0, 202);
    assert_eq!(gateway.requests_to("/async-function/git-tar").len(), 1);
}

#[tokio::test]
async fn builds_only_the_configured_build_branch() {
    let gateway = RecordingGateway::start().await;
    let mut config = config(&gateway);
    config.build_branch = Some("release".into());
    let gh_push = start(config).await;
    assert_eq!(gh_push.send(&Delivery::push(|_| {})).await.0, 200, "main is not the build branch");
    assert_eq!(gh_push.send(&Delivery::push(|p| p["ref"] = "refs/heads/release".into())).await.0, 202);
    assert_eq!(gateway.requests_to("/async-function/git-tar").len(), 1);
}

#[tokio::test]
async fn answers_400_for_a_body_that_is_not_a_push_event() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let (status, answer) = gh_push.send(&Delivery::new("push", "{not json")).await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = gh_push.send(&Delivery::new("push", r#"{"zen":"a ping sent as a push"}"#)).await;
    assert_eq!(status, 400);
    let (status, answer) = gh_push.send(&Delivery::push(|p| p["after"] = "not-a-sha".into())).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = gh_push.send(&Delivery::new("", PUSH)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("X-GitHub-Event"), "{answer}");
    assert!(queued(&gateway).is_empty());
}

/// The log store keys by the lower-case SHA: an upper-case `after` is refused at the door, naming the field, not
/// built with its log lost.
#[tokio::test]
async fn refuses_an_upper_case_after_naming_the_field() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let upper = "6113728F27AE82C7B1A177C8D03F9E96E0ADF246";
    let (status, answer) = gh_push.send(&Delivery::push(|p| p["after"] = upper.into())).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("`after` is not a commit SHA"), "{answer}");
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn answers_413_for_an_oversized_body() {
    let gateway = RecordingGateway::start().await;
    let mut config = config(&gateway);
    config.server.max_body_bytes = 4096;
    let gh_push = start(config).await;
    let (status, _) = gh_push.send(&Delivery::push(|_| {})).await;
    assert_eq!(status, 413, "the 7 KB fixture is over a 4 KB limit");
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn a_redelivery_is_answered_but_not_queued_twice() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let delivery = Delivery::push(|_| {});
    assert_eq!(gh_push.send(&delivery).await.0, 202);
    let (status, answer) = gh_push.send(&delivery).await;
    assert_eq!(status, 200);
    assert!(answer["message"].as_str().unwrap().contains("already queued"), "{answer}");
    assert_eq!(gateway.requests_to("/async-function/git-tar").len(), 1);
}

#[tokio::test]
async fn answers_502_when_the_gateway_fails_and_a_redelivery_then_succeeds() {
    let gateway = RecordingGateway::start().await;
    gateway.reply(
        "POST",
        "/async-function/git-tar",
        vec![Reply::status(500).body("queue is down"), Reply::status(202)],
    );
    let gh_push = start(config(&gateway)).await;
    let delivery = Delivery::push(|_| {});
    let (status, answer) = gh_push.send(&delivery).await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("500"), "{answer}");
    let statuses: Vec<StatusReport> =
        gateway.requests_to("/async-function/github-status").iter().map(testkit::RecordedRequest::json).collect();
    assert_eq!(
        statuses.last().unwrap().statuses[0].state,
        StatusState::Error,
        "the pending status is not left hanging"
    );

    assert_eq!(gh_push.send(&delivery).await.0, 202, "the redelivery is queued once the gateway is back");
    assert_eq!(gateway.requests_to("/async-function/git-tar").len(), 2);
}

#[tokio::test]
async fn answers_502_when_the_gateway_cannot_be_reached() {
    let unreachable = free_port();
    let gateway = RecordingGateway::start().await;
    let mut config = config(&gateway);
    config.common.gateway_url = format!("http://127.0.0.1:{unreachable}/").parse().unwrap();
    let gh_push = start(config).await;
    let (status, answer) = gh_push.send(&Delivery::push(|_| {})).await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("could not be reached"), "{answer}");
}

#[tokio::test]
async fn refuses_owners_missing_from_a_customers_file() {
    let gateway = RecordingGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("CUSTOMERS");
    std::fs::write(&list, "# customers\nalexellis\n\nOCTO   # matched case-insensitively\n").unwrap();
    let mut config = config(&gateway);
    config.customers = Some(CustomersSource::File(list));
    let gh_push = start(config).await;
    assert_eq!(gh_push.send(&Delivery::push(|_| {})).await.0, 202, "Octo is listed as OCTO");
    let stranger = Delivery::push(|p| p["repository"]["owner"]["login"] = "mallory".into());
    let (status, answer) = gh_push.send(&stranger).await;
    assert_eq!(status, 403);
    assert!(answer["error"].as_str().unwrap().contains("mallory"), "{answer}");
    assert_eq!(gateway.requests_to("/async-function/git-tar").len(), 1);
}

#[tokio::test]
async fn reads_the_customers_list_from_a_url_once_per_cache_period() {
    let gateway = RecordingGateway::start().await;
    let list_server = RecordingGateway::start().await;
    list_server.reply("GET", "/CUSTOMERS", vec![Reply::status(200).body("octo\n")]);
    let mut config = config(&gateway);
    config.customers = Some(CustomersSource::Url(format!("{}CUSTOMERS", list_server.url()).parse().unwrap()));
    let gh_push = start(config).await;
    for _ in 0..3 {
        assert_eq!(gh_push.send(&Delivery::push(|_| {})).await.0, 202);
    }
    assert_eq!(list_server.requests_to("/CUSTOMERS").len(), 1);
}

#[tokio::test]
async fn sends_an_audit_event_for_accepted_and_refused_deliveries() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let accepted = Delivery::push(|_| {});
    gh_push.send(&accepted).await;
    let mut refused = Delivery::push(|_| {});
    refused.signature = Some("sha256=00".into());
    gh_push.send(&refused).await;
    let audits = gateway.wait_for_requests("/function/audit-event", 2, Duration::from_secs(5)).await;
    let events: Vec<Value> = audits
        .iter()
        .map(|r| {
            verify_cloud(&r.headers, &r.body, PAYLOAD_SECRET.as_bytes()).unwrap();
            r.json()
        })
        .collect();
    let by_delivery = |id: &str| events.iter().find(|e| e["delivery"] == id).cloned().unwrap();
    let accepted_event = by_delivery(&accepted.id);
    assert_eq!(accepted_event["source"], "gh-push");
    assert_eq!(accepted_event["repo"], "fns");
    assert!(accepted_event["message"].as_str().unwrap().contains("202"));
    assert!(by_delivery(&refused.id)["message"].as_str().unwrap().contains("401"));
}

#[tokio::test]
async fn skips_signature_checks_only_when_validate_hmac_is_off() {
    let gateway = RecordingGateway::start().await;
    let mut config = config(&gateway);
    config.webhook = WebhookCheck::Off;
    let gh_push = start(config).await;
    let mut unsigned = Delivery::push(|_| {});
    unsigned.signature = None;
    assert_eq!(gh_push.send(&unsigned).await.0, 202);
}

#[tokio::test]
async fn answers_health_checks() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let response = gh_push.http.get(format!("http://{}/_/health", gh_push.address)).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn git_tar_is_queued_with_a_signed_callback_to_github_status() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let delivery = Delivery::push(|_| {});
    assert_eq!(gh_push.send(&delivery).await.0, 202);
    let git_tar = &gateway.requests_to("/async-function/git-tar")[0];
    let callback = git_tar.header("x-callback-url").expect("an X-Callback-Url");
    let prefix = format!("{}function/github-status/failed?", gateway.url());
    let query = callback.strip_prefix(&prefix).unwrap_or_else(|| panic!("{callback}"));
    let fields: std::collections::HashMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let build = shared::callback::BuildRef {
        owner: fields["owner"],
        repo: fields["repo"],
        sha: fields["sha"],
        installation_id: fields["installation"].parse().unwrap(),
        delivery: fields["delivery"],
    };
    assert_eq!((build.owner, build.repo, build.sha), ("Octo", "fns", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
    assert_eq!((build.installation_id, build.delivery), (1_234_567, delivery.id.as_str()));
    assert!(build.verify(fields["sig"], PAYLOAD_SECRET.as_bytes()));
    // The body is still exactly the signed push event.
    verify_cloud(&git_tar.headers, &git_tar.body, PAYLOAD_SECRET.as_bytes()).unwrap();
    assert_eq!(git_tar.json::<PushEvent>().after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
}

fn check_delivery(event: &'static str, fixture: &str, edit: impl FnOnce(&mut Value)) -> Delivery {
    let mut body: Value = serde_json::from_str(fixture).unwrap();
    edit(&mut body);
    Delivery::new(event, serde_json::to_vec(&body).unwrap())
}

#[tokio::test]
async fn a_rerequested_check_suite_queues_its_commit_as_a_push_of_it_would() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let delivery = check_delivery("check_suite", CHECK_SUITE, |_| {});
    let (status, answer) = gh_push.send(&delivery).await;
    assert_eq!(status, 202, "{answer}");

    let git_tar = gateway.requests_to("/async-function/git-tar");
    assert_eq!(git_tar.len(), 1);
    verify_cloud(&git_tar[0].headers, &git_tar[0].body, PAYLOAD_SECRET.as_bytes()).unwrap();
    let event: PushEvent = git_tar[0].json();
    assert_eq!(event.delivery, delivery.id, "the re-run is its own delivery");
    assert_eq!(event.git_ref, "refs/heads/main");
    assert_eq!(event.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(event.installation_id, Some(1_234_567));
    assert_eq!(event.repository.full_name, "Octo/fns");
    assert_eq!(event.repository.clone_url, "https://github.com/Octo/fns.git");
    assert_eq!(event.repository.owner.id, 21_031_067);
    assert_eq!(event.order, PushOrder::default(), "no push moved the branch: git ancestry orders a re-run");
    assert!(git_tar[0].header("x-callback-url").is_some(), "the same callback as a push");
    let report: StatusReport = gateway.requests_to("/async-function/github-status")[0].json();
    assert_eq!((report.statuses[0].context.as_str(), report.statuses[0].state), ("stack-deploy", StatusState::Pending));

    let (status, answer) = gh_push.send(&delivery).await;
    assert_eq!(status, 200, "a redelivery of the re-run is not queued twice: {answer}");
    assert_eq!(gateway.requests_to("/async-function/git-tar").len(), 1);
}

#[tokio::test]
async fn a_rerequested_check_run_rebuilds_its_commit() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let (status, answer) = gh_push.send(&check_delivery("check_run", CHECK_RUN, |_| {})).await;
    assert_eq!(status, 202, "{answer}");
    let event: PushEvent = gateway.requests_to("/async-function/git-tar")[0].json();
    assert_eq!(
        (event.git_ref.as_str(), event.after.as_str()),
        ("refs/heads/main", "6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    );
}

#[tokio::test]
async fn refuses_an_unsigned_or_wrongly_signed_check_suite_delivery() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    let mut unsigned = check_delivery("check_suite", CHECK_SUITE, |_| {});
    unsigned.signature = None;
    assert_eq!(gh_push.send(&unsigned).await.0, 401);
    let mut wrong = check_delivery("check_suite", CHECK_SUITE, |_| {});
    wrong.signature = Some(sign_sha256(b"another secret", &wrong.body));
    assert_eq!(gh_push.send(&wrong).await.0, 401);
    assert!(queued(&gateway).is_empty());
}

#[tokio::test]
async fn ignores_other_check_actions_and_suites_on_no_branch_with_a_reason() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(config(&gateway)).await;
    for action in ["requested", "completed"] {
        let delivery = check_delivery("check_suite", CHECK_SUITE, |v| v["action"] = action.into());
        let (status, answer) = gh_push.send(&delivery).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(action), "{answer}");
    }
    let (status, answer) =
        gh_push.send(&check_delivery("check_run", CHECK_RUN, |v| v["action"] = "created".into())).await;
    assert_eq!(status, 200, "{answer}");
    let no_branch = check_delivery("check_suite", CHECK_SUITE, |v| v["check_suite"]["head_branch"] = Value::Null);
    let (status, answer) = gh_push.send(&no_branch).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("no branch"), "{answer}");
    let other_branch = check_delivery("check_suite", CHECK_SUITE, |v| v["check_suite"]["head_branch"] = "dev".into());
    let (status, answer) = gh_push.send(&other_branch).await;
    assert_eq!(status, 200, "a re-run builds only what a push would: {answer}");
    assert!(queued(&gateway).is_empty());
    let malformed = Delivery::new("check_suite", b"{\"action\": \"rerequested\"}".to_vec());
    assert_eq!(gh_push.send(&malformed).await.0, 400);
}
