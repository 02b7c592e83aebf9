//! A child process that stops with the test that started it.
//!
//! Why here: tests and benchmarks start real binaries (`ofc up`, gh-push, the watchdog, …) and each had its own
//! `impl Drop` to stop them, some with SIGKILL, some with SIGTERM and an unbounded wait. [`ProcessGuard`] is the one
//! way: SIGTERM first, so the process drains as it would when OpenFaaS stops it, then SIGKILL after a bounded grace,
//! and always a reap, so a failing test leaves neither a running process nor a zombie behind.
//!
//! The signal is sent with the `kill` command: the workspace forbids `unsafe` (so no `libc::kill`), and this avoids
//! a dependency for one signal.

use std::io;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Owns a child process; dropping it (or [`ProcessGuard::stop`]) sends SIGTERM, waits up to the grace period, then
/// sends SIGKILL, and reaps the process.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Option<Child>,
    grace: Duration,
}

impl ProcessGuard {
    /// How long a process has to exit after SIGTERM, unless [`ProcessGuard::grace`] says otherwise.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

    /// Guards an already started child.
    pub fn new(child: Child) -> Self {
        Self { child: Some(child), grace: Self::DEFAULT_GRACE }
    }

    /// Starts `command` and guards the child.
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        command.spawn().map(Self::new)
    }

    /// How long to wait after SIGTERM before SIGKILL.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child().id()
    }

    /// The exit status if the process has exited (and reaps it), without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child_mut().try_wait()
    }

    /// The guarded child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("a guarded child until stopped")
    }

    /// Stops the process now (SIGTERM, the grace period, SIGKILL) and answers how it exited.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        let mut child = self.child.take().expect("a guarded child until stopped");
        terminate(&mut child, self.grace)
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("a guarded child until stopped")
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child, self.grace);
        }
    }
}

fn terminate(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    // Not reaped yet, so the pid is still this child's.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()
}

/// The RSS (KiB) of every process in the process groups of the `buildah run` processes working on `root`: what
/// the replicas of a local stack whose runtime storage is `root` hold.
pub fn buildah_run_groups_rss_kib(root: &std::path::Path) -> u64 {
    let needle = root.display().to_string();
    let stat = |path: &std::path::Path| -> Option<(u32, String)> {
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        let group = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().nth(2)?.parse().ok()?;
        let command = String::from_utf8_lossy(&std::fs::read(path.join("cmdline")).ok()?).replace('\0', " ");
        Some((group, command))
    };
    let processes: Vec<(std::path::PathBuf, u32, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let (group, command) = stat(&path)?;
            Some((path, group, command))
        })
        .collect();
    let groups: Vec<u32> =
        processes.iter().filter(|(_, _, c)| c.contains(&needle) && c.contains(" run ")).map(|(_, g, _)| *g).collect();
    processes
        .iter()
        .filter(|(_, g, _)| groups.contains(g))
        .filter_map(|(path, _, _)| {
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::ProcessGuard;

    #[test]
    fn stop_sends_sigterm_first() {
        let guard = ProcessGuard::spawn(Command::new("sleep").arg("30")).unwrap();
        let started = Instant::now();
        let status = guard.stop().unwrap();
        assert_eq!(status.signal(), Some(15), "{status}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
        let script = "trap '' TERM; echo ready; while :; do sleep 0.1; done";
        let mut command = Command::new("sh");
        command.args(["-c", script]).stdout(std::process::Stdio::piped());
        let mut guard = ProcessGuard::spawn(&mut command).unwrap().grace(Duration::from_millis(300));
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(guard.child_mut().stdout.as_mut().unwrap(), &mut ready).unwrap();
        let status = guard.stop().unwrap();
        assert_eq!(status.signal(), Some(9), "{status}");
    }

    #[test]
    fn dropping_reaps_the_process() {
        let guard = ProcessGuard::spawn(Command::new("sleep").arg("30")).unwrap();
        let pid = guard.id();
        drop(guard);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "no zombie left");
    }
}
