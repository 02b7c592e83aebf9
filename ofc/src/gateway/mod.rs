//! The embedded gateway: the part of the OpenFaaS gateway API the functions use (`reference/openfaas-gateway-api.md`).
//!
//! - [`proxy`]: `/function/NAME[/rest]`, any method, path and query proxied to the function's process.
//! - [`queue`]: `/async-function/NAME[/rest]`, the on-disk queue and the worker that replays it.
//! - [`system`]: `/system/functions` and `/system/function/NAME` behind basic auth; deployments are kept in the
//!   state folder and, with a [`FunctionRuntime`], started by [`replicas`]. Without a runtime, or while a replica
//!   cannot start, a function is listed with 0 available replicas and invoking it answers 503 saying why.
//! - [`logs`]: `/system/logs`, a function's runtime log as newline-delimited JSON, followed on request.
//! - [`info`]: `/system/info` and `/metrics` (the OpenFaaS gateway's Prometheus metrics, counted by [`metrics`]).
//! - [`provider`]: the rest of faas-provider's API, for a real OpenFaaS gateway in front: the platform functions'
//!   status, `/system/scale-function/NAME`, `/system/namespaces` and `/system/secrets`.
//! - [`error`]: the gateway's one error type and its HTTP answers.
//!
//! [`Gateway::serve`] serves it with `shared::server`'s accept loop, as every function is served: a header timeout
//! that also closes idle keep-alive connections, a connection cap that closes the oldest idle connection to make
//! room, and a deadline on each request's whole body (408). Bodies are bounded on both routes (413).

mod error;
mod info;
mod logs;
mod metrics;
mod provider;
mod proxy;
mod queue;
mod replicas;
mod system;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::{any, get, post};
use axum::Router;
use functions_api::FunctionsApi;
use shared::openfaas::FunctionStatus;
use shared::server::ConnectionLimits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use self::error::GatewayError;
pub use self::logs::{MAX_SCAN_BYTES, MAX_TAIL};
use self::metrics::Metrics;
pub use self::provider::MAX_SECRET_BODY_BYTES;
use self::queue::Queue;
use self::replicas::Replicas;
use crate::runtime::FunctionRuntime;

/// How long a call waits for a function's first replica that is starting (a replica answers its health check
/// within about a second here).
const REPLICA_READY_WITHIN: Duration = Duration::from_secs(10);

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Holds `queue/` and `functions.json`.
    pub state_dir: PathBuf,
    /// The functions' logs, which `/system/logs` serves: `function-NAME.log` of a deployed function's replicas,
    /// `NAME.log` of a platform function's process (`state_dir/logs` by default, where `ofc up` writes them).
    pub logs_dir: PathBuf,
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
    /// Async calls of one owner to one function replayed at once (default 2): one owner's backlog of pushes leaves
    /// the other slots to other owners (see `queue`). Calls whose owner is not known are not capped.
    pub max_inflight_per_owner: usize,
    /// Pushes (calls to git-tar) of one owner waiting in the queue (default 10: a backlog that takes long enough
    /// to build already); the next is refused 429 with the reason.
    pub max_queued_pushes_per_owner: usize,
    /// The platform's `payload-secret`: a queued call's owner is read from its body only when the body's
    /// `X-Cloud-Signature` verifies, so that no caller can charge its calls to another owner. `None`: no owners.
    pub payload_secret: Option<shared::config::Secret>,
    /// Runs deployed user functions; `None` lists them with 0 available replicas.
    pub runtime: Option<Arc<FunctionRuntime>>,
    /// The largest body `/function/NAME` passes on (build contexts travel this way to buildshiprun); beyond, 413.
    pub max_body_bytes: u64,
    /// The largest body `/async-function/NAME` queues; beyond, 413. Queued bodies go to disk as they arrive.
    pub max_async_body_bytes: u64,
    /// The function's answers after which a queued call is tried again, as the queue-worker's `httpRetryCodes`.
    /// 504 is not among them: it means the function ran out of its own time, and a replay would run it twice.
    pub retry_codes: Vec<u16>,
    /// The longest `Retry-After` the queue honours; a longer ask waits this long.
    pub max_retry_after: Duration,
    /// The bounds on the gateway's own connections (header timeout, connection cap, body deadline).
    pub limits: ConnectionLimits,
    /// The user functions' secrets, one file each (`/system/secrets`; what `ofc secret set` writes).
    pub secrets_dir: PathBuf,
    /// A real OpenFaaS gateway fronts this one, which then serves as its provider: `/system/info` answers
    /// faas-provider's `ProviderInfo`, which that gateway wraps in its own answer.
    pub behind_gateway: bool,
}

impl GatewayConfig {
    pub fn new(state_dir: &Path, user: &str, password: &str) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            logs_dir: state_dir.join("logs"),
            user: user.to_owned(),
            password: password.to_owned(),
            max_attempts: 6,
            initial_retry_wait: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(600),
            max_inflight: 8,
            max_inflight_per_owner: 2,
            max_queued_pushes_per_owner: 10,
            payload_secret: None,
            runtime: None,
            max_body_bytes: shared::server::BUILD_MAX_BODY_BYTES,
            max_async_body_bytes: shared::server::DEFAULT_MAX_BODY_BYTES,
            retry_codes: vec![429, 502, 503],
            max_retry_after: Duration::from_secs(3600),
            limits: ConnectionLimits {
                header_timeout: shared::server::DEFAULT_HEADER_TIMEOUT,
                // Build contexts of hundreds of MiB come this way, on loopback or in-cluster.
                body_timeout: Duration::from_secs(300),
                max_connections: 4096,
            },
            secrets_dir: state_dir.join("function-secrets"),
            behind_gateway: false,
        }
    }
}

struct Inner {
    config: GatewayConfig,
    /// System functions (name → base URL of their process), which `ofc up` starts rather than deploys.
    routes: RwLock<HashMap<String, String>>,
    /// User functions deployed through `/system/functions`.
    functions: FunctionsApi,
    replicas: Arc<Replicas>,
    queue: Queue,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Cancelled when the gateway stops serving, which ends every followed log (a drain would wait for them).
    shutdown: CancellationToken,
    /// Followed logs under way.
    followers: Arc<AtomicUsize>,
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
        let queue = Queue::open(config.state_dir.join("queue"))?;
        let replicas = Arc::new(Replicas::new(config.runtime.clone()));
        let functions = system::open(&config.state_dir, &config.secrets_dir, replicas.clone());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Under the functions' idle bound (`read_header_timeout`, 10 s by default), so an idle connection is
            // never reused just as the function closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(std::io::Error::other)?;
        let routes = RwLock::new(HashMap::new());
        let inner = Inner {
            config,
            routes,
            functions,
            replicas,
            queue,
            http,
            metrics: Arc::default(),
            shutdown: CancellationToken::new(),
            followers: Arc::default(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Routes `/function/<name>` to a process listening at `base_url` (ending in `/`).
    pub fn set_route(&self, name: &str, base_url: &str) {
        self.inner.routes.write().expect("routes lock").insert(name.to_owned(), base_url.to_owned());
        self.inner.queue.wake.notify_one();
    }

    /// The user functions deployed so far, with their available replicas as they are now.
    pub fn deployments(&self) -> Vec<FunctionStatus> {
        self.inner.functions.list()
    }

    /// Starts every recorded deployment (after a restart of the stack).
    pub fn start_deployed(&self) {
        for deployment in self.inner.functions.list() {
            self.inner.replicas.schedule_start(deployment);
        }
    }

    /// Stops every replica (and waits for starts under way), leaving no process behind.
    pub async fn stop_functions(&self) {
        self.inner.replicas.stop_all().await;
    }

    /// Async calls still waiting in the queue.
    pub fn queued(&self) -> usize {
        self.inner.queue.len()
    }

    /// Followed logs (`/system/logs?follow=true`) whose answer is still open.
    pub fn following(&self) -> usize {
        self.inner.followers.load(Ordering::SeqCst)
    }

    /// Ends every followed log now (a follow asked for later ends after the lines already written): for a gateway
    /// served by another loop than [`Gateway::serve`], which does this when it stops.
    pub fn end_follows(&self) {
        self.inner.shutdown.cancel();
    }

    /// The log file of `name`: its process's for a platform function, its replicas' for a deployed one.
    fn log_path(&self, name: &str) -> Option<PathBuf> {
        let logs = &self.inner.config.logs_dir;
        if self.inner.routes.read().expect("routes lock").contains_key(name) {
            return Some(logs.join(format!("{name}.log")));
        }
        self.inner.functions.get(name).ok().map(|_| logs.join(format!("function-{name}.log")))
    }

    /// Whether `name` is a system function or a deployed one.
    fn knows(&self, name: &str) -> bool {
        self.inner.routes.read().expect("routes lock").contains_key(name) || self.inner.functions.get(name).is_ok()
    }

    /// The base URL a call to `name` goes to (a system function's process, a user function's replica), counting the
    /// call; or why there is none.
    fn target(&self, name: &str) -> Result<String, GatewayError> {
        if let Some(url) = self.inner.routes.read().expect("routes lock").get(name) {
            return Ok(url.clone());
        }
        match self.inner.replicas.port(name) {
            Ok(port) if self.inner.functions.count_invocation(name) => Ok(format!("http://127.0.0.1:{port}/")),
            Ok(_) => Err(GatewayError::NoSuchFunction(name.to_owned())),
            Err(why) => match self.inner.functions.get(name) {
                Ok(deployed) => Err(GatewayError::Unavailable {
                    function: name.to_owned(),
                    reason: format!(
                        "function {name} is deployed (image {}) but has no running replica: {why}",
                        deployed.image
                    ),
                }),
                Err(_) => Err(GatewayError::NoSuchFunction(name.to_owned())),
            },
        }
    }

    /// As [`Gateway::target`], but a call that arrives while the function's first replica is starting (just
    /// deployed: its commit status is already green) waits for it, up to [`REPLICA_READY_WITHIN`], as OpenFaaS'
    /// gateway holds a call until a replica is ready, rather than failing at once.
    async fn target_when_ready(&self, name: &str) -> Result<String, GatewayError> {
        let deadline = tokio::time::Instant::now() + REPLICA_READY_WITHIN;
        loop {
            let target = self.target(name);
            if target.is_ok() || !self.inner.replicas.starting(name) || tokio::time::Instant::now() >= deadline {
                return target;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Serves the gateway on `listener` within its connection bounds until `shutdown` completes, then drains.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let follows = self.inner.shutdown.clone();
        let shutdown = async move {
            shutdown.await;
            follows.cancel();
        };
        shared::server::serve_with_limits(listener, self.router(), self.inner.config.limits, shutdown).await
    }

    /// Every route of the gateway; `/system/*` behind one basic-auth layer, `/metrics` open (as on OpenFaaS, where
    /// Prometheus scrapes it without credentials; the gateway listens on loopback only).
    pub fn router(&self) -> Router {
        let config = &self.inner.config;
        let system = Router::new()
            .route("/logs", get(logs::logs))
            .route("/info", get(info::info))
            .route("/namespaces", get(provider::namespaces))
            .route("/scale-function/{name}", post(provider::scale))
            .route(
                "/secrets",
                get(provider::list).post(provider::create).put(provider::update).delete(provider::delete),
            )
            .with_state(self.clone())
            .merge(self.inner.functions.router())
            .layer(axum::middleware::from_fn_with_state(self.clone(), provider::platform_function_status));
        Router::new()
            .route("/healthz", get(|| async { "OK" }))
            .route("/metrics", get(info::metrics))
            .route("/function/{name}", any(proxy::invoke))
            // `/function/NAME/` is the function's root too (the edge router sends `/dashboard/` there); a wildcard
            // does not match an empty rest.
            .route("/function/{name}/", any(proxy::invoke))
            .route("/function/{name}/{*rest}", any(proxy::invoke))
            .route("/async-function/{name}", post(queue::enqueue))
            .route("/async-function/{name}/", post(queue::enqueue))
            .route("/async-function/{name}/{*rest}", post(queue::enqueue))
            .with_state(self.clone())
            .nest("/system", system::require_auth(system, &config.user, &config.password))
            .layer(axum::extract::DefaultBodyLimit::disable())
    }
}
