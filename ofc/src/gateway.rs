//! The embedded gateway: the part of the OpenFaaS gateway API the functions use (`reference/openfaas-gateway-api.md`).
//!
//! - `/function/NAME[/rest]`: any method, path and query proxied to the function's process, headers kept.
//! - `/async-function/NAME[/rest]`: 202 with `X-Call-Id`; the request is written to the queue folder before the
//!   answer, replayed with its original headers and body, retried with backoff on 429/502/503/504 or an unreachable
//!   function, and its answer POSTed to `X-Callback-Url` when one was given. A restart loses nothing.
//! - `/system/functions` (GET, POST, PUT, DELETE) and `/system/function/NAME`, behind basic auth: user functions'
//!   deployments are recorded (and kept in the state folder) and, with a [`FunctionRuntime`], started: a new
//!   replica replaces the old one once it answers, so an update has no gap. Without a runtime, or while a replica
//!   cannot start, the function is listed with 0 available replicas and invoking it answers 503 saying why.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use shared::openfaas::{DeleteFunctionRequest, FunctionDeployment, FunctionStatus};

use crate::runtime::{FunctionRuntime, Replica};

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Holds `queue/` and `functions.json`.
    pub state_dir: PathBuf,
    pub user: String,
    pub password: String,
    /// Tries of one async call before it is given up.
    pub max_attempts: u32,
    pub initial_retry_wait: Duration,
    pub max_retry_wait: Duration,
    /// How long a function may take to answer (the seed asks 300 s for builds).
    pub upstream_timeout: Duration,
    /// Async calls replayed at once.
    pub max_inflight: usize,
    /// Runs deployed user functions; `None` lists them with 0 available replicas.
    pub runtime: Option<Arc<FunctionRuntime>>,
}

impl GatewayConfig {
    pub fn new(state_dir: &Path, user: &str, password: &str) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            max_attempts: 6,
            initial_retry_wait: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(600),
            max_inflight: 8,
            runtime: None,
        }
    }
}

/// One queued async call, as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
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

struct Inner {
    config: GatewayConfig,
    /// System functions (name → base URL of their process).
    routes: RwLock<HashMap<String, String>>,
    /// User functions deployed through `/system/functions`.
    deployments: Mutex<BTreeMap<String, FunctionStatus>>,
    http: reqwest::Client,
    wake: tokio::sync::Notify,
    inflight: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    /// User functions' replicas, by function name.
    replicas: Mutex<HashMap<String, ReplicaSlot>>,
    /// Replica starts under way, awaited when the gateway stops.
    starting: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set once the gateway stops: a replica that comes up afterwards is stopped at once.
    stopping: std::sync::atomic::AtomicBool,
}

/// A user function's replica, and why it has none.
#[derive(Default)]
struct ReplicaSlot {
    running: Option<Replica>,
    /// Bumped by every deployment, so a slow start that has been superseded does not replace a newer replica.
    generation: u64,
    /// Why the latest start failed.
    problem: Option<String>,
}

/// Where a call to a function goes.
enum Target {
    Url(String),
    /// Deployed, but nothing answers: the reason.
    Unavailable(String),
    Missing,
}

/// The gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Hop-by-hop headers are the connection's, not the request's.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

impl Gateway {
    /// A gateway keeping its queue and deployments under `config.state_dir`.
    pub fn new(config: GatewayConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(config.state_dir.join("queue"))?;
        let deployments = match std::fs::read(config.state_dir.join("functions.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(std::io::Error::other)?;
        let gateway = Self {
            inner: Arc::new(Inner {
                config,
                routes: RwLock::new(HashMap::new()),
                deployments: Mutex::new(deployments),
                http,
                wake: tokio::sync::Notify::new(),
                inflight: Mutex::new(HashSet::new()),
                next_id: AtomicU64::new(0),
                replicas: Mutex::new(HashMap::new()),
                starting: Mutex::new(Vec::new()),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        gateway.reset_waits()?;
        Ok(gateway)
    }

    /// Calls left in the queue by an earlier run are due at once: the functions they wait for have just started.
    fn reset_waits(&self) -> std::io::Result<()> {
        for entry in std::fs::read_dir(self.queue_dir())? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(&path)?;
                continue;
            }
            if let Ok(mut job) =
                std::fs::read(&path).map_err(drop).and_then(|b| serde_json::from_slice::<Job>(&b).map_err(drop))
            {
                if job.not_before_ms != 0 {
                    job.not_before_ms = 0;
                    self.write_job(&job)?;
                }
            }
        }
        Ok(())
    }

    /// Routes `/function/<name>` to a process listening at `base_url` (ending in `/`).
    pub fn set_route(&self, name: &str, base_url: &str) {
        self.inner.routes.write().expect("routes lock").insert(name.to_owned(), base_url.to_owned());
        self.inner.wake.notify_one();
    }

    /// The user functions deployed so far.
    pub fn deployments(&self) -> Vec<FunctionStatus> {
        let deployments = self.inner.deployments.lock().expect("deployments lock");
        deployments.values().map(|d| self.with_replicas(d)).collect()
    }

    /// `status` with its available replicas as they are now.
    fn with_replicas(&self, status: &FunctionStatus) -> FunctionStatus {
        let mut status = status.clone();
        let running =
            self.inner.replicas.lock().expect("replicas lock").get(&status.name).is_some_and(|s| s.running.is_some());
        status.replicas = 1;
        status.available_replicas = u64::from(running);
        status
    }

    /// Starts every recorded deployment (after a restart of the stack).
    pub fn start_deployed(&self) {
        let deployments: Vec<FunctionStatus> =
            self.inner.deployments.lock().expect("deployments lock").values().cloned().collect();
        for deployment in deployments {
            self.schedule_start(deployment);
        }
    }

    /// Starts a replica of `status` in the background; once it answers it replaces the function's current one.
    fn schedule_start(&self, status: FunctionStatus) {
        let Some(runtime) = self.inner.config.runtime.clone() else { return };
        let name = status.name.clone();
        let generation = {
            let mut slots = self.inner.replicas.lock().expect("replicas lock");
            let slot = slots.entry(name.clone()).or_default();
            slot.generation += 1;
            slot.problem = None;
            slot.generation
        };
        let gateway = self.clone();
        let task = tokio::spawn(async move {
            let started = runtime.start(&status).await;
            let retired = {
                let mut slots = gateway.inner.replicas.lock().expect("replicas lock");
                let current = slots.get_mut(&name).filter(|slot| slot.generation == generation);
                match (started, current) {
                    (Ok(replica), Some(slot)) if !gateway.inner.stopping.load(Ordering::SeqCst) => {
                        slot.problem = None;
                        slot.running.replace(replica)
                    }
                    // Superseded, deleted or stopping: this replica is not wanted any more.
                    (Ok(replica), _) => Some(replica),
                    (Err(error), slot) => {
                        tracing::error!(function = %name, image = %status.image, %error, "replica could not start");
                        if let Some(slot) = slot {
                            slot.problem = Some(error.to_string());
                        }
                        None
                    }
                }
            };
            if let Some(mut replica) = retired {
                runtime.stop(&mut replica).await;
            }
        });
        let mut starting = self.inner.starting.lock().expect("starting lock");
        starting.retain(|t| !t.is_finished());
        starting.push(task);
    }

    /// Stops a deleted function's replica.
    fn remove_replica(&self, name: &str) {
        let Some(runtime) = self.inner.config.runtime.clone() else { return };
        let removed = self.inner.replicas.lock().expect("replicas lock").remove(name);
        if let Some(mut replica) = removed.and_then(|slot| slot.running) {
            tokio::spawn(async move { runtime.stop(&mut replica).await });
        }
    }

    /// Stops every replica (and waits for starts under way), leaving no process behind.
    pub async fn stop_functions(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let starting = std::mem::take(&mut *self.inner.starting.lock().expect("starting lock"));
        for task in starting {
            let _ = task.await;
        }
        let Some(runtime) = self.inner.config.runtime.clone() else { return };
        let running: Vec<Replica> =
            self.inner.replicas.lock().expect("replicas lock").drain().filter_map(|(_, slot)| slot.running).collect();
        let stops = running.into_iter().map(|mut replica| {
            let runtime = runtime.clone();
            async move { runtime.stop(&mut replica).await }
        });
        futures_util::future::join_all(stops).await;
    }

    /// Where a call to `name` goes: a system function's process, a user function's replica, or why neither.
    fn target(&self, name: &str) -> Target {
        if let Some(base) = self.inner.routes.read().expect("routes lock").get(name) {
            return Target::Url(base.clone());
        }
        let mut deployments = self.inner.deployments.lock().expect("deployments lock");
        let Some(deployed) = deployments.get_mut(name) else { return Target::Missing };
        let slots = self.inner.replicas.lock().expect("replicas lock");
        let slot = slots.get(name);
        if let Some(replica) = slot.and_then(|s| s.running.as_ref()) {
            deployed.invocation_count += 1.0;
            return Target::Url(format!("http://127.0.0.1:{}/", replica.port));
        }
        let why = match (&self.inner.config.runtime, slot.and_then(|s| s.problem.as_ref())) {
            (None, _) => "no container runtime is in use (`ofc up --runtime none`)".to_owned(),
            (Some(_), Some(problem)) => format!("its replica could not start: {problem}"),
            (Some(_), None) => "its replica is starting".to_owned(),
        };
        Target::Unavailable(format!(
            "function {name} is deployed (image {}) but has no running replica: {why}",
            deployed.image
        ))
    }

    /// Async calls still waiting in the queue.
    pub fn queued(&self) -> usize {
        std::fs::read_dir(self.queue_dir()).map_or(0, |d| {
            d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count()
        })
    }

    fn queue_dir(&self) -> PathBuf {
        self.inner.config.state_dir.join("queue")
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "OK" }))
            .route("/function/{name}", any(invoke))
            .route("/function/{name}/{*rest}", any(invoke))
            .route("/async-function/{name}", any(enqueue))
            .route("/async-function/{name}/{*rest}", any(enqueue))
            .route("/system/functions", any(system_functions))
            .route("/system/function/{name}", get(system_function))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(self.clone())
    }

    /// Replays queued calls until the process ends; jobs left by an earlier run are picked up at once.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        let gateway = self.clone();
        tokio::spawn(async move {
            loop {
                gateway.dispatch_ready();
                let _ = tokio::time::timeout(Duration::from_millis(250), gateway.inner.wake.notified()).await;
            }
        })
    }

    fn dispatch_ready(&self) {
        let Ok(entries) = std::fs::read_dir(self.queue_dir()) else { return };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let now = now_ms();
        for path in paths {
            let Ok(job) =
                std::fs::read(&path).map_err(drop).and_then(|b| serde_json::from_slice::<Job>(&b).map_err(drop))
            else {
                continue;
            };
            if job.not_before_ms > now {
                continue;
            }
            {
                let mut inflight = self.inner.inflight.lock().expect("inflight lock");
                if inflight.len() >= self.inner.config.max_inflight || !inflight.insert(job.id.clone()) {
                    continue;
                }
            }
            let gateway = self.clone();
            tokio::spawn(async move {
                let id = job.id.clone();
                gateway.replay(job).await;
                gateway.inner.inflight.lock().expect("inflight lock").remove(&id);
                gateway.inner.wake.notify_one();
            });
        }
    }

    fn write_job(&self, job: &Job) -> std::io::Result<()> {
        let path = self.queue_dir().join(format!("{}.json", job.id));
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(job).map_err(std::io::Error::other)?)?;
        std::fs::rename(temporary, path)
    }

    async fn replay(&self, mut job: Job) {
        let started = Instant::now();
        let body = base64::engine::general_purpose::STANDARD.decode(&job.body_base64).unwrap_or_default();
        let outcome = match self.target(&job.function) {
            Target::Missing => Err(format!("function {} is not running", job.function)),
            Target::Unavailable(reason) => Err(reason),
            Target::Url(base) => {
                let mut request = self
                    .inner
                    .http
                    .request(
                        Method::from_bytes(job.method.as_bytes()).unwrap_or(Method::POST),
                        format!("{base}{}", job.rest.trim_start_matches('/')),
                    )
                    .timeout(self.inner.config.upstream_timeout)
                    .body(body);
                for (name, value) in &job.headers {
                    request = request.header(name, value);
                }
                request = request.header("X-Call-Id", &job.id).header("X-Start-Time", now_ms().to_string());
                match request.send().await {
                    Ok(response) => Ok(response),
                    Err(error) => Err(shared::gateway::error_chain(&error)),
                }
            }
        };
        let path = self.queue_dir().join(format!("{}.json", job.id));
        let retry = |reason: String| (reason, true);
        let (status, answer, failure) = match outcome {
            Ok(response) => {
                let status = response.status();
                let answer = response.bytes().await.unwrap_or_default();
                if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                    (Some(status), answer, Some(retry(format!("answered {status}"))))
                } else {
                    (Some(status), answer, None)
                }
            }
            Err(reason) => (None, Bytes::new(), Some(retry(reason))),
        };
        if let Some((reason, _)) = failure {
            job.attempts += 1;
            if job.attempts < self.inner.config.max_attempts {
                let wait = self
                    .inner
                    .config
                    .initial_retry_wait
                    .saturating_mul(1 << (job.attempts - 1).min(10))
                    .min(self.inner.config.max_retry_wait);
                job.not_before_ms = now_ms() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(function = %job.function, call = %job.id, attempt = job.attempts, %reason, "async call failed, retrying");
                if let Err(error) = self.write_job(&job) {
                    tracing::error!(call = %job.id, %error, "could not keep the async call in the queue");
                }
                return;
            }
            tracing::error!(function = %job.function, call = %job.id, attempts = job.attempts, %reason, "async call given up");
        } else {
            tracing::info!(function = %job.function, call = %job.id, status = status.map_or(0, |s| s.as_u16()), seconds = started.elapsed().as_secs_f64(), "async call done");
        }
        let _ = std::fs::remove_file(&path);
        let callback =
            job.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("x-callback-url")).map(|(_, v)| v.clone());
        if let Some(callback) = callback {
            let sent = self
                .inner
                .http
                .post(&callback)
                .header("X-Call-Id", &job.id)
                .header("X-Function-Status", status.map_or(503, |s| s.as_u16()).to_string())
                .header("X-Duration-Seconds", format!("{:.3}", started.elapsed().as_secs_f64()))
                .header("X-Function-Name", &job.function)
                .body(answer)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            if let Err(error) = sent {
                tracing::warn!(call = %job.id, %callback, error = %shared::gateway::error_chain(&error), "callback failed");
            }
        }
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else { return false };
        let Some(encoded) = value.strip_prefix("Basic ") else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let expected = format!("{}:{}", self.inner.config.user, self.inner.config.password);
        subtle_eq(&decoded, expected.as_bytes())
    }

    fn save_deployments(&self, deployments: &BTreeMap<String, FunctionStatus>) {
        let path = self.inner.config.state_dir.join("functions.json");
        let temporary = path.with_extension("tmp");
        let written = serde_json::to_vec_pretty(deployments)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&temporary, b))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            tracing::error!(%error, "could not save the deployments");
        }
    }
}

/// Constant-time comparison of the credentials.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `name.namespace` → `name`, as either is accepted.
fn function_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

#[derive(Deserialize)]
struct FunctionPath {
    name: String,
    #[serde(default)]
    rest: String,
}

async fn invoke(State(gateway): State<Gateway>, UrlPath(path): UrlPath<FunctionPath>, request: Request) -> Response {
    let name = function_name(&path.name).to_owned();
    let base = match gateway.target(&name) {
        Target::Url(base) => base,
        Target::Unavailable(reason) => return (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
        Target::Missing => return (StatusCode::NOT_FOUND, format!("no such function: {name}")).into_response(),
    };
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let url = format!("{base}{}{query}", path.rest);
    let started = Instant::now();
    let mut upstream = gateway
        .inner
        .http
        .request(parts.method.clone(), url)
        .timeout(gateway.inner.config.upstream_timeout)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (header, value) in &parts.headers {
        if !is_hop_by_hop(header.as_str()) {
            upstream = upstream.header(header, value);
        }
    }
    match upstream.send().await {
        Ok(answer) => {
            tracing::info!(function = %name, method = %parts.method, status = answer.status().as_u16(), seconds = started.elapsed().as_secs_f64(), "invoked");
            let mut response = Response::builder().status(answer.status().as_u16());
            for (header, value) in answer.headers() {
                if !is_hop_by_hop(header.as_str()) {
                    response = response.header(header.as_str(), value.as_bytes());
                }
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(error) => {
            let status = if error.is_timeout() { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
            (status, format!("function {name} could not be reached: {}", shared::gateway::error_chain(&error)))
                .into_response()
        }
    }
}

async fn enqueue(State(gateway): State<Gateway>, UrlPath(path): UrlPath<FunctionPath>, request: Request) -> Response {
    let name = function_name(&path.name).to_owned();
    if request.method() != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "async calls are POSTs").into_response();
    }
    if matches!(gateway.target(&name), Target::Missing) {
        return (StatusCode::NOT_FOUND, format!("no such function: {name}")).into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::BAD_REQUEST, "the body could not be read").into_response();
    };
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let sequence = gateway.inner.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:013}-{sequence:06}-{}", now_ms(), uuid::Uuid::new_v4().simple());
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
    if let Err(error) = gateway.write_job(&job) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("the call could not be queued: {error}")).into_response();
    }
    tracing::info!(function = %name, call = %id, "async call queued");
    gateway.inner.wake.notify_one();
    let mut response = StatusCode::ACCEPTED.into_response();
    response.headers_mut().insert(HeaderName::from_static("x-call-id"), HeaderValue::from_str(&id).expect("ASCII id"));
    response.headers_mut().insert(HeaderName::from_static("x-start-time"), HeaderValue::from(now_ms()));
    response
}

fn unauthorised() -> Response {
    (StatusCode::UNAUTHORIZED, [("www-authenticate", "Basic realm=\"Restricted\"")], "unauthorized").into_response()
}

async fn system_functions(State(gateway): State<Gateway>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    if !gateway.authorised(&headers) {
        return unauthorised();
    }
    if method == Method::GET {
        return Json(gateway.deployments()).into_response();
    }
    let mut deployments = gateway.inner.deployments.lock().expect("deployments lock");
    match method {
        Method::POST | Method::PUT => {
            let Ok(deployment) = serde_json::from_slice::<FunctionDeployment>(&body) else {
                return (StatusCode::BAD_REQUEST, "the body is not a FunctionDeployment").into_response();
            };
            if deployment.service.is_empty() || deployment.image.is_empty() {
                return (StatusCode::BAD_REQUEST, "service and image are required").into_response();
            }
            if method == Method::PUT && !deployments.contains_key(&deployment.service) {
                return (StatusCode::NOT_FOUND, format!("no such function: {}", deployment.service)).into_response();
            }
            let created_at = deployments
                .get(&deployment.service)
                .and_then(|d| d.created_at.clone())
                .unwrap_or_else(|| chrono::Utc::now().to_rfc3339());
            let mut status = FunctionStatus::from_deployment(&deployment, 0);
            status.namespace = status.namespace.or_else(|| Some("openfaas-fn".into()));
            status.created_at = Some(created_at);
            tracing::info!(function = %deployment.service, image = %deployment.image, action = if method == Method::POST { "deployed" } else { "updated" }, "deployment recorded");
            deployments.insert(deployment.service.clone(), status.clone());
            gateway.save_deployments(&deployments);
            drop(deployments);
            gateway.schedule_start(status);
            if method == Method::POST {
                StatusCode::ACCEPTED.into_response()
            } else {
                StatusCode::OK.into_response()
            }
        }
        Method::DELETE => {
            let Ok(request) = serde_json::from_slice::<DeleteFunctionRequest>(&body) else {
                return (StatusCode::BAD_REQUEST, "the body is not {\"functionName\": ...}").into_response();
            };
            if deployments.remove(&request.function_name).is_none() {
                return (StatusCode::NOT_FOUND, format!("no such function: {}", request.function_name)).into_response();
            }
            tracing::info!(function = %request.function_name, "deployment removed");
            gateway.save_deployments(&deployments);
            drop(deployments);
            gateway.remove_replica(&request.function_name);
            StatusCode::OK.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn system_function(
    State(gateway): State<Gateway>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !gateway.authorised(&headers) {
        return unauthorised();
    }
    let found = gateway.inner.deployments.lock().expect("deployments lock").get(function_name(&name)).cloned();
    match found {
        Some(status) => Json(gateway.with_replicas(&status)).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no such function: {name}")).into_response(),
    }
}
