//! github-status's pull-request preview comment, over real HTTP on loopback against the GitHub API double: one
//! comment, created once and edited after (also by a second replica sharing the store), told when the preview is
//! removed, and found by its marker when there is no store.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use doubles::github_double::{AppKey, GitHubDouble, RunningDouble};
use github_status::Config;
use serde_json::Value;
use shared::config::{CommonConfig, Secret};
use shared::event::{PreviewCommentReport, PreviewFunction, StatusEvent};
use shared::github_app::AppCredentials;
use shared::log_store::{open_objects, LogStoreConfig};
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::ServedFunction;

const PAYLOAD_SECRET: &str = "payload-secret-for-comments";
const APP_ID: &str = "4243";
const OCTO: u64 = 101;

fn app_key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(AppKey::generate)
}

async fn github() -> RunningDouble {
    let double = GitHubDouble::new(APP_ID, &app_key().public_pem);
    double.add_installation(OCTO, "octo");
    double.start().await.unwrap()
}

async fn github_status(github: &RunningDouble, store: Option<&std::path::Path>) -> ServedFunction {
    let config = Config {
        common: CommonConfig {
            gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        report_status: true,
        use_checks: false,
        log_store: None,
        comment_store: store.map(|folder| open_objects(&LogStoreConfig::folder(folder)).unwrap().0),
        github_api_url: github.url().parse().unwrap(),
        app: Some(AppCredentials::from_pem(APP_ID, &Secret::new(&app_key().private_pem)).unwrap()),
        max_retries: 2,
        max_retry_wait: Duration::from_secs(1),
        server: ServerConfig::for_tests(1 << 20),
    };
    ServedFunction::start_with(github_status::app(config.clone()), &config.server).await
}

fn report(sha: &str, outcome: &str, removed: bool) -> PreviewCommentReport {
    PreviewCommentReport {
        event: StatusEvent {
            owner: "octo".into(),
            owner_id: 1,
            repo: "fns".into(),
            sha: sha.parse().unwrap(),
            installation_id: Some(OCTO),
            delivery: None,
        },
        pull_request: 12,
        functions: vec![PreviewFunction {
            function: "hello".into(),
            url: Some("http://octo--p0123456789ab.localhost:8081/hello".into()),
            deployed: outcome == "deployed",
            outcome: outcome.into(),
        }],
        summary: format!("{outcome} hello"),
        removed,
        images_kept: 0,
    }
}

async fn send(served: &ServedFunction, report: &PreviewCommentReport) -> (u16, Value) {
    let body = serde_json::to_vec(report).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}preview-comment", served.url()))
        .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const SHA_1: &str = "a10867b14bb761a232cd80139fbd4c0d33264240";
const SHA_2: &str = "b20867b14bb761a232cd80139fbd4c0d33264240";

#[tokio::test]
async fn one_comment_is_created_then_edited_by_every_replica_sharing_the_store() {
    let github = github().await;
    let store = tempfile::tempdir().unwrap();
    let first = github_status(&github, Some(store.path())).await;
    let second = github_status(&github, Some(store.path())).await;
    let (status, answer) = send(&first, &report(SHA_1, "deployed", false)).await;
    assert_eq!((status, answer["comment"].as_str()), (200, Some("created")), "{answer}");
    let (status, answer) = send(&second, &report(SHA_2, "failed: the build failed", false)).await;
    assert_eq!((status, answer["comment"].as_str()), (200, Some("updated")), "{answer}");
    let comments = github.comments("octo", "fns", 12);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0].updates, 1);
    assert!(
        comments[0].body.contains("`b20867b`") && comments[0].body.contains("the build failed"),
        "{}",
        comments[0].body
    );
    assert!(comments[0].body.contains("http://octo--p0123456789ab.localhost:8081/hello"));
    let (_, answer) = send(&first, &report(SHA_2, "", true)).await;
    assert_eq!(answer["comment"], "updated", "{answer}");
    let comments = github.comments("octo", "fns", 12);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("removed"), "{}", comments[0].body);
}

#[tokio::test]
async fn replicas_reporting_at_once_post_one_comment() {
    let github = github().await;
    let store = tempfile::tempdir().unwrap();
    let replicas = [github_status(&github, Some(store.path())).await, github_status(&github, Some(store.path())).await];
    let replicas = Arc::new(replicas);
    let mut sent = Vec::new();
    for n in 0..6 {
        let replicas = replicas.clone();
        sent.push(tokio::spawn(async move { send(&replicas[n % 2], &report(SHA_1, "deployed", false)).await }));
    }
    for answer in sent {
        let (status, answer) = answer.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert!(matches!(answer["comment"].as_str(), Some("created" | "updated")), "{answer}");
    }
    assert_eq!(github.comments("octo", "fns", 12).len(), 1);
}

#[tokio::test]
async fn a_removal_posts_nothing_where_no_preview_was_commented() {
    let github = github().await;
    let store = tempfile::tempdir().unwrap();
    let served = github_status(&github, Some(store.path())).await;
    let (status, answer) = send(&served, &report(SHA_1, "", true)).await;
    assert_eq!((status, answer["comment"].as_str()), (200, Some("none")), "{answer}");
    assert!(github.comments("octo", "fns", 12).is_empty());
}

#[tokio::test]
async fn without_a_store_the_comment_is_found_by_its_marker() {
    let github = github().await;
    let served = github_status(&github, None).await;
    assert_eq!(send(&served, &report(SHA_1, "deployed", false)).await.1["comment"], "created");
    assert_eq!(send(&served, &report(SHA_2, "deployed", false)).await.1["comment"], "updated");
    assert_eq!(github.comments("octo", "fns", 12).len(), 1);
}

#[tokio::test]
async fn refuses_unsigned_reports() {
    let github = github().await;
    let served = github_status(&github, None).await;
    let response = reqwest::Client::new()
        .post(format!("{}preview-comment", served.url()))
        .body(serde_json::to_vec(&report(SHA_1, "deployed", false)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(github.comments("octo", "fns", 12).is_empty());
}
