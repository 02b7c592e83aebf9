//! The embedded gateway as a faas-provider: first its provider routes over real HTTP on loopback, then the real
//! OpenFaaS gateway 0.25.4 (basic auth through its plugin, `scale_from_zero=true`), NATS Streaming and the CE
//! queue-worker in front of `ofc up`, driven by the real faas-cli and a signed push, all inside a network namespace
//! the test creates (the gateway binds `:8080` and `:8082` on every interface).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ofc::gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};
use testkit::openfaas::{NetNs, OpenFaas};
use testkit::{RecordingGateway, ServedFunction};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Serves a gateway with one platform function (`gh-push`) and `function-secrets/` of its own.
async fn provider(state: &Path, behind_gateway: bool) -> (Gateway, ServedFunction) {
    let mut config = GatewayConfig::new(state, "admin", "pw");
    config.behind_gateway = behind_gateway;
    let gateway = Gateway::new(config).unwrap();
    (gateway.clone(), ServedFunction::serve(gateway.router()).await)
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, String) {
    let mut request = client().request(method, url).basic_auth("admin", Some("pw"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_platform_functions_have_a_status_and_a_scale_request_is_answered_as_faas_provider_does() {
    let state = tempfile::tempdir().unwrap();
    let (gateway, served) = provider(state.path(), false).await;
    let platform = RecordingGateway::start().await;
    gateway.set_route("gh-push", &platform.url());
    let url = served.url();
    let get = reqwest::Method::GET;
    let (status, body) = call(get.clone(), &format!("{url}system/function/gh-push?namespace=openfaas-fn"), None).await;
    assert_eq!(status, 200, "{body}");
    let function: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(function["name"], "gh-push");
    assert_eq!(function["namespace"], "openfaas-fn");
    assert_eq!(function["availableReplicas"], 1, "{body}");
    assert_eq!(function["replicas"], 1, "{body}");
    let (status, _) = call(get.clone(), &format!("{url}system/function/gh-push.openfaas-fn"), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(get.clone(), &format!("{url}system/function/nothing"), None).await;
    assert_eq!(status, 404);
    // Without the credentials, nothing of it.
    let anonymous = client().get(format!("{url}system/function/gh-push")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let post = reqwest::Method::POST;
    let scale = |name: &str, replicas: u64| json!({"serviceName": name, "replicas": replicas});
    let (status, body) =
        call(post.clone(), &format!("{url}system/scale-function/gh-push"), Some(scale("gh-push", 1))).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) =
        call(post.clone(), &format!("{url}system/scale-function/gh-push"), Some(scale("gh-push", 0))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot be scaled to zero"), "{body}");
    let (status, _) =
        call(post.clone(), &format!("{url}system/scale-function/nothing"), Some(scale("nothing", 1))).await;
    assert_eq!(status, 404);
    let (status, body) =
        call(post.clone(), &format!("{url}system/scale-function/gh-push"), Some(scale("other", 1))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        call(post, &format!("{url}system/scale-function/gh-push"), Some(json!({"replicas": "x"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ScaleServiceRequest"), "{body}");

    let (status, body) = call(get, &format!("{url}system/namespaces"), None).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, json!(["openfaas-fn"])));
    // The platform function is still called as before.
    assert!(platform.requests().is_empty());
}

#[tokio::test]
async fn system_info_is_the_gateway_s_alone_and_faas_provider_s_provider_info_behind_a_gateway() {
    let state = tempfile::tempdir().unwrap();
    let (_alone, served) = provider(state.path(), false).await;
    let (status, body) = call(reqwest::Method::GET, &format!("{}system/info", served.url()), None).await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["provider"]["provider"], "ofc", "{body}");
    assert!(info["version"]["release"].is_string(), "{body}");

    let behind = tempfile::tempdir().unwrap();
    let (_provider, served) = provider(behind.path(), true).await;
    let (status, body) = call(reqwest::Method::GET, &format!("{}system/info", served.url()), None).await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["provider"], "ofc", "{body}");
    assert_eq!(info["orchestration"], "local", "{body}");
    assert_eq!(info["version"]["release"], env!("CARGO_PKG_VERSION"), "{body}");
    assert!(info.get("arch").is_none(), "{body}");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn secrets_are_created_updated_listed_by_name_and_removed_in_the_function_secrets_folder() {
    let state = tempfile::tempdir().unwrap();
    let (_gateway, served) = provider(state.path(), false).await;
    let secrets = format!("{}system/secrets", served.url());
    let folder = state.path().join("function-secrets");
    let (post, put, delete, get) =
        (reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::GET);

    let (status, body) = call(post.clone(), &secrets, Some(json!({"name": "api-key", "value": "first-value"}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(std::fs::read_to_string(folder.join("api-key")).unwrap(), "first-value");
    assert_eq!(mode(&folder.join("api-key")), 0o600);
    let (status, body) = call(post.clone(), &secrets, Some(json!({"name": "api-key", "value": "again"}))).await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.contains("again"), "{body}");
    assert_eq!(std::fs::read_to_string(folder.join("api-key")).unwrap(), "first-value");

    let raw = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255]);
    let (status, _) = call(post.clone(), &secrets, Some(json!({"name": "binary", "rawValue": raw}))).await;
    assert_eq!(status, 201);
    assert_eq!(std::fs::read(folder.join("binary")).unwrap(), [0u8, 1, 2, 255]);
    // What `ofc secret set` wrote is in the same store.
    std::fs::write(folder.join("alice-token"), "set by ofc").unwrap();

    let (status, body) = call(get.clone(), &secrets, None).await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        listed,
        json!([
            {"name": "alice-token", "namespace": "openfaas-fn"},
            {"name": "api-key", "namespace": "openfaas-fn"},
            {"name": "binary", "namespace": "openfaas-fn"},
        ])
    );
    assert!(!body.contains("first-value") && !body.contains("set by ofc"), "{body}");

    let (status, _) = call(put.clone(), &secrets, Some(json!({"name": "api-key", "value": "second-value"}))).await;
    assert_eq!(status, 200);
    assert_eq!(std::fs::read_to_string(folder.join("api-key")).unwrap(), "second-value");
    assert_eq!(mode(&folder.join("api-key")), 0o600);
    let (status, _) = call(put, &secrets, Some(json!({"name": "missing", "value": "v"}))).await;
    assert_eq!(status, 404);
    assert!(!folder.join("missing").exists());

    let (status, _) = call(delete.clone(), &secrets, Some(json!({"name": "api-key"}))).await;
    assert_eq!(status, 200);
    assert!(!folder.join("api-key").exists());
    let (status, _) = call(delete.clone(), &secrets, Some(json!({"name": "api-key"}))).await;
    assert_eq!(status, 404);

    // Refusals: a name no function could mount (or one climbing out of the folder), another namespace, a body that is
    // not a Secret (whose value is never echoed back), a body too large.
    for name in ["../escape", "UPPER", "", ".hidden"] {
        let (status, body) = call(post.clone(), &secrets, Some(json!({"name": name, "value": "v"}))).await;
        assert_eq!(status, 400, "{name}: {body}");
    }
    assert!(!state.path().join("escape").exists());
    let (status, body) =
        call(post.clone(), &secrets, Some(json!({"name": "n", "namespace": "kube-system", "value": "v"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(get, &format!("{secrets}?namespace=kube-system"), None).await;
    assert_eq!(status, 400);
    let (status, body) = call(post.clone(), &secrets, Some(json!({"name": 5, "value": "hush-hush"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("hush-hush"), "{body}");
    let huge = "x".repeat(ofc::gateway::MAX_SECRET_BODY_BYTES + 1);
    let (status, _) = call(post, &secrets, Some(json!({"name": "huge", "value": huge}))).await;
    assert_eq!(status, 413);
    assert!(!folder.join("huge").exists());
    let (status, _) = call(delete, &secrets, Some(json!({"name": "../secrets/payload-secret"}))).await;
    assert_eq!(status, 400);
}
