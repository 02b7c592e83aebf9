//! The embedded gateway's runtime logs, info and metrics, as OpenFaaS serves them: `/system/logs` (NDJSON, tail,
//! since, follow), `/system/info`, `/metrics` (the gateway's Prometheus names), over real HTTP on loopback.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::routing::{any, get};
use axum::Router;
use ofc::gateway::{Gateway, GatewayConfig};
use shared::openfaas::FunctionDeployment;
use testkit::ServedFunction;

fn gateway(state: &Path) -> Gateway {
    let mut config = GatewayConfig::new(state, "admin", "pw");
    config.initial_retry_wait = Duration::from_millis(50);
    Gateway::new(config).unwrap()
}

fn append(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn messages(body: &str) -> Vec<serde_json::Value> {
    body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn get_logs(url: &str, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{url}system/logs?{query}"))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap()
}

/// A deployed function (recorded, no runtime) whose replicas' log holds five stamped lines, 03:00:01 to 03:00:05.
async fn deployed_with_log(gateway: &Gateway, url: &str, state: &Path) {
    let deployment = FunctionDeployment { service: "hello".into(), image: "img:1".into(), ..Default::default() };
    let deployed = reqwest::Client::new()
        .post(format!("{url}system/functions"))
        .basic_auth("admin", Some("pw"))
        .json(&deployment)
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 202);
    assert_eq!(gateway.deployments().len(), 1);
    let mut log = String::new();
    for i in 1..=5 {
        let replica = if i < 4 { 1 } else { 2 };
        writeln!(log, "2026-11-27T03:00:0{i}.000000001Z [ofc-hello-{replica}-0] line {i}").unwrap();
    }
    append(&state.join("logs/function-hello.log"), &log);
}

#[tokio::test]
async fn logs_are_ndjson_with_tail_since_instance_auth_and_404() {
    let state = tempfile::tempdir().unwrap();
    let gateway = gateway(state.path());
    let served = ServedFunction::serve(gateway.router()).await;
    let url = served.url();
    deployed_with_log(&gateway, &url, state.path()).await;

    let all = get_logs(&url, "name=hello").await;
    assert_eq!(all.status(), 200);
    assert_eq!(all.headers()["content-type"], "application/x-ndjson");
    let all = messages(&all.text().await.unwrap());
    assert_eq!(all.len(), 5);
    assert_eq!(
        all[0],
        serde_json::json!({"name": "hello", "namespace": "openfaas-fn", "instance": "ofc-hello-1-0",
            "timestamp": "2026-11-27T03:00:01.000000001Z", "text": "line 1"})
    );

    let tail = messages(&get_logs(&url, "name=hello.openfaas-fn&tail=2").await.text().await.unwrap());
    assert_eq!(tail.iter().map(|m| m["text"].as_str().unwrap()).collect::<Vec<_>>(), ["line 4", "line 5"]);
    let since = messages(&get_logs(&url, "name=hello&since=2026-11-27T03:00:03Z").await.text().await.unwrap());
    assert_eq!(since.iter().map(|m| m["text"].as_str().unwrap()).collect::<Vec<_>>(), ["line 3", "line 4", "line 5"]);
    let one = messages(&get_logs(&url, "name=hello&instance=ofc-hello-2-0&tail=1").await.text().await.unwrap());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["text"], "line 5");

    let anonymous = reqwest::get(format!("{url}system/logs?name=hello")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let unknown = get_logs(&url, "name=nobody").await;
    assert_eq!(unknown.status(), 404);
    let error: serde_json::Value = unknown.json().await.unwrap();
    assert!(error.to_string().contains("nobody"), "{error}");
    assert_eq!(get_logs(&url, "tail=1").await.status(), 400);
    assert_eq!(get_logs(&url, "name=hello&since=yesterday").await.status(), 422);
}

#[tokio::test]
async fn a_platform_functions_tracing_lines_keep_their_time_and_continuations_inherit_it() {
    let state = tempfile::tempdir().unwrap();
    let gateway = gateway(state.path());
    gateway.set_route("git-tar", "http://127.0.0.1:9/");
    let served = ServedFunction::serve(gateway.router()).await;
    append(
        &state.path().join("logs/git-tar.log"),
        "\u{1b}[2m2026-11-27T03:00:01.5Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m started\nthread 'main' panicked\n",
    );
    let got = messages(&get_logs(&served.url(), "name=git-tar").await.text().await.unwrap());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["text"], "INFO started");
    assert_eq!(got[0]["instance"], "git-tar");
    assert_eq!(got[1]["text"], "thread 'main' panicked");
    assert_eq!(got[1]["timestamp"], got[0]["timestamp"]);
}

/// Reads the next chunk of a streamed answer, failing after 5 s.
async fn next_chunk(response: &mut reqwest::Response) -> Option<String> {
    let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk()).await.expect("a chunk in time");
    chunk.unwrap().map(|b| String::from_utf8(b.to_vec()).unwrap())
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn follow_streams_appended_lines_and_ends_when_the_client_leaves() {
    let state = tempfile::tempdir().unwrap();
    let gateway = gateway(state.path());
    let served = ServedFunction::serve(gateway.router()).await;
    let url = served.url();
    deployed_with_log(&gateway, &url, state.path()).await;

    let mut response = get_logs(&url, "name=hello&tail=1&follow=true").await;
    assert_eq!(response.status(), 200);
    let first = next_chunk(&mut response).await.unwrap();
    assert_eq!(messages(&first)[0]["text"], "line 5");
    assert_eq!(gateway.following(), 1);
    append(&state.path().join("logs/function-hello.log"), "2026-11-27T03:00:06Z [ofc-hello-2-0] line 6\nunstamped\n");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(messages(&next_chunk(&mut response).await.unwrap()));
    }
    assert_eq!(seen[0]["text"], "line 6");
    assert_eq!(seen[1]["text"], "unstamped");
    assert_eq!(seen[1]["instance"], "hello");
    drop(response);
    wait_until("the follow ends once the client has gone", || gateway.following() == 0).await;
}

#[tokio::test]
async fn follow_ends_when_the_gateway_shuts_down() {
    let state = tempfile::tempdir().unwrap();
    let gateway = gateway(state.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = gateway.clone();
    let server = tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    deployed_with_log(&gateway, &url, state.path()).await;
    let mut response = get_logs(&url, "name=hello&tail=1&follow=1").await;
    assert!(next_chunk(&mut response).await.is_some());
    stop.send(()).unwrap();
    assert_eq!(next_chunk(&mut response).await, None, "the answer ends");
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("the gateway drains").unwrap().unwrap();
    assert_eq!(gateway.following(), 0);
}

#[tokio::test]
async fn info_has_openfaas_shape_and_healthz_answers() {
    let state = tempfile::tempdir().unwrap();
    let gateway = gateway(state.path());
    let served = ServedFunction::serve(gateway.router()).await;
    let url = served.url();
    assert_eq!(reqwest::get(format!("{url}system/info")).await.unwrap().status(), 401);
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}system/info"))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["provider"]["provider"], "ofc");
    assert_eq!(info["provider"]["orchestration"], "local");
    assert_eq!(info["provider"]["version"]["release"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["version"]["release"], env!("CARGO_PKG_VERSION"));
    assert!(info["version"]["sha"].is_string() && info["version"]["commit_message"].is_string(), "{info}");
    assert_eq!(info["version"]["sha"], info["provider"]["version"]["sha"]);
    assert!(info["arch"].as_str().is_some_and(|a| !a.is_empty()), "{info}");
    assert_eq!(reqwest::get(format!("{url}healthz")).await.unwrap().status(), 200);
}

/// The value of the `/metrics` sample named exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// A counter's (or bucket's) value.
fn count(text: &str, series: &str) -> u64 {
    let value = sample(text, series);
    assert!(value.fract().abs() < f64::EPSILON, "{series} {value}");
    value as u64
}

#[tokio::test]
async fn metrics_count_sync_and_async_invocations_by_code_with_a_histogram() {
    let state = tempfile::tempdir().unwrap();
    let gateway = gateway(state.path());
    let function = ServedFunction::serve(Router::new().route("/", any(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken")
        }),
    ))
    .await;
    gateway.set_route("echo", &function.url());
    let _worker = gateway.spawn_worker();
    let served = ServedFunction::serve(gateway.router()).await;
    let url = served.url();
    for _ in 0..3 {
        assert_eq!(reqwest::get(format!("{url}function/echo")).await.unwrap().text().await.unwrap(), "ok");
    }
    assert_eq!(reqwest::get(format!("{url}function/echo/slow")).await.unwrap().status(), 500);
    assert_eq!(reqwest::get(format!("{url}function/nobody")).await.unwrap().status(), 404);
    let queued = reqwest::Client::new().post(format!("{url}async-function/echo")).body("x").send().await.unwrap();
    assert_eq!(queued.status(), 202);
    wait_until("the async call is replayed", || gateway.queued() == 0).await;

    let metrics = reqwest::get(format!("{url}metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text().await.unwrap();
    let ok = r#"{code="200",function_name="echo.openfaas-fn""#;
    let failed = r#"{code="500",function_name="echo.openfaas-fn""#;
    assert_eq!(count(&text, &format!("gateway_function_invocation_total{ok}}}")), 4);
    assert_eq!(count(&text, &format!("gateway_function_invocation_total{failed}}}")), 1);
    // Every call started is answered (a replay that met a closed connection is tried again, counted as a 502).
    let answered: u64 = text
        .lines()
        .filter(|l| l.starts_with("gateway_function_invocation_total{") && l.contains("echo.openfaas-fn"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let started = count(&text, r#"gateway_function_invocation_started{function_name="echo.openfaas-fn"}"#);
    assert!(started >= 5 && started == answered, "{text}");
    assert_eq!(count(&text, &format!("gateway_functions_seconds_count{ok}}}")), 4);
    assert_eq!(count(&text, &format!(r#"gateway_functions_seconds_bucket{ok},le="+Inf"}}"#)), 4);
    let slow = sample(&text, &format!("gateway_functions_seconds_sum{failed}}}"));
    assert!(slow >= 0.03, "{slow}");
    assert_eq!(count(&text, &format!(r#"gateway_functions_seconds_bucket{failed},le="0.025"}}"#)), 0);
    assert_eq!(count(&text, &format!(r#"gateway_functions_seconds_bucket{failed},le="10"}}"#)), 1);
    assert_eq!(count(&text, r#"gateway_service_count{function_name="echo.openfaas-fn"}"#), 1);
    assert!(!text.contains("nobody"), "unknown functions are not counted:\n{text}");
    assert!(text.contains("# TYPE gateway_functions_seconds histogram"));
}

#[test]
fn a_replicas_output_is_stamped_line_by_line_with_its_instance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("function-x.log");
    let log = ofc::line_stamps::stamped_log(&path, "ofc-x-1-0").unwrap();
    let before = chrono::Utc::now();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "echo out; echo err >&2; printf 'no newline'"])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() == 3 || Instant::now() > deadline {
            break text.lines().map(ofc::line_stamps::parse_line).collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["out", "err", "no newline"]);
    assert!(lines.iter().all(|l| l.instance.as_deref() == Some("ofc-x-1-0")));
    assert!(lines.iter().all(|l| l.time.is_some_and(|t| t >= before && t <= chrono::Utc::now())));
}

#[tokio::test]
async fn an_answer_holds_at_most_max_tail_lines_the_newest() {
    let state = tempfile::tempdir().unwrap();
    let gateway = gateway(state.path());
    gateway.set_route("chatty", "http://127.0.0.1:9/");
    let served = ServedFunction::serve(gateway.router()).await;
    let mut log = String::new();
    for i in 0..ofc::gateway::MAX_TAIL + 50 {
        writeln!(log, "2026-11-27T03:00:00Z line {i}").unwrap();
    }
    append(&state.path().join("logs/chatty.log"), &log);
    for query in ["name=chatty", "name=chatty&tail=0", "name=chatty&tail=99999"] {
        let got = messages(&get_logs(&served.url(), query).await.text().await.unwrap());
        assert_eq!(got.len(), ofc::gateway::MAX_TAIL, "{query}");
        assert_eq!(got[0]["text"], "line 50");
        assert_eq!(got.last().unwrap()["text"], format!("line {}", ofc::gateway::MAX_TAIL + 49));
    }
}
