//! gh-push with `previews` on: other branches and pull requests are queued as previews, and their deletion or
//! closing removes them through garbage-collect. Over real HTTP on loopback, with a recording gateway double.

use std::time::Duration;

use gh_push::delivery_records::DeliveryRecords;
use gh_push::Config;
use serde_json::{json, Value};
use shared::config::{CommonConfig, Secret};
use shared::event::{GarbageCollectRequest, PreviewOf, PushEvent};
use shared::log_store::LogStoreConfig;
use shared::naming::preview_tag;
use shared::server::ServerConfig;
use shared::signature::{sign_sha256, verify_cloud, WebhookCheck};
use testkit::{RecordingGateway, ServedFunction};

const WEBHOOK_SECRET: &str = "webhook-secret-for-previews";
const PAYLOAD_SECRET: &str = "payload-secret-for-previews";
const PUSH: &str = include_str!("fixtures/push.json");
const PULL_REQUEST: &str = include_str!("fixtures/pull_request.json");

fn config(gateway: &RecordingGateway, previews: bool) -> Config {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let folder = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gh-push-preview-records-{}-{n}", std::process::id()));
    Config {
        common: CommonConfig {
            gateway_url: gateway.url().parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        webhook: WebhookCheck::Verify(Secret::new(WEBHOOK_SECRET)),
        customers: None,
        customers_ttl: Duration::from_secs(60),
        build_branch: None,
        previews,
        delivery_ttl: Duration::from_secs(3600),
        delivery_log_max_bytes: gh_push::deliveries::DEFAULT_MAX_BYTES,
        delivery_records: DeliveryRecords::open(&LogStoreConfig::folder(folder)).unwrap(),
        server: ServerConfig::for_tests(1 << 20),
    }
}

struct GhPush {
    served: ServedFunction,
    http: reqwest::Client,
}

async fn start(gateway: &RecordingGateway, previews: bool) -> GhPush {
    let config = config(gateway, previews);
    let server = config.server.clone();
    GhPush { served: ServedFunction::start_with(gh_push::app(config), &server).await, http: reqwest::Client::new() }
}

impl GhPush {
    async fn send(&self, event: &str, body: &Value) -> (u16, Value) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let body = serde_json::to_vec(body).unwrap();
        let response = self
            .http
            .post(format!("http://{}/", self.served.address))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", event)
            .header(
                "X-GitHub-Delivery",
                format!("0b1d1e5c-0000-11e3-81ab-{:012x}", NEXT.fetch_add(1, Ordering::Relaxed)),
            )
            .header("X-Hub-Signature-256", sign_sha256(WEBHOOK_SECRET.as_bytes(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn edited(fixture: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut value: Value = serde_json::from_str(fixture).unwrap();
    edit(&mut value);
    value
}

fn git_tar_events(gateway: &RecordingGateway) -> Vec<PushEvent> {
    gateway.requests_to("/async-function/git-tar").iter().map(testkit::RecordedRequest::json).collect()
}

fn collections(gateway: &RecordingGateway) -> Vec<GarbageCollectRequest> {
    let calls = gateway.requests_to("/function/garbage-collect");
    for call in &calls {
        verify_cloud(&call.headers, &call.body, PAYLOAD_SECRET.as_bytes()).unwrap();
    }
    calls.iter().map(testkit::RecordedRequest::json).collect()
}

#[tokio::test]
async fn a_push_to_another_branch_is_queued_as_that_branch_s_preview() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(&gateway, true).await;
    let (status, answer) = gh_push.send("push", &edited(PUSH, |p| p["ref"] = "refs/heads/feature/login".into())).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = gh_push.send("push", &edited(PUSH, |_| {})).await;
    assert_eq!(status, 202, "{answer}");
    let events = git_tar_events(&gateway);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].preview, Some(PreviewOf::Branch("feature/login".into())));
    assert_eq!(events[0].git_ref, "refs/heads/feature/login");
    assert_eq!(events[1].preview, None, "the default branch is the repository's own deployment");
}

#[tokio::test]
async fn with_previews_off_other_branches_and_pull_requests_are_ignored() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(&gateway, false).await;
    let (status, answer) = gh_push.send("push", &edited(PUSH, |p| p["ref"] = "refs/heads/feature/login".into())).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = gh_push.send("pull_request", &edited(PULL_REQUEST, |_| {})).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("previews are off"), "{answer}");
    let (status, _) = gh_push.send("pull_request", &edited(PULL_REQUEST, |p| p["action"] = "closed".into())).await;
    assert_eq!(status, 200);
    assert!(gateway.requests_to("/async-function/git-tar").is_empty());
    assert!(gateway.requests_to("/function/garbage-collect").is_empty());
}

#[tokio::test]
async fn an_opened_or_synchronised_pull_request_queues_its_head_as_its_preview() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(&gateway, true).await;
    for action in ["opened", "synchronize", "reopened"] {
        let (status, answer) =
            gh_push.send("pull_request", &edited(PULL_REQUEST, |p| p["action"] = action.into())).await;
        assert_eq!(status, 202, "{action}: {answer}");
    }
    let (status, answer) =
        gh_push.send("pull_request", &edited(PULL_REQUEST, |p| p["action"] = "labeled".into())).await;
    assert_eq!(status, 200, "{answer}");
    let events = git_tar_events(&gateway);
    assert_eq!(events.len(), 3);
    for event in &events {
        assert_eq!(event.preview, Some(PreviewOf::PullRequest(12)));
        assert_eq!(event.after, "a10867b14bb761a232cd80139fbd4c0d33264240");
        assert_eq!(event.repository.full_name, "Octo/fns");
        assert_eq!(event.installation_id, Some(1_234_567));
    }
}

#[tokio::test]
async fn a_fork_s_pull_request_is_not_built() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(&gateway, true).await;
    let fork = edited(PULL_REQUEST, |p| p["pull_request"]["head"]["repo"]["full_name"] = "mallory/fns".into());
    let (status, answer) = gh_push.send("pull_request", &fork).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("forks"), "{answer}");
    let gone_fork = edited(PULL_REQUEST, |p| p["pull_request"]["head"]["repo"] = Value::Null);
    assert_eq!(gh_push.send("pull_request", &gone_fork).await.0, 200);
    assert!(gateway.requests_to("/async-function/git-tar").is_empty());
}

#[tokio::test]
async fn closing_a_pull_request_or_deleting_a_branch_removes_only_that_preview() {
    let gateway = RecordingGateway::start().await;
    let gh_push = start(&gateway, true).await;
    let closed = edited(PULL_REQUEST, |p| {
        p["action"] = "closed".into();
        p["pull_request"]["merged"] = true.into();
    });
    let (status, answer) = gh_push.send("pull_request", &closed).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["preview"], json!(preview_tag("fns", &PreviewOf::PullRequest(12))));
    let deleted_push = edited(PUSH, |p| {
        p["ref"] = "refs/heads/feature/login".into();
        p["deleted"] = true.into();
        p["after"] = "0".repeat(40).into();
    });
    assert_eq!(gh_push.send("push", &deleted_push).await.0, 200);
    let delete =
        json!({"ref": "feature/login", "ref_type": "branch", "repository": edited(PUSH, |_| {})["repository"]});
    assert_eq!(gh_push.send("delete", &delete).await.0, 200);
    let tag_delete = json!({"ref": "v1", "ref_type": "tag", "repository": delete["repository"]});
    assert_eq!(gh_push.send("delete", &tag_delete).await.0, 200);
    let main_deleted = json!({"ref": "main", "ref_type": "branch", "repository": delete["repository"]});
    assert_eq!(gh_push.send("delete", &main_deleted).await.0, 200);

    let branch = preview_tag("fns", &PreviewOf::Branch("feature/login".into()));
    let asked: Vec<(Option<String>, bool, Vec<String>)> =
        collections(&gateway).into_iter().map(|r| (r.preview, r.with_previews, r.functions)).collect();
    assert_eq!(
        asked,
        vec![
            (Some(preview_tag("fns", &PreviewOf::PullRequest(12))), false, vec![]),
            (Some(branch.clone()), false, vec![]),
            (Some(branch), false, vec![]),
        ],
        "a tag or the default branch removes no preview"
    );
    assert!(gateway.requests_to("/async-function/git-tar").is_empty());
    let told = gateway.requests_to("/async-function/github-status/preview-comment");
    assert_eq!(told.len(), 1, "only the closed pull request's comment is told");
    verify_cloud(&told[0].headers, &told[0].body, PAYLOAD_SECRET.as_bytes()).unwrap();
    let report: shared::event::PreviewCommentReport = told[0].json();
    assert!(report.removed);
    assert_eq!((report.pull_request, report.event.installation_id), (12, Some(1_234_567)));
}
