//! garbage-collect against a recording gateway double holding functions of several owners and repositories.

mod common;

use common::{collect, serve, SECRET};
use garbage_collect::images::RegistryConfig;
use serde_json::json;
use shared::config::Secret;
use shared::gateway::BasicAuth;
use testkit::{labelled_function, RecordingGateway, ServedFunction};

async fn start() -> (RecordingGateway, ServedFunction) {
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    for function in [
        labelled_function("octo-old-4", "octo", "fns", true),
        labelled_function("octo-kept-4", "octo", "fns", true),
        labelled_function("octo-other-repo-4", "octo", "website", true),
        labelled_function("mallory-old-7", "mallory", "fns", true),
        labelled_function("octo-manual-4", "octo", "fns", false),
    ] {
        gateway.add_function(function);
    }
    let served = serve(&gateway, RegistryConfig::none()).await;
    (gateway, served)
}

fn names(gateway: &RecordingGateway) -> Vec<String> {
    gateway.functions().into_iter().map(|f| f.name).collect()
}

#[tokio::test]
async fn deletes_only_this_repositorys_functions_that_are_no_longer_in_the_stack() {
    let (gateway, served) = start().await;
    let (status, answer) =
        collect(&served, &json!({"owner": "octo", "repo": "fns", "functions": ["octo-kept-4"]}), true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!(["octo-old-4"]));
    assert_eq!(names(&gateway), vec!["mallory-old-7", "octo-kept-4", "octo-manual-4", "octo-other-repo-4"]);
}

#[tokio::test]
async fn an_empty_list_removes_all_of_the_repositorys_cloud_functions_and_nothing_else() {
    let (gateway, served) = start().await;
    let (status, answer) = collect(&served, &json!({"owner": "OCTO", "repo": "fns", "functions": []}), true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        names(&gateway),
        vec!["mallory-old-7", "octo-manual-4", "octo-other-repo-4"],
        "other owners, other repos and unlabelled functions stay"
    );
}

#[tokio::test]
async fn refuses_unsigned_and_malformed_requests() {
    let (gateway, served) = start().await;
    assert_eq!(collect(&served, &json!({"owner": "octo", "repo": "fns", "functions": []}), false).await.0, 401);
    assert_eq!(collect(&served, &json!({"owner": "", "repo": "fns"}), true).await.0, 400);
    assert_eq!(collect(&served, &json!({"nothing": true}), true).await.0, 400);
    assert_eq!(gateway.functions().len(), 5);
}

#[tokio::test]
async fn answers_502_when_the_gateway_refuses_its_credentials() {
    let gateway = RecordingGateway::with_credentials("admin", "another-password").await;
    let served = serve(&gateway, RegistryConfig::none()).await;
    let (status, answer) = collect(&served, &json!({"owner": "octo", "repo": "fns", "functions": []}), true).await;
    assert_eq!(status, 502);
    assert!(answer["error"].as_str().unwrap().contains("401"), "{answer}");
    assert!(!answer.to_string().contains("pw\""), "no password in errors");
}

#[tokio::test]
async fn with_an_owner_id_only_that_owner_s_functions_are_collected_whatever_their_login() {
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    let with_id = |name: &str, login: &str, id: &str| {
        let mut function = labelled_function(name, login, "fns", true);
        function.labels.as_mut().unwrap().insert("com.openfaas.cloud.git-owner-id".into(), id.into());
        function
    };
    // `octo` was renamed `octocat`; a newcomer took the login `octo`.
    gateway.add_function(with_id("octo-renamed-4", "octocat", "1"));
    gateway.add_function(with_id("octo-newcomer-4", "octo", "2"));
    let served = serve(&gateway, RegistryConfig::none()).await;
    let request = json!({"owner": "octo", "owner_id": 1, "repo": "fns", "functions": []});
    let (status, answer) = collect(&served, &request, true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!(["octo-renamed-4"]));
    assert_eq!(names(&gateway), vec!["octo-newcomer-4"]);
}

/// A function of `octo/fns` deployed as the preview `tag`.
fn preview_function(name: &str, tag: &str) -> shared::openfaas::FunctionStatus {
    let mut function = labelled_function(name, "octo", "fns", true);
    function.labels.get_or_insert_with(Default::default).insert(shared::openfaas::labels::PREVIEW.into(), tag.into());
    function
}

#[tokio::test]
async fn the_default_branch_and_each_preview_collect_only_their_own() {
    let (gateway, served) = start().await;
    gateway.add_function(preview_function("octo-old-4-b000000000001", "b000000000001"));
    gateway.add_function(preview_function("octo-old-4-p000000000002", "p000000000002"));
    let (status, answer) =
        collect(&served, &json!({"owner": "octo", "repo": "fns", "functions": ["octo-kept-4"]}), true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!(["octo-old-4"]), "a push to the default branch leaves the previews");
    let (status, answer) =
        collect(&served, &json!({"owner": "octo", "repo": "fns", "functions": [], "preview": "b000000000001"}), true)
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!(["octo-old-4-b000000000001"]), "a gone branch takes only its preview");
    assert!(names(&gateway).contains(&"octo-kept-4".to_owned()));
    let everything = json!({"owner": "octo", "repo": "fns", "functions": [], "with_previews": true});
    let (_, answer) = collect(&served, &everything, true).await;
    assert_eq!(answer["deleted"], json!(["octo-kept-4", "octo-old-4-p000000000002"]));
}

#[tokio::test]
async fn stale_previews_are_swept_and_the_rest_is_left() {
    let (gateway, _served) = start().await;
    let now = chrono::Utc::now().timestamp();
    let aged = |name: &str, tag: Option<&str>, days: i64| {
        let mut function = match tag {
            Some(tag) => preview_function(name, tag),
            None => labelled_function(name, "octo", "fns", true),
        };
        let labels = function.labels.get_or_insert_with(Default::default);
        labels.insert(shared::openfaas::labels::DEPLOY_TIME.into(), (now - days * 86_400).to_string());
        function
    };
    gateway.add_function(aged("octo-a-4-b000000000001", Some("b000000000001"), 8));
    gateway.add_function(aged("octo-a-4-b000000000002", Some("b000000000002"), 6));
    gateway.add_function(aged("octo-ancient-4", None, 400));
    let client = shared::gateway::GatewayClient::new(gateway.url().parse().unwrap(), Secret::new(SECRET))
        .with_credentials(BasicAuth { user: "admin".into(), password: Secret::new("pw") });
    let week = std::time::Duration::from_secs(7 * 86_400);
    let images = garbage_collect::images::PreviewImages::new(&garbage_collect::images::RegistryConfig::none());
    let swept = garbage_collect::sweep_previews(&client, &images, week).await.unwrap();
    assert_eq!(swept.deleted, vec!["octo-a-4-b000000000001"]);
    let names = names(&gateway);
    assert!(names.contains(&"octo-a-4-b000000000002".to_owned()) && names.contains(&"octo-ancient-4".to_owned()));
}

#[test]
fn a_preview_ttl_is_a_duration_or_whole_days() {
    use std::time::Duration;
    assert_eq!(garbage_collect::parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
    assert_eq!(garbage_collect::parse_ttl("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(garbage_collect::parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(garbage_collect::parse_ttl("0"), Ok(Duration::ZERO));
    for bad in ["", "1.5d", "d", "7 days", "-1d"] {
        assert!(garbage_collect::parse_ttl(bad).is_err(), "{bad}");
    }
}
