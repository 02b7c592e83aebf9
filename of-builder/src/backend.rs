//! The two ways of building: Buildah (daemonless, the default) and BuildKit's `buildctl` (the seed's way).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use shared::build::BuildConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::error::BuilderError;
use crate::log::{Log, Scrubber};
use crate::sandbox::BuildUser;
use crate::storage::{buildah_command, driver_folders, storage_base, StorageDriver};
use shared::config::Secret;

/// What a build came to, when the builder itself worked.
#[derive(Debug)]
pub enum BuildOutcome {
    /// Built and pushed: the manifest digest.
    Pushed { digest: String, log: Vec<String> },
    /// The user's Dockerfile failed: a user error, with the log that says why.
    Failed { log: Vec<String> },
}

/// One way of building and pushing an image from a context folder.
pub trait BuildBackend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether the backend works here, with its version.
    fn check(&self) -> impl std::future::Future<Output = Result<String, BuilderError>> + Send;
    /// Builds and pushes, with `label` (name, value) on the image; an empty value adds none.
    fn build(
        &self,
        config: &BuildConfig,
        context: &Path,
        work: &Path,
        label: (&str, &str),
    ) -> impl std::future::Future<Output = Result<BuildOutcome, BuilderError>> + Send;
}

/// Buildah with chroot isolation: works unprivileged-ish, in containers and on CI machines.
#[derive(Debug, Clone)]
pub struct Buildah {
    pub root: Option<PathBuf>,
    /// Chosen at start (`storage::choose`); each driver keeps its storage in its own subfolder of the root.
    pub driver: StorageDriver,
    pub insecure_registry: bool,
    pub timeout: Duration,
    /// Set: builds run sandboxed as this user (see `sandbox`); unset: as of-builder's own user.
    pub user: Option<BuildUser>,
    pub registry_auth: Option<Secret>,
    pub scrubber: Scrubber,
}

impl Buildah {
    /// The storage folder, before the driver's subfolder (see `storage::storage_base`).
    fn storage(&self) -> PathBuf {
        storage_base(self.root.as_deref(), self.user.as_ref())
    }

    /// `buildah` with its storage options, sandboxed when there is a build user; `dev` is an empty folder the
    /// sandbox assembles its `/dev` in.
    fn base(&self, dev: &Path) -> Command {
        buildah_command(&self.storage(), self.driver, self.user.as_ref(), dev).into()
    }

    /// `buildah` for `bud`: sandboxed, in a network namespace of its own holding only `lo`, so a `RUN` step (pushed
    /// code) reaches nothing listening on the host: not the registry, of-builder, nor the platform's other parts.
    /// A build needs no network (base images are in local storage, `--pull=false`); the push is a separate call.
    /// Unsandboxed, builds keep of-builder's network, as they keep its user.
    fn bud_command(&self, dev: &Path) -> Command {
        let Some(user) = &self.user else { return self.base(dev) };
        let confinement = shared::sandbox::Confinement { own_network: true, ..Default::default() };
        let mut command = user.confined_command(dev, &confinement, "buildah");
        let (storage, run) = driver_folders(&self.storage(), self.driver);
        command.arg("--root").arg(storage).arg("--runroot").arg(run).arg("--storage-driver").arg(self.driver.name());
        command.into()
    }

    /// `buildah bud` arguments, `options` before the context folder. With `layers`, each step's layer is cached, so
    /// a rebuild whose `RUN` steps did not change skips them; without, the steps go into one commit, which is faster
    /// where no step runs code (the README has the figures). The image's files, config and history are the same
    /// either way; only several file-changing steps land in one layer instead of one each.
    pub fn build_args(config: &BuildConfig, context: &Path, layers: bool, options: &[String]) -> Vec<String> {
        let mut args = vec!["bud".into(), "--isolation".into(), "chroot".into()];
        args.push(if layers { "--layers" } else { "--layers=false" }.into());
        args.push("--pull=false".into());
        args.extend_from_slice(options);
        for (name, value) in &config.build_args {
            args.push("--build-arg".into());
            args.push(format!("{name}={value}"));
        }
        for platform in &config.platforms {
            args.push("--platform".into());
            args.push(platform.clone());
        }
        args.extend([
            "-f".into(),
            context.join("Dockerfile").display().to_string(),
            "-t".into(),
            config.image_ref.clone(),
        ]);
        args.push(context.display().to_string());
        args
    }

    /// Readies `work` for a build: with a build user, the storage and the work folder become the user's; answers
    /// the sandbox's `/dev` folder.
    fn prepare(&self, work: &Path) -> Result<PathBuf, BuilderError> {
        let dev = work.join("dev");
        std::fs::create_dir_all(&dev)?;
        if let Some(user) = &self.user {
            user.prepare_storage(&self.storage())?;
            user.give(work)?;
        }
        Ok(dev)
    }

    /// Writes the registry auth file for the push, only once the build's `RUN` steps are over (they run as the same
    /// user and must never see the push credentials); answers the `--authfile` argument. A file already at its
    /// place (put there by a build step) is refused, not followed.
    fn write_authfile(&self, work: &Path) -> Result<Option<PathBuf>, BuilderError> {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(auth) = &self.registry_auth else { return Ok(None) };
        let path = work.join("push-auth.json");
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut file, auth.expose().as_bytes())?;
        if let Some(user) = &self.user {
            user.give(&path)?;
        }
        Ok(Some(path))
    }
}

impl BuildBackend for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    async fn check(&self) -> Result<String, BuilderError> {
        let dev = tempfile::Builder::new().prefix("of-builder-check-").tempdir()?;
        let output = self.base(dev.path()).arg("version").output().await.map_err(|e| {
            BuilderError::Backend(format!("`buildah` cannot run ({e}); install it with `apt-get install buildah`"))
        })?;
        if !output.status.success() {
            return Err(BuilderError::Backend(format!(
                "`buildah version` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text
            .lines()
            .find(|l| l.starts_with("Version:"))
            .map_or_else(|| "unknown".into(), |l| l.trim_start_matches("Version:").trim().to_owned()))
    }

    async fn build(
        &self,
        config: &BuildConfig,
        context: &Path,
        work: &Path,
        label: (&str, &str),
    ) -> Result<BuildOutcome, BuilderError> {
        // Each step's time goes to the log, so a slow build can be taken apart (handing over, `bud`, `push`).
        let started = std::time::Instant::now();
        // Handing a large context to the build user walks every file: off the async threads.
        let (this, folder) = (self.clone(), work.to_owned());
        let dev = tokio::task::spawn_blocking(move || this.prepare(&folder))
            .await
            .map_err(|e| BuilderError::Backend(format!("preparing the build folder stopped: {e}")))??;
        let mut options = Vec::new();
        if self.user.is_some() {
            // Capabilities exist only inside the build's user namespace, over the image's own files (`chown` in a
            // Dockerfile keeps working); `chroot` is the one that would let a RUN step leave the image's root.
            options.extend(["--cap-drop".to_owned(), "SYS_CHROOT".to_owned()]);
        }
        if !label.1.is_empty() {
            options.extend(["--label".to_owned(), format!("{}={}", label.0, label.1)]);
        }
        let prepared = started.elapsed();
        // Read as the request's checks read it (lossy UTF-8); one that cannot be read keeps the layer cache.
        let layers = tokio::fs::read(context.join("Dockerfile"))
            .await
            .map_or(true, |bytes| crate::base_images::runs_code(&String::from_utf8_lossy(&bytes)));
        let mut build = self.bud_command(&dev);
        build.args(Self::build_args(config, context, layers, &options));
        let (ok, mut log) = run_logged(build, self.timeout, &self.scrubber).await?;
        let built = started.elapsed();
        if !ok {
            return Ok(BuildOutcome::Failed { log });
        }
        let authfile = self.write_authfile(work)?;
        let digest_file = work.join("digest");
        let mut push = self.base(&dev);
        push.arg("push");
        if self.insecure_registry {
            push.arg("--tls-verify=false");
        }
        if let Some(authfile) = &authfile {
            push.arg("--authfile").arg(authfile);
        }
        push.arg("--digestfile").arg(&digest_file).arg(&config.image_ref).arg(format!("docker://{}", config.image_ref));
        let (pushed, push_log) = run_logged(push, self.timeout, &self.scrubber).await?;
        if !pushed {
            return Err(BuilderError::Push(push_log.last().cloned().unwrap_or_else(|| "buildah push failed".into())));
        }
        log.extend(push_log);
        tracing::info!(
            image = %config.image_ref,
            prepare = prepared.as_secs_f64(),
            bud = built.saturating_sub(prepared).as_secs_f64(),
            push = started.elapsed().saturating_sub(built).as_secs_f64(),
            "buildah steps (seconds)"
        );
        let digest = tokio::fs::read_to_string(&digest_file).await?.trim().to_owned();
        Ok(BuildOutcome::Pushed { digest, log })
    }
}

/// BuildKit through `buildctl`, pushing as part of the build.
#[derive(Debug, Clone)]
pub struct Buildkit {
    pub host: String,
    pub insecure_registry: bool,
    pub timeout: Duration,
    pub registry_auth: Option<Secret>,
    pub scrubber: Scrubber,
}

impl Buildkit {
    /// `buildctl` arguments for the dockerfile frontend with `push=true`. Every `RUN` step gets a network namespace
    /// holding only `lo` (`force-network-mode=none`), as Buildah's sandboxed builds do: otherwise it shares
    /// buildkitd's network, where buildkitd and the pod's other parts listen. `RUN --network=host` then needs the
    /// `network.host` entitlement, which is never asked for (`--allow`), so it fails.
    pub fn build_args(&self, config: &BuildConfig, context: &Path, metadata: &Path) -> Vec<String> {
        let mut args = vec![
            "--addr".into(),
            self.host.clone(),
            "build".into(),
            "--frontend".into(),
            "dockerfile.v0".into(),
            "--local".into(),
            format!("context={}", context.display()),
            "--local".into(),
            format!("dockerfile={}", context.display()),
            "--opt".into(),
            "filename=Dockerfile".into(),
            "--opt".into(),
            "force-network-mode=none".into(),
        ];
        for (name, value) in &config.build_args {
            args.push("--opt".into());
            args.push(format!("build-arg:{name}={value}"));
        }
        if !config.platforms.is_empty() {
            args.push("--opt".into());
            args.push(format!("platform={}", config.platforms.join(",")));
        }
        let insecure = if self.insecure_registry { ",registry.insecure=true" } else { "" };
        args.push("--output".into());
        args.push(format!("type=image,name={},push=true{insecure}", config.image_ref));
        args.push("--metadata-file".into());
        args.push(metadata.display().to_string());
        args
    }
}

impl BuildBackend for Buildkit {
    fn name(&self) -> &'static str {
        "buildkit"
    }

    async fn check(&self) -> Result<String, BuilderError> {
        let output = Command::new("buildctl")
            .args(["--addr", &self.host, "debug", "workers"])
            .output()
            .await
            .map_err(|e| BuilderError::Backend(format!("`buildctl` cannot run ({e})")))?;
        if output.status.success() {
            Ok(format!("buildkitd at {}", self.host))
        } else {
            Err(BuilderError::Backend(format!(
                "buildkitd at {} does not answer: {}",
                self.host,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    async fn build(
        &self,
        config: &BuildConfig,
        context: &Path,
        work: &Path,
        label: (&str, &str),
    ) -> Result<BuildOutcome, BuilderError> {
        let metadata = work.join("metadata.json");
        let mut command = Command::new("buildctl");
        command.args(self.build_args(config, context, &metadata));
        if !label.1.is_empty() {
            command.arg("--opt").arg(format!("label:{}={}", label.0, label.1));
        }
        if let Some(auth) = &self.registry_auth {
            // `buildctl` reads registry credentials from `$DOCKER_CONFIG/config.json`.
            let docker = work.join("docker");
            tokio::fs::create_dir_all(&docker).await?;
            tokio::fs::write(docker.join("config.json"), auth.expose()).await?;
            command.env("DOCKER_CONFIG", docker);
        }
        let (ok, log) = run_logged(command, self.timeout, &self.scrubber).await?;
        if !ok {
            return Ok(BuildOutcome::Failed { log });
        }
        let text = tokio::fs::read_to_string(&metadata).await?;
        let digest = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("containerimage.digest").and_then(|d| d.as_str()).map(str::to_owned))
            .ok_or_else(|| BuilderError::Backend("buildctl wrote no image digest".into()))?;
        Ok(BuildOutcome::Pushed { digest, log })
    }
}

/// Runs a command with its output captured line by line, scrubbed; `false` when it failed or ran past `timeout`.
async fn run_logged(
    mut command: Command,
    timeout: Duration,
    scrubber: &Scrubber,
) -> Result<(bool, Vec<String>), BuilderError> {
    // Its own process group: a build's processes (Buildah's helpers, the RUN step's children, a sandbox's whole PID
    // namespace) outlive a killed parent, so a timeout or a dropped request kills the group.
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).process_group(0);
    let program = command.as_std().get_program().to_string_lossy().into_owned();
    let mut child = command.spawn().map_err(|e| BuilderError::Backend(format!("`{program}` cannot run: {e}")))?;
    let mut group = ProcessGroup(child.id());
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let forward = |reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                   tx: tokio::sync::mpsc::UnboundedSender<String>| {
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        })
    };
    let readers = [forward(Box::new(stdout), tx.clone()), forward(Box::new(stderr), tx)];
    // Lines are scrubbed and kept (or left out, past the log's limit) as they come, so memory stays bounded.
    let scrubber = scrubber.clone();
    let collector = tokio::spawn(async move {
        let mut log = Log::default();
        while let Some(line) = rx.recv().await {
            log.push(scrubber.scrub(&line));
        }
        log
    });
    let status = if let Ok(status) = tokio::time::timeout(timeout, child.wait()).await {
        group.0 = None;
        Some(status?)
    } else {
        group.kill();
        let _ = child.kill().await;
        None
    };
    for reader in readers {
        // Once the group is gone the pipes close; a process that left the group cannot hold the answer back.
        if tokio::time::timeout(Duration::from_secs(10), reader).await.is_err() {
            tracing::warn!(%program, "a build process kept its output open");
        }
    }
    let mut log = collector.await.map_err(|e| BuilderError::Backend(format!("the log collector stopped: {e}")))?;
    let Some(status) = status else {
        log.push(format!("the build was stopped after {} s (build_timeout)", timeout.as_secs()));
        return Ok((false, log.into_lines()));
    };
    Ok((status.success(), log.into_lines()))
}

/// A running command's process group, killed when the build is stopped or its request dropped.
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    /// Kills every process of the group, found in `/proc` (no signal call is reachable without `unsafe`, and
    /// the `kill` of `sh` takes no group ids), a few rounds so a process forked meanwhile goes too. In a sandbox
    /// the PID namespace's first process is one of them, and its end ends the whole namespace.
    fn kill(&mut self) {
        let Some(group) = self.0.take() else { return };
        for _ in 0..5 {
            let members = group_members(group);
            if members.is_empty() {
                return;
            }
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("kill -9 {}", members.join(" ")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The ids of the live processes in process group `group`, read from `/proc/<pid>/stat`.
fn group_members(group: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
            // After the command name in parentheses: state, parent id, process group id.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
            let state = fields.next()?;
            let pgrp = fields.nth(1)?.parse::<u32>().ok()?;
            (pgrp == group && state != "Z").then_some(name)
        })
        .collect()
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> BuildConfig {
        BuildConfig {
            image_ref: "127.0.0.1:5000/octo/fn:latest-abc".into(),
            build_args: BTreeMap::from([("GO_VERSION".into(), "1.22".into())]),
            platforms: vec![],
        }
    }

    #[test]
    fn buildctl_command_line_is_the_dockerfile_frontend_with_push_and_run_steps_without_network() {
        let buildkit = Buildkit {
            host: "tcp://buildkitd:1234".into(),
            insecure_registry: true,
            timeout: Duration::from_secs(1),
            registry_auth: None,
            scrubber: Scrubber::default(),
        };
        let args = buildkit.build_args(&config(), Path::new("/tmp/b/context"), Path::new("/tmp/b/metadata.json"));
        assert_eq!(
            args.join(" "),
            "--addr tcp://buildkitd:1234 build --frontend dockerfile.v0 --local context=/tmp/b/context \
             --local dockerfile=/tmp/b/context --opt filename=Dockerfile --opt force-network-mode=none \
             --opt build-arg:GO_VERSION=1.22 \
             --output type=image,name=127.0.0.1:5000/octo/fn:latest-abc,push=true,registry.insecure=true \
             --metadata-file /tmp/b/metadata.json"
        );
    }

    #[test]
    fn buildah_command_line_caches_layers_when_asked_and_passes_build_args() {
        let options = ["--cap-drop".to_owned(), "SYS_CHROOT".to_owned()];
        let args = Buildah::build_args(&config(), Path::new("/tmp/b/context"), true, &options);
        assert_eq!(
            args.join(" "),
            "bud --isolation chroot --layers --pull=false --cap-drop SYS_CHROOT --build-arg GO_VERSION=1.22 -f /tmp/b/context/Dockerfile \
             -t 127.0.0.1:5000/octo/fn:latest-abc /tmp/b/context"
        );
        let args = Buildah::build_args(&config(), Path::new("/tmp/b/context"), false, &[]);
        assert!(args.join(" ").starts_with("bud --isolation chroot --layers=false --pull=false --build-arg"));
    }
}
