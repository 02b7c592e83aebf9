//! The embedded gateway: proxying, the async queue on disk (a restart loses nothing), retries, callbacks, and
//! `/system/functions` behind basic auth.

use std::time::Duration;

use ofc::gateway::{Gateway, GatewayConfig};
use shared::openfaas::FunctionDeployment;
use testkit::ports::free_port;
use testkit::{RecordingGateway, Reply, ServedFunction};

/// The gateway's router on a loopback port: its URL, and the server, which stops when dropped.
async fn serve(gateway: &Gateway) -> (String, ServedFunction) {
    let served = ServedFunction::serve(gateway.router()).await;
    (served.url(), served)
}

fn config(state: &std::path::Path) -> GatewayConfig {
    let mut config = GatewayConfig::new(state, "admin", "pw");
    config.initial_retry_wait = Duration::from_millis(50);
    config
}

#[tokio::test]
async fn proxies_any_method_path_query_and_headers() {
    let state = tempfile::tempdir().unwrap();
    let function = RecordingGateway::start().await;
    function.reply("PUT", "/sub/path", vec![Reply::status(201).body("made")]);
    let gateway = Gateway::new(config(state.path())).unwrap();
    gateway.set_route("echo", &function.url());
    let (url, _stop) = serve(&gateway).await;
    let response = reqwest::Client::new()
        .put(format!("{url}function/echo/sub/path?x=1"))
        .header("X-Custom", "kept")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.unwrap(), "made");
    let seen = &function.requests_to("/sub/path")[0];
    assert_eq!(seen.query.as_deref(), Some("x=1"));
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(seen.body, "payload");
    assert_eq!(reqwest::get(format!("{url}function/nothing")).await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_trailing_slash_reaches_the_function_s_root() {
    let state = tempfile::tempdir().unwrap();
    let function = RecordingGateway::start().await;
    function.reply("GET", "/", vec![Reply::status(200).body("root")]);
    let gateway = Gateway::new(config(state.path())).unwrap();
    gateway.set_route("dashboard", &function.url());
    let (url, _stop) = serve(&gateway).await;
    for path in ["function/dashboard", "function/dashboard/", "function/dashboard/?x=1"] {
        let response = reqwest::get(format!("{url}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), "root", "{path}");
    }
    assert_eq!(function.requests_to("/").len(), 3);
}

#[tokio::test]
async fn an_async_call_survives_a_restart_and_is_replayed_with_its_headers_and_callback() {
    let state = tempfile::tempdir().unwrap();
    let closed = free_port();
    let mut first_config = config(state.path());
    first_config.initial_retry_wait = Duration::from_secs(60);
    let first = Gateway::new(first_config).unwrap();
    first.set_route("worker", &format!("http://127.0.0.1:{closed}/"));
    let worker = first.spawn_worker();
    let (url, stop) = serve(&first).await;
    let callback = RecordingGateway::start().await;
    let response = reqwest::Client::new()
        .post(format!("{url}async-function/worker"))
        .header("X-Callback-Url", format!("{}done", callback.url()))
        .header("X-Signature-Like", "abc")
        .body("the job")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let call_id = response.headers()["x-call-id"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(first.queued(), 1, "the function is down: the call waits in the queue");
    worker.abort();
    drop(stop);
    drop(first);

    let function = RecordingGateway::start().await;
    function.reply("POST", "/", vec![Reply::status(200).body("worked")]);
    let second = Gateway::new(config(state.path())).unwrap();
    second.set_route("worker", &function.url());
    second.spawn_worker();
    let replayed = function.wait_for_requests("/", 1, Duration::from_secs(10)).await;
    assert_eq!(replayed[0].body, "the job");
    assert_eq!(replayed[0].header("x-signature-like"), Some("abc"));
    assert_eq!(replayed[0].header("x-call-id"), Some(call_id.as_str()));
    let done = callback.wait_for_requests("/done", 1, Duration::from_secs(10)).await;
    assert_eq!(done[0].header("x-function-status"), Some("200"));
    assert_eq!(done[0].header("x-function-name"), Some("worker"));
    assert_eq!(done[0].body, "worked");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(second.queued(), 0);
}

#[tokio::test]
async fn retries_a_failing_function_with_backoff_a_bounded_number_of_times() {
    let state = tempfile::tempdir().unwrap();
    let function = RecordingGateway::start().await;
    function.reply("POST", "/", vec![Reply::status(503), Reply::status(502), Reply::status(200)]);
    let mut config = config(state.path());
    config.max_attempts = 5;
    let gateway = Gateway::new(config).unwrap();
    gateway.set_route("flaky", &function.url());
    gateway.spawn_worker();
    let (url, _stop) = serve(&gateway).await;
    assert_eq!(
        reqwest::Client::new().post(format!("{url}async-function/flaky")).body("x").send().await.unwrap().status(),
        202
    );
    function.wait_for_requests("/", 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(function.requests_to("/").len(), 3, "no more tries after the success");
    assert_eq!(gateway.queued(), 0);
}

#[tokio::test]
async fn manages_deployments_behind_basic_auth() {
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::new(config(state.path())).unwrap();
    let (url, _stop) = serve(&gateway).await;
    let http = reqwest::Client::new();
    let deployment = FunctionDeployment {
        service: "octo-fn".into(),
        image: "r/fn@sha256:1".into(),
        ..FunctionDeployment::default()
    };
    assert_eq!(http.post(format!("{url}system/functions")).json(&deployment).send().await.unwrap().status(), 401);
    let auth = |r: reqwest::RequestBuilder| r.basic_auth("admin", Some("pw"));
    assert_eq!(auth(http.put(format!("{url}system/functions"))).json(&deployment).send().await.unwrap().status(), 404);
    assert_eq!(auth(http.post(format!("{url}system/functions"))).json(&deployment).send().await.unwrap().status(), 202);
    assert_eq!(auth(http.put(format!("{url}system/functions"))).json(&deployment).send().await.unwrap().status(), 200);
    let listed: Vec<serde_json::Value> =
        auth(http.get(format!("{url}system/functions"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["name"], "octo-fn");
    assert_eq!(listed[0]["availableReplicas"], 0);
    assert_eq!(auth(http.get(format!("{url}system/function/octo-fn"))).send().await.unwrap().status(), 200);
    let invoked = http.get(format!("{url}function/octo-fn")).send().await.unwrap();
    assert_eq!(invoked.status(), 503);
    assert!(invoked.text().await.unwrap().contains("no container runtime"));
    let reloaded = Gateway::new(config(state.path())).unwrap();
    assert_eq!(reloaded.deployments().len(), 1, "deployments are kept in the state folder");
    let delete = serde_json::json!({"functionName": "octo-fn"});
    assert_eq!(auth(http.delete(format!("{url}system/functions"))).json(&delete).send().await.unwrap().status(), 200);
    assert_eq!(auth(http.delete(format!("{url}system/functions"))).json(&delete).send().await.unwrap().status(), 404);
}
