//! git-event: GitHub-signed installation events become garbage-collect calls through a recording gateway double.

use git_event::Config;
use serde_json::{json, Value};
use shared::config::Secret;
use shared::customers::CustomersSource;
use shared::event::GarbageCollectRequest;
use shared::gateway::BasicAuth;
use shared::server::ServerConfig;
use shared::signature::{sign_sha256, verify_cloud, WebhookCheck};
use testkit::{common_config, labelled_function, RecordingGateway, ServedFunction};

const WEBHOOK: &str = "webhook-secret";

async fn start() -> (RecordingGateway, ServedFunction) {
    start_with(None).await
}

async fn start_with(customers: Option<CustomersSource>) -> (RecordingGateway, ServedFunction) {
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    gateway.add_function(labelled_function("octo-a", "octo", "fns", true));
    gateway.add_function(labelled_function("octo-b", "octo", "web", true));
    gateway.add_function(labelled_function("mallory-c", "mallory", "fns", true));
    let config = Config {
        common: common_config(&gateway, "payload"),
        webhook: WebhookCheck::Verify(Secret::new(WEBHOOK)),
        credentials: BasicAuth { user: "admin".into(), password: Secret::new("pw") },
        customers,
        customers_ttl: std::time::Duration::from_secs(60),
        server: ServerConfig::for_tests(1 << 20),
    };
    let served = ServedFunction::start(git_event::app(config)).await;
    (gateway, served)
}

async fn deliver(served: &ServedFunction, event: &str, payload: &Value, secret: &str) -> u16 {
    let body = serde_json::to_vec(payload).unwrap();
    reqwest::Client::new()
        .post(served.url())
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", "d-1")
        .header("X-Hub-Signature-256", sign_sha256(secret.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn collected(gateway: &RecordingGateway) -> Vec<GarbageCollectRequest> {
    gateway
        .requests_to("/function/garbage-collect")
        .iter()
        .map(|r| {
            verify_cloud(&r.headers, &r.body, b"payload").unwrap();
            r.json()
        })
        .collect()
}

#[tokio::test]
async fn removed_repositories_are_garbage_collected() {
    let (gateway, served) = start().await;
    let payload = json!({
        "action": "removed",
        "installation": {"id": 7, "account": {"login": "octo", "id": 1}},
        "repository_selection": "selected",
        "repositories_added": [],
        "repositories_removed": [{"id": 1, "name": "fns", "full_name": "octo/fns", "private": false}],
        "sender": {"login": "octo"}
    });
    assert_eq!(deliver(&served, "installation_repositories", &payload, WEBHOOK).await, 200);
    let calls = collected(&gateway);
    assert_eq!(
        calls,
        vec![GarbageCollectRequest {
            owner: "octo".into(),
            repo: "fns".into(),
            owner_id: Some(1),
            functions: vec![],
            preview: None,
            with_previews: true
        }]
    );
}

#[tokio::test]
async fn a_deleted_installation_removes_every_repository_of_the_account() {
    let (gateway, served) = start().await;
    let payload = json!({"action": "deleted", "installation": {"id": 7, "account": {"login": "octo"}}, "sender": {"login": "octo"}});
    assert_eq!(deliver(&served, "installation", &payload, WEBHOOK).await, 200);
    let repos: Vec<String> = collected(&gateway).into_iter().map(|c| c.repo).collect();
    assert_eq!(repos, vec!["fns", "web"], "mallory's functions are not touched");
}

#[tokio::test]
async fn ignores_other_events_and_actions() {
    let (gateway, served) = start().await;
    assert_eq!(deliver(&served, "push", &json!({"ref": "refs/heads/main"}), WEBHOOK).await, 200);
    let added = json!({"action": "added", "installation": {"id": 7, "account": {"login": "octo"}}, "repositories_added": [{"name": "x"}]});
    assert_eq!(deliver(&served, "installation_repositories", &added, WEBHOOK).await, 200);
    assert!(collected(&gateway).is_empty());
}

#[tokio::test]
async fn refuses_a_wrong_signature() {
    let (gateway, served) = start().await;
    let payload = json!({"action": "deleted", "installation": {"id": 7, "account": {"login": "octo"}}});
    assert_eq!(deliver(&served, "installation", &payload, "not-the-secret").await, 401);
    assert!(gateway.requests_to("/function/").is_empty());
}

#[tokio::test]
async fn only_the_customers_installation_events_are_acted_on() {
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), "# customers\nOcto\n").unwrap();
    let (gateway, served) = start_with(Some(CustomersSource::File(list.path().to_owned()))).await;
    let removed = |login: &str| {
        json!({
            "action": "removed",
            "installation": {"id": 7, "account": {"login": login, "id": 9}},
            "repositories_removed": [{"id": 1, "name": "fns", "full_name": format!("{login}/fns"), "private": false}],
        })
    };
    assert_eq!(deliver(&served, "installation_repositories", &removed("mallory"), WEBHOOK).await, 403);
    assert!(collected(&gateway).is_empty(), "nothing is collected for an owner who is not a customer");
    assert_eq!(deliver(&served, "installation_repositories", &removed("octo"), WEBHOOK).await, 200);
    assert_eq!(collected(&gateway).len(), 1);
}
