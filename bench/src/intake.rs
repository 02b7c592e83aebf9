//! Scenario 1, webhook intake: the real gh-push binary receiving signed 7 KB push events over loopback keep-alive
//! connections, with a gateway double that accepts every queued call at once. gh-push runs as deployed: each
//! webhook makes three downstream calls (the pending status and git-tar through the gateway, and the audit record).
//! Its memory is read idle, under load and 10 s after the load, since a burst should not leave it larger.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use testkit::ports::free_port;
use testkit::ServedFunction;

use crate::load::{fixed_rate, saturate, MakeRequest};
use crate::process::{cpu_time, rss_kib, Child};
use crate::stats::Summary;

const PUSH: &str = include_str!("../../functions/gh-push/tests/fixtures/push.json");
const WEBHOOK_SECRET: &str = "bench-webhook-secret";

/// A gateway that answers every async call with 202 at once, so gh-push alone is measured.
async fn null_gateway() -> ServedFunction {
    let app =
        axum::Router::new().fallback(|| async { (StatusCode::ACCEPTED, [("x-call-id", "bench")]).into_response() });
    ServedFunction::serve(app).await
}

pub async fn run(binaries: &std::path::Path, seconds: u64) -> anyhow::Result<()> {
    let gateway = null_gateway().await;
    let secrets = tempfile::tempdir()?;
    std::fs::write(secrets.path().join("github-webhook-secret"), WEBHOOK_SECRET)?;
    std::fs::write(secrets.path().join("payload-secret"), "bench-payload-secret")?;
    let port = free_port();
    let mut env = vec![
        ("port", port.to_string()),
        ("secret_mount_path", secrets.path().display().to_string()),
        ("gateway_url", gateway.url()),
        // As deployed, unless `audit_url` is set for the run (`audit_url= bench intake`: two downstream calls, the
        // figure before the audit call was counted).
        ("audit_url", std::env::var("audit_url").unwrap_or_else(|_| format!("{}function/audit-event", gateway.url()))),
        ("RUST_LOG", "warn".into()),
    ];
    env.extend(experiments());
    let gh_push = Child::spawn(&binaries.join("gh-push"), &env)?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    gh_push.wait_healthy(address, Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(gh_push.pid())?;

    let body = Bytes::from_static(PUSH.as_bytes());
    let signature = shared::signature::sign_sha256(WEBHOOK_SECRET.as_bytes(), &body);
    let run_id = std::process::id();
    let next_delivery = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let make: MakeRequest = Arc::new(move |_| {
        let n = next_delivery.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Request::post("/")
            .header("host", "gh-push")
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("bench-{run_id}-{n}"))
            .header("x-hub-signature-256", signature.as_str())
            .body(Full::new(body.clone()))
            .expect("a valid request")
    });

    let calls = if std::env::var("audit_url").is_ok_and(|url| url.is_empty()) {
        "2 downstream calls (audit off)"
    } else {
        "3 downstream calls (audit on)"
    };
    println!("1. webhook intake: gh-push, signed {} B push events, every one queued (202): {calls}", PUSH.len());
    println!("   gh-push idle RSS: {:.1} MiB   target: < 10 MB", idle as f64 / 1024.0);
    let (gh_push_before, bench_before) = (cpu_time(gh_push.pid())?, cpu_time(std::process::id())?);
    let connections = 16;
    let saturation = saturate(address, connections, Duration::from_secs(seconds), make.clone()).await?;
    let throughput = saturation.latencies.len() as f64 / saturation.elapsed.as_secs_f64();
    println!(
        "   saturation ({connections} connections, {seconds} s): {throughput:.0} req/s (target > 20,000), answers {:?}",
        saturation.statuses
    );
    // What bounds saturation on this machine: the CPU each request costs, in gh-push and in the load generator
    // with the gateway double (the same cores); 20,000 req/s on 2 cores leaves 100 µs per request for all of it.
    let requests = saturation.latencies.len().max(1) as f64;
    let per_request = |before: Duration, after: Duration| after.saturating_sub(before).as_secs_f64() * 1e6 / requests;
    println!(
        "   CPU per request: gh-push {:.0} µs, load generator + gateway double {:.0} µs (cores: {})   \
         target: <= docs/benchmarks.md's",
        per_request(gh_push_before, cpu_time(gh_push.pid())?),
        per_request(bench_before, cpu_time(std::process::id())?),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!("   saturation latency: {}", Summary::new(saturation.latencies).line());
    let rated = fixed_rate(address, 8, 1000, Duration::from_secs(seconds), make).await?;
    println!("   at 1,000 req/s ({seconds} s), answers {:?}", rated.statuses);
    println!("     from each request's send:    {}   target: p99 < 5 ms", Summary::new(rated.from_send).line());
    println!("     from its scheduled time:     {}", Summary::new(rated.latencies).line());
    println!("   gh-push peak RSS under load: {:.1} MiB", crate::process::peak_rss_kib(gh_push.pid())? as f64 / 1024.0);
    memory_after(&gh_push, idle).await
}

/// Settings of this run's environment passed on to gh-push, to find what its memory rests on: mimalloc's options
/// (`MIMALLOC_PURGE_DELAY=0`…) and the delivery log's bound (`delivery_log_max_bytes=0` leaves it nearly empty).
fn experiments() -> Vec<(&'static str, String)> {
    let mut passed = Vec::new();
    for name in
        ["MIMALLOC_PURGE_DELAY", "MIMALLOC_ARENA_PURGE_MULT", "MIMALLOC_PURGE_DECOMMITS", "delivery_log_max_bytes"]
    {
        if let Ok(value) = std::env::var(name) {
            println!("   gh-push runs with {name}={value}");
            passed.push((name, value));
        }
    }
    passed
}

/// How long after the load gh-push's memory is read again.
const SETTLE: Duration = Duration::from_secs(10);

/// gh-push's RSS [`SETTLE`] after the load: what a burst leaves behind (the Go gh-push went back to 11 MiB).
async fn memory_after(gh_push: &Child, idle: u64) -> anyhow::Result<()> {
    let just_after = rss_kib(gh_push.pid())?;
    tokio::time::sleep(SETTLE).await;
    let after = rss_kib(gh_push.pid())?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "   gh-push RSS {} s after the load: {:.1} MiB (right after: {:.1}; idle {:.1}, +{:.1})   \
         target: < 16 MiB, within 10 MiB of idle",
        SETTLE.as_secs(),
        mib(after),
        mib(just_after),
        mib(idle),
        mib(after.saturating_sub(idle))
    );
    Ok(())
}
