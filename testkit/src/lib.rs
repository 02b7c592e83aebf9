//! Test doubles that speak the real wire formats, for the functions' integration tests.
//!
//! # Layout
//! - [`RecordingGateway`]: an OpenFaaS gateway double on a loopback port that records every request, answers
//!   scripted replies, and otherwise behaves as the gateway's API reference says (`/function`, `/async-function`,
//!   a stateful `/system/functions` behind basic auth, the one of [`functions_api`]).
//! - [`local_stack`]: `ofc up` as the end-to-end tests start it, and the example repository as a fixture.
//! - [`browser`]: headless Chromium over WebDriver, with screenshots under `target/screenshots/`.
//! - [`openfaas`]: the real OpenFaaS binaries, unpacked into `target/openfaas/`, and a network namespace for them.
//! - [`sessions`]: signed sessions (alice in acme, mallory) and owner-labelled functions.
//! - [`secrets_dir`]: a temporary secrets folder, as OpenFaaS mounts one.

pub mod app;
pub mod browser;
pub mod git;
pub mod local_stack;
pub mod openfaas;
pub mod ports;
pub mod process;
pub mod s3;
pub mod sessions;

pub use app::ServedFunction;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use functions_api::{require_basic_auth, Credentials, FunctionsApi, NoHooks};
use serde::de::DeserializeOwned;
use shared::openfaas::FunctionStatus;
use tokio::sync::Notify;

/// One request as the gateway double received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// The path without the query, e.g. `/async-function/git-tar`.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The body parsed as JSON; panics with the body shown when it is not, as a test would want.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} {} is not the expected JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header's value as text (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A scripted answer for one method and path.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Bytes,
    delay: Option<Duration>,
}

impl Reply {
    /// An answer with this status and an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("a valid HTTP status"),
            headers: Vec::new(),
            body: Bytes::new(),
            delay: None,
        }
    }

    /// A JSON body (and its content type).
    #[must_use]
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.body = Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"));
        self.headers.push(("content-type".into(), "application/json".into()));
        self
    }

    /// A raw body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// One more header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before answering (a slow function or gateway).
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

#[derive(Default)]
struct GatewayState {
    requests: Vec<RecordedRequest>,
    scripts: HashMap<(Method, String), VecDeque<Reply>>,
    next_call_id: u64,
}

/// An OpenFaaS gateway double on `127.0.0.1:<random port>`; it stops when dropped.
pub struct RecordingGateway {
    address: SocketAddr,
    state: Arc<Mutex<GatewayState>>,
    /// `/system/functions`, the same implementation the local stack's gateway uses.
    functions: FunctionsApi,
    arrived: Arc<Notify>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<GatewayState>>,
    arrived: Arc<Notify>,
}

impl RecordingGateway {
    /// Starts a gateway double with no admin credentials (`/system/*` open).
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a gateway double whose `/system/*` routes require this basic-auth user and password.
    pub async fn with_credentials(user: &str, password: &str) -> Self {
        Self::start_with(Some(Credentials { user: user.to_owned(), password: password.to_owned() })).await
    }

    async fn start_with(credentials: Option<Credentials>) -> Self {
        let state = Arc::new(Mutex::new(GatewayState::default()));
        let arrived = Arc::new(Notify::new());
        let functions = FunctionsApi::new(BTreeMap::new(), Arc::new(NoHooks));
        let mut system = functions.router();
        if let Some(credentials) = credentials {
            system = require_basic_auth(system, credentials);
        }
        let app = AppState { state: state.clone(), arrived: arrived.clone() };
        let router = Router::new()
            .route("/healthz", get(|| async { StatusCode::OK }))
            .route("/function/{*rest}", any(|| async { StatusCode::OK }))
            .route("/async-function/{*rest}", post(enqueue))
            .with_state(app.clone())
            .nest("/system", system)
            .fallback(|| async { (StatusCode::NOT_FOUND, "no such route on the gateway") })
            .layer(axum::middleware::from_fn_with_state(app, record_and_script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self { address, state, functions, arrived, _shutdown: tx }
    }

    /// The base URL, ending in `/`, as functions take it in `gateway_url`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Scripts the answers to `method path` (exact path, no query): consumed in order, the last one repeats.
    pub fn reply(&self, method: &str, path: &str, replies: Vec<Reply>) {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid method");
        self.state.lock().unwrap().scripts.insert((method, path.to_owned()), replies.into());
    }

    /// Seeds a deployed function.
    pub fn add_function(&self, function: FunctionStatus) {
        self.functions.insert(function);
    }

    /// The deployed functions, as the double's `/system/functions` state holds them.
    pub fn functions(&self) -> Vec<FunctionStatus> {
        self.functions.list()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.path.starts_with(prefix)).collect()
    }

    /// Waits until at least `count` requests to `prefix` arrived, then returns them all; panics after `timeout`.
    pub async fn wait_for_requests(&self, prefix: &str, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            let found = self.requests_to(prefix);
            if found.len() >= count {
                return found;
            }
            assert!(
                tokio::time::timeout_at(deadline, notified).await.is_ok(),
                "waited {timeout:?} for {count} request(s) to {prefix}, got {}: {:?}",
                found.len(),
                found.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>()
            );
        }
    }
}

/// Records every request; answers a scripted reply when there is one, and otherwise what the real gateway would.
async fn record_and_script(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    let scripted = {
        let mut state = app.state.lock().unwrap();
        state.requests.push(recorded.clone());
        let key = (recorded.method, recorded.path);
        state
            .scripts
            .get_mut(&key)
            .and_then(|queue| if queue.len() > 1 { queue.pop_front() } else { queue.front().cloned() })
    };
    app.arrived.notify_waiters();
    let Some(reply) = scripted else {
        let response = next.run(Request::from_parts(parts, Body::from(body))).await;
        app.arrived.notify_waiters();
        return response;
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// An async call is accepted with a call id, as the real gateway does.
async fn enqueue(State(app): State<AppState>) -> Response {
    let mut state = app.state.lock().unwrap();
    state.next_call_id += 1;
    let call_id = format!("call-{}", state.next_call_id);
    (StatusCode::ACCEPTED, [("x-call-id", call_id)]).into_response()
}

/// A temporary secrets folder holding `(name, value)` files, as OpenFaaS mounts secrets.
pub fn secrets_dir(secrets: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (name, value) in secrets {
        std::fs::write(dir.path().join(name), value).expect("write a secret file");
    }
    dir
}

/// A function's `CommonConfig` for tests: this gateway, no audit, the given payload secret.
pub fn common_config(gateway: &RecordingGateway, payload_secret: &str) -> shared::config::CommonConfig {
    shared::config::CommonConfig {
        gateway_url: gateway.url().parse().expect("a URL"),
        audit_url: None,
        payload_secret: shared::config::Secret::new(payload_secret),
    }
}

/// A function labelled as deployed from `owner/repo` by OpenFaaS Cloud (or not, with `cloud` false).
pub fn labelled_function(name: &str, owner: &str, repo: &str, cloud: bool) -> FunctionStatus {
    let mut labels = BTreeMap::from([
        ("Git-Owner".to_owned(), owner.to_owned()),
        ("Git-Repo".to_owned(), repo.to_owned()),
        ("Git-SHA".to_owned(), "6113728f27ae82c7b1a177c8d03f9e96e0adf246".to_owned()),
        ("Git-DeployTime".to_owned(), "1763645000".to_owned()),
    ]);
    if cloud {
        labels.insert("Git-Cloud".to_owned(), "1".to_owned());
    }
    FunctionStatus {
        name: name.to_owned(),
        image: format!("registry:5000/{owner}/{name}@sha256:00"),
        labels: Some(labels),
        replicas: 1,
        available_replicas: 1,
        invocation_count: 3.0,
        ..FunctionStatus::default()
    }
}
