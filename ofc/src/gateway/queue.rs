//! `/async-function/NAME[/rest]` and its worker: a call is written to the queue folder before it is answered 202, so
//! a restart loses nothing; the worker replays it with its original headers and body, retries it with backoff on
//! 429/502/503/504 or an unreachable function, and POSTs the answer to `X-Callback-Url` when one was given.
//!
//! The worker never lists the folder: an index of due times, read once at start, mirrors it, and the worker sleeps
//! until it is notified (a call queued, a route set, a call finished) or the earliest retry time comes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use doubles::functions_api::function_name;
use serde::{Deserialize, Serialize};
use shared::retry::Backoff;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::proxy::FunctionPath;
use super::{is_hop_by_hop, now_ms, Gateway, GatewayError};

/// One queued async call, as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Job {
    id: String,
    function: String,
    method: String,
    /// The path after the function name, with its query.
    rest: String,
    headers: Vec<(String, String)>,
    body_base64: String,
    attempts: u32,
    /// Unix milliseconds before which the job is not tried again.
    not_before_ms: u64,
}

/// The queue folder, and what the worker needs to know of it without reading it.
pub(super) struct Queue {
    dir: PathBuf,
    /// Each queued call's id → its `not_before_ms`; ids sort in the order the calls came.
    due: Mutex<BTreeMap<String, u64>>,
    /// Wakes the worker: a call was queued or finished, or a route changed.
    pub(super) wake: Notify,
    /// Keeps ids made in the same millisecond in order.
    next_id: AtomicU64,
}

fn read_job(path: &Path) -> std::io::Result<Job> {
    serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
}

fn write_job(dir: &Path, job: &Job) -> std::io::Result<()> {
    let path = dir.join(format!("{}.json", job.id));
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec(job).map_err(std::io::Error::other)?)?;
    std::fs::rename(temporary, path)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other)?
}

impl Queue {
    /// The queue under `dir`. Calls left by an earlier run are due at once: the functions they wait for have just
    /// started.
    pub(super) fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut due = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(&path)?;
                continue;
            }
            let Ok(mut job) = read_job(&path) else { continue };
            if job.not_before_ms != 0 {
                job.not_before_ms = 0;
                write_job(&dir, &job)?;
            }
            due.insert(job.id, 0);
        }
        Ok(Self { dir, due: Mutex::new(due), wake: Notify::new(), next_id: AtomicU64::new(0) })
    }

    fn due(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.due.lock().expect("queue lock")
    }

    pub(super) fn len(&self) -> usize {
        self.due().len()
    }

    fn new_id(&self) -> String {
        let sequence = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:013}-{sequence:06}-{}", now_ms(), uuid::Uuid::new_v4().simple())
    }

    /// Writes `job` (new, or waiting for its next try) and tells the worker.
    async fn put(&self, job: Job) -> std::io::Result<()> {
        let (id, not_before) = (job.id.clone(), job.not_before_ms);
        let dir = self.dir.clone();
        blocking(move || write_job(&dir, &job)).await?;
        self.due().insert(id, not_before);
        self.wake.notify_one();
        Ok(())
    }

    async fn load(&self, id: &str) -> std::io::Result<Job> {
        let path = self.dir.join(format!("{id}.json"));
        blocking(move || read_job(&path)).await
    }

    async fn remove(&self, id: &str) {
        self.due().remove(id);
        let path = self.dir.join(format!("{id}.json"));
        let _ = blocking(move || std::fs::remove_file(path)).await;
    }

    /// The first call due now that is not running; otherwise when the next one is due.
    fn next(&self, running: &HashMap<tokio::task::Id, String>, now: u64) -> Result<String, Option<u64>> {
        let due = self.due();
        let waiting: Vec<(&String, u64)> =
            due.iter().filter(|(id, _)| !running.values().any(|r| r == *id)).map(|(id, at)| (id, *at)).collect();
        match waiting.iter().find(|(_, at)| *at <= now) {
            Some((id, _)) => Ok((*id).clone()),
            None => Err(waiting.iter().map(|(_, at)| *at).min()),
        }
    }
}

/// What [`Gateway::try_execute_job`] did.
enum ExecutionOutcome {
    /// A due call was started.
    Started,
    /// Nothing to start now; the next call is due at this Unix millisecond, if any is waiting.
    Idle(Option<u64>),
}

/// How one try of a call ended.
struct Attempt {
    status: Option<StatusCode>,
    answer: Bytes,
    /// Why it is to be tried again.
    failure: Option<String>,
}

impl Gateway {
    /// Replays queued calls until the task is aborted (calls under way are aborted with it, and kept on disk).
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run_worker())
    }

    async fn run_worker(self) {
        let mut tasks = JoinSet::new();
        // Which call each task replays.
        let mut running = HashMap::new();
        loop {
            let next_due = loop {
                match self.try_execute_job(&mut tasks, &mut running) {
                    ExecutionOutcome::Started => {}
                    ExecutionOutcome::Idle(next_due) => break next_due,
                }
            };
            let sleep = next_due.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
            tokio::select! {
                () = self.inner.queue.wake.notified() => {}
                Some(finished) = tasks.join_next_with_id() => {
                    let task = finished.map_or_else(|error| error.id(), |(task, ())| task);
                    running.remove(&task);
                }
                () = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {}
            }
        }
    }

    /// Starts the next due call, unless `max_inflight` calls are under way or none is due.
    fn try_execute_job(
        &self,
        tasks: &mut JoinSet<()>,
        running: &mut HashMap<tokio::task::Id, String>,
    ) -> ExecutionOutcome {
        if running.len() >= self.inner.config.max_inflight {
            return ExecutionOutcome::Idle(None);
        }
        match self.inner.queue.next(running, now_ms()) {
            Ok(id) => {
                let gateway = self.clone();
                let call = id.clone();
                let task = tasks.spawn(async move { gateway.execute_job(&call).await });
                running.insert(task.id(), id);
                ExecutionOutcome::Started
            }
            Err(next_due) => ExecutionOutcome::Idle(next_due),
        }
    }

    /// One try of a queued call: done (the callback is sent), to be retried later, or given up.
    async fn execute_job(&self, id: &str) {
        let queue = &self.inner.queue;
        let mut job = match queue.load(id).await {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(call = %id, %error, "a queued call could not be read; it is dropped");
                queue.remove(id).await;
                return;
            }
        };
        let started = Instant::now();
        let attempt = self.attempt(&job).await;
        if let Some(reason) = &attempt.failure {
            job.attempts += 1;
            if job.attempts < self.inner.config.max_attempts {
                let backoff = Backoff::new(self.inner.config.initial_retry_wait, self.inner.config.max_retry_wait);
                let wait = backoff.wait(job.attempts);
                job.not_before_ms = now_ms() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(function = %job.function, call = %job.id, attempt = job.attempts, %reason, "async call failed, retrying");
                if let Err(error) = queue.put(job.clone()).await {
                    tracing::error!(call = %job.id, %error, "could not keep the async call in the queue");
                }
                return;
            }
            tracing::error!(function = %job.function, call = %job.id, attempts = job.attempts, %reason, "async call given up");
        } else {
            tracing::info!(function = %job.function, call = %job.id, status = attempt.status.map_or(0, |s| s.as_u16()), seconds = started.elapsed().as_secs_f64(), "async call done");
        }
        queue.remove(id).await;
        self.send_callback(&job, attempt, started).await;
    }

    /// Sends the call to its function; a 429/502/503/504 or no answer is a failure to retry.
    async fn attempt(&self, job: &Job) -> Attempt {
        let failed = |reason| Attempt { status: None, answer: Bytes::new(), failure: Some(reason) };
        let base = match self.target(&job.function) {
            Ok(base) => base,
            Err(GatewayError::NoSuchFunction(_)) => return failed(format!("function {} is not running", job.function)),
            Err(error) => return failed(error.to_string()),
        };
        let body = base64::engine::general_purpose::STANDARD.decode(&job.body_base64).unwrap_or_default();
        let method = Method::from_bytes(job.method.as_bytes()).unwrap_or(Method::POST);
        let mut request = self
            .inner
            .http
            .request(method, format!("{base}{}", job.rest.trim_start_matches('/')))
            .timeout(self.inner.config.upstream_timeout)
            .body(body);
        for (name, value) in &job.headers {
            request = request.header(name, value);
        }
        request = request.header("X-Call-Id", &job.id).header("X-Start-Time", now_ms().to_string());
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let answer = response.bytes().await.unwrap_or_default();
                let failure = matches!(status.as_u16(), 429 | 502 | 503 | 504).then(|| format!("answered {status}"));
                Attempt { status: Some(status), answer, failure }
            }
            Err(error) => failed(shared::gateway::error_chain(&error)),
        }
    }

    /// POSTs the function's answer to the call's `X-Callback-Url`, when it has one.
    async fn send_callback(&self, job: &Job, attempt: Attempt, started: Instant) {
        let Some(callback) =
            job.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("x-callback-url")).map(|(_, v)| v.clone())
        else {
            return;
        };
        let sent = self
            .inner
            .http
            .post(&callback)
            .header("X-Call-Id", &job.id)
            .header("X-Function-Status", attempt.status.map_or(503, |s| s.as_u16()).to_string())
            .header("X-Duration-Seconds", format!("{:.3}", started.elapsed().as_secs_f64()))
            .header("X-Function-Name", &job.function)
            .body(attempt.answer)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if let Err(error) = sent {
            tracing::warn!(call = %job.id, %callback, error = %shared::gateway::error_chain(&error), "callback failed");
        }
    }
}

/// `POST /async-function/NAME[/rest]`: the call is queued, then answered 202 with its `X-Call-Id`.
pub(super) async fn enqueue(
    State(gateway): State<Gateway>,
    UrlPath(path): UrlPath<FunctionPath>,
    request: Request,
) -> Result<Response, GatewayError> {
    let name = function_name(&path.name).to_owned();
    if !gateway.knows(&name) {
        return Err(GatewayError::NoSuchFunction(name));
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.map_err(|_| GatewayError::UnreadableBody)?;
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let id = gateway.inner.queue.new_id();
    let headers = parts
        .headers
        .iter()
        .filter(|(n, _)| !is_hop_by_hop(n.as_str()))
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned())))
        .collect();
    let job = Job {
        id: id.clone(),
        function: name.clone(),
        method: parts.method.to_string(),
        rest: format!("{}{query}", path.rest),
        headers,
        body_base64: base64::engine::general_purpose::STANDARD.encode(&body),
        attempts: 0,
        not_before_ms: 0,
    };
    gateway.inner.queue.put(job).await?;
    tracing::info!(function = %name, call = %id, "async call queued");
    let mut response = StatusCode::ACCEPTED.into_response();
    response.headers_mut().insert(HeaderName::from_static("x-call-id"), HeaderValue::from_str(&id).expect("ASCII id"));
    response.headers_mut().insert(HeaderName::from_static("x-start-time"), HeaderValue::from(now_ms()));
    Ok(response)
}
