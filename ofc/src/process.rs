//! The local stack's child processes (the registry, of-builder, the functions, replicas under `buildah run`) and their
//! loopback ports, in one place, so every child is stopped the same way (SIGTERM, a bounded wait to drain, then
//! SIGKILL) and dies with `ofc` however `ofc` ends.
//!
//! Dying with `ofc`: every long-running child is started through `setpriv --pdeathsig KILL` ([`command`]), so the
//! kernel kills it when its parent goes, even on `kill -9` of `ofc`, where no clean-up code runs. The parent the
//! kernel watches is the *thread* that spawned the child, so every such child is spawned by one thread that lives as
//! long as `ofc` ([`ChildProcess::spawn`]); a child spawned from a tokio worker or blocking thread would be killed
//! when that thread retires.

use std::ffi::OsStr;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// How often a running child is checked for having exited.
const POLL: Duration = Duration::from_millis(50);

/// A free port on 127.0.0.1 (free when asked: the caller binds it soon after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `program`, run so that the kernel kills it when `ofc` dies (`setpriv --pdeathsig KILL -- program`); spawn it
/// with [`ChildProcess::spawn`].
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--"]).arg(program);
    command
}

/// A request to the spawning thread, and where its answer goes.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The one thread that spawns children: it never exits, so a child's parent-death signal fires only when `ofc`
/// itself ends.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, received) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("ofc-spawner".into())
            .spawn(move || {
                for (mut command, answer) in received {
                    let _ = answer.send(command.spawn());
                }
            })
            .expect("the spawning thread starts");
        requests
    })
}

/// A child process; killed when dropped without [`ChildProcess::stop`].
#[derive(Debug)]
pub struct ChildProcess {
    /// For logs.
    name: String,
    /// Reaped only through `try_wait`, so its pid cannot be reused while this is signalled.
    child: Child,
    /// Started as the leader of its own process group (`buildah run` and what it runs): signals go to the group.
    group: bool,
}

impl ChildProcess {
    /// Spawns `command` (built with [`command`]; with `group`, `process_group(0)`) from the spawning thread. Blocks
    /// for as long as a fork and exec take.
    pub fn spawn(name: &str, command: Command, group: bool) -> std::io::Result<Self> {
        let gone = || std::io::Error::other("the spawning thread is gone");
        let (answer, answered) = mpsc::channel();
        spawner().send((command, answer)).map_err(|_| gone())?;
        let child = answered.recv().map_err(|_| gone())??;
        Ok(Self { name: name.to_owned(), child, group })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited (kept by `Child` once reaped).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits until it exits.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn signal(&mut self, signal: &str) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        let target = if self.group { format!("-{}", self.id()) } else { self.id().to_string() };
        let _ = tokio::process::Command::new("kill").args([signal, "--", &target]).status().await;
    }

    /// SIGTERM, so it drains; SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        tracing::debug!(name = %self.name, "stopping");
        self.signal("-TERM").await;
        if tokio::time::timeout(grace, self.wait()).await.is_err() {
            tracing::warn!(name = %self.name, seconds = grace.as_secs(), "did not stop after SIGTERM; killing it");
            self.signal("-KILL").await;
            let _ = self.wait().await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        if self.group {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.id())]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parent pid in /proc/PID/stat (the field after the command's closing parenthesis and the state).
    fn parent_of(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    }

    #[tokio::test]
    async fn a_child_outlives_the_thread_that_asked_for_it_and_is_stopped() {
        let mut sleeper = command("sleep");
        sleeper.arg("30");
        let mut child =
            std::thread::spawn(move || ChildProcess::spawn("sleep", sleeper, false).unwrap()).join().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(child.try_wait().unwrap(), None, "killed when the thread that asked for it ended");
        assert_eq!(parent_of(child.id()), Some(std::process::id()));
        child.stop(Duration::from_secs(5)).await;
        assert!(child.try_wait().unwrap().is_some());
    }
}
