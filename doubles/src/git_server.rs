//! Serves local git repositories over HTTP with `git http-backend` (git's own smart-HTTP server, run as CGI), so
//! git-tar clones from the local stack exactly as it clones from GitHub.
//!
//! Repositories live under one root as `<owner>/<name>.git`; their clone URL is
//! `http://127.0.0.1:<port>/<owner>/<name>.git`. Fetching any SHA is allowed, as GitHub allows fetching a pushed SHA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::io::AsyncWriteExt;

/// The largest request a git client sends when fetching (its wants and haves).
const MAX_REQUEST_BYTES: usize = 64 << 20;

#[derive(Clone)]
struct ServerState {
    root: PathBuf,
}

/// The router serving every repository under `root`.
pub fn router(root: PathBuf) -> Router {
    Router::new().fallback(serve_git).with_state(ServerState { root })
}

/// A git server on `127.0.0.1:<random port>`; stops when dropped.
pub struct GitServer {
    address: SocketAddr,
    root: PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl GitServer {
    /// Serves the repositories under `root`.
    pub async fn start(root: &Path) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, root)
    }

    /// Serves on an already bound listener.
    pub fn serve(listener: tokio::net::TcpListener, root: &Path) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(root.to_owned());
        tokio::spawn(async move {
            let _ = shared::server::serve(listener, app, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Self { address, root: root.to_owned(), _stop: stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// The clone URL of `<owner>/<name>.git`.
    pub fn clone_url(&self, owner: &str, name: &str) -> String {
        format!("http://{}/{owner}/{name}.git", self.address)
    }

    /// Where `<owner>/<name>.git` lives on disk.
    pub fn repository_path(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join(owner).join(format!("{name}.git"))
    }
}

async fn serve_git(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().to_owned();
    if path.split('/').any(|part| part == "..") {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    };
    match run_backend(&state.root, &method, &path, uri.query().unwrap_or(""), &headers, body).await {
        Ok(response) => response,
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("git http-backend failed: {error}")).into_response(),
    }
}

async fn run_backend(
    root: &Path,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> std::io::Result<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // Fetching an exact pushed SHA, shallowly, as clients of GitHub do.
        .env("GIT_CONFIG_COUNT", "3")
        .env("GIT_CONFIG_KEY_0", "uploadpack.allowAnySHA1InWant")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "uploadpack.allowReachableSHA1InWant")
        .env("GIT_CONFIG_VALUE_1", "true")
        .env("GIT_CONFIG_KEY_2", "safe.directory")
        .env("GIT_CONFIG_VALUE_2", "*")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if !header("git-protocol").is_empty() {
        command.env("GIT_PROTOCOL", header("git-protocol"));
    }
    if !header("content-encoding").is_empty() {
        command.env("HTTP_CONTENT_ENCODING", header("content-encoding"));
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await?;
    let _ = writer.await;
    Ok(cgi_response(&output.stdout))
}

/// Turns CGI output (headers, a blank line, the body) into an HTTP response.
fn cgi_response(output: &[u8]) -> Response {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return (StatusCode::BAD_GATEWAY, "git http-backend gave no headers").into_response();
    };
    let head = String::from_utf8_lossy(&output[..end]);
    let mut response = Response::new(Body::from(output[end + gap..].to_vec()));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(name.trim()), axum::http::HeaderValue::try_from(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}
