//! The build sandbox: pushed code runs in `RUN` steps, so a build must not reach the host.
//!
//! With a `build_user`, every Buildah call runs as that unprivileged user (rootless Buildah: the image's root is the
//! build user, its other uids the user's `/etc/subuid` range), inside a fresh PID namespace (other builds and host
//! processes are invisible, so they cannot be signalled or traced) and a fresh mount namespace whose `/dev` holds
//! only `null`, `zero`, `full`, `random`, `urandom` and `tty` (no disks). `unshare` starts as root and does not set
//! `no_new_privs`, so the setuid `newuidmap` Buildah needs for the user's uid range still works after the drop.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::BuilderError;

/// An unprivileged local user builds run as (`build_user`), resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Run as root inside the new namespaces: builds the minimal `/dev` in `$1`, moves it over `/dev` (only this
/// build's mount namespace sees it), then becomes the build user (`$2`) with a clean environment and runs the rest.
const ENTER: &str = r#"set -eu
dev="$1"; user="$2"; shift 2
mount -t tmpfs -o mode=755,nosuid,noexec,size=64k ofc-dev "$dev"
for d in null zero full random urandom tty; do : > "$dev/$d"; mount --bind "/dev/$d" "$dev/$d"; done
mkdir "$dev/pts" "$dev/shm"
ln -s /proc/self/fd "$dev/fd"
ln -s /proc/self/fd/0 "$dev/stdin"; ln -s /proc/self/fd/1 "$dev/stdout"; ln -s /proc/self/fd/2 "$dev/stderr"
mount --move "$dev" /dev
exec setpriv --reuid "$user" --regid "$user" --init-groups --reset-env "$@""#;

impl BuildUser {
    /// Looks `name` up in `/etc/passwd` and checks it has subordinate uid and gid ranges (rootless Buildah maps the
    /// image's users into them); the reason names what is missing.
    pub fn lookup(name: &str) -> Result<Self, String> {
        // Entering the namespaces and dropping to the user takes root; as anyone else every build would fail.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let effective =
            status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
        if effective != Some("0") {
            return Err("of-builder must run as root to start builds as a build user".into());
        }
        Self::lookup_in(name, Path::new("/etc"))
    }

    fn lookup_in(name: &str, etc: &Path) -> Result<Self, String> {
        let passwd = std::fs::read_to_string(etc.join("passwd")).map_err(|e| format!("/etc/passwd: {e}"))?;
        let fields: Vec<&str> = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 7 && f[0] == name)
            .ok_or_else(|| format!("no user `{name}` in /etc/passwd (create it: see of-builder/README.md)"))?;
        let number = |i: usize| fields[i].parse::<u32>().map_err(|_| format!("/etc/passwd: bad id for `{name}`"));
        let user = Self { name: name.to_owned(), uid: number(2)?, gid: number(3)?, home: PathBuf::from(fields[5]) };
        if user.uid == 0 {
            return Err(format!("`{name}` is root; the build user must be unprivileged"));
        }
        for file in ["subuid", "subgid"] {
            let text = std::fs::read_to_string(etc.join(file)).unwrap_or_default();
            let id = if file == "subuid" { user.uid } else { user.gid }.to_string();
            let listed = text.lines().any(|l| l.split(':').next().is_some_and(|owner| owner == name || owner == id));
            if !listed {
                return Err(format!("`{name}` has no range in /etc/{file} (add `{name}:200000:65536`)"));
            }
        }
        Ok(user)
    }

    /// `program args…` as this user in a fresh PID and mount namespace with a minimal `/dev`; `dev` is an empty
    /// folder the new `/dev` is assembled in. Not `unshare --kill-child`: the parent-death signal it sets is
    /// cleared when `setpriv` changes the uid (measured: a timed-out build kept running), so a stopped build's
    /// process group is killed instead (`backend::run_logged`), which ends the namespace with its first process.
    pub fn command(&self, dev: &Path, program: &str) -> Command {
        self.std_command(dev, program).into()
    }

    /// `command`, for a caller that waits synchronously (the storage probe at start, before the server runs).
    pub fn std_command(&self, dev: &Path, program: &str) -> std::process::Command {
        let mut command = std::process::Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc", "--", "sh", "-c", ENTER, "sh"])
            .arg(dev)
            .arg(&self.name)
            .arg(program);
        command
    }

    /// Hands `path` and everything below it (links themselves, never their targets) to the build user.
    pub fn give(&self, path: &Path) -> Result<(), BuilderError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))?;
        if std::fs::symlink_metadata(path)?.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.give(&entry?.path())?;
            }
        }
        Ok(())
    }

    /// Creates Buildah's storage folder for this user, or checks an existing one is the user's: storage written by
    /// root builds holds root-owned layers rootless Buildah cannot use.
    pub fn prepare_storage(&self, root: &Path) -> Result<(), BuilderError> {
        if !root.exists() {
            std::fs::create_dir_all(root)?;
            std::os::unix::fs::chown(root, Some(self.uid), Some(self.gid))?;
            return Ok(());
        }
        let owner = std::fs::metadata(root)?.uid();
        if owner != self.uid {
            return Err(BuilderError::Backend(format!(
                "buildah_root {} belongs to uid {owner}, not the build user `{}`: empty it or choose another folder",
                root.display(),
                self.name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etc(passwd: &str, subuid: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("subuid"), subuid).unwrap();
        std::fs::write(dir.path().join("subgid"), subuid).unwrap();
        dir
    }

    #[test]
    fn resolves_a_user_with_subordinate_ranges_and_names_what_is_missing() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nofcbuild:x:999:995::/var/lib/ofcbuild:/usr/sbin/nologin\n";
        let dir = etc(passwd, "ofcbuild:200000:65536\n");
        let user = BuildUser::lookup_in("ofcbuild", dir.path()).unwrap();
        assert_eq!((user.uid, user.gid, user.home.as_path()), (999, 995, Path::new("/var/lib/ofcbuild")));
        assert!(BuildUser::lookup_in("nobody", dir.path()).unwrap_err().contains("no user `nobody`"));
        assert!(BuildUser::lookup_in("root", dir.path()).unwrap_err().contains("unprivileged"));
        let dir = etc(passwd, "someone:100000:65536\n");
        assert!(BuildUser::lookup_in("ofcbuild", dir.path()).unwrap_err().contains("/etc/subuid"));
    }
}
