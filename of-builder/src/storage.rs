//! Buildah's storage driver (`buildah_storage_driver`): overlay where the kernel allows it, vfs elsewhere.
//!
//! With `--layers`, vfs copies the whole root filesystem for every Dockerfile step (measured about 1 s a step on the
//! 2-core development machine) where overlay stacks each step's changes on the last (about 0.17 s). Overlay needs
//! overlay mounts: as root nearly everywhere, rootless (a `build_user`) with a kernel that allows them in a user
//! namespace (≥ 5.13) or fuse-overlayfs, and not on top of another overlay (a container's root filesystem). So
//! `auto` tries it once at start, the way builds will run, and falls back to vfs, saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::BuildUser;

/// The setting: what the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverSetting {
    /// Overlay if a probe at start shows it works, else vfs.
    Auto,
    Overlay,
    Vfs,
}

impl DriverSetting {
    /// Reads `buildah_storage_driver`'s value (unset: `auto`); the error says what is accepted.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("auto") => Ok(Self::Auto),
            Some("overlay") => Ok(Self::Overlay),
            Some("vfs") => Ok(Self::Vfs),
            Some(other) => Err(format!("`{other}` is not a storage driver (use auto, overlay or vfs)")),
        }
    }
}

/// The driver builds use, chosen at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDriver {
    Overlay,
    Vfs,
}

impl StorageDriver {
    /// The name Buildah's `--storage-driver` takes, also the storage subfolder's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Overlay => "overlay",
            Self::Vfs => "vfs",
        }
    }
}

/// The chosen driver and the reason, for the start's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub driver: StorageDriver,
    pub why: String,
}

/// Where Buildah's storage lives, before the per-driver subfolder: `buildah_root`, else the build user's
/// `~/buildah` (root's default storage is not the user's), else a folder of of-builder's own beside Buildah's.
pub fn storage_base(root: Option<&Path>, user: Option<&BuildUser>) -> PathBuf {
    match (root, user) {
        (Some(root), _) => root.to_owned(),
        (None, Some(user)) => user.home.join("buildah"),
        (None, None) => PathBuf::from("/var/lib/containers/of-builder"),
    }
}

/// One driver's storage and run folders under `base`: containers/storage refuses a folder written by another
/// driver, so each driver has its own and switching drivers only costs the cache.
pub fn driver_folders(base: &Path, driver: StorageDriver) -> (PathBuf, PathBuf) {
    let folder = base.join(driver.name());
    (folder.join("storage"), folder.join("run"))
}

/// A synchronous `buildah` with storage in `base` for `driver`, sandboxed as `user` when set; `dev` is an empty
/// folder for the sandbox's `/dev`.
pub fn buildah_command(base: &Path, driver: StorageDriver, user: Option<&BuildUser>, dev: &Path) -> Command {
    let mut command = match user {
        Some(user) => user.command(dev, "buildah"),
        None => Command::new("buildah"),
    };
    let (storage, run) = driver_folders(base, driver);
    command.arg("--root").arg(storage).arg("--runroot").arg(run).arg("--storage-driver").arg(driver.name());
    command
}

/// Resolves the setting: `vfs` as asked; `overlay` only if the probe passes (else the reason, for a start that
/// fails naming the setting); `auto` overlay if the probe passes, else vfs with the probe's reason.
pub fn choose(setting: DriverSetting, root: Option<&Path>, user: Option<&BuildUser>) -> Result<Choice, String> {
    if setting == DriverSetting::Vfs {
        return Ok(Choice { driver: StorageDriver::Vfs, why: "buildah_storage_driver=vfs".into() });
    }
    let mode = user.map_or_else(|| "as of-builder's user".to_owned(), |u| format!("sandboxed as `{}`", u.name));
    match (setting, probe_overlay(root, user)) {
        (_, Ok(took)) => Ok(Choice {
            driver: StorageDriver::Overlay,
            why: format!("an overlay build {mode} worked ({} ms)", took.as_millis()),
        }),
        (DriverSetting::Overlay, Err(reason)) => {
            Err(format!("overlay does not work here {mode} ({reason}); use vfs or auto"))
        }
        (_, Err(reason)) => Ok(Choice {
            driver: StorageDriver::Vfs,
            why: format!("an overlay build {mode} failed ({reason}); vfs works everywhere but costs more a step"),
        }),
    }
}

/// The longest a probe may take before overlay counts as not working (a hung mount must not hang the start).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a one-file `FROM scratch` image with overlay in a scratch store inside the storage folder (same
/// filesystem as the real store: overlay on overlay fails), in the mode builds run; answers how long it took.
pub fn probe_overlay(root: Option<&Path>, user: Option<&BuildUser>) -> Result<Duration, String> {
    let base = storage_base(root, user);
    match user {
        Some(user) => user.prepare_storage(&base).map_err(|e| e.to_string())?,
        None => std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?,
    }
    let scratch = tempfile::Builder::new()
        .prefix("probe-")
        .tempdir_in(&base)
        .map_err(|e| format!("a scratch folder in {}: {e}", base.display()))?;
    let result = run_probe(scratch.path(), user);
    if let Err(error) = scratch.close() {
        tracing::warn!(%error, "the storage probe's scratch folder was not removed");
    }
    result
}

/// The probe build in `scratch`: its context, its `/dev` folder and its store all live there.
fn run_probe(scratch: &Path, user: Option<&BuildUser>) -> Result<Duration, String> {
    let io = |e: std::io::Error| format!("preparing the probe in {}: {e}", scratch.display());
    let context = scratch.join("context");
    let dev = scratch.join("dev");
    std::fs::create_dir_all(&context).map_err(io)?;
    std::fs::create_dir_all(&dev).map_err(io)?;
    std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY probe.txt /probe.txt\n").map_err(io)?;
    std::fs::write(context.join("probe.txt"), "overlay\n").map_err(io)?;
    if let Some(user) = user {
        user.give(scratch).map_err(|e| e.to_string())?;
    }
    let mut command = buildah_command(&scratch.join("store"), StorageDriver::Overlay, user, &dev);
    command
        .args(["bud", "--isolation", "chroot", "--pull=false", "-t", "localhost/of-builder-probe:latest", "-f"])
        .arg(context.join("Dockerfile"))
        .arg(&context);
    let started = Instant::now();
    run_with_timeout(command, &scratch.join("probe.log"))?;
    Ok(started.elapsed())
}

/// Runs `command` with its output in `log`, killed after `PROBE_TIMEOUT`; the error is its last output line.
fn run_with_timeout(mut command: Command, log: &Path) -> Result<(), String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let second = file.try_clone().map_err(|e| e.to_string())?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(second)
        .spawn()
        .map_err(|e| format!("`buildah` cannot run: {e}"))?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            // Killing `unshare` ends the sandbox's PID namespace and everything in it.
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // Buildah's reason is its `Error:` line; warnings about the failed store may follow it.
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.iter().rev().find(|l| l.starts_with("Error")).or(lines.last()).copied().unwrap_or("no output");
    Err(format!("{status}: {}", last.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_setting_and_names_what_is_accepted() {
        assert_eq!(DriverSetting::parse(None), Ok(DriverSetting::Auto));
        assert_eq!(DriverSetting::parse(Some("auto")), Ok(DriverSetting::Auto));
        assert_eq!(DriverSetting::parse(Some("overlay")), Ok(DriverSetting::Overlay));
        assert_eq!(DriverSetting::parse(Some("vfs")), Ok(DriverSetting::Vfs));
        assert!(DriverSetting::parse(Some("btrfs")).unwrap_err().contains("auto, overlay or vfs"));
    }

    #[test]
    fn each_driver_has_its_own_folders() {
        let (overlay, _) = driver_folders(Path::new("/s"), StorageDriver::Overlay);
        let (vfs, run) = driver_folders(Path::new("/s"), StorageDriver::Vfs);
        assert_eq!((overlay.as_path(), vfs.as_path()), (Path::new("/s/overlay/storage"), Path::new("/s/vfs/storage")));
        assert_eq!(run, Path::new("/s/vfs/run"));
    }
}
