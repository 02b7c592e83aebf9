//! Runs deployed user functions on this machine with Buildah's chroot isolation (`buildah run`): the one container
//! runtime that works here (podman's and docker's `run` are refused). A replica shares the host's network, so each
//! gets its own loopback port, handed to it as `port` (the watchdog's setting) with `bind_address=127.0.0.1`.
//!
//! Sandboxed (`ofc up`'s default), every Buildah call, the replicas' `buildah run` included, runs as the build user
//! in its own PID namespace with a minimal `/dev` (`shared::sandbox`, the build sandbox's one construction), and
//! without `CAP_SYS_CHROOT`: a running function is the same pushed code a build runs. Rootless Buildah with chroot
//! isolation keeps the host's network namespace, so the gateway still reaches the replica on loopback.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use shared::openfaas::FunctionStatus;
use shared::sandbox::{BuildUser, DROPPED_CAPABILITY};
use tokio::process::Command;

use crate::process::{free_port, ChildProcess};

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
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

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

/// One Buildah storage (vfs, as of-builder uses it): `root/storage` and `root/run`, used as root or, sandboxed,
/// as the build user.
#[derive(Debug, Clone)]
pub struct BuildahStorage {
    pub root: PathBuf,
    pub sandbox: Option<Sandbox>,
}

impl BuildahStorage {
    /// Root's storage at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), sandbox: None }
    }

    /// The build user's storage at `root`, created for it (or checked to be its own).
    pub fn sandboxed(root: impl Into<PathBuf>, sandbox: Sandbox) -> std::io::Result<Self> {
        let root = root.into();
        sandbox.user.prepare_storage(&root)?;
        Ok(Self { root, sandbox: Some(sandbox) })
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

    /// `buildah` on this storage, run so that it dies with `ofc` (for `buildah run`, which lasts): sandboxed,
    /// `unshare` has the parent-death signal and the namespace's first process has it from `unshare`.
    fn lasting_command(&self) -> std::process::Command {
        let program = match &self.sandbox {
            Some(sandbox) => {
                let mut command = crate::process::command("unshare");
                command.args(sandbox.user.unshare_args(&sandbox.dev, "buildah"));
                command
            }
            None => crate::process::command("buildah"),
        };
        self.on_storage(program)
    }

    fn on_storage(&self, mut command: std::process::Command) -> std::process::Command {
        command
            .arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .arg("--storage-driver")
            .arg("vfs")
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
    /// Makes container names unique within this run.
    next: AtomicU64,
}

/// One running replica of a function.
#[derive(Debug)]
pub struct Replica {
    pub port: u16,
    container: String,
    /// `buildah run`, leading the process group of the function it runs.
    process: ChildProcess,
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
        Ok(Self { storage, config, next: AtomicU64::new(0) })
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
        let port = free_port()?;
        let mut env: BTreeMap<String, String> = function.env_vars.clone().unwrap_or_default();
        if let Some(process) = function.env_process.as_ref().filter(|p| !p.is_empty()) {
            env.insert("fprocess".into(), process.clone());
        }
        env.insert("port".into(), port.to_string());
        env.insert("bind_address".into(), "127.0.0.1".into());
        let mut command = self.storage.lasting_command();
        command.args(["run", "--isolation", "chroot"]);
        if self.config.sandbox.is_some() {
            command.args(["--cap-drop", DROPPED_CAPABILITY]);
        }
        for (name, value) in &env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        for secret in function.secrets.iter().flatten() {
            let path = self.secret_source(container, secret)?;
            command.arg("--volume").arg(format!("{}:/var/openfaas/secrets/{secret}:ro", path.display()));
        }
        if let Some(dir) = config.working_dir.filter(|d| !d.is_empty()) {
            command.arg("--workingdir").arg(dir);
        }
        command.arg(container).arg("--").args(&argv);
        let log_path = self.config.logs.join(format!("function-{}.log", function.name));
        let log = crate::line_stamps::stamped_log(&log_path, container)?;
        command.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log)).process_group(0);
        let process = ChildProcess::spawn(&function.name, command, true)
            .map_err(|e| RuntimeError::Buildah { step: "run", message: e.to_string() })?;
        let mut replica = Replica { port, container: container.to_owned(), process };
        let deadline = Instant::now() + self.config.start_timeout;
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = replica.process.try_wait()? {
                let _ = self.remove(container).await;
                return Err(RuntimeError::Exited { status: status.to_string(), log: log_tail(&log_path) });
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

    /// SIGTERM to the replica's process group, SIGKILL after a grace period, then its container is removed.
    pub async fn stop(&self, replica: &mut Replica) {
        replica.process.stop(Duration::from_secs(5)).await;
        if let Err(error) = self.remove(&replica.container).await {
            tracing::warn!(container = %replica.container, %error, "could not remove a stopped replica's container");
        }
    }
}
