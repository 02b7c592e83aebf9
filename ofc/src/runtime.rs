//! Runs deployed user functions on this machine with Buildah's chroot isolation (`buildah run`): the one container
//! runtime that works here (podman's and docker's `run` are refused).
//!
//! Each replica runs in a network namespace of its own holding only `lo`: nothing of the platform listening on the
//! host's loopback (the registry, of-builder, the gateway's `/system` API, other replicas) answers it, and a port it
//! binds is its own. The function listens on 127.0.0.1:8080 inside; the gateway reaches it through a bridge: a
//! host-loopback listener whose connections are opened inside the namespace by a thread that entered it.
//!
//! Each replica also runs in cgroups of its own (the deployment's memory and cpu limits, a pids limit), and, when
//! the deployment asks for `readOnlyRootFilesystem`, on a read-only root with a size-limited `/tmp`, as OpenFaaS
//! applies them on Kubernetes. A process killed over the memory limit is logged by `ofc` and in the function's log.
//!
//! Sandboxed (`ofc up`'s default), every Buildah call, the replicas' `buildah run` included, runs as the build user
//! in its own PID namespace with a minimal `/dev` (`shared::sandbox`, the build sandbox's one construction), and
//! without `CAP_SYS_CHROOT`: a running function is the same pushed code a build runs.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use of_builder::storage::StorageDriver;
use serde::Deserialize;
use shared::openfaas::FunctionStatus;
use shared::sandbox::{BuildUser, Confinement, ReadOnlyRoot, DROPPED_CAPABILITY};
use tokio::process::Command;

use crate::process::ChildProcess;

/// Why a replica could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("buildah {step} failed: {message}")]
    Buildah { step: &'static str, message: String },
    #[error("image {0} has neither an entrypoint nor a command to run")]
    NoCommand(String),
    #[error("secret {name} does not exist: write it to {path}")]
    MissingSecret { name: String, path: String },
    #[error("the function exited ({status}) before it listened on its port: {log}")]
    Exited { status: String, log: String },
    #[error("the function did not answer on its port within {seconds} s: {log}")]
    NotReady { seconds: u64, log: String },
    #[error("limits.{what} `{value}` is not {expected}")]
    Limit { what: &'static str, value: String, expected: &'static str },
    #[error("the replica's cgroup {path} cannot be set up: {message}")]
    Cgroup { path: String, message: String },
    #[error("a read-only root needs {path} in the image to be a real folder or file: it {why}")]
    ReadOnlyRoot { path: String, why: String },
    #[error("the replica's network: {0}")]
    Network(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The port the function listens on inside its own network namespace (the watchdog's default).
const FUNCTION_PORT: u16 = 8080;

/// Where a replica reaches the gateway's function routes inside its namespace (OpenFaaS's usual gateway port).
pub const GATEWAY_URL_IN_REPLICA: &str = "http://127.0.0.1:31112/";
const GATEWAY_PORT_IN_REPLICA: u16 = 31112;

/// Where and how replicas run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Buildah's storage for pulled images and replicas' containers (the builder's is separate, as a cluster's is).
    pub root: PathBuf,
    /// One `function-<name>.log` per function.
    pub logs: PathBuf,
    /// Where the secrets named by deployments are read from (OpenFaaS's `faas-cli secret create`).
    pub secrets: PathBuf,
    /// Pull from plain-HTTP registries (the local one).
    pub insecure_registry: bool,
    /// How long a replica may take to listen.
    pub start_timeout: Duration,
    /// Run replicas sandboxed as this user; `None` runs them as root (`ofc up --sandbox none`).
    pub sandbox: Option<Sandbox>,
}

/// Who sandboxed Buildah calls run as, and the empty folder each sandbox assembles its `/dev` in (root's, outside
/// the user's storage, so the user cannot swap it for a link).
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub user: BuildUser,
    pub dev: PathBuf,
}

impl Sandbox {
    /// Creates the `/dev` folder (root's, 0700).
    pub fn new(user: BuildUser, dev: PathBuf) -> std::io::Result<Self> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dev)?;
        Ok(Self { user, dev })
    }
}

/// One Buildah storage: `root/storage` and `root/run`, used as root or, sandboxed, as the build user. vfs unless
/// [`BuildahStorage::on_driver`] says otherwise: the replicas' storage stays vfs (see [`container_root`]).
#[derive(Debug, Clone)]
pub struct BuildahStorage {
    pub root: PathBuf,
    pub sandbox: Option<Sandbox>,
    pub driver: StorageDriver,
}

impl BuildahStorage {
    /// Root's storage at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), sandbox: None, driver: StorageDriver::Vfs }
    }

    /// The build user's storage at `root`, created for it (or checked to be its own).
    pub fn sandboxed(root: impl Into<PathBuf>, sandbox: Sandbox) -> std::io::Result<Self> {
        let root = root.into();
        sandbox.user.prepare_storage(&root)?;
        Ok(Self { root, sandbox: Some(sandbox), driver: StorageDriver::Vfs })
    }

    /// The same storage on `driver` (of-builder's, whose driver is chosen at start); `root` must be that driver's
    /// own folder, as containers/storage refuses one written by another driver.
    #[must_use]
    pub fn on_driver(self, driver: StorageDriver) -> Self {
        Self { driver, ..self }
    }

    /// `buildah` on this storage, for a step awaited to its end.
    pub fn command(&self) -> Command {
        let program = match &self.sandbox {
            Some(sandbox) => sandbox.user.command(&sandbox.dev, "buildah"),
            None => std::process::Command::new("buildah"),
        };
        let mut command = Command::from(self.on_storage(program));
        command.kill_on_drop(true);
        command
    }

    /// `buildah` on this storage within `confinement`, run so that it dies with `ofc` (for `buildah run`, which
    /// lasts): `unshare` has the parent-death signal and the namespace's first process has it from `unshare`.
    fn lasting_command(&self, confinement: &Confinement) -> std::process::Command {
        let (user, dev) = match &self.sandbox {
            Some(sandbox) => (Some(&sandbox.user), Some(sandbox.dev.as_path())),
            None => (None, None),
        };
        let mut command = crate::process::command("unshare");
        command.args(shared::sandbox::unshare_args(user, dev, confinement, "buildah"));
        self.on_storage(command)
    }

    fn on_storage(&self, mut command: std::process::Command) -> std::process::Command {
        command
            .arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .arg("--storage-driver")
            .arg(self.driver.name())
            .stdin(Stdio::null());
        command
    }

    /// Runs `buildah ARGS`; its stdout, or its last line of stderr as the error.
    pub async fn run(&self, step: &'static str, args: &[&str]) -> Result<String, RuntimeError> {
        let output = self
            .command()
            .args(args)
            .output()
            .await
            .map_err(|e| RuntimeError::Buildah { step, message: e.to_string() })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
            return Err(RuntimeError::Buildah { step, message: message.to_owned() });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// The local stack's stand-in for OpenFaaS's of-watchdog image, which templates start FROM.
pub const WATCHDOG_IMAGE: &str = "localhost/ofc/watchdog:latest";
const WATCHDOG_LABEL: &str = "ofc.watchdog.sha256";

/// The shared libraries `binary` loads (`ldd`), so an image FROM scratch can run it; none for a static binary.
async fn linked_libraries(binary: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .await
        .map_err(|e| RuntimeError::Buildah { step: "ldd", message: e.to_string() })?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = line.split_once("=>").map_or(line, |(_, target)| target).trim();
            let path = path.split(" (").next().unwrap_or("").trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Builds [`WATCHDOG_IMAGE`] into the builder's storage from `binary` (`ofc-watchdog`) and the libraries it links,
/// unless the image there was built from the same binary. Mode `static` serving `/home/app/public` by default.
pub async fn build_watchdog_image(builder: &BuildahStorage, binary: &Path) -> Result<bool, RuntimeError> {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(std::fs::read(binary)?));
    let format = format!("{{{{index .OCIv1.Config.Labels \"{WATCHDOG_LABEL}\"}}}}");
    if let Ok(existing) =
        builder.run("inspect", &["inspect", "--type", "image", "--format", &format, WATCHDOG_IMAGE]).await
    {
        if existing == digest {
            return Ok(false);
        }
    }
    let container = format!("ofc-watchdog-build-{}", std::process::id());
    let _ = builder.run("rm", &["rm", &container]).await;
    let mut files = vec![(binary.to_owned(), PathBuf::from("/usr/bin/fwatchdog"))];
    files.extend(linked_libraries(binary).await?.into_iter().map(|l| (l.clone(), l)));
    let (stage, files) = builder.stage(files)?;
    builder.run("from", &["from", "--quiet", "--name", &container, "scratch"]).await?;
    let built = async {
        for (source, target) in &files {
            let (source, target) = (source.display().to_string(), target.display().to_string());
            builder.run("copy", &["copy", "--quiet", &container, &source, &target]).await?;
        }
        let label = format!("{WATCHDOG_LABEL}={digest}");
        builder
            .run(
                "config",
                &[
                    "config",
                    "--cmd",
                    "[\"/usr/bin/fwatchdog\"]",
                    "--env",
                    "mode=static",
                    "--env",
                    "static_path=/home/app/public",
                    "--workingdir",
                    "/home/app",
                    "--port",
                    "8080",
                    "--label",
                    &label,
                    &container,
                ],
            )
            .await?;
        builder.run("commit", &["commit", "--quiet", "--rm", &container, WATCHDOG_IMAGE]).await
    }
    .await;
    if built.is_err() {
        let _ = builder.run("rm", &["rm", &container]).await;
    }
    if let Some(stage) = stage {
        let _ = std::fs::remove_dir_all(stage);
    }
    built.map(|_| true)
}

/// A file to copy into an image: where it is, and where it goes in the image.
type Placed = (PathBuf, PathBuf);

impl BuildahStorage {
    /// Sandboxed, copies `files` (source, place in the image) into a folder of the storage the build user owns,
    /// because the user cannot be assumed to read the workspace's binaries where they are; answers that folder and
    /// the files as Buildah should copy them. Unsandboxed, the files stay where they are.
    fn stage(&self, files: Vec<Placed>) -> Result<(Option<PathBuf>, Vec<Placed>), RuntimeError> {
        let Some(sandbox) = &self.sandbox else { return Ok((None, files)) };
        let stage = self.root.join(format!("stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir(&stage)?;
        let mut staged = Vec::new();
        for (index, (source, target)) in files.into_iter().enumerate() {
            let copy = stage.join(index.to_string());
            std::fs::copy(&source, &copy)?;
            staged.push((copy, target));
        }
        sandbox.user.give(&stage)?;
        Ok((Some(stage), staged))
    }
}

/// Starts and stops replicas.
#[derive(Debug)]
pub struct FunctionRuntime {
    config: RuntimeConfig,
    storage: BuildahStorage,
    limits: ReplicaLimits,
    /// The gateway's base URL on the host, whose public function routes each replica reaches at its `gateway_url`.
    gateway: std::sync::OnceLock<String>,
    /// Makes container names unique within this run.
    next: AtomicU64,
}

/// One running replica of a function.
#[derive(Debug)]
pub struct Replica {
    /// The bridge's port on the host's loopback, through which the gateway reaches the function.
    pub port: u16,
    container: String,
    /// `buildah run`, leading the process group of the function it runs.
    process: ChildProcess,
    bridge: ReplicaBridge,
    cgroups: Arc<ReplicaCgroups>,
    memory_watch: tokio::task::JoinHandle<()>,
}

/// The part of `buildah inspect` that says how to start a container.
#[derive(Debug, Deserialize)]
struct Inspected {
    #[serde(rename = "OCIv1")]
    oci: OciImage,
}

#[derive(Debug, Deserialize)]
struct OciImage {
    #[serde(default)]
    config: OciConfig,
}

#[derive(Debug, Default, Deserialize)]
struct OciConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
}

/// How a replica's container is run: what `buildah run` is given besides the walls.
struct Launch {
    env: BTreeMap<String, String>,
    secrets: Vec<String>,
    working_dir: Option<String>,
    argv: Vec<String>,
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "(no output)".to_owned()
    } else {
        tail
    }
}

impl FunctionRuntime {
    pub fn new(config: RuntimeConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.logs)?;
        let storage = if let Some(sandbox) = &config.sandbox {
            BuildahStorage::sandboxed(&config.root, sandbox.clone())?
        } else {
            std::fs::create_dir_all(&config.root)?;
            BuildahStorage::new(&config.root)
        };
        Ok(Self {
            storage,
            config,
            limits: ReplicaLimits::default(),
            gateway: std::sync::OnceLock::new(),
            next: AtomicU64::new(0),
        })
    }

    /// Gives replicas started from now on the gateway at `base_url` (`http://127.0.0.1:PORT/`): its `/function/`
    /// and `/async-function/` routes, and nothing else of it, answer inside each replica's namespace at
    /// [`GATEWAY_URL_IN_REPLICA`], which the function's `gateway_url` names. Set once; later calls are ignored.
    pub fn set_gateway(&self, base_url: &str) {
        let _ = self.gateway.set(format!("{}/", base_url.trim_end_matches('/')));
    }

    /// The same runtime with other replica limits than [`ReplicaLimits::default`].
    #[must_use]
    pub fn with_limits(mut self, limits: ReplicaLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Where a sandboxed replica's secrets are copied: the root's secrets are root's alone (0600), so each replica
    /// gets its own copies, the build user's, removed with the replica.
    fn secrets_copy(&self, container: &str) -> PathBuf {
        self.config.root.join("secrets").join(container)
    }

    /// The host path to mount secret `name` from: the secrets folder's file, or sandboxed, a copy the build user
    /// may read (0400, in a 0700 folder of its own).
    fn secret_source(&self, container: &str, name: &str) -> Result<PathBuf, RuntimeError> {
        let path = self.config.secrets.join(name);
        if !path.is_file() || name.contains('/') {
            return Err(RuntimeError::MissingSecret { name: name.to_owned(), path: path.display().to_string() });
        }
        let Some(sandbox) = &self.config.sandbox else { return Ok(path) };
        let folder = self.secrets_copy(container);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder)?;
        let copy = folder.join(name);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&copy)?;
        std::io::Write::write_all(&mut file, &std::fs::read(&path)?)?;
        // The folder above is created by root too: the user must pass through it.
        sandbox.user.give(&self.config.root.join("secrets"))?;
        Ok(copy)
    }

    /// Removes a container and, sandboxed, its secrets' copies.
    async fn remove(&self, container: &str) -> Result<String, RuntimeError> {
        if self.config.sandbox.is_some() {
            let _ = std::fs::remove_dir_all(self.secrets_copy(container));
        }
        self.run_buildah("rm", &["rm", container]).await
    }

    async fn run_buildah(&self, step: &'static str, args: &[&str]) -> Result<String, RuntimeError> {
        self.storage.run(step, args).await
    }

    /// Containers left by a run that was killed: this storage is the stack's own, so all of them.
    pub async fn remove_leftovers(&self) {
        if let Err(error) = self.run_buildah("rm", &["rm", "--all"]).await {
            tracing::warn!(%error, "could not remove containers left by an earlier run");
        }
        if self.config.sandbox.is_some() {
            let _ = std::fs::remove_dir_all(self.config.root.join("secrets"));
        }
        remove_leftover_cgroups(&self.limits.cgroup_root);
    }

    /// Pulls the function's image, starts it, and waits until it answers on its port.
    pub async fn start(&self, function: &FunctionStatus) -> Result<Replica, RuntimeError> {
        let started = Instant::now();
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let container = format!("ofc-{}-{}-{sequence}", function.name, std::process::id());
        let tls = format!("--tls-verify={}", !self.config.insecure_registry);
        self.run_buildah("from", &["from", "--quiet", &tls, "--name", &container, &function.image]).await?;
        match self.run_container(function, &container).await {
            Ok(replica) => {
                tracing::info!(function = %function.name, port = replica.port, seconds = started.elapsed().as_secs_f64(), "replica started");
                Ok(replica)
            }
            Err(error) => {
                let _ = self.remove(&container).await;
                Err(error)
            }
        }
    }

    async fn run_container(&self, function: &FunctionStatus, container: &str) -> Result<Replica, RuntimeError> {
        let inspected = self.run_buildah("inspect", &["inspect", "--type", "container", container]).await?;
        let inspected: Inspected = serde_json::from_str(&inspected)
            .map_err(|e| RuntimeError::Buildah { step: "inspect", message: e.to_string() })?;
        let config = inspected.oci.config;
        let argv: Vec<String> =
            config.entrypoint.unwrap_or_default().into_iter().chain(config.cmd.unwrap_or_default()).collect();
        if argv.is_empty() {
            return Err(RuntimeError::NoCommand(function.image.clone()));
        }
        let mut env: BTreeMap<String, String> = function.env_vars.clone().unwrap_or_default();
        if let Some(process) = function.env_process.as_ref().filter(|p| !p.is_empty()) {
            env.insert("fprocess".into(), process.clone());
        }
        env.insert("port".into(), FUNCTION_PORT.to_string());
        env.insert("bind_address".into(), "127.0.0.1".into());
        if self.gateway.get().is_some() {
            env.entry("gateway_url".into()).or_insert_with(|| GATEWAY_URL_IN_REPLICA.to_owned());
        }
        let launch = Launch {
            env,
            secrets: function.secrets.clone().unwrap_or_default(),
            working_dir: config.working_dir.filter(|d| !d.is_empty()),
            argv,
        };
        let cgroups = Arc::new(ReplicaCgroups::create(&self.limits, container, function)?);
        let started = self.spawn_confined(function, container, &launch, &cgroups).await;
        let (process, log_path, log) = match started {
            Ok(started) => started,
            Err(error) => {
                cgroups.remove().await;
                return Err(error);
            }
        };
        let bridge = match self.connect(process.id()).await {
            Ok(bridge) => bridge,
            Err(error) => {
                let mut process = process;
                process.stop(Duration::from_secs(1)).await;
                cgroups.remove().await;
                return Err(error);
            }
        };
        let memory_watch = watch_memory_kills(function.name.clone(), cgroups.clone(), log);
        let mut replica =
            Replica { port: bridge.port, container: container.to_owned(), process, bridge, cgroups, memory_watch };
        let deadline = Instant::now() + self.config.start_timeout;
        let http = reqwest::Client::new();
        let port = replica.port;
        loop {
            if let Some(status) = replica.process.try_wait()? {
                let log = log_tail(&log_path);
                self.stop(&mut replica).await;
                return Err(RuntimeError::Exited { status: status.to_string(), log });
            }
            // Any HTTP answer means it listens (a function need not serve `/_/health`).
            let probe = http.get(format!("http://127.0.0.1:{port}/_/health")).timeout(Duration::from_secs(1)).send();
            if probe.await.is_ok() {
                return Ok(replica);
            }
            if Instant::now() >= deadline {
                let log = log_tail(&log_path);
                self.stop(&mut replica).await;
                return Err(RuntimeError::NotReady { seconds: self.config.start_timeout.as_secs(), log });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The bridge into the network namespace `unshare` (pid `pid`) makes for a replica, and the gateway's function
    /// routes inside it when the gateway is known.
    async fn connect(&self, pid: u32) -> Result<ReplicaBridge, RuntimeError> {
        let namespace = open_network_namespace(pid).await?;
        let gateway = self.gateway.get().cloned();
        let (dialer, listener) = namespace_dialer(namespace, FUNCTION_PORT, gateway.is_some())?;
        let forwarder = match (listener, gateway) {
            (Some(listener), Some(gateway)) => Some(serve_gateway_routes(listener, gateway)?),
            _ => None,
        };
        ReplicaBridge::start(dialer, forwarder).await
    }

    /// Starts `buildah run` for `container` in its own network namespace and `cgroups`, on a read-only root if the
    /// deployment asks; answers the process, its log's path and a handle on the log for `ofc`'s own lines.
    async fn spawn_confined(
        &self,
        function: &FunctionStatus,
        container: &str,
        launch: &Launch,
        cgroups: &ReplicaCgroups,
    ) -> Result<(ChildProcess, PathBuf, std::fs::File), RuntimeError> {
        let Launch { env, secrets, working_dir, argv } = launch;
        let mut confinement = Confinement { own_network: true, cgroups: cgroups.procs_files(), read_only_root: None };
        if function.read_only_root_filesystem {
            let root = container_root(&self.config.root, container)?;
            let mut mount_points: Vec<(PathBuf, bool)> = ["dev", "proc", "sys", "run", "tmp", "etc"]
                .iter()
                .map(|f| (PathBuf::from(f), true))
                .chain(["etc/hosts", "etc/resolv.conf", "etc/hostname"].iter().map(|f| (PathBuf::from(f), false)))
                .collect();
            // A name with a `/` is refused when its secret is mounted, below.
            let secret_points = secrets.iter().filter(|s| !s.contains('/'));
            mount_points.extend(secret_points.map(|s| (PathBuf::from(format!("var/openfaas/secrets/{s}")), false)));
            if let Some(dir) = working_dir {
                mount_points.push((PathBuf::from(dir.trim_start_matches('/')), true));
            }
            let user = self.config.sandbox.as_ref().map(|s| s.user.clone());
            let prepared = root.clone();
            tokio::task::spawn_blocking(move || prepare_read_only_root(&prepared, &mount_points, user.as_ref()))
                .await
                .map_err(std::io::Error::other)??;
            confinement.read_only_root = Some(ReadOnlyRoot { root, tmp_bytes: self.limits.tmp_bytes });
        }
        let mut command = self.storage.lasting_command(&confinement);
        command.args(["run", "--isolation", "chroot"]);
        if self.config.sandbox.is_some() {
            command.args(["--cap-drop", DROPPED_CAPABILITY]);
        }
        for (name, value) in env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        for secret in secrets {
            let path = self.secret_source(container, secret)?;
            command.arg("--volume").arg(format!("{}:/var/openfaas/secrets/{secret}:ro", path.display()));
        }
        if let Some(dir) = working_dir {
            command.arg("--workingdir").arg(dir);
        }
        command.arg(container).arg("--").args(argv);
        let log_path = self.config.logs.join(format!("function-{}.log", function.name));
        let log = crate::line_stamps::stamped_log(&log_path, container)?;
        let own_lines = log.try_clone()?;
        command.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log)).process_group(0);
        let process = ChildProcess::spawn(&function.name, command, true)
            .map_err(|e| RuntimeError::Buildah { step: "run", message: e.to_string() })?;
        Ok((process, log_path, own_lines))
    }

    /// SIGTERM to the replica's process group, SIGKILL after a grace period, then its container and cgroups are
    /// removed.
    pub async fn stop(&self, replica: &mut Replica) {
        replica.process.stop(Duration::from_secs(5)).await;
        replica.memory_watch.abort();
        replica.bridge.stop();
        replica.cgroups.remove().await;
        if let Err(error) = self.remove(&replica.container).await {
            tracing::warn!(container = %replica.container, %error, "could not remove a stopped replica's container");
        }
    }
}

/// Limits every replica gets, as OpenFaaS on Kubernetes applies them to a function's pod.
#[derive(Debug, Clone)]
pub struct ReplicaLimits {
    /// cgroup v1's mount point (`/sys/fs/cgroup`, with `memory`, `pids` and `cpu` under it).
    pub cgroup_root: PathBuf,
    /// Processes (threads included) one replica may have at once: a fork bomb stays inside its replica.
    pub pids_max: u64,
    /// The size of a read-only-root replica's writable `/tmp` (faas-netes mounts an `emptyDir` there).
    pub tmp_bytes: u64,
}

impl Default for ReplicaLimits {
    fn default() -> Self {
        Self { cgroup_root: PathBuf::from("/sys/fs/cgroup"), pids_max: 256, tmp_bytes: 64 << 20 }
    }
}

/// The folder under each cgroup controller that holds one cgroup per replica.
const CGROUP_PARENT: &str = "ofc-replicas";

/// A replica's cgroups (memory, pids, cpu), made before it starts and removed once it has stopped. Everything the
/// replica runs joins them at its start, Buildah's own processes included (so nothing runs outside them); the
/// function's processes are then moved into `function`, a memory cgroup inside `memory` with exactly the
/// deployment's limit, so Buildah's own memory does not count against the function.
#[derive(Debug)]
struct ReplicaCgroups {
    memory: PathBuf,
    function: PathBuf,
    pids: PathBuf,
    cpu: PathBuf,
    /// The memory limit as the deployment wrote it, for the message when it is hit.
    memory_limit: Option<String>,
}

/// What Buildah's processes around a function take (its `run`, chroot runtime and exec helper, about 75 MiB
/// resident, measured), allowed on top of the function's limit in the replica's outer memory cgroup.
const BUILDAH_MEMORY_ALLOWANCE: u64 = 128 << 20;

/// A Kubernetes cpu quantity (`500m`, `0.5`, `2`) in thousandths of a cpu.
fn parse_millicpu(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Some(milli) = value.strip_suffix('m') {
        return milli.parse().ok().filter(|m| *m > 0);
    }
    let cpus: f64 = value.parse().ok()?;
    // A quantity beyond a million cpus is a typo, not a machine.
    (cpus > 0.0 && cpus < 1e6).then(|| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let milli = (cpus * 1000.0).round() as u64;
        milli.max(1)
    })
}

impl ReplicaCgroups {
    /// Makes `container`'s cgroups with the deployment's `limits` and the runtime's pids limit.
    fn create(limits: &ReplicaLimits, container: &str, function: &FunctionStatus) -> Result<Self, RuntimeError> {
        let resources = function.limits.clone().unwrap_or_default();
        let memory_bytes = match resources.memory.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            Some(text) => Some(shared::config::parse_bytes(text).filter(|b| *b >= 1 << 20).ok_or_else(|| {
                RuntimeError::Limit { what: "memory", value: text.to_owned(), expected: "a size of 1Mi or more" }
            })?),
            None => None,
        };
        let millicpu = match resources.cpu.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            Some(text) => Some(parse_millicpu(text).ok_or_else(|| RuntimeError::Limit {
                what: "cpu",
                value: text.to_owned(),
                expected: "cpus such as 0.5 or 500m",
            })?),
            None => None,
        };
        let folder = |controller: &str| limits.cgroup_root.join(controller).join(CGROUP_PARENT).join(container);
        let cgroups = Self {
            memory: folder("memory"),
            function: folder("memory").join("function"),
            pids: folder("pids"),
            cpu: folder("cpu"),
            memory_limit: resources.memory.filter(|_| memory_bytes.is_some()),
        };
        let write = |folder: &Path, file: &str, value: String| {
            std::fs::write(folder.join(file), value).map_err(|e| RuntimeError::Cgroup {
                path: folder.join(file).display().to_string(),
                message: e.to_string(),
            })
        };
        for folder in [&cgroups.memory, &cgroups.function, &cgroups.pids, &cgroups.cpu] {
            std::fs::create_dir_all(folder).map_err(|e| RuntimeError::Cgroup {
                path: folder.display().to_string(),
                message: format!("{e} (replicas need cgroup v1's memory, pids and cpu controllers, run as root)"),
            })?;
        }
        // Pages a function touched before it was moved go with it where the kernel still can (newer ones refuse;
        // the function is moved within 100 ms of starting, and what it touched before stays under the outer limit).
        let _ = std::fs::write(cgroups.function.join("memory.move_charge_at_immigrate"), "3");
        if let Some(bytes) = memory_bytes {
            for (folder, limit) in [(&cgroups.memory, bytes + BUILDAH_MEMORY_ALLOWANCE), (&cgroups.function, bytes)] {
                write(folder, "memory.limit_in_bytes", limit.to_string())?;
                // Without swap accounting the limit would push the function into swap instead of ending it.
                if folder.join("memory.memsw.limit_in_bytes").exists() {
                    write(folder, "memory.memsw.limit_in_bytes", limit.to_string())?;
                }
            }
        }
        write(&cgroups.pids, "pids.max", limits.pids_max.to_string())?;
        if let Some(milli) = millicpu {
            write(&cgroups.cpu, "cpu.cfs_period_us", "100000".to_owned())?;
            write(&cgroups.cpu, "cpu.cfs_quota_us", (milli * 100).max(1000).to_string())?;
        }
        Ok(cgroups)
    }

    /// The files the replica's first process writes itself into.
    fn procs_files(&self) -> Vec<PathBuf> {
        [&self.memory, &self.pids, &self.cpu].iter().map(|f| f.join("cgroup.procs")).collect()
    }

    /// How many processes the kernel has killed for going over the memory limit (the function's or, for a
    /// process that left it, the replica's).
    fn oom_kills(&self) -> u64 {
        let kills = |folder: &Path| -> u64 {
            let text = std::fs::read_to_string(folder.join("memory.oom_control")).unwrap_or_default();
            text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
        };
        kills(&self.memory) + kills(&self.function)
    }

    /// Moves the function's processes into its own memory cgroup: those inside the container's root whose parent
    /// is inside it too (Buildah's exec helper, whose parent is outside, stays). Children are born in their
    /// parent's cgroup, so once moved the function's new processes start there.
    fn adopt_function_processes(&self) {
        let procs = std::fs::read_to_string(self.memory.join("cgroup.procs")).unwrap_or_default();
        let chrooted = |pid: &str| std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r != Path::new("/"));
        let parent = |pid: &str| -> Option<String> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some(stat.get(stat.rfind(')')? + 1..)?.split_whitespace().nth(1)?.to_owned())
        };
        for pid in procs.lines().map(str::trim).filter(|p| !p.is_empty()) {
            if chrooted(pid) && parent(pid).is_some_and(|p| chrooted(&p)) {
                // A process that has just exited cannot be moved; nothing is lost.
                let _ = std::fs::write(self.function.join("cgroup.procs"), pid);
            }
        }
    }

    /// Removes the cgroups once their processes are gone (a killed group takes a moment to empty).
    async fn remove(&self) {
        for folder in [&self.function, &self.memory, &self.pids, &self.cpu] {
            for _ in 0..50 {
                if std::fs::remove_dir(folder).is_ok() || !folder.exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if folder.exists() {
                tracing::warn!(cgroup = %folder.display(), "a stopped replica's cgroup still has processes");
            }
        }
    }
}

/// Removes the replica cgroups an `ofc` that was killed left behind: those whose container name
/// (`ofc-<function>-<pid>-<n>`) names a process that no longer runs. Another running `ofc`'s are kept.
fn remove_leftover_cgroups(cgroup_root: &Path) {
    for controller in ["memory", "pids", "cpu"] {
        let Ok(entries) = std::fs::read_dir(cgroup_root.join(controller).join(CGROUP_PARENT)) else { continue };
        for folder in entries.filter_map(Result::ok).map(|e| e.path()) {
            let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir(folder.join("function"));
                let _ = std::fs::remove_dir(&folder);
            }
        }
    }
}

/// The container's root folder in vfs storage (`vfs/dir/<layer>`), from the storage's container list. Why the
/// replicas' storage stays vfs: this folder exists outside any run, so the read-only root is prepared in it before
/// `buildah run` (an overlay root exists only while mounted, rootless inside the run's own user namespace), and a
/// replica's image is pulled once, small, where vfs's cost a step does not arise.
fn container_root(storage: &Path, container: &str) -> Result<PathBuf, RuntimeError> {
    #[derive(Deserialize)]
    struct Stored {
        #[serde(default)]
        names: Vec<String>,
        layer: String,
    }
    let missing = |message: String| RuntimeError::Buildah { step: "read-only root", message };
    let list = std::fs::read(storage.join("storage/vfs-containers/containers.json"))
        .map_err(|e| missing(format!("the storage's container list: {e}")))?;
    let stored: Vec<Stored> =
        serde_json::from_slice(&list).map_err(|e| missing(format!("the storage's container list: {e}")))?;
    let layer = stored
        .into_iter()
        .find(|c| c.names.iter().any(|n| n == container))
        .map(|c| c.layer)
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| missing(format!("container {container} is not in the storage")))?;
    Ok(storage.join("storage/vfs/dir").join(layer))
}

/// Creates what a read-only root must already hold (Buildah cannot create it once the root is read-only): the
/// folders and files Buildah mounts over, the secrets' mount points and the working folder. Created as root, the
/// new ones are given to the sandbox's user; an existing link on the way is refused, since root would follow it
/// out of the image.
fn prepare_read_only_root(
    root: &Path,
    mount_points: &[(PathBuf, bool)],
    user: Option<&BuildUser>,
) -> Result<(), RuntimeError> {
    let refuse =
        |path: &Path, why: &str| RuntimeError::ReadOnlyRoot { path: path.display().to_string(), why: why.to_owned() };
    for (target, is_folder) in mount_points {
        let relative = target.strip_prefix("/").unwrap_or(target);
        let mut here = root.to_owned();
        let parts: Vec<_> = relative.components().collect();
        for (index, part) in parts.iter().enumerate() {
            let std::path::Component::Normal(name) = part else {
                return Err(refuse(target, "is not a plain path"));
            };
            here.push(name);
            let last = index + 1 == parts.len();
            match std::fs::symlink_metadata(&here) {
                Ok(meta) if meta.file_type().is_symlink() => return Err(refuse(target, "passes through a link")),
                Ok(meta) if (!last || *is_folder) && !meta.is_dir() => return Err(refuse(target, "is not a folder")),
                Ok(_) => {}
                Err(_) => {
                    if !last || *is_folder {
                        std::fs::create_dir(&here)?;
                    } else {
                        std::fs::OpenOptions::new().write(true).create_new(true).open(&here)?;
                    }
                    if let Some(user) = user {
                        std::os::unix::fs::lchown(&here, Some(user.uid), Some(user.gid))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Opens a replica's network namespace once `unshare` (pid `pid`) has made it: until then its namespace is still
/// the host's.
async fn open_network_namespace(pid: u32) -> Result<std::fs::File, RuntimeError> {
    let own = std::fs::read_link("/proc/self/ns/net")?;
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    for _ in 0..500 {
        match std::fs::read_link(&path) {
            Ok(theirs) if theirs != own => {
                let file = std::fs::File::open(&path)?;
                // Checked again through the open file: the pid could have exited and been reused meanwhile.
                if std::fs::read_link(&path).is_ok_and(|now| now == theirs) {
                    return Ok(file);
                }
            }
            Ok(_) => {}
            Err(e) => return Err(RuntimeError::Network(format!("the replica ended before its network was made: {e}"))),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(RuntimeError::Network("the replica's network namespace was not made within 5 s".into()))
}

/// A request for a connection to the function inside its namespace, and where the answer goes.
type Dial = tokio::sync::oneshot::Sender<std::io::Result<std::net::TcpStream>>;

/// Connects to a replica inside its network namespace: a thread of its own enters the namespace (`setns`, which
/// moves only the calling thread) and opens each connection there; a socket stays in the namespace it was made in.
/// With `gateway_routes` it first binds the listener the function reaches the gateway's routes on. The thread ends
/// when the replica's [`ReplicaBridge`] goes.
fn namespace_dialer(
    namespace: std::fs::File,
    port: u16,
    gateway_routes: bool,
) -> Result<(std::sync::mpsc::Sender<Dial>, Option<std::net::TcpListener>), RuntimeError> {
    let (requests, received) = std::sync::mpsc::channel::<Dial>();
    let (entered, entering) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("replica-netns".into()).spawn(move || {
        use std::os::fd::AsFd as _;
        let moved = rustix::thread::move_into_link_name_space(
            namespace.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(std::io::Error::from);
        let ready = moved.and_then(|()| {
            gateway_routes.then(|| std::net::TcpListener::bind(("127.0.0.1", GATEWAY_PORT_IN_REPLICA))).transpose()
        });
        let ok = ready.is_ok();
        let _ = entered.send(ready);
        if !ok {
            return;
        }
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        for answer in received {
            let _ = answer.send(std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)));
        }
    })?;
    let listener = entering
        .recv()
        .map_err(|_| RuntimeError::Network("the namespace thread ended".into()))?
        .map_err(|e| RuntimeError::Network(format!("entering the replica's network namespace: {e}")))?;
    Ok((requests, listener))
}

/// Serves the gateway's public function routes on `listener` (inside a replica's namespace) by passing each call
/// on to the gateway at `gateway`; any other path, the `/system` API included, is refused here.
fn serve_gateway_routes(
    listener: std::net::TcpListener,
    gateway: String,
) -> Result<tokio::task::JoinHandle<()>, RuntimeError> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let http = reqwest::Client::new();
    let router = axum::Router::new()
        .fallback(move |request: axum::extract::Request| forward_to_gateway(http.clone(), gateway.clone(), request));
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }))
}

/// Whether a function may call `path` on the gateway: a function route, with no dot segment (plain or encoded)
/// or backslash that URL parsing would turn into another route.
fn is_function_route(path: &str) -> bool {
    let routed = path.starts_with("/function/") || path.starts_with("/async-function/");
    let sneaky = path.contains('\\')
        || path.split('/').any(|segment| {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            decoded == "." || decoded == ".."
        });
    routed && !sneaky
}

/// One call from a function to the gateway's function routes, passed on with its method, headers and body.
async fn forward_to_gateway(
    http: reqwest::Client,
    gateway: String,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let refused = (
        axum::http::StatusCode::NOT_FOUND,
        "only the gateway's /function/ and /async-function/ routes are reachable from a function\n",
    );
    let path = request.uri().path().to_owned();
    if !is_function_route(&path) {
        return refused.into_response();
    }
    let target =
        format!("{gateway}{}", request.uri().path_and_query().map_or("", |p| p.as_str()).trim_start_matches('/'));
    match reqwest::Url::parse(&target) {
        Ok(url) if is_function_route(url.path()) => {}
        _ => return refused.into_response(),
    }
    let (parts, body) = request.into_parts();
    let mut upstream = http.request(parts.method, &target).body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "te" | "upgrade" | "host") {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(answer) => {
            let mut response = axum::response::Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                if !matches!(name.as_str(), "connection" | "keep-alive" | "transfer-encoding") {
                    response = response.header(name.as_str(), value.as_bytes());
                }
            }
            response
                .body(axum::body::Body::from_stream(answer.bytes_stream()))
                .unwrap_or_else(|_| axum::http::StatusCode::BAD_GATEWAY.into_response())
        }
        Err(_) => (axum::http::StatusCode::BAD_GATEWAY, "the gateway did not answer\n").into_response(),
    }
}

/// The gateway's way into a replica: a listener on the host's loopback whose every connection is joined to a new
/// connection to the function's port inside its namespace. Stopped when dropped.
#[derive(Debug)]
struct ReplicaBridge {
    port: u16,
    task: tokio::task::JoinHandle<()>,
    /// The gateway's function routes inside the namespace, when the runtime knows the gateway.
    forwarder: Option<tokio::task::JoinHandle<()>>,
}

impl ReplicaBridge {
    async fn start(
        dialer: std::sync::mpsc::Sender<Dial>,
        forwarder: Option<tokio::task::JoinHandle<()>>,
    ) -> Result<Self, RuntimeError> {
        let bound = async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let port = listener.local_addr()?.port();
            Ok::<_, std::io::Error>((listener, port))
        };
        let (listener, port) = match bound.await {
            Ok(bound) => bound,
            Err(error) => {
                if let Some(forwarder) = &forwarder {
                    forwarder.abort();
                }
                return Err(error.into());
            }
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut incoming, _)) = listener.accept().await else {
                    // Out of descriptors, say: waiting lets some close, where retrying at once would spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (answer, answered) = tokio::sync::oneshot::channel();
                if dialer.send(answer).is_err() {
                    return;
                }
                tokio::spawn(async move {
                    let Ok(Ok(outgoing)) = answered.await else { return };
                    if outgoing.set_nonblocking(true).is_err() {
                        return;
                    }
                    let Ok(mut outgoing) = tokio::net::TcpStream::from_std(outgoing) else { return };
                    let _ = tokio::io::copy_bidirectional(&mut incoming, &mut outgoing).await;
                });
            }
        });
        Ok(Self { port, task, forwarder })
    }

    fn stop(&self) {
        self.task.abort();
        if let Some(forwarder) = &self.forwarder {
            forwarder.abort();
        }
    }
}

impl Drop for ReplicaBridge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Moves the function's new processes into its memory cgroup and watches for kills over its limit: each is logged
/// by `ofc` and written into the function's own log (which the dashboard shows), so a function that ends or fails
/// for its limit says so.
fn watch_memory_kills(
    name: String,
    cgroups: Arc<ReplicaCgroups>,
    mut log: std::fs::File,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = cgroups.oom_kills();
        loop {
            cgroups.adopt_function_processes();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let kills = cgroups.oom_kills();
            if kills > seen {
                let limit = cgroups.memory_limit.clone().unwrap_or_else(|| "unset".into());
                tracing::warn!(function = %name, limit = %limit, killed = kills - seen, "a replica's process was killed: over its memory limit");
                let line = format!("ofc: {} process(es) killed: over the memory limit ({limit})\n", kills - seen);
                let _ = std::io::Write::write_all(&mut log, line.as_bytes());
                seen = kills;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubernetes_cpu_quantities() {
        assert_eq!(parse_millicpu("250m"), Some(250));
        assert_eq!(parse_millicpu("0.5"), Some(500));
        assert_eq!(parse_millicpu("2"), Some(2000));
        for bad in ["", "0", "0m", "-1", "lots", "1e9", "NaN"] {
            assert_eq!(parse_millicpu(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unreadable_limit_stops_the_start_naming_it() {
        let limits = ReplicaLimits { cgroup_root: PathBuf::from("/nonexistent"), ..ReplicaLimits::default() };
        let mut function = FunctionStatus { name: "f".into(), image: "i".into(), ..FunctionStatus::default() };
        function.limits = Some(shared::event::FunctionResources { memory: Some("lots".into()), cpu: None });
        let error = ReplicaCgroups::create(&limits, "c", &function).unwrap_err().to_string();
        assert!(error.contains("limits.memory `lots`"), "{error}");
        function.limits = Some(shared::event::FunctionResources { memory: None, cpu: Some("fast".into()) });
        let error = ReplicaCgroups::create(&limits, "c", &function).unwrap_err().to_string();
        assert!(error.contains("limits.cpu `fast`"), "{error}");
    }

    #[test]
    fn only_function_routes_are_forwarded_to_the_gateway() {
        for allowed in ["/function/echo", "/function/echo/a/b", "/async-function/echo"] {
            assert!(is_function_route(allowed), "{allowed}");
        }
        for refused in [
            "/system/functions",
            "/function",
            "/ui/",
            "/function/../system/functions",
            "/function/%2e%2e/system/functions",
            "/function/%2E./system",
            "/function/./x",
            "/function/..\\system",
        ] {
            assert!(!is_function_route(refused), "{refused}");
        }
    }

    #[test]
    fn a_read_only_root_is_prepared_without_following_the_image_s_links() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", root.path().join("etc")).unwrap();
        let error =
            prepare_read_only_root(root.path(), &[(PathBuf::from("etc/hosts"), false)], None).unwrap_err().to_string();
        assert!(error.contains("passes through a link"), "{error}");
        assert!(!Path::new("/hosts").exists());
        let points = [(PathBuf::from("run"), true), (PathBuf::from("var/openfaas/secrets/key"), false)];
        prepare_read_only_root(root.path(), &points, None).unwrap();
        assert!(root.path().join("run").is_dir() && root.path().join("var/openfaas/secrets/key").is_file());
        let error = prepare_read_only_root(root.path(), &[(PathBuf::from("../x"), true)], None).unwrap_err();
        assert!(error.to_string().contains("not a plain path"), "{error}");
    }
}
