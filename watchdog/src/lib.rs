//! `ofc-watchdog`: what OpenFaaS's of-watchdog is to a function image, for images built FROM scratch on the local
//! stack (no image can be pulled there). `ofc up` puts it in the base image `localhost/ofc/watchdog:latest`.
//!
//! # Layout
//! - [`WatchdogConfig`]: read once from the environment, with of-watchdog's names (`port`, `mode`,
//!   `static_path`, `fprocess`, `exec_timeout`, `content_type`, `max_body_bytes`).
//! - `http`: just enough HTTP/1.1 (keep-alive, chunked request bodies).
//! - [`serve`]: a thread per connection; `GET /_/health` answers OK; every other request goes to the mode:
//!   `static` serves the files under `static_path`, `serializing` runs `fprocess` once per request with the body
//!   on stdin and answers its stdout, as OpenFaaS's classic watchdog does.
//! - [`Shutdown`]: SIGTERM or SIGINT stops accepting, lets in-flight requests finish (at most `exec_timeout`),
//!   kills what still runs and exits 0. As a container's PID 1 a signal without a handler is ignored, so without
//!   this the runtime waited its kill timeout on every update.

mod http;

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use http::{read_request, write_response, Request, Response};

/// Everything that can go wrong with a request or the configuration.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("{name} is malformed: {reason}")]
    Config { name: &'static str, reason: String },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the watchdog does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Serve the files under this folder (`index.html` for a folder).
    Static { root: PathBuf },
    /// Run this command once per request.
    Serializing { argv: Vec<String> },
}

/// The watchdog's settings.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    pub port: u16,
    pub mode: Mode,
    /// How long one run of `fprocess` may take.
    pub exec_timeout: Duration,
    /// `Content-Type` of `fprocess` answers.
    pub content_type: String,
    pub max_body_bytes: usize,
}

/// `10s`, `1m30s`, `500ms` (Go's duration syntax, as of-watchdog takes) or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds >= 0.0 && seconds.is_finite()).then(|| Duration::from_secs_f64(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += Duration::from_secs_f64(number * scale);
    }
    (!text.is_empty()).then_some(total)
}

impl WatchdogConfig {
    /// Reads the settings from `lookup` (the environment in the binary).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, WatchdogError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let port = match get("port") {
            None => 8080,
            Some(port) => port.parse().map_err(|_| WatchdogError::Config {
                name: "port",
                reason: format!("`{port}` is not a port number"),
            })?,
        };
        let fprocess = get("fprocess");
        let mode = match (get("mode").as_deref(), fprocess) {
            (Some("static"), _) | (None, None) => Mode::Static {
                root: PathBuf::from(get("static_path").unwrap_or_else(|| "/home/app/public".to_owned())),
            },
            (Some("serializing" | "streaming" | "http") | None, Some(fprocess)) => {
                let argv: Vec<String> = fprocess.split_whitespace().map(str::to_owned).collect();
                Mode::Serializing { argv }
            }
            (Some("serializing" | "streaming" | "http"), None) => {
                return Err(WatchdogError::Config {
                    name: "fprocess",
                    reason: "it must name the command to run in this mode".into(),
                })
            }
            (Some(other), _) => {
                return Err(WatchdogError::Config {
                    name: "mode",
                    reason: format!("`{other}` is not one of static, serializing"),
                })
            }
        };
        let exec_timeout = match get("exec_timeout") {
            None => Duration::from_secs(10),
            Some(text) => parse_duration(&text).ok_or(WatchdogError::Config {
                name: "exec_timeout",
                reason: format!("`{text}` is not a duration such as 10s"),
            })?,
        };
        let max_body_bytes = match get("max_body_bytes") {
            None => 32 * 1024 * 1024,
            Some(text) => text.parse().map_err(|_| WatchdogError::Config {
                name: "max_body_bytes",
                reason: format!("`{text}` is not a number of bytes"),
            })?,
        };
        Ok(Self {
            port,
            mode,
            exec_timeout,
            content_type: get("content_type").unwrap_or_else(|| "text/plain; charset=utf-8".to_owned()),
            max_body_bytes,
        })
    }
}

/// How long in-flight requests get after the last one could have started: the answer's writing.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);
/// How long killed `fprocess` runs get to be reaped and answered before the process exits anyway.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// The state a stop signal changes, shared by the accept loop, the connections and the signal thread.
#[derive(Debug, Default)]
pub struct Shutdown {
    /// A signal came: accept nothing more, close connections after their current answer.
    stopping: AtomicBool,
    /// The drain's time is up: kill every `fprocess` still running.
    abort: AtomicBool,
    /// Requests read and not yet answered.
    in_flight: AtomicUsize,
}

impl Shutdown {
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Requests read and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Marks the stop and wakes a blocked `accept` by shutting the listening socket down (`listener` is a clone of
    /// the accept loop's), which also refuses new connections. A connection to the listener's own address would
    /// not do: faasd removes the container's network before it signals, and its loopback is down.
    pub fn stop(&self, listener: &TcpListener) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Err(error) = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Both) {
            eprintln!("ofc-watchdog: the listener could not be shut down ({error}); waking it by connecting");
            if let Ok(wake) = wake_address(listener) {
                let _ = TcpStream::connect_timeout(&wake, Duration::from_millis(500));
            }
        }
    }

    /// Waits until no request is in flight or `within` has passed, then kills what still runs and gives it
    /// [`ABORT_GRACE`] to answer. True when every request finished by itself.
    pub fn drain(&self, within: Duration) -> bool {
        let drained = self.wait_idle(within);
        if !drained {
            self.abort.store(true, Ordering::SeqCst);
            self.wait_idle(ABORT_GRACE);
        }
        drained
    }

    fn wait_idle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.in_flight() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
}

/// Counts one request in flight for as long as it lives.
struct InFlight<'a>(&'a Shutdown);

impl<'a> InFlight<'a> {
    fn new(shutdown: &'a Shutdown) -> Self {
        shutdown.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(shutdown)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The address that reaches `listener` from this host: its own, with an unspecified IP made loopback.
pub fn wake_address(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    let mut address = listener.local_addr()?;
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => address.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => address.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    Ok(address)
}

/// Starts the thread that turns SIGTERM and SIGINT into [`Shutdown::stop`] of `listener` (a clone of the accept
/// loop's). Should the accept loop not notice, the thread ends the process itself once `drain_bound` and the grace
/// are over.
pub fn stop_on_signals(shutdown: &Arc<Shutdown>, listener: TcpListener, drain_bound: Duration) -> std::io::Result<()> {
    let (mut receiver, sender) = UnixStream::pair()?;
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(signal, sender.try_clone()?)?;
    }
    let shutdown = Arc::clone(shutdown);
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while !matches!(receiver.read(&mut byte), Ok(1)) {
            // Interrupted reads retry; a closed pipe cannot happen while `sender` is registered.
        }
        eprintln!("ofc-watchdog: stop signal: draining {} in-flight request(s)", shutdown.in_flight());
        shutdown.stop(&listener);
        std::thread::sleep(drain_bound + ABORT_GRACE + Duration::from_secs(1));
        eprintln!("ofc-watchdog: the accept loop did not stop; exiting");
        std::process::exit(0);
    });
    Ok(())
}

/// How long a stop waits for in-flight requests: the longest one may run, and its answer's writing.
pub fn drain_bound(config: &WatchdogConfig) -> Duration {
    config.exec_timeout + DRAIN_MARGIN
}

/// Accepts connections until [`Shutdown::stop`]; then returns at once (the caller drops the listener, so nothing
/// new connects, and [`Shutdown::drain`]s).
pub fn serve(listener: &TcpListener, config: &WatchdogConfig, shutdown: &Arc<Shutdown>) {
    for stream in listener.incoming() {
        if shutdown.is_stopping() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let config = config.clone();
        let shutdown = Arc::clone(shutdown);
        std::thread::spawn(move || {
            if let Err(error) = connection(stream, &config, &shutdown) {
                eprintln!("ofc-watchdog: connection: {error}");
            }
        });
    }
}

fn connection(stream: TcpStream, config: &WatchdogConfig, shutdown: &Shutdown) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, config.max_body_bytes) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(WatchdogError::Io(error)) => return Err(error),
            Err(error) => {
                let status = if matches!(error, WatchdogError::TooLarge(_)) { 413 } else { 400 };
                return write_response(&mut writer, &Response::text(status, error.to_string()), false, true);
            }
        };
        let _in_flight = InFlight::new(shutdown);
        let started = Instant::now();
        let response = handle_until(&request, config, shutdown);
        eprintln!(
            "ofc-watchdog: {} {} {} {:.3}s",
            request.method,
            request.path(),
            response.status,
            started.elapsed().as_secs_f64()
        );
        // Once stopping, the connection closes after this answer so the client goes elsewhere.
        let close = request.close || shutdown.is_stopping();
        write_response(&mut writer, &response, request.method == "HEAD", close)?;
        if close {
            return Ok(());
        }
    }
}

/// Answers one request.
pub fn handle(request: &Request, config: &WatchdogConfig) -> Response {
    handle_until(request, config, &Shutdown::default())
}

/// Answers one request; an `fprocess` run still going when `shutdown` aborts is killed.
fn handle_until(request: &Request, config: &WatchdogConfig, shutdown: &Shutdown) -> Response {
    if request.path() == "/_/health" {
        return Response::text(200, "OK");
    }
    match &config.mode {
        Mode::Static { root } => serve_file(request, root),
        Mode::Serializing { argv } => run_process(request, argv, config, shutdown),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn serve_file(request: &Request, root: &Path) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, format!("{} is not served here: this function serves files", request.method));
    }
    let Some(decoded) = percent_decode(request.path()) else {
        return Response::text(400, "the path is not valid percent-encoded UTF-8");
    };
    let relative = Path::new(decoded.trim_start_matches('/'));
    // Only plain names: nothing outside the folder is reachable.
    if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Response::text(404, "not found");
    }
    let mut path = root.join(relative);
    if path.is_dir() {
        path = path.join("index.html");
    }
    match std::fs::read(&path) {
        Ok(body) => Response::new(200, content_type(&path), body),
        Err(_) => Response::text(404, "not found"),
    }
}

/// `x-forwarded-for` → `X-Forwarded-For`, the form the classic watchdog (Go's `net/http`) names headers in.
fn canonical_header(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
            upper = c == '-';
            out
        })
        .collect()
}

/// The classic watchdog's environment: `Http_Method`, `Http_Path`, `Http_Query` and one `Http_<Header>` per header.
fn request_env(request: &Request) -> Vec<(String, String)> {
    let mut env = vec![
        ("Http_Method".to_owned(), request.method.clone()),
        ("Http_Path".to_owned(), request.path().to_owned()),
        ("Http_Query".to_owned(), request.query().to_owned()),
    ];
    for (name, value) in &request.headers {
        env.push((format!("Http_{}", canonical_header(name).replace('-', "_")), value.clone()));
    }
    env
}

fn run_process(request: &Request, argv: &[String], config: &WatchdogConfig, shutdown: &Shutdown) -> Response {
    let Some((program, args)) = argv.split_first() else {
        return Response::text(500, "fprocess is empty");
    };
    let spawned = Command::new(program)
        .args(args)
        .envs(request_env(request))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return Response::text(500, format!("fprocess `{program}` could not start: {error}")),
    };
    let stdin = child.stdin.take();
    let body = request.body.clone();
    // Feeding stdin while stdout is read keeps a large body and a large answer from blocking each other.
    let feeder = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&body);
        }
    });
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.read_to_end(&mut buffer);
        }
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut buffer);
        }
        buffer
    });
    let deadline = Instant::now() + config.exec_timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline || shutdown.aborted() => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(error) => return Response::text(500, format!("fprocess could not be waited for: {error}")),
        }
    };
    let _ = feeder.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        None if shutdown.aborted() => Response::text(503, "the function is stopping: fprocess was ended"),
        None => Response::text(504, format!("fprocess took longer than exec_timeout ({:?})", config.exec_timeout)),
        Some(status) if status.success() => Response::new(200, &config.content_type, stdout),
        Some(status) => {
            Response::text(500, format!("fprocess failed ({status}): {}", String::from_utf8_lossy(&stderr).trim()))
        }
    }
}
