//! The function runtime every binary shares: port, `/_/health`, timeouts, body limit, graceful shutdown, tracing.
//!
//! A function builds its own `Router` of handlers (`app(config)`), then [`run`]s it: tests bind `127.0.0.1:0` and pass
//! the listener and a shutdown future in; a binary's `main` is one call to [`run_function`], which binds
//! `$bind_address:$port` (default `0.0.0.0`) and waits for SIGTERM. Every listener of the stack (the embedded gateway's too) is served by
//! [`serve_with_limits`], which bounds what idle and slow clients can hold (see `connections`).

mod connections;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use self::connections::{
    serve_with_limits, BodyTimedOut, ConnectionLimits, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
};
use crate::config::{bytes_or, duration_or, env_string, u64_or, ConfigError};

/// Request bodies most functions accept (DESIGN section 3).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 << 20;
/// What git-tar and buildshiprun accept: build contexts are large.
pub const BUILD_MAX_BODY_BYTES: u64 = 512 << 20;

/// The runtime settings OpenFaaS passes every function through its environment.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `bind_address`, default `0.0.0.0` (a function container); the local stack binds `127.0.0.1`, so nothing on
    /// the machine's other interfaces reaches a function past the gateway.
    pub bind_address: std::net::IpAddr,
    /// `port`, default 8080.
    pub port: u16,
    /// `read_timeout`: how long the whole request body may take to arrive after its headers (then 408).
    pub read_timeout: Duration,
    /// `read_header_timeout`, default 10 s: how long a client may take to send a request's headers, and how long a
    /// keep-alive connection may stay idle, before it is closed.
    pub read_header_timeout: Duration,
    /// `max_connections`, default 1024: connections open at once; a new one beyond closes the oldest idle one.
    pub max_connections: usize,
    /// `write_timeout`: how long the whole answer may take.
    pub write_timeout: Duration,
    /// `exec_timeout`: how long the handler may run; the shorter of this and `write_timeout` applies.
    pub exec_timeout: Duration,
    /// `max_body_bytes`: larger bodies get 413.
    pub max_body_bytes: u64,
}

impl ServerConfig {
    /// Reads `port`, the three timeouts (default 10 s) and `max_body_bytes`.
    pub fn from_env(default_max_body_bytes: u64) -> Result<Self, ConfigError> {
        Self::from_env_with_timeout(default_max_body_bytes, Duration::from_secs(10))
    }

    /// Like [`from_env`](Self::from_env) with another default timeout (builds take minutes).
    pub fn from_env_with_timeout(default_max_body_bytes: u64, default_timeout: Duration) -> Result<Self, ConfigError> {
        let port = match env_string("port") {
            None => 8080,
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: "port".into(),
                reason: format!("`{v}` is not a port number"),
            })?,
        };
        let bind_address = match env_string("bind_address") {
            None => Ipv4Addr::UNSPECIFIED.into(),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: "bind_address".into(),
                reason: format!("`{v}` is not an IP address"),
            })?,
        };
        Ok(Self {
            bind_address,
            port,
            read_timeout: duration_or("read_timeout", default_timeout)?,
            read_header_timeout: duration_or("read_header_timeout", DEFAULT_HEADER_TIMEOUT)?,
            max_connections: max_connections()?,
            write_timeout: duration_or("write_timeout", default_timeout)?,
            exec_timeout: duration_or("exec_timeout", default_timeout)?,
            max_body_bytes: bytes_or("max_body_bytes", default_max_body_bytes)?,
        })
    }

    /// Settings for tests: generous timeouts and the given body limit.
    pub fn for_tests(max_body_bytes: u64) -> Self {
        Self {
            bind_address: Ipv4Addr::LOCALHOST.into(),
            port: 0,
            read_timeout: Duration::from_secs(60),
            read_header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            write_timeout: Duration::from_secs(300),
            exec_timeout: Duration::from_secs(300),
            max_body_bytes,
        }
    }

    /// How long a handler may run: a zero timeout means "no limit", as with the OpenFaaS watchdog. Past it the
    /// answer is 504, so a handler that waits (github-status on GitHub's rate limits) keeps within it.
    pub fn handler_timeout(&self) -> Option<Duration> {
        [self.write_timeout, self.exec_timeout].into_iter().filter(|d| !d.is_zero()).min()
    }

    /// The bounds on this function's connections.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: self.read_header_timeout,
            body_timeout: self.read_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// `max_connections`: a positive count.
fn max_connections() -> Result<usize, ConfigError> {
    match u64_or("max_connections", DEFAULT_MAX_CONNECTIONS as u64)? {
        0 => Err(ConfigError::Invalid { name: "max_connections".into(), reason: "must be at least 1".into() }),
        n => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// What a function's configuration gives the runtime: its [`ServerConfig`], read with the rest at start.
pub trait FunctionConfig {
    fn server(&self) -> &ServerConfig;
}

/// Why a function binary stopped before or while serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is missing or invalid; the message names it.
    #[error("{function} cannot start: {source}")]
    Config { function: &'static str, source: ConfigError },
    #[error("{function} cannot listen on port {port}: {source}")]
    Bind { function: &'static str, port: u16, source: std::io::Error },
    #[error("{function}'s server failed: {source}")]
    Serve { function: &'static str, source: std::io::Error },
}

/// A function binary's whole `main`: tracing, configuration (a bad value stops the start, named), the port, then
/// serving `app` with the runtime's layers until SIGTERM, draining in-flight requests. The exit code is non-zero
/// when the start or the server failed; the reason is on stderr.
pub async fn run_function<C: FunctionConfig>(
    function: &'static str,
    load: impl FnOnce() -> Result<C, ConfigError>,
    app: impl FnOnce(C) -> Router,
) -> ExitCode {
    init_tracing();
    match start(function, load, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "stopped");
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn start<C: FunctionConfig>(
    function: &'static str,
    load: impl FnOnce() -> Result<C, ConfigError>,
    app: impl FnOnce(C) -> Router,
) -> Result<(), StartError> {
    let config = load().map_err(|source| StartError::Config { function, source })?;
    let server = config.server().clone();
    let listener = bind(&server).await.map_err(|source| StartError::Bind { function, port: server.port, source })?;
    tracing::info!(port = server.port, "{function} listening");
    run(listener, &server, app(config), shutdown_signal())
        .await
        .map_err(|source| StartError::Serve { function, source })
}

/// Serves a function's handlers with the runtime's routes and limits on an already bound `listener` until
/// `shutdown` completes: what [`run_function`] does after binding, and what tests call with `127.0.0.1:0`.
pub async fn run(
    listener: TcpListener,
    config: &ServerConfig,
    handlers: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, with_runtime(handlers, config), config.limits(), shutdown).await
}

/// Adds the runtime's routes and limits around a function's handlers.
pub fn with_runtime(handlers: Router, config: &ServerConfig) -> Router {
    let limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    // The body's deadline (`read_timeout`) is the connection's: see `serve_with_limits`.
    let mut app = handlers
        .route("/_/health", get(|| async { "OK" }))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit));
    if let Some(timeout) = config.handler_timeout() {
        app = app.layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, timeout));
    }
    app.layer(TraceLayer::new_for_http())
}

/// Binds `<bind_address>:<port>`: every interface in a function container, loopback in the local stack.
pub async fn bind(config: &ServerConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((config.bind_address, config.port))).await
}

/// Serves `app` on `listener` with the default [`ConnectionLimits`] until `shutdown` completes, then drains
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, app, ConnectionLimits::default(), shutdown).await
}

/// Completes on SIGTERM (what OpenFaaS sends to stop a function) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// One log line per event on stderr; `RUST_LOG` overrides the default `info` level. Colours only on a terminal:
/// journald keeps a line with escape codes as bytes, which faasd's log reader (`faas-cli logs`) cannot decode.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    // `log_format=json`: one JSON object a line, for log collectors (and the benchmark, which reads timings).
    let _ = if std::env::var("log_format").is_ok_and(|f| f == "json") {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
