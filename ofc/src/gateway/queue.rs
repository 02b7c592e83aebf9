//! `/async-function/NAME[/rest]` and its worker: a call is written to the queue folder before it is answered 202, so
//! a restart loses nothing; the worker replays it with its original headers and body, retries it with backoff on
//! the configured codes (429/502/503) or an unreachable function, waiting as long as a `Retry-After` on a 429 or 503
//! asks, and POSTs the final answer to `X-Callback-Url` when one was given. A call the function did not answer in
//! time, or answered 504, is not replayed: the function may still be working on it.
//!
//! A call's body goes to `<id>.body` as it arrives (at most `max_async_body_bytes`), never into memory; its
//! metadata to `<id>.json`, written last, so a call exists once both are on disk.
//!
//! The worker never lists the folder: an index of due times, read once at start, mirrors it, and the worker sleeps
//! until it is notified (a call queued, a route set, a call finished) or the earliest retry time comes.
//!
//! Calls are shared fairly between owners: each call belongs to a lane, its function and its owner (the GitHub
//! account id in a body whose `X-Cloud-Signature` verifies with `payload-secret`; no owner otherwise). The next
//! call started is the oldest due one of the lane started least recently, so one owner's ten queued pushes do not
//! hold another owner's push back; an owner's lane runs at most `max_inflight_per_owner` calls at once, and holds
//! at most `max_queued_pushes_per_owner` pushes (calls to git-tar): the next is refused 429.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use functions_api::function_name;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use shared::retry::{retry_after, Backoff};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::proxy::{check_length, limited, BodyTooLarge, FunctionPath};
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
    /// The body, for calls queued before bodies had their own file; newer calls keep it in `<id>.body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    attempts: u32,
    /// Unix milliseconds before which the job is not tried again.
    not_before_ms: u64,
    /// The owner's GitHub account id, from a signed body (see [`signed_owner`]); calls queued before owners were
    /// read have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<u64>,
}

/// A queued call's lane: its function and its owner, when known.
type Lane = (String, Option<u64>);

/// How a due call ranks for the next slot, lowest first: its function's calls under way, then when its lane last
/// had a call started (never first).
type Rank = (usize, Option<u64>);

/// What the worker keeps of a queued call without reading it.
#[derive(Debug, Clone)]
struct Due {
    /// Unix milliseconds before which it is not tried again.
    at: u64,
    lane: Lane,
}

impl Job {
    fn lane(&self) -> Lane {
        (self.function.clone(), self.owner)
    }
}

/// The largest body an owner is read from: push events and status reports are a few KiB.
const MAX_OWNER_BODY: usize = 64 << 10;

/// The owner id a call is charged to: read only from a body of at most [`MAX_OWNER_BODY`] bytes whose
/// `X-Cloud-Signature` verifies, as a push event (`repository.owner.id`) or a status report (`event.owner_id`).
fn signed_owner(secret: &shared::config::Secret, signature: Option<&str>, body: &[u8]) -> Option<u64> {
    shared::signature::verify_signature(signature?, body, secret.expose().as_bytes()).ok()?;
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    json.pointer("/repository/owner/id").or_else(|| json.pointer("/event/owner_id"))?.as_u64().filter(|id| *id > 0)
}

/// The queue folder, and what the worker needs to know of it without reading it.
pub(super) struct Queue {
    dir: PathBuf,
    /// Each queued call's id → when it is due and its lane; ids sort in the order the calls came.
    due: Mutex<BTreeMap<String, Due>>,
    /// Each lane with queued calls → the count of calls started when it last had one started.
    last_started: Mutex<(u64, HashMap<Lane, u64>)>,
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
        let mut bodies = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            match path.extension().and_then(|x| x.to_str()) {
                Some("json") => {}
                Some("tmp") => {
                    std::fs::remove_file(&path)?;
                    continue;
                }
                Some("body") => {
                    bodies.push(path);
                    continue;
                }
                _ => continue,
            }
            let Ok(mut job) = read_job(&path) else { continue };
            if job.not_before_ms != 0 {
                job.not_before_ms = 0;
                write_job(&dir, &job)?;
            }
            let lane = job.lane();
            due.insert(job.id, Due { at: 0, lane });
        }
        // A body without its call: the gateway stopped while it arrived, before the call was answered 202.
        for body in bodies {
            if body.file_stem().and_then(|id| id.to_str()).is_none_or(|id| !due.contains_key(id)) {
                std::fs::remove_file(&body)?;
            }
        }
        Ok(Self {
            dir,
            due: Mutex::new(due),
            last_started: Mutex::default(),
            wake: Notify::new(),
            next_id: AtomicU64::new(0),
        })
    }

    fn due(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Due>> {
        self.due.lock().expect("queue lock")
    }

    /// Queued pushes (calls to git-tar) of `owner`.
    fn queued_pushes(&self, owner: u64) -> usize {
        let lane = (shared::functions::GIT_TAR.to_owned(), Some(owner));
        self.due().values().filter(|due| due.lane == lane).count()
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
        let (id, due) = (job.id.clone(), Due { at: job.not_before_ms, lane: job.lane() });
        let dir = self.dir.clone();
        blocking(move || write_job(&dir, &job)).await?;
        self.due().insert(id, due);
        self.wake.notify_one();
        Ok(())
    }

    async fn load(&self, id: &str) -> std::io::Result<Job> {
        let path = self.dir.join(format!("{id}.json"));
        blocking(move || read_job(&path)).await
    }

    fn body_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.body"))
    }

    async fn remove(&self, id: &str) {
        {
            let mut due = self.due();
            if let Some(removed) = due.remove(id) {
                // A lane with nothing queued is forgotten; back, it counts as never started, ahead of busy lanes.
                if !due.values().any(|d| d.lane == removed.lane) {
                    self.last_started.lock().expect("queue lock").1.remove(&removed.lane);
                }
            }
        }
        let path = self.dir.join(format!("{id}.json"));
        let body = self.body_path(id);
        let _ = blocking(move || {
            let _ = std::fs::remove_file(body);
            std::fs::remove_file(path)
        })
        .await;
    }

    /// Writes a call's body to its file as it arrives; over `limit` bytes, or unreadable, the file is removed.
    /// Answers the whole body when it is at most [`MAX_OWNER_BODY`] bytes, to read its owner from.
    async fn write_body(&self, id: &str, body: Body, limit: u64) -> Result<Option<Vec<u8>>, GatewayError> {
        let path = self.body_path(id);
        let written = async {
            let mut file = tokio::fs::File::create(&path).await?;
            let mut chunks = std::pin::pin!(limited(body, limit));
            let mut small = Some(Vec::new());
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => {
                        small = small.filter(|kept| kept.len() + chunk.len() <= MAX_OWNER_BODY).map(|mut kept| {
                            kept.extend_from_slice(&chunk);
                            kept
                        });
                        file.write_all(&chunk).await?;
                    }
                    Err(error) if error.is::<BodyTooLarge>() => return Err(GatewayError::TooLarge { limit }),
                    Err(_) => return Err(GatewayError::UnreadableBody),
                }
            }
            file.flush().await?;
            Ok(small)
        };
        let result = written.await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        result
    }

    /// A queued call's body, streamed from its file (or from the JSON of a call queued by an older gateway).
    async fn body(&self, job: &Job) -> std::io::Result<reqwest::Body> {
        if let Some(encoded) = &job.body_base64 {
            return Ok(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default().into());
        }
        let file = tokio::fs::File::open(self.body_path(&job.id)).await?;
        Ok(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)))
    }

    /// The call to start now: among the calls due and not running, and under `per_owner` calls running when their
    /// owner is known, those of the function with the fewest calls under way (so a function whose calls take long,
    /// git-tar waiting for builds, cannot hold every slot while another's quick calls, the statuses of pushes already
    /// built, wait behind its backlog); of those, the lane started least recently (never first), its oldest due
    /// call. Otherwise when the next call is due, if any waits.
    fn next(
        &self,
        running: &HashMap<tokio::task::Id, String>,
        now: u64,
        per_owner: usize,
    ) -> Result<String, Option<u64>> {
        let due = self.due();
        let running: HashSet<&String> = running.values().collect();
        let mut busy: HashMap<&Lane, usize> = HashMap::new();
        let mut under_way: HashMap<&str, usize> = HashMap::new();
        for entry in running.iter().filter_map(|id| due.get(*id)) {
            *busy.entry(&entry.lane).or_default() += 1;
            *under_way.entry(entry.lane.0.as_str()).or_default() += 1;
        }
        let mut last_started = self.last_started.lock().expect("queue lock");
        let mut best: Option<(Rank, &String, &Lane)> = None;
        let mut next_due: Option<u64> = None;
        for (id, entry) in due.iter() {
            if running.contains(id) {
                continue;
            }
            if entry.at > now {
                next_due = Some(next_due.map_or(entry.at, |at| at.min(entry.at)));
                continue;
            }
            let full = entry.lane.1.is_some() && busy.get(&entry.lane).copied().unwrap_or(0) >= per_owner;
            if full {
                continue;
            }
            let rank =
                (under_way.get(entry.lane.0.as_str()).copied().unwrap_or(0), last_started.1.get(&entry.lane).copied());
            // Ids ascend, so the first call seen of a lane is its oldest; a lane ranks by its function's calls
            // under way, then by its last start.
            if best.as_ref().is_none_or(|(best_rank, _, _)| rank < *best_rank) {
                best = Some((rank, id, &entry.lane));
            }
        }
        let Some((_, id, lane)) = best else { return Err(next_due) };
        last_started.0 += 1;
        let count = last_started.0;
        last_started.1.insert(lane.clone(), count);
        Ok(id.clone())
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
    /// How long the function asked the queue to wait before the next try (`Retry-After` on a 429 or 503).
    retry_after: Option<Duration>,
}

impl Attempt {
    fn failed(reason: String) -> Self {
        Self { status: None, answer: Bytes::new(), failure: Some(reason), retry_after: None }
    }
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
        match self.inner.queue.next(running, now_ms(), self.inner.config.max_inflight_per_owner.max(1)) {
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
                let wait = self.retry_wait(job.attempts, attempt.retry_after);
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

    /// The wait before the next try: what the function asked (at least `initial_retry_wait`, at most
    /// `max_retry_after`), else the backoff.
    fn retry_wait(&self, attempts: u32, asked: Option<Duration>) -> Duration {
        let config = &self.inner.config;
        match asked {
            Some(asked) => asked.max(config.initial_retry_wait).min(config.max_retry_after),
            None => Backoff::new(config.initial_retry_wait, config.max_retry_wait).wait(attempts),
        }
    }

    /// Sends the call to its function. One of `retry_codes`, or no connection, is a failure to retry; an answer
    /// that does not come in time is final (the function may still be working on it).
    /// Every try is counted in the gateway's metrics as a call through `/function/NAME` is.
    async fn attempt(&self, job: &Job) -> Attempt {
        let target = self.target(&job.function);
        if let Err(GatewayError::NoSuchFunction(_)) = target {
            return Attempt::failed(format!("function {} is not running", job.function));
        }
        let mut invocation = self.inner.metrics.start(&job.function);
        // A try that reached no function is counted as `/function/NAME` would answer it: 503 without a replica,
        // else 502.
        let unreached = target.as_ref().err().map_or(502, |error| error.status().as_u16());
        let attempt = self.try_once(job, target).await;
        invocation.answered(attempt.status.map_or(unreached, |s| s.as_u16()));
        attempt
    }

    async fn try_once(&self, job: &Job, target: Result<String, GatewayError>) -> Attempt {
        let base = match target {
            Ok(base) => base,
            Err(error) => return Attempt::failed(error.to_string()),
        };
        let body = match self.inner.queue.body(job).await {
            Ok(body) => body,
            Err(error) => return Attempt::failed(format!("the call's body could not be read: {error}")),
        };
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
                let asked = matches!(status.as_u16(), 429 | 503).then(|| retry_after(response.headers())).flatten();
                let answer = response.bytes().await.unwrap_or_default();
                let retry = self.inner.config.retry_codes.contains(&status.as_u16());
                let failure = retry.then(|| format!("answered {status}"));
                Attempt { status: Some(status), answer, failure, retry_after: asked }
            }
            Err(error) if error.is_timeout() && !error.is_connect() => {
                tracing::warn!(function = %job.function, call = %job.id, "no answer within upstream_timeout; not replayed, the function may still be working on it");
                Attempt {
                    status: Some(StatusCode::GATEWAY_TIMEOUT),
                    answer: Bytes::from(format!(
                        "{} did not answer within the gateway's upstream_timeout",
                        job.function
                    )),
                    failure: None,
                    retry_after: None,
                }
            }
            Err(error) => Attempt::failed(shared::error::error_chain(&error)),
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
            tracing::warn!(call = %job.id, %callback, error = %shared::error::error_chain(&error), "callback failed");
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
    let limit = gateway.inner.config.max_async_body_bytes;
    check_length(&parts.headers, limit)?;
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let id = gateway.inner.queue.new_id();
    let small = gateway.inner.queue.write_body(&id, body, limit).await?;
    let signature = parts.headers.get(shared::signature::CLOUD_SIGNATURE).and_then(|v| v.to_str().ok());
    let owner = match (&gateway.inner.config.payload_secret, small) {
        (Some(secret), Some(body)) => signed_owner(secret, signature, &body),
        _ => None,
    };
    if let Some(owner) = owner.filter(|_| name == shared::functions::GIT_TAR) {
        let limit = gateway.inner.config.max_queued_pushes_per_owner;
        if gateway.inner.queue.queued_pushes(owner) >= limit {
            let _ = tokio::fs::remove_file(gateway.inner.queue.body_path(&id)).await;
            tracing::warn!(function = %name, owner, "async call refused: the owner's queue of pushes is full");
            return Err(GatewayError::OwnerQueueFull(limit));
        }
    }
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
        body_base64: None,
        attempts: 0,
        not_before_ms: 0,
        owner,
    };
    if let Err(error) = gateway.inner.queue.put(job).await {
        let _ = tokio::fs::remove_file(gateway.inner.queue.body_path(&id)).await;
        return Err(error.into());
    }
    tracing::info!(function = %name, call = %id, owner = owner.unwrap_or_default(), "async call queued");
    let mut response = StatusCode::ACCEPTED.into_response();
    response.headers_mut().insert(HeaderName::from_static("x-call-id"), HeaderValue::from_str(&id).expect("ASCII id"));
    response.headers_mut().insert(HeaderName::from_static("x-start-time"), HeaderValue::from(now_ms()));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, function: &str, not_before_ms: u64) -> Job {
        Job {
            id: id.into(),
            function: function.into(),
            method: "POST".into(),
            rest: String::new(),
            headers: Vec::new(),
            body_base64: None,
            attempts: 0,
            not_before_ms,
            owner: None,
        }
    }

    /// Runs `ids` as tasks that never end, for `next` to see them as under way.
    fn under_way(tasks: &mut JoinSet<()>, ids: &[&str]) -> HashMap<tokio::task::Id, String> {
        ids.iter().map(|id| (tasks.spawn(std::future::pending()).id(), (*id).to_owned())).collect()
    }

    #[tokio::test]
    async fn a_function_with_calls_under_way_yields_the_next_slot_to_another() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path().to_owned()).unwrap();
        for (id, function) in [("1", "git-tar"), ("2", "git-tar"), ("3", "git-tar"), ("4", "github-status")] {
            queue.put(job(id, function, 0)).await.unwrap();
        }
        queue.put(job("5", "github-status", 5_000)).await.unwrap();
        let mut tasks = JoinSet::new();
        assert_eq!(queue.next(&HashMap::new(), 1_000, 2), Ok("1".to_owned()), "in order while nothing runs");
        let running = under_way(&mut tasks, &["1", "2"]);
        assert_eq!(queue.next(&running, 1_000, 2), Ok("4".to_owned()), "the status goes before git-tar's third call");
        let running = under_way(&mut tasks, &["1", "2", "4"]);
        assert_eq!(queue.next(&running, 1_000, 2), Ok("3".to_owned()), "only git-tar's third call is due now");
        let running = under_way(&mut tasks, &["1", "2", "3", "4"]);
        assert_eq!(queue.next(&running, 1_000, 2), Err(Some(5_000)), "the rest is due later");
        tasks.abort_all();
    }
}
