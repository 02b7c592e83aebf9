//! A small HTTP/1.1 load generator over keep-alive loopback connections: closed-loop for saturation, open-loop
//! at a fixed rate for latency (measured from each request's scheduled time, so a stall is not hidden).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Builds the n-th request (each may differ: a new delivery id, a new signature).
pub type MakeRequest = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;

/// What a run saw.
pub struct LoadResult {
    /// From each request's scheduled time (open loop) or its send (closed loop) to its whole answer.
    pub latencies: Vec<Duration>,
    /// From each request's actual send to its whole answer: without the generator's own lateness (tokio's timer
    /// wakes up to 1 ms after the scheduled time).
    pub from_send: Vec<Duration>,
    pub elapsed: Duration,
    /// Answers by status code.
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

async fn connect(address: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `connections` keep-alive connections each sending back-to-back for `duration`.
pub async fn saturate(
    address: SocketAddr,
    connections: usize,
    duration: Duration,
    make: MakeRequest,
) -> anyhow::Result<LoadResult> {
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let make = make.clone();
        let counter = counter.clone();
        let mut sender = connect(address).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut from_send = Vec::new();
            let mut statuses = std::collections::BTreeMap::new();
            while started.elapsed() < duration {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let request = make(n);
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status().as_u16();
                response.into_body().collect().await?;
                latencies.push(sent.elapsed());
                from_send.push(sent.elapsed());
                *statuses.entry(status).or_insert(0u64) += 1;
            }
            anyhow::Ok((latencies, from_send, statuses))
        }));
    }
    merge(tasks, started).await
}

/// Sends at a fixed `rate` per second for `duration`, spread over `connections` connections.
pub async fn fixed_rate(
    address: SocketAddr,
    connections: usize,
    rate: u64,
    duration: Duration,
    make: MakeRequest,
) -> anyhow::Result<LoadResult> {
    let total = rate * duration.as_secs();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for c in 0..connections as u64 {
        let make = make.clone();
        let mut sender = connect(address).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut from_send = Vec::new();
            let mut statuses = std::collections::BTreeMap::new();
            let mut n = c;
            while n < total {
                let scheduled = started + interval.mul_f64(n as f64);
                tokio::time::sleep_until(scheduled.into()).await;
                let request = make(n);
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status().as_u16();
                response.into_body().collect().await?;
                latencies.push(scheduled.elapsed());
                from_send.push(sent.elapsed());
                *statuses.entry(status).or_insert(0u64) += 1;
                n += connections as u64;
            }
            anyhow::Ok((latencies, from_send, statuses))
        }));
    }
    merge(tasks, started).await
}

type TaskResult = (Vec<Duration>, Vec<Duration>, std::collections::BTreeMap<u16, u64>);

async fn merge(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<TaskResult>>>,
    started: Instant,
) -> anyhow::Result<LoadResult> {
    let mut result = LoadResult {
        latencies: Vec::new(),
        from_send: Vec::new(),
        elapsed: Duration::ZERO,
        statuses: std::collections::BTreeMap::new(),
    };
    for task in tasks {
        let (latencies, from_send, statuses) = task.await??;
        result.latencies.extend(latencies);
        result.from_send.extend(from_send);
        for (status, count) in statuses {
            *result.statuses.entry(status).or_insert(0) += count;
        }
    }
    result.elapsed = started.elapsed();
    Ok(result)
}
