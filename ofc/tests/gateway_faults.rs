//! The embedded gateway under floods and faults (issue 19): bounded bodies on both routes, a queue that replays only
//! what is safe to replay, honours `Retry-After`, and a listener that idle connections cannot starve.

use std::time::{Duration, Instant};

use ofc::gateway::{Gateway, GatewayConfig};
use testkit::{RecordingGateway, Reply};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn config(state: &std::path::Path) -> GatewayConfig {
    let mut config = GatewayConfig::new(state, "admin", "pw");
    config.initial_retry_wait = Duration::from_millis(50);
    config.max_body_bytes = 1 << 20;
    config.max_async_body_bytes = 1 << 20;
    config
}

/// The gateway served through `Gateway::serve`, as `ofc up` serves it: its URL and the stop sender.
async fn serve(gateway: &Gateway) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = gateway.clone();
    tokio::spawn(async move {
        let _ = gateway
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    (url, stop)
}

/// A body of `size` bytes sent chunked (no `Content-Length`), as a client streaming an upload does.
fn chunked(size: usize) -> reqwest::Body {
    let chunks = (0..size / 4096).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 4096]));
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

fn files_in(dir: &std::path::Path, extension: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == extension))
        .count()
}

#[tokio::test]
async fn the_async_route_refuses_bodies_over_its_limit_and_keeps_nothing_of_them() {
    let state = tempfile::tempdir().unwrap();
    let function = RecordingGateway::start().await;
    let gateway = Gateway::new(config(state.path())).unwrap();
    gateway.set_route("worker", &function.url());
    let (url, _stop) = serve(&gateway).await;
    let http = reqwest::Client::new();
    let target = format!("{url}async-function/worker");
    let declared = http.post(&target).body(vec![b'x'; 2 << 20]).send().await.unwrap();
    assert_eq!(declared.status(), 413);
    let streamed = http.post(&target).body(chunked(4 << 20)).send().await.unwrap();
    assert_eq!(streamed.status(), 413);
    assert_eq!(gateway.queued(), 0);
    assert_eq!(files_in(&state.path().join("queue"), "body"), 0, "no partial body is left behind");

    // Within the limit, the body is queued through a file and replayed byte for byte.
    let body: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(http.post(&target).body(body.clone()).send().await.unwrap().status(), 202);
    gateway.spawn_worker();
    let replayed = function.wait_for_requests("/", 1, Duration::from_secs(10)).await;
    assert_eq!(replayed[0].body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn the_sync_route_refuses_bodies_over_its_limit() {
    let state = tempfile::tempdir().unwrap();
    let function = RecordingGateway::start().await;
    function.reply("POST", "/", vec![Reply::status(200)]);
    let gateway = Gateway::new(config(state.path())).unwrap();
    gateway.set_route("echo", &function.url());
    let (url, _stop) = serve(&gateway).await;
    let http = reqwest::Client::new();
    let target = format!("{url}function/echo");
    assert_eq!(http.post(&target).body(vec![b'x'; 2 << 20]).send().await.unwrap().status(), 413);
    assert_eq!(http.post(&target).body(chunked(4 << 20)).send().await.unwrap().status(), 413);
    assert_eq!(http.post(&target).body(vec![b'x'; 1000]).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_call_the_function_timed_out_on_is_not_replayed() {
    let state = tempfile::tempdir().unwrap();
    let function = RecordingGateway::start().await;
    function.reply("POST", "/own-timeout", vec![Reply::status(504)]);
    function.reply("POST", "/slow", vec![Reply::status(200).delay(Duration::from_secs(2))]);
    let callback = RecordingGateway::start().await;
    let mut config = config(state.path());
    config.upstream_timeout = Duration::from_millis(500);
    let gateway = Gateway::new(config).unwrap();
    gateway.set_route("busy", &function.url());
    gateway.spawn_worker();
    let (url, _stop) = serve(&gateway).await;
    let http = reqwest::Client::new();
    for path in ["own-timeout", "slow"] {
        let queued = http
            .post(format!("{url}async-function/busy/{path}"))
            .header("X-Callback-Url", format!("{}{path}", callback.url()))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(queued.status(), 202);
    }
    let done = callback.wait_for_requests("/", 2, Duration::from_secs(10)).await;
    assert!(done.iter().all(|d| d.header("x-function-status") == Some("504")), "{done:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(function.requests_to("/own-timeout").len(), 1, "a 504 is final");
    assert_eq!(function.requests_to("/slow").len(), 1, "a call still running is not sent again");
    assert_eq!(gateway.queued(), 0);
}

#[tokio::test]
async fn the_queue_waits_as_long_as_retry_after_asks() {
    let state = tempfile::tempdir().unwrap();
    let function = RecordingGateway::start().await;
    function.reply("POST", "/", vec![Reply::status(429).header("Retry-After", "2"), Reply::status(200)]);
    let gateway = Gateway::new(config(state.path())).unwrap();
    gateway.set_route("limited", &function.url());
    gateway.spawn_worker();
    let (url, _stop) = serve(&gateway).await;
    let started = Instant::now();
    let queued = reqwest::Client::new().post(format!("{url}async-function/limited")).body("x").send().await.unwrap();
    assert_eq!(queued.status(), 202);
    function.wait_for_requests("/", 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(function.requests_to("/").len(), 1, "not replayed before the asked 2 s (backoff alone is 50 ms)");
    function.wait_for_requests("/", 2, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway.queued(), 0);
}

#[tokio::test]
async fn idle_connections_do_not_starve_the_gateway() {
    let state = tempfile::tempdir().unwrap();
    let mut config = config(state.path());
    config.limits.max_connections = 256;
    config.limits.header_timeout = Duration::from_secs(60);
    let gateway = Gateway::new(config).unwrap();
    let (url, _stop) = serve(&gateway).await;
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1), "answered after {:?}", started.elapsed());
}
