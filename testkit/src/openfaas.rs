//! The real OpenFaaS binaries (gateway, basic-auth plugin, queue-worker, NATS Streaming, faas-cli, faasd) for tests,
//! and a network namespace to run them in.
//!
//! Why here: the binaries come gzip-compressed from a folder outside the repository (`OFC_OPENFAAS_DIR`, by default
//! `<workspace>/../shared/openfaas`) and must never be committed, so every test that uses them unpacks them the same
//! way into `target/openfaas/`. The gateway binds `:8080` and `:8082` on every interface, so it runs inside a network
//! namespace a test creates ([`NetNs`]), never on the host's.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::ProcessGuard;

/// The binaries, as the folder holds them (`NAME.gz`).
pub const BINARIES: [&str; 6] =
    ["faas-cli", "ofgateway", "basic-auth", "queue-worker", "nats-streaming-server", "faasd"];

/// The folder the compressed binaries are read from.
pub fn source_dir() -> PathBuf {
    std::env::var_os("OFC_OPENFAAS_DIR")
        .map_or_else(|| crate::local_stack::repository_root().join("../shared/openfaas"), PathBuf::from)
}

/// The unpacked binaries, in `target/openfaas/`.
#[derive(Debug, Clone)]
pub struct OpenFaas {
    pub dir: PathBuf,
}

impl OpenFaas {
    /// Unpacks the binaries (once; safe when two tests do it at once) and answers where they are. `None` only when
    /// the folder is absent and `OFC_SKIP_REAL_OPENFAAS=1` says to skip, after printing a loud line saying so; an
    /// absent folder otherwise fails the test, naming the path.
    pub fn locate(test: &str) -> Option<Self> {
        let source = source_dir();
        if !source.is_dir() {
            if std::env::var("OFC_SKIP_REAL_OPENFAAS").as_deref() == Ok("1") {
                eprintln!(
                    "=== skipped: {test}: the OpenFaaS binaries are not at {} (OFC_SKIP_REAL_OPENFAAS=1) ===",
                    source.display()
                );
                return None;
            }
            panic!(
                "{test} needs the OpenFaaS binaries (faas-cli.gz, ofgateway.gz, …) in {}: set OFC_OPENFAAS_DIR, \
                 or OFC_SKIP_REAL_OPENFAAS=1 to skip",
                source.display()
            );
        }
        let dir = crate::local_stack::repository_root().join("target/openfaas");
        std::fs::create_dir_all(&dir).expect("target/openfaas");
        for name in BINARIES {
            unpack(&source.join(format!("{name}.gz")), &dir.join(name));
        }
        Some(Self { dir })
    }

    /// The path of one binary.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Gunzips `gz` to `to` unless `to` is already newer; into a file of its own first, then renamed, so a concurrent
/// unpack or a reader never sees half a binary.
fn unpack(gz: &Path, to: &Path) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let source_time = modified(gz).unwrap_or_else(|| panic!("{} is missing", gz.display()));
    if modified(to).is_some_and(|unpacked| unpacked >= source_time) {
        return;
    }
    // Unique to this process and thread: tests of one binary run as threads of one process.
    let partial = to.with_extension(format!("partial-{}-{:?}", std::process::id(), std::thread::current().id()));
    let output = std::fs::File::create(&partial).expect("a file in target/openfaas");
    let status = Command::new("gzip").arg("-dc").arg(gz).stdout(output).status().expect("gzip runs");
    assert!(status.success(), "gzip -dc {} failed ({status})", gz.display());
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&partial, to).expect("rename the unpacked binary");
}

/// A network namespace of the test's own, held open by a `sleep` process in it (with its loopback up); everything
/// started through [`NetNs::command`] joins it. Dropping it stops the processes it started (TERM, a bounded grace,
/// KILL), then the holder, which ends the namespace.
pub struct NetNs {
    /// Stopped in reverse order of start.
    processes: Vec<(String, ProcessGuard)>,
    holder: ProcessGuard,
}

impl NetNs {
    /// How long the holder may take to bring its loopback up.
    const READY_WITHIN: Duration = Duration::from_secs(10);

    /// A new namespace (needs root, as `unshare --net` does).
    pub fn new() -> Self {
        let mut command = Command::new("unshare");
        command.args(["--net", "sh", "-c", "ip link set lo up && exec sleep 3600"]).stdin(Stdio::null());
        let holder = ProcessGuard::spawn(&mut command).expect("unshare runs").grace(Duration::from_secs(2));
        let ns = Self { processes: Vec::new(), holder };
        let own = std::fs::read_link("/proc/self/ns/net").expect("this process's network namespace");
        let deadline = Instant::now() + Self::READY_WITHIN;
        loop {
            let theirs = std::fs::read_link(format!("/proc/{}/ns/net", ns.pid())).ok();
            let lo_up = theirs.as_ref().is_some_and(|t| *t != own)
                && ns
                    .command("ip")
                    .args(["-o", "link", "show", "lo"])
                    .output()
                    .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
            if lo_up {
                return ns;
            }
            assert!(Instant::now() < deadline, "the network namespace's loopback did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The holder's pid, which names the namespace (`nsenter -t PID -n`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `program` run inside the namespace (`nsenter` execs it, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command.arg("-t").arg(self.pid().to_string()).arg("-n").arg("--").arg(program);
        command
    }

    /// Starts `command` (from [`NetNs::command`]) as a long-running part, stopped when the namespace is dropped.
    pub fn spawn(&mut self, name: &str, command: &mut Command) -> &mut ProcessGuard {
        let guard = ProcessGuard::spawn(command).unwrap_or_else(|e| panic!("{name} cannot start: {e}"));
        self.processes.push((name.to_owned(), guard.grace(Duration::from_secs(15))));
        &mut self.processes.last_mut().expect("just pushed").1
    }

    /// Whether a started part is still running; panics naming it when it exited, with `log` to show why.
    pub fn assert_running(&mut self, log: impl Fn(&str) -> String) {
        for (name, guard) in &mut self.processes {
            if let Some(status) = guard.try_wait().expect("a part's status") {
                panic!("{name} exited ({status}): {}", log(name));
            }
        }
    }

    /// Waits until something in the namespace accepts connections on `127.0.0.1:port` (bounded by `within`).
    pub fn wait_port(&self, port: u16, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
        while Instant::now() < deadline {
            let open = self.command("bash").args(["-c", &probe]).stderr(Stdio::null()).status();
            if open.is_ok_and(|s| s.success()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        while let Some((_, guard)) = self.processes.pop() {
            let _ = guard.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;
    use std::time::Duration;

    use super::NetNs;

    #[test]
    fn a_listener_in_the_namespace_is_not_on_the_host_and_stops_with_it() {
        let port = crate::ports::free_port();
        let mut ns = NetNs::new();
        let mut listener = ns.command("busybox");
        listener.args(["nc", "-l", "-p", &port.to_string()]).stdin(Stdio::null()).stdout(Stdio::null());
        let pid = ns.spawn("nc", &mut listener).id();
        assert!(ns.wait_port(port, Duration::from_secs(10)), "the listener is up inside");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing of it on the host's loopback");
        let holder = ns.pid();
        drop(ns);
        for gone in [pid, holder] {
            assert!(!std::path::Path::new(&format!("/proc/{gone}")).exists(), "{gone} is stopped and reaped");
        }
    }
}
