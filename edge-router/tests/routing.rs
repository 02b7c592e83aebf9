//! The edge router over real HTTP: a request to a pretty URL reaches the gateway path it stands for, with its
//! method, query, body and headers, and the answer streams back.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use edge_router::{app, Config};
use futures_util::StreamExt as _;
use shared::server::ServerConfig;
use testkit::ServedFunction;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A gateway stand-in that answers every request with what it received.
async fn echo(request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> =
        parts.headers.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.to_str().unwrap_or("")))).collect();
    Json(serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

/// Three lines, a second apart: a followed log.
async fn slow_lines() -> impl IntoResponse {
    let lines = futures_util::stream::iter(0..3).then(|i| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(format!("line {i}\n")))
    });
    ([("content-type", "application/x-ndjson")], Body::from_stream(lines))
}

/// A function that tries to plant cookies on the platform's hosts, beside one of its own.
async fn cookies() -> impl IntoResponse {
    let mut headers = axum::http::HeaderMap::new();
    for cookie in [
        "own=1; Path=/",
        "openfaas_cloud_token=planted; Domain=localhost; Path=/dashboard/",
        "ofc_oauth_state=planted; domain=.localhost",
    ] {
        headers.append("set-cookie", cookie.parse().unwrap());
    }
    (headers, "cookies")
}

struct Setup {
    router: ServedFunction,
    _gateway: ServedFunction,
}

async fn setup() -> Setup {
    let gateway = ServedFunction::serve(
        Router::new()
            .route("/function/alice-logs-5/follow", get(slow_lines))
            .route("/function/mallory-cookies-7/", get(cookies))
            .fallback(echo),
    )
    .await;
    let config = Config {
        domain: "localhost".into(),
        upstream_url: gateway.url().parse().unwrap(),
        upstream_timeout: Duration::from_secs(5),
        server: ServerConfig::for_tests(1 << 20),
    };
    let router = ServedFunction::start_with(app(config.clone()), &config.server).await;
    Setup { router, _gateway: gateway }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn send(setup: &Setup, host: &str, path_and_query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().post(format!("{}{}", setup.router.url(), path_and_query.trim_start_matches('/')));
    request = request.header("host", format!("{host}:{}", setup.router.address().port())).body("the body");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn header(echoed: &serde_json::Value, name: &str) -> Option<String> {
    echoed["headers"][name].as_str().map(str::to_owned)
}

#[tokio::test]
async fn an_owners_host_reaches_the_function_without_the_session_cookie() {
    let setup = setup().await;
    let answer = send(
        &setup,
        "alice.localhost",
        "/hello/sub/path?x=1&y=2",
        &[("cookie", "openfaas_cloud_token=secret.session.token; theme=dark")],
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let echoed: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/function/alice-hello-5/sub/path");
    assert_eq!(echoed["query"], "x=1&y=2");
    assert_eq!(echoed["body"], "the body");
    assert_eq!(header(&echoed, "cookie").as_deref(), Some("theme=dark"), "a user's function never sees a session");
    assert_eq!(header(&echoed, "x-forwarded-host").as_deref(), Some("alice.localhost"));
}

#[tokio::test]
async fn the_system_host_serves_the_dashboard_and_the_login_with_the_session() {
    let setup = setup().await;
    let cookie = [("cookie", "openfaas_cloud_token=t.t.t")];
    let echoed: serde_json::Value =
        send(&setup, "system.localhost", "/dashboard/functions/alice-hello-5", &cookie).await.json().await.unwrap();
    assert_eq!(echoed["path"], "/function/dashboard/functions/alice-hello-5");
    assert_eq!(header(&echoed, "cookie").as_deref(), Some("openfaas_cloud_token=t.t.t"));
    let echoed: serde_json::Value =
        send(&setup, "auth.system.localhost", "/login/?r=x", &cookie).await.json().await.unwrap();
    assert_eq!(echoed["path"], "/function/edge-auth/login/");
    assert_eq!(echoed["query"], "r=x");

    let redirect = send(&setup, "system.localhost", "/", &[]).await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    assert_eq!(redirect.headers()["location"], "/dashboard/");
}

#[tokio::test]
async fn other_hosts_and_paths_are_not_found_with_a_reason() {
    let setup = setup().await;
    for (host, path, reason) in [
        ("evil.example", "/hello", "no site is served at `evil.example`"),
        ("localhost", "/hello", "no site is served at `localhost`"),
        ("alice.localhost", "/", "name one of alice's functions"),
        ("system.localhost", "/function/gh-push", "not a page of the platform"),
        ("a.b.localhost", "/x", "no site is served"),
    ] {
        let answer = send(&setup, host, path, &[]).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{host}{path}");
        let text = answer.text().await.unwrap();
        assert!(text.contains(reason), "{host}{path}: {text}");
    }
}

#[tokio::test]
async fn a_streamed_answer_arrives_line_by_line() {
    let setup = setup().await;
    let answer = client()
        .get(format!("{}logs/follow", setup.router.url()))
        .header("host", "alice.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    let mut stream = answer.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, "line 0\n");
    assert!(started.elapsed() < Duration::from_millis(900), "the first line waited for the rest");
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(rest).unwrap(), "line 1\nline 2\n");
}

#[tokio::test]
async fn a_gateway_that_is_down_is_a_502_naming_it() {
    let port = testkit::ports::free_port();
    let config = Config {
        domain: "localhost".into(),
        upstream_url: format!("http://127.0.0.1:{port}/").parse().unwrap(),
        upstream_timeout: Duration::from_secs(5),
        server: ServerConfig::for_tests(1 << 20),
    };
    let router = ServedFunction::start_with(app(config.clone()), &config.server).await;
    let answer = client().get(format!("{}hello", router.url())).header("host", "alice.localhost").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    assert!(answer.text().await.unwrap().contains("the gateway did not answer"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let setup = setup().await;
    let answer = client()
        .post(format!("{}hello", setup.router.url()))
        .header("host", "alice.localhost")
        .body(vec![b'x'; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_user_function_sets_cookies_for_its_own_host_only() {
    let setup = setup().await;
    let answer = client()
        .get(format!("{}cookies/", setup.router.url()))
        .header("host", "mallory.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let cookies: Vec<&str> = answer.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies, ["own=1; Path=/"]);
}

#[tokio::test]
async fn a_path_cannot_climb_out_of_the_function_to_the_gateway() {
    let setup = setup().await;
    // Sent as written: an HTTP client library would resolve the dot segments before sending (curl --path-as-is).
    for path in ["/hello/../../system/functions", "/hello/%2e%2e/%2e%2e/system/functions", "/hello/.%2E/x", "/hello/."]
    {
        let mut stream = tokio::net::TcpStream::connect(setup.router.address()).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: alice.localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(!answer.contains("/function/"), "{path} reached the gateway: {answer}");
    }
    // The platform's own functions have no pretty URL: owner `list`'s host reaches owner `list`'s function.
    let echoed: serde_json::Value =
        send(&setup, "list.localhost", "/functions?user=alice", &[]).await.json().await.unwrap();
    assert_eq!(echoed["path"], "/function/list-functions-4/");
}
