//! A real registry on a loopback port (Debian's `docker-registry`, the open-source distribution registry), and a
//! small reader of its HTTP API, so tests and the local stack can check what was pushed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The registry's configuration, kept in the repository (`doubles/registry.yml`).
pub const CONFIG: &str = include_str!("../registry.yml");

/// The accepted manifest types: OCI and Docker v2, single images and indexes.
const MANIFEST_TYPES: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Why the registry could not be started or read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`docker-registry` is not installed: install it with `apt-get install docker-registry` ({0})")]
    Missing(String),
    #[error("the registry did not start on {address}: {reason}")]
    NotStarted { address: String, reason: String },
    #[error("the registry answered {status} for {what}")]
    Status { what: String, status: u16 },
    #[error("the registry could not be reached: {0}")]
    Http(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Makes `command` (`docker-registry`, or a launcher followed by it) serve a registry on `address` storing into
/// `storage_dir`, with [`CONFIG`]; its stderr is left to the caller. For a caller that runs the process itself (the
/// local stack supervises it); [`RegistryProcess`] runs it for tests.
pub fn serve_command(
    command: &mut std::process::Command,
    storage_dir: &Path,
    address: SocketAddr,
) -> std::io::Result<()> {
    std::fs::create_dir_all(storage_dir)?;
    let config_path = storage_dir.join("config.yml");
    std::fs::write(&config_path, CONFIG)?;
    command
        .arg("serve")
        .arg(&config_path)
        .env("REGISTRY_HTTP_ADDR", address.to_string())
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", storage_dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(())
}

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its terminating zero).
const MAX_SOCKET_PATH: usize = 107;

/// Like [`serve_command`], but the registry listens only on the unix socket `socket` (a stale one is removed), for
/// the registry gate (`registry_gate`) in front of it.
pub fn serve_command_on_socket(
    command: &mut std::process::Command,
    storage_dir: &Path,
    socket: &Path,
) -> std::io::Result<()> {
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(std::io::Error::other(format!(
            "the registry's socket path {} is longer than {MAX_SOCKET_PATH} bytes: use a shorter state folder",
            socket.display()
        )));
    }
    match std::fs::remove_file(socket) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    serve_command(command, storage_dir, ([127, 0, 0, 1], 0).into())?;
    command.env("REGISTRY_HTTP_NET", "unix").env("REGISTRY_HTTP_ADDR", socket);
    Ok(())
}

/// A running `docker-registry`; stopped when dropped.
pub struct RegistryProcess {
    address: SocketAddr,
    child: std::process::Child,
    /// The one account a registry started with [`RegistryProcess::start_with_credentials`] accepts, or the
    /// builder's account of a gated one.
    credentials: Option<(String, String)>,
    /// The gate in front of a registry started with [`RegistryProcess::start_gated`].
    gate: Option<tokio::task::JoinHandle<()>>,
}

impl RegistryProcess {
    /// Starts a registry storing into `storage_dir` on a free loopback port, and waits until `/v2/` answers.
    pub async fn start(storage_dir: &Path) -> Result<Self, RegistryError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::start_on(storage_dir, ([127, 0, 0, 1], port).into(), None).await
    }

    /// Starts on a given address, logging to `log` when given.
    pub async fn start_on(storage_dir: &Path, address: SocketAddr, log: Option<&Path>) -> Result<Self, RegistryError> {
        let output = match log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        };
        let mut command = std::process::Command::new("docker-registry");
        serve_command(&mut command, storage_dir, address)?;
        Self::spawn(command.stderr(output), address, None).await
    }

    /// Starts a registry that refuses every request without `user` and `password` (htpasswd basic auth, as a
    /// registry an operator runs would): pushing to it needs of-builder's `registry-auth`.
    pub async fn start_with_credentials(storage_dir: &Path, user: &str, password: &str) -> Result<Self, RegistryError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = ([127, 0, 0, 1], port).into();
        let mut command = std::process::Command::new("docker-registry");
        serve_command(&mut command, storage_dir, address)?;
        let hash = bcrypt::hash(password, 4).map_err(|e| RegistryError::Http(format!("bcrypt: {e}")))?;
        let htpasswd = storage_dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
        command
            .env("REGISTRY_AUTH", "htpasswd")
            .env("REGISTRY_AUTH_HTPASSWD_REALM", "openfaas-cloud")
            .env("REGISTRY_AUTH_HTPASSWD_PATH", &htpasswd)
            .stderr(Stdio::null());
        Self::spawn(&mut command, address, Some((user.to_owned(), password.to_owned()))).await
    }

    /// Starts a registry on a unix socket in `storage_dir` behind the registry gate (`registry_gate`) on a free
    /// loopback port, as the local stack runs it: reads open, pushes with `accounts.builder`, deletes with `accounts.operator`.
    /// [`Self::client`] signs in as the builder.
    pub async fn start_gated(storage_dir: &Path, accounts: registry_gate::GateAccounts) -> Result<Self, RegistryError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let socket = storage_dir.join("registry.sock");
        let mut command = std::process::Command::new("docker-registry");
        serve_command_on_socket(&mut command, storage_dir, &socket)?;
        command.stderr(Stdio::null());
        let builder = (accounts.builder.user.clone(), accounts.builder.password.clone());
        let gate = tokio::spawn(async move {
            let upstream = registry_gate::Upstream::Socket(socket);
            if let Err(error) = registry_gate::serve(listener, upstream, accounts, std::future::pending()).await {
                tracing::warn!(%error, "the registry gate stopped");
            }
        });
        match Self::spawn(&mut command, address, Some(builder)).await {
            Ok(mut registry) => {
                registry.gate = Some(gate);
                Ok(registry)
            }
            Err(error) => {
                gate.abort();
                Err(error)
            }
        }
    }

    async fn spawn(
        command: &mut std::process::Command,
        address: SocketAddr,
        credentials: Option<(String, String)>,
    ) -> Result<Self, RegistryError> {
        let child = command.spawn().map_err(|e| RegistryError::Missing(e.to_string()))?;
        let mut registry = Self { address, child, credentials, gate: None };
        let client = registry.client();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if client.ping().await.is_ok() {
                return Ok(registry);
            }
            if let Some(status) = registry.child.try_wait()? {
                return Err(RegistryError::NotStarted {
                    address: address.to_string(),
                    reason: format!("it exited ({status})"),
                });
            }
            if Instant::now() > deadline {
                return Err(RegistryError::NotStarted {
                    address: address.to_string(),
                    reason: "no answer on /v2/ within 15 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:<port>`: the registry part of image names (`repository_url`).
    pub fn host_port(&self) -> String {
        self.address.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of this registry, signed in when it requires credentials.
    pub fn client(&self) -> RegistryClient {
        let client = RegistryClient::new(&self.host_port());
        match &self.credentials {
            Some((user, password)) => client.with_credentials(user, password),
            None => client,
        }
    }

    /// SIGTERM, so it finishes what it is writing; killed (when dropped) if it has not exited within `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = tokio::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().await;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.abort();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `Docker-Content-Digest`: what a deployment pins.
    pub digest: String,
    pub media_type: String,
    pub json: Value,
}

/// Reads the registry's HTTP API (distribution v2).
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    /// Basic-auth credentials, for a registry that requires them.
    credentials: Option<(String, String)>,
}

impl RegistryClient {
    /// `host_port` as in image names, e.g. `127.0.0.1:5000`.
    pub fn new(host_port: &str) -> Self {
        Self { base: format!("http://{host_port}/v2/"), http: reqwest::Client::new(), credentials: None }
    }

    /// The same client, signing in with `user` and `password` (basic auth, as `docker login` does over plain HTTP).
    #[must_use]
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> Result<reqwest::Response, RegistryError> {
        let mut request = self.http.get(format!("{}{path}", self.base)).timeout(Duration::from_secs(10));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| RegistryError::Http(e.to_string()))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(RegistryError::Status { what: path.to_owned(), status: response.status().as_u16() })
        }
    }

    /// `GET /v2/`: whether the registry answers.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        self.get("", None).await.map(drop)
    }

    /// The manifest of `repository` at a tag or digest.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Manifest, RegistryError> {
        let response = self.get(&format!("{repository}/manifests/{reference}"), Some(MANIFEST_TYPES)).await?;
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let media_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let json = response.json().await.map_err(|e| RegistryError::Http(e.to_string()))?;
        Ok(Manifest { digest, media_type, json })
    }

    /// A blob's bytes (a config or a layer).
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<bytes::Bytes, RegistryError> {
        self.get(&format!("{repository}/blobs/{digest}"), None)
            .await?
            .bytes()
            .await
            .map_err(|e| RegistryError::Http(e.to_string()))
    }

    /// The image config (env, labels, cmd, working dir) of `repository:reference`.
    pub async fn image_config(&self, repository: &str, reference: &str) -> Result<Value, RegistryError> {
        let manifest = self.manifest(repository, reference).await?;
        let digest = manifest.json["config"]["digest"].as_str().unwrap_or_default().to_owned();
        let blob = self.blob(repository, &digest).await?;
        serde_json::from_slice(&blob).map_err(|e| RegistryError::Http(format!("the image config is not JSON: {e}")))
    }

    /// The tags of `repository`.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let value: Value = self
            .get(&format!("{repository}/tags/list"), None)
            .await?
            .json()
            .await
            .map_err(|e| RegistryError::Http(e.to_string()))?;
        Ok(value["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }
}
