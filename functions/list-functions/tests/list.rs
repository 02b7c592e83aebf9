//! list-functions against a recording gateway double.

use list_functions::Config;
use serde_json::Value;
use shared::config::Secret;
use shared::gateway::BasicAuth;
use shared::server::ServerConfig;
use testkit::{common_config, labelled_function, RecordingGateway, Reply, ServedFunction};

async fn start() -> (RecordingGateway, ServedFunction) {
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    gateway.add_function(labelled_function("octo-b", "octo", "fns", true));
    gateway.add_function(labelled_function("octo-a", "Octo", "web", true));
    gateway.add_function(labelled_function("mallory-x", "mallory", "fns", true));
    gateway.add_function(labelled_function("octo-manual", "octo", "fns", false));
    let config = Config {
        common: common_config(&gateway, "p"),
        credentials: BasicAuth { user: "admin".into(), password: Secret::new("pw") },
        server: ServerConfig::for_tests(1 << 20),
    };
    let served = ServedFunction::start(list_functions::app(config)).await;
    (gateway, served)
}

async fn get(served: &ServedFunction, query: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{}{query}", served.url())).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn lists_an_owners_cloud_functions_with_their_details() {
    let (_gateway, served) = start().await;
    let (status, answer) = get(&served, "?user=octo").await;
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> = answer.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["octo-a", "octo-b"], "case-insensitive owner, only Git-Cloud functions, sorted");
    let first = &answer[0];
    assert_eq!(first["repo"], "web");
    assert_eq!(first["sha"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(first["deployTime"], "1763645000");
    assert_eq!(first["replicas"], 1);
    assert_eq!(first["invocationCount"], 3.0);
    assert!(first["image"].as_str().unwrap().contains("@sha256:"));
}

#[tokio::test]
async fn refuses_a_missing_or_invalid_user() {
    let (_gateway, served) = start().await;
    assert_eq!(get(&served, "").await.0, 400);
    assert_eq!(get(&served, "?user=").await.0, 400);
    assert_eq!(get(&served, "?user=..%2Fadmin").await.0, 400);
    assert_eq!(get(&served, "?user=-octo").await.0, 400);
    assert_eq!(get(&served, &format!("?user={}", "a".repeat(40))).await.0, 400);
}

#[tokio::test]
async fn an_owner_id_narrows_the_list_to_that_owner_s_functions() {
    let (gateway, served) = start().await;
    let mut newcomer = labelled_function("octo-c", "octo", "fns", true);
    newcomer.labels.as_mut().unwrap().insert("com.openfaas.cloud.git-owner-id".into(), "2".into());
    gateway.add_function(newcomer);
    let (status, answer) = get(&served, "?user=octo&owner_id=1").await;
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> = answer.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["octo-a", "octo-b"], "the function of id 2 is not octo's (1), whatever its login");
    assert_eq!(get(&served, "?user=octo&owner_id=x").await.0, 400);
}

/// faasd's `GET /system/functions` has no `availableReplicas`: readiness comes from each of the owner's functions'
/// own `GET /system/function/NAME`, and only theirs are asked.
#[tokio::test]
async fn readiness_comes_from_each_function_s_own_status_when_the_list_counts_none() {
    let (gateway, served) = start().await;
    let mut list = serde_json::to_value(gateway.functions()).unwrap();
    for function in list.as_array_mut().unwrap() {
        function.as_object_mut().unwrap().remove("availableReplicas");
    }
    gateway.reply("GET", "/system/functions", vec![Reply::status(200).json(&list)]);
    let mut starting =
        serde_json::to_value(gateway.functions().into_iter().find(|f| f.name == "octo-b").unwrap()).unwrap();
    starting["availableReplicas"] = 0.into();
    gateway.reply("GET", "/system/function/octo-b", vec![Reply::status(200).json(&starting)]);

    let (status, answer) = get(&served, "?user=octo").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer[0]["name"], "octo-a");
    assert_eq!(answer[0]["availableReplicas"], 1, "ready by its own status: {answer}");
    assert_eq!(answer[1]["availableReplicas"], 0, "still starting by its own status: {answer}");
    let asked: Vec<String> = gateway.requests_to("/system/function/").into_iter().map(|r| r.path).collect();
    assert_eq!(asked, ["/system/function/octo-a", "/system/function/octo-b"], "only the owner's functions are asked");
}
