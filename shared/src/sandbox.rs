//! The sandbox pushed code runs in, one copy for the build (of-builder) and the local stack's running functions
//! (`ofc`): a build's `RUN` steps and a deployed function are the same untrusted code, so they get the same walls.
//!
//! Every Buildah call runs as an unprivileged user (rootless Buildah: the image's root is that user, its other
//! uids the user's `/etc/subuid` range), inside a fresh PID namespace (host processes are invisible, so they cannot
//! be signalled or traced) and a fresh mount namespace whose `/dev` holds only `null`, `zero`, `full`, `random`,
//! `urandom` and `tty` (no disks). What runs pushed code for long (a replica, a build's `bud`) also gets a network
//! namespace with only `lo` ([`Confinement`]), and a replica its cgroups and a read-only root. `unshare` starts as root and does not set `no_new_privs`, so the setuid
//! `newuidmap` Buildah needs for the user's uid range still works after the drop.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The capability `buildah run`/`bud` drop in the sandbox: capabilities exist only inside the user namespace, over
/// the image's own files (`chown` in a Dockerfile keeps working); `chroot` is the one that would let code leave the
/// image's root. `buildah run` wants the `CAP_` prefix; `bud` takes either.
pub const DROPPED_CAPABILITY: &str = "CAP_SYS_CHROOT";

/// An unprivileged local user pushed code runs as, resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Run as root inside the new namespaces: takes the steps before `--` in turn, then runs the rest as the user (or
/// as root when no `user` step is given) with a clean environment. The steps:
/// - `dev DIR`: builds the minimal `/dev` in `DIR` and moves it over `/dev` (only this mount namespace sees it);
/// - `join FILE`: joins a cgroup (its `cgroup.procs`), before any of the code it limits runs, so nothing escapes it;
/// - `loopback`: brings up `lo` in the new network namespace, the only interface it has;
/// - `read-only ROOT TMP_BYTES UID:GID`: makes the container's root folder read-only here (a mount the user's own
///   namespaces inherit locked, so it cannot be made writable again) with size-limited tmpfs on its `/tmp` and on
///   its `/run` (Buildah writes `/run/.containerenv` there).
///
/// The parent-death signal is set after the uid change (a change clears it), so the namespace's first process, and
/// with it the whole namespace, dies with `unshare`.
const ENTER: &str = r#"set -eu
user=
while [ "$1" != -- ]; do
  case "$1" in
    dev)
      dev="$2"; shift 2
      mount -t tmpfs -o mode=755,nosuid,noexec,size=64k ofc-dev "$dev"
      for d in null zero full random urandom tty; do : > "$dev/$d"; mount --bind "/dev/$d" "$dev/$d"; done
      mkdir "$dev/pts" "$dev/shm"
      ln -s /proc/self/fd "$dev/fd"
      ln -s /proc/self/fd/0 "$dev/stdin"; ln -s /proc/self/fd/1 "$dev/stdout"; ln -s /proc/self/fd/2 "$dev/stderr"
      mount --move "$dev" /dev ;;
    join) echo $$ > "$2"; shift 2 ;;
    loopback) ip link set lo up; shift ;;
    read-only)
      root="$2"; tmp="$3"; owner="$4"; shift 4
      mount --bind "$root" "$root"
      mount -o remount,bind,ro,nosuid,nodev "$root"
      mount -t tmpfs -o "size=$tmp,mode=1777,nosuid,nodev" ofc-tmp "$root/tmp"
      mount -t tmpfs -o "size=256k,mode=755,nosuid,nodev,noexec,uid=${owner%:*},gid=${owner#*:}" ofc-run "$root/run" ;;
    user) user="$2"; shift 2 ;;
    *) echo "sandbox: unknown step $1" >&2; exit 125 ;;
  esac
done
shift
if [ -n "$user" ]; then
  exec setpriv --reuid "$user" --regid "$user" --init-groups --reset-env --pdeathsig KILL "$@"
fi
exec setpriv --reset-env --pdeathsig KILL "$@""#;

/// The walls around one sandboxed call beyond the PID and mount namespaces every call gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// A network namespace of its own with only `lo`: nothing listening on the host answers it (a replica, a
    /// build's `bud`), where `false` keeps the host's network (a pull, a push).
    pub own_network: bool,
    /// The `cgroup.procs` files of the cgroups it runs in (memory, pids, cpu), joined before it starts.
    pub cgroups: Vec<PathBuf>,
    /// Its container's root made read-only, with bounded writable `/tmp` and `/run`.
    pub read_only_root: Option<ReadOnlyRoot>,
}

/// A container root folder to make read-only (prepared by the caller: `tmp` and `run` are real folders in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlyRoot {
    pub root: PathBuf,
    /// The size of the tmpfs on `/tmp`.
    pub tmp_bytes: u64,
}

/// `unshare`'s arguments that run `program args…` in fresh PID and mount namespaces (and a network namespace with
/// `confinement.own_network`), as `user` with a minimal `/dev` assembled in `dev` when given, else as root.
/// Callers put `unshare` in front, wrapped as they need (`setpriv --pdeathsig`).
pub fn unshare_args(
    user: Option<&BuildUser>,
    dev: Option<&Path>,
    confinement: &Confinement,
    program: impl AsRef<OsStr>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--pid", "--fork", "--mount-proc"].iter().map(OsString::from).collect();
    if confinement.own_network {
        args.push("--net".into());
    }
    args.extend(["--", "sh", "-c", ENTER, "sh"].iter().map(OsString::from));
    if let Some(dev) = dev {
        args.extend([OsString::from("dev"), dev.as_os_str().to_owned()]);
    }
    for cgroup in &confinement.cgroups {
        args.extend([OsString::from("join"), cgroup.as_os_str().to_owned()]);
    }
    if confinement.own_network {
        args.push("loopback".into());
    }
    if let Some(read_only) = &confinement.read_only_root {
        let (uid, gid) = user.map_or((0, 0), |u| (u.uid, u.gid));
        args.extend([
            OsString::from("read-only"),
            read_only.root.as_os_str().to_owned(),
            read_only.tmp_bytes.to_string().into(),
            format!("{uid}:{gid}").into(),
        ]);
    }
    if let Some(user) = user {
        args.extend([OsString::from("user"), OsString::from(&user.name)]);
    }
    args.extend([OsString::from("--"), program.as_ref().to_owned()]);
    args
}

impl BuildUser {
    /// Looks `name` up in `/etc/passwd` and checks it has subordinate uid and gid ranges (rootless Buildah maps the
    /// image's users into them); the reason names what is missing.
    pub fn lookup(name: &str) -> Result<Self, String> {
        // Entering the namespaces and dropping to the user takes root; as anyone else every call would fail.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let effective =
            status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
        if effective != Some("0") {
            return Err("the sandbox needs root to start pushed code as the build user".into());
        }
        Self::lookup_in(name, Path::new("/etc"))
    }

    /// [`BuildUser::lookup`] against the files of `etc`.
    pub fn lookup_in(name: &str, etc: &Path) -> Result<Self, String> {
        let passwd = std::fs::read_to_string(etc.join("passwd")).map_err(|e| format!("/etc/passwd: {e}"))?;
        let fields: Vec<&str> = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 7 && f[0] == name)
            .ok_or_else(|| format!("no user `{name}` in /etc/passwd"))?;
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

    /// `unshare`'s arguments that run `program args…` as this user in a fresh PID and mount namespace with a
    /// minimal `/dev`, on the host's network; `dev` is an empty folder the new `/dev` is assembled in (it may be
    /// shared: each namespace mounts over it privately). Callers put `unshare` in front, wrapped as they need.
    pub fn unshare_args(&self, dev: &Path, program: impl AsRef<OsStr>) -> Vec<OsString> {
        unshare_args(Some(self), Some(dev), &Confinement::default(), program)
    }

    /// `program args…` in the sandbox ([`BuildUser::unshare_args`]) with `confinement`'s further walls. Not
    /// `unshare --kill-child`: the parent-death signal it sets is cleared when `setpriv` changes the uid
    /// (measured), so `setpriv` sets it again after.
    pub fn confined_command(
        &self,
        dev: &Path,
        confinement: &Confinement,
        program: impl AsRef<OsStr>,
    ) -> std::process::Command {
        let mut command = std::process::Command::new("unshare");
        command.args(unshare_args(Some(self), Some(dev), confinement, program));
        command
    }

    /// `program args…` in the sandbox on the host's network ([`BuildUser::confined_command`]).
    pub fn command(&self, dev: &Path, program: impl AsRef<OsStr>) -> std::process::Command {
        self.confined_command(dev, &Confinement::default(), program)
    }

    /// Hands `path` and everything below it (links themselves, never their targets) to the user.
    pub fn give(&self, path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))?;
        if std::fs::symlink_metadata(path)?.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.give(&entry?.path())?;
            }
        }
        Ok(())
    }

    /// Creates Buildah's storage folder for this user, or checks an existing one is the user's: storage written by
    /// root holds root-owned layers rootless Buildah cannot use.
    pub fn prepare_storage(&self, root: &Path) -> std::io::Result<()> {
        // Builds run side by side: without this, one could see the folder another has just created and not yet
        // handed to the user, and refuse it as root's.
        static PREPARING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = PREPARING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !root.exists() {
            std::fs::create_dir_all(root)?;
            std::os::unix::fs::chown(root, Some(self.uid), Some(self.gid))?;
            return Ok(());
        }
        let owner = std::fs::metadata(root)?.uid();
        if owner != self.uid {
            return Err(std::io::Error::other(format!(
                "buildah_root {} belongs to uid {owner}, not the build user `{}`: empty it or choose another folder",
                root.display(),
                self.name
            )));
        }
        Ok(())
    }

    /// The first folder above `path` (and `path` itself) the user cannot pass through, by the permission bits:
    /// rootless Buildah opens its storage as the user, so every folder on the way must let it through.
    pub fn blocked_on_the_way_to(&self, path: &Path) -> Option<PathBuf> {
        path.ancestors().filter(|p| !p.as_os_str().is_empty()).find_map(|folder| {
            let meta = std::fs::metadata(folder).ok()?;
            let mode = meta.mode();
            let passes = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            (!passes).then(|| folder.to_owned())
        })
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

    #[test]
    fn a_confined_call_gets_its_own_network_cgroups_and_read_only_root_before_the_program() {
        let user = BuildUser { name: "u".into(), uid: 999, gid: 995, home: PathBuf::from("/") };
        let text = |args: Vec<OsString>| args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
        let plain = text(user.unshare_args(Path::new("/d"), "buildah"));
        assert!(!plain.contains(&"--net".to_owned()) && !plain.contains(&"loopback".to_owned()));
        let confinement = Confinement {
            own_network: true,
            cgroups: vec![PathBuf::from("/cg/memory/r/cgroup.procs")],
            read_only_root: Some(ReadOnlyRoot { root: PathBuf::from("/s/root"), tmp_bytes: 1024 }),
        };
        let args = text(unshare_args(Some(&user), Some(Path::new("/d")), &confinement, "buildah"));
        assert_eq!(&args[..4], ["--pid", "--fork", "--mount-proc", "--net"]);
        let steps = args.iter().skip_while(|a| *a != "sh").skip(4).cloned().collect::<Vec<_>>().join(" ");
        assert_eq!(
            steps,
            "dev /d join /cg/memory/r/cgroup.procs loopback read-only /s/root 1024 999:995 user u -- buildah"
        );
        let as_root = text(unshare_args(None, None, &Confinement::default(), "buildah"));
        assert_eq!(as_root.last().map(String::as_str), Some("buildah"));
        assert!(!as_root.contains(&"user".to_owned()) && !as_root.contains(&"dev".to_owned()));
    }

    #[test]
    fn names_the_folder_the_user_cannot_pass() {
        use std::os::unix::fs::PermissionsExt as _;
        let user = BuildUser { name: "u".into(), uid: 4_000_000, gid: 4_000_000, home: PathBuf::from("/") };
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("state");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(user.blocked_on_the_way_to(&inner.join("storage")), Some(dir.path().to_owned()));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(user.blocked_on_the_way_to(&inner.join("storage")), None);
    }
}
