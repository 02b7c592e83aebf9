//! The runtime's listener under a flood (issue 19): idle connections, silent clients and slow bodies cannot starve a
//! real request, and are closed within their bounds. Raw TCP on loopback, so nothing in between hides a timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use shared::server::{run, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A function echoing its body's length, served with `config`; stops when the sender is dropped.
async fn serve(config: ServerConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/", post(|body: Bytes| async move { body.len().to_string() }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        run(listener, &config, app, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (address, stop)
}

fn config(header_timeout: Duration, max_connections: usize) -> ServerConfig {
    let mut config = ServerConfig::for_tests(1 << 20);
    config.read_header_timeout = header_timeout;
    config.max_connections = max_connections;
    config
}

/// One request on a new connection: the status line's code.
async fn post_status(address: SocketAddr, body: &str) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("POST / HTTP/1.1\r\nHost: f\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 512];
    let read = stream.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..read]).get(9..12).unwrap_or("0").parse().unwrap()
}

/// Whether the server closed `stream` within `within` (a read sees the end, or a reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn two_thousand_idle_connections_do_not_starve_a_real_request() {
    // Far more silent clients than the cap, and a header timeout longer than the test: only making room helps.
    let (address, _stop) = serve(config(Duration::from_secs(60), 256)).await;
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address)).await.unwrap().unwrap());
    }
    let started = Instant::now();
    assert_eq!(post_status(address, "hello").await, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "answered after {:?}", started.elapsed());
    let mut closed = 0;
    for stream in &mut idle {
        if closed_within(stream, Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    assert!(closed >= 2_000 - 256, "only {closed} of the idle connections were closed to make room");
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed_after_the_header_timeout() {
    let (address, _stop) = serve(config(Duration::from_millis(300), 1024)).await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(address).await.unwrap());
    }
    // A keep-alive connection that has been answered once, then says nothing.
    let mut kept = TcpStream::connect(address).await.unwrap();
    kept.write_all(b"POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 2\r\n\r\nhi").await.unwrap();
    let mut answer = vec![0; 512];
    assert!(kept.read(&mut answer).await.unwrap() > 0);
    // Half-sent headers (slowloris) are cut at the same bound.
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: f\r\n").await.unwrap();
    let started = Instant::now();
    for stream in silent.iter_mut().chain([&mut kept, &mut slow]) {
        assert!(closed_within(stream, Duration::from_secs(3)).await, "still open after {:?}", started.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(post_status(address, "still serving").await, 200);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let mut config = config(Duration::from_secs(10), 1024);
    config.read_timeout = Duration::from_millis(300);
    let (address, _stop) = serve(config).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 100\r\n\r\nonly ten b").await.unwrap();
    let started = Instant::now();
    // Trickled bytes do not reset the deadline: it is the whole body's.
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(post_status(address, "fine").await, 200, "a prompt body is still served");
}

/// The soft limit on open descriptors, from `/proc/self/limits` (1024 when it cannot be read).
fn descriptor_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// Opens `count` connections that each send `prefix` and then nothing more: a head or a body left half-sent.
async fn half_open(address: SocketAddr, count: usize, prefix: &'static [u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address)).await.unwrap().unwrap();
        // A connection already closed to make room for a later one refuses the write: that is fine.
        let _ = stream.write_all(prefix).await;
        streams.push(stream);
    }
    streams
}

/// One request on a new connection, answered within `within`: the whole answer.
async fn exchange(address: SocketAddr, request: &str, within: Duration) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0; 1024];
        let read = stream.read(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer[..read]).into_owned()
    };
    tokio::time::timeout(within, exchange).await.unwrap_or_else(|_| panic!("no answer within {within:?}"))
}

#[tokio::test]
async fn thousands_of_half_sent_heads_and_bodies_leave_health_and_a_webhook_answering() {
    // Both ends are in this process: two descriptors a connection, and room for the rest of the test.
    let flood = ((descriptor_limit().saturating_sub(256)) / 2).min(6_000);
    let cap = (flood / 4).clamp(16, 1024);
    // Timeouts longer than the test: only making room can free a slot.
    let mut config = config(Duration::from_secs(120), cap);
    config.read_timeout = Duration::from_secs(120);
    let (address, _stop) = serve(config).await;
    let heads = half_open(address, flood / 2, b"POST / HTTP/1.1\r\nHost: f\r\nX-Slow: ").await;
    let bodies =
        half_open(address, flood / 2, b"POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 1000\r\n\r\nten bytes.").await;

    let started = Instant::now();
    let health = exchange(address, "GET /_/health HTTP/1.1\r\nHost: f\r\n\r\n", Duration::from_secs(10)).await;
    let health_took = started.elapsed();
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("OK"), "{health}");
    let started = Instant::now();
    let webhook = "POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 7\r\n\r\npayload";
    let answer = exchange(address, webhook, Duration::from_secs(10)).await;
    let webhook_took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\n7"), "{answer}");
    println!("{flood} half-open connections, cap {cap}: health {health_took:?}, webhook {webhook_took:?}");

    // The flood's connections were dropped to make room, not left to their timeouts.
    let mut closed = 0;
    for mut stream in heads.into_iter().chain(bodies) {
        if closed_within(&mut stream, Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    assert!(closed >= flood - cap - 2, "only {closed} of {flood} half-open connections were closed");
}

#[tokio::test]
async fn an_answer_under_way_is_finished_while_a_flood_takes_every_other_slot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/",
        post(|body: Bytes| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            format!("{} bytes", body.len())
        }),
    );
    let config = config(Duration::from_secs(60), 16);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        run(listener, &config, app, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let slow = tokio::spawn(exchange(
        address,
        "POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 5\r\n\r\nhello",
        Duration::from_secs(10),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _flood = half_open(address, 500, b"GET / HTTP/1.1\r\n").await;
    let answer = slow.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("5 bytes"), "{answer}");
    drop(stop);
}
