//! Runs deployed user functions on this machine with Buildah's chroot isolation (`buildah run`): the one container
//! runtime that works here (podman's and docker's `run` are refused). A replica shares the host's network, so each
//! gets its own loopback port, handed to it as `port` (the watchdog's setting) with `bind_address=127.0.0.1`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use shared::openfaas::FunctionStatus;
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
}

/// One Buildah storage (vfs, as of-builder uses it): `root/storage` and `root/run`.
#[derive(Debug, Clone)]
pub struct BuildahStorage {
    pub root: PathBuf,
}

impl BuildahStorage {
    /// `buildah` on this storage, for a step awaited to its end.
    pub fn command(&self) -> Command {
        let mut command = Command::from(self.on_storage(std::process::Command::new("buildah")));
        command.kill_on_drop(true);
        command
    }

    /// `buildah` on this storage, run so that it dies with `ofc` (for `buildah run`, which lasts).
    fn lasting_command(&self) -> std::process::Command {
        self.on_storage(crate::process::command("buildah"))
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
    builder.run("from", &["from", "--quiet", "--name", &container, "scratch"]).await?;
    let built = async {
        let binary = binary.display().to_string();
        builder.run("copy", &["copy", "--quiet", &container, &binary, "/usr/bin/fwatchdog"]).await?;
        for library in linked_libraries(Path::new(&binary)).await? {
            let library = library.display().to_string();
            builder.run("copy", &["copy", "--quiet", &container, &library, &library]).await?;
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
    built.map(|_| true)
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
        std::fs::create_dir_all(&config.root)?;
        std::fs::create_dir_all(&config.logs)?;
        Ok(Self { storage: BuildahStorage { root: config.root.clone() }, config, next: AtomicU64::new(0) })
    }

    async fn run_buildah(&self, step: &'static str, args: &[&str]) -> Result<String, RuntimeError> {
        self.storage.run(step, args).await
    }

    /// Containers left by a run that was killed: this storage is the stack's own, so all of them.
    pub async fn remove_leftovers(&self) {
        if let Err(error) = self.run_buildah("rm", &["rm", "--all"]).await {
            tracing::warn!(%error, "could not remove containers left by an earlier run");
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
                let _ = self.run_buildah("rm", &["rm", &container]).await;
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
        for (name, value) in &env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        for secret in function.secrets.iter().flatten() {
            let path = self.config.secrets.join(secret);
            if !path.is_file() || secret.contains('/') {
                return Err(RuntimeError::MissingSecret { name: secret.clone(), path: path.display().to_string() });
            }
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
                let _ = self.run_buildah("rm", &["rm", container]).await;
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
        if let Err(error) = self.run_buildah("rm", &["rm", &replica.container]).await {
            tracing::warn!(container = %replica.container, %error, "could not remove a stopped replica's container");
        }
    }
}
