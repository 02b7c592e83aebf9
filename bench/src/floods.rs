//! Floods and replicas (issue 26): the real gh-push binary, as deployed (1,024 connections, 10 s header timeout).
//!
//! - `flood`: 10,000 clients hold half-sent heads and bodies open (each reconnects as soon as it is closed to make
//!   room, so the pressure never lets up), while health checks and signed webhooks arrive on new connections: their
//!   latency, connect to whole answer.
//! - `replicas`: two gh-push processes on one delivery-record folder, 1,000 deliveries each sent to both at once:
//!   duplicates queued (target 0), and what the shared record costs one webhook.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use testkit::ports::free_port;
use testkit::ServedFunction;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::process::{rss_kib, Child};
use crate::stats::Summary;

const PUSH: &str = include_str!("../../functions/gh-push/tests/fixtures/push.json");
const WEBHOOK_SECRET: &str = "bench-webhook-secret";
/// Half-open connections the flood keeps up.
const FLOOD: usize = 10_000;
/// Health checks and webhooks measured under it, each.
const PROBES: usize = 200;

/// A gateway that accepts every queued call at once and counts git-tar's by delivery id.
async fn counting_gateway() -> (ServedFunction, Arc<Mutex<HashMap<String, usize>>>) {
    let calls = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let counted = calls.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let calls = counted.clone();
        async move {
            if uri.path().starts_with("/async-function/git-tar") {
                let id = headers.get("x-github-delivery").and_then(|v| v.to_str().ok()).unwrap_or_default();
                *calls.lock().expect("calls lock").entry(id.to_owned()).or_default() += 1;
            }
            (StatusCode::ACCEPTED, [("x-call-id", "bench")]).into_response()
        }
    });
    (ServedFunction::serve(app).await, calls)
}

/// A gh-push process on a free port, its records in `records`.
async fn start_gh_push(
    binaries: &std::path::Path,
    gateway: &ServedFunction,
    secrets: &std::path::Path,
    records: &std::path::Path,
) -> anyhow::Result<(Child, SocketAddr)> {
    let port = free_port();
    let env = [
        ("port", port.to_string()),
        ("bind_address", "127.0.0.1".to_owned()),
        ("secret_mount_path", secrets.display().to_string()),
        ("gateway_url", gateway.url()),
        ("log_store_path", records.display().to_string()),
        ("RUST_LOG", "warn".into()),
    ];
    let child = Child::spawn(&binaries.join("gh-push"), &env)?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    child.wait_healthy(address, Duration::from_secs(10)).await?;
    Ok((child, address))
}

fn secrets() -> anyhow::Result<tempfile::TempDir> {
    let secrets = tempfile::tempdir()?;
    std::fs::write(secrets.path().join("github-webhook-secret"), WEBHOOK_SECRET)?;
    std::fs::write(secrets.path().join("payload-secret"), "bench-payload-secret")?;
    Ok(secrets)
}

/// A signed push delivery, as raw HTTP/1.1 with `Connection: close`.
fn webhook(id: &str) -> Vec<u8> {
    let signature = shared::signature::sign_sha256(WEBHOOK_SECRET.as_bytes(), PUSH.as_bytes());
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: gh-push\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: {id}\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        PUSH.len()
    )
    .into_bytes();
    request.extend_from_slice(PUSH.as_bytes());
    request
}

/// One request on a new connection: the status code and the time from connect to the whole answer.
async fn exchange(address: SocketAddr, request: &[u8]) -> anyhow::Result<(u16, Duration)> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(request).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let status = String::from_utf8_lossy(answer.get(9..12).unwrap_or_default()).parse().unwrap_or(0);
        anyhow::Ok(status)
    };
    let status = tokio::time::timeout(Duration::from_secs(30), exchange).await??;
    Ok((status, started.elapsed()))
}

/// The soft limit on open descriptors (1024 when `/proc` does not say).
fn descriptor_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// One flooding client until `stop`: connects, sends `prefix`, then a byte a second; `reconnect_after` after
/// the server closes it, connects again (as slowloris tools keep their count up). Answers how many connections it
/// opened.
async fn hold_half_open(
    address: SocketAddr,
    (prefix, trickle): (&'static [u8], &'static [u8]),
    reconnect_after: Duration,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut opened = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        opened += 1;
        if stream.write_all(prefix).await.is_err() {
            tokio::time::sleep(reconnect_after).await;
            continue;
        }
        let mut byte = [0u8; 1];
        // Bounded by `stop`: at most one round a second.
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await {
                // Closed (or, never, answered): another one after a second.
                Ok(_) => break,
                Err(_) => {
                    if stream.write_all(trickle).await.is_err() {
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(reconnect_after).await;
    }
    opened
}

pub async fn flood(binaries: &std::path::Path) -> anyhow::Result<()> {
    let (gateway, _) = counting_gateway().await;
    let secrets = secrets()?;
    let records = tempfile::tempdir()?;
    let (gh_push, address) = start_gh_push(binaries, &gateway, secrets.path(), records.path()).await?;
    let idle = rss_kib(gh_push.pid())?;
    let flood = FLOOD.min(descriptor_limit().saturating_sub(1024));
    // How long a flooding client waits to reconnect once closed: `flood_reconnect_ms`, default the 10 s header
    // timeout it would otherwise have waited out; `0` makes it a connection-churn flood, bounded by accepting.
    let reconnect_ms: u64 = std::env::var("flood_reconnect_ms").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let reconnect_after = Duration::from_millis(reconnect_ms);
    println!(
        "flood: gh-push (1,024 connections, 10 s header timeout) under {flood} half-open connections \
         (reconnecting {reconnect_ms} ms after being closed)"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::with_capacity(flood);
    for n in 0..flood {
        let (prefix, trickle): (&'static [u8], &'static [u8]) = if n % 2 == 0 {
            (b"POST / HTTP/1.1\r\nHost: gh-push\r\nX-Slow: a", b"a")
        } else {
            (b"POST / HTTP/1.1\r\nHost: gh-push\r\nContent-Length: 100000\r\n\r\n{", b" ")
        };
        clients.push(tokio::spawn(hold_half_open(address, (prefix, trickle), reconnect_after, stop.clone())));
    }
    // Let every client connect at least once.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mut health, mut webhooks, mut failed) = (Vec::new(), Vec::new(), 0);
    let run_id = std::process::id();
    for n in 0..PROBES {
        match exchange(address, b"GET /_/health HTTP/1.1\r\nHost: gh-push\r\nConnection: close\r\n\r\n").await {
            Ok((200, took)) => health.push(took),
            other => {
                println!("   a health check failed: {other:?}");
                failed += 1;
            }
        }
        match exchange(address, &webhook(&format!("flood-{run_id}-{n}"))).await {
            Ok((202, took)) => webhooks.push(took),
            other => {
                println!("   a webhook failed: {other:?}");
                failed += 1;
            }
        }
        // Spread over ~20 s, so the flood's closed clients come back (twice at the default reconnect).
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let under_flood = rss_kib(gh_push.pid())?;
    stop.store(true, Ordering::Relaxed);
    let mut opened = 0;
    for client in clients {
        opened += client.await.unwrap_or(0);
    }
    println!("   flood connections opened (closed to make room, then reopened): {opened}");
    println!("   health check:   {}   target: p99 < 50 ms", Summary::new(health).line());
    println!("   signed webhook: {}   target: p99 < 50 ms", Summary::new(webhooks).line());
    println!("   failed or wrong answers: {failed} of {}", 2 * PROBES);
    println!("   gh-push RSS: idle {:.1} MiB, under the flood {:.1} MiB", mib(idle), mib(under_flood));
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Deliveries sent to both replicas.
const DELIVERIES: usize = 1_000;
/// Deliveries in flight at once (each to both replicas).
const IN_FLIGHT: usize = 16;

pub async fn replicas(binaries: &std::path::Path) -> anyhow::Result<()> {
    let (gateway, calls) = counting_gateway().await;
    let secrets = secrets()?;
    let records = tempfile::tempdir()?;
    let (_a, first) = start_gh_push(binaries, &gateway, secrets.path(), records.path()).await?;
    let (_b, second) = start_gh_push(binaries, &gateway, secrets.path(), records.path()).await?;
    println!("replicas: two gh-push processes on one record folder, {DELIVERIES} deliveries each sent to both at once");
    let run_id = std::process::id();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..IN_FLIGHT {
        let next = next.clone();
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut wrong = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= DELIVERIES as u64 {
                    return (latencies, wrong);
                }
                let request = webhook(&format!("replica-{run_id}-{n}"));
                let (a, b) = tokio::join!(exchange(first, &request), exchange(second, &request));
                match (a, b) {
                    (Ok((sa, ta)), Ok((sb, tb))) if (sa, sb) == (202, 200) || (sa, sb) == (200, 202) => {
                        latencies.extend([ta, tb]);
                    }
                    _ => wrong += 1,
                }
            }
        }));
    }
    let (mut latencies, mut wrong) = (Vec::new(), 0);
    for sender in senders {
        let (mut l, w) = sender.await?;
        latencies.append(&mut l);
        wrong += w;
    }
    let elapsed = started.elapsed();
    let calls = calls.lock().expect("calls lock").clone();
    let duplicates: usize = calls.values().map(|n| n.saturating_sub(1)).sum();
    let missing = DELIVERIES - calls.len().min(DELIVERIES);
    println!(
        "   git-tar queued: {} deliveries, duplicates {duplicates} (target 0), never queued {missing}; \
         pairs not answered 202 + 200: {wrong}",
        calls.len()
    );
    println!(
        "   {:.0} deliveries/s; each replica's answer (connect to whole answer): {}",
        DELIVERIES as f64 / elapsed.as_secs_f64(),
        Summary::new(latencies).line()
    );
    record_cost(records.path()).await
}

/// What the shared record costs a webhook: a claim (create-if-absent) and its confirmation, on a folder, timed
/// alone.
async fn record_cost(folder: &std::path::Path) -> anyhow::Result<()> {
    let records = gh_push::delivery_records::DeliveryRecords::open(&shared::log_store::LogStoreConfig::folder(folder))?;
    let ttl = Duration::from_secs(3600);
    let (mut claims, mut confirms) = (Vec::new(), Vec::new());
    for n in 0..DELIVERIES {
        let id = format!("cost-{}-{n}", std::process::id());
        let started = Instant::now();
        records.claim(&id, ttl).await?;
        claims.push(started.elapsed());
        let started = Instant::now();
        records.confirm(&id).await?;
        confirms.push(started.elapsed());
    }
    println!("   record cost on a folder, claim (create-if-absent): {}", Summary::new(claims).line());
    println!("   record cost on a folder, confirm (overwrite):      {}", Summary::new(confirms).line());
    Ok(())
}
