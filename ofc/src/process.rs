//! The local stack's child processes (of-builder, the functions, replicas under `buildah run`) and their loopback
//! ports, in one place, so every child is stopped the same way: SIGTERM, a bounded wait to drain, then SIGKILL.

use std::time::Duration;

use tokio::process::{Child, Command};

/// A free port on 127.0.0.1 (free when asked: the caller binds it soon after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process; killed when dropped without [`ChildProcess::stop`].
#[derive(Debug)]
pub struct ChildProcess {
    /// For logs.
    name: String,
    child: Child,
    /// Started as the leader of its own process group (`buildah run` and what it runs): signals go to the group.
    group: bool,
}

impl ChildProcess {
    /// Spawns `command` (which should have `kill_on_drop`; with `group`, `process_group(0)`).
    pub fn spawn(name: &str, command: &mut Command, group: bool) -> std::io::Result<Self> {
        Ok(Self { name: name.to_owned(), child: command.spawn()?, group })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    async fn signal(&self, signal: &str) {
        let Some(pid) = self.child.id() else { return };
        let target = if self.group { format!("-{pid}") } else { pid.to_string() };
        let _ = Command::new("kill").args([signal, "--", &target]).status().await;
    }

    /// SIGTERM, so it drains; SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if self.child.id().is_none() {
            return;
        }
        tracing::debug!(name = %self.name, "stopping");
        self.signal("-TERM").await;
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            tracing::warn!(name = %self.name, seconds = grace.as_secs(), "did not stop after SIGTERM; killing it");
            self.signal("-KILL").await;
            let _ = self.child.wait().await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let (true, Some(pid)) = (self.group, self.child.id()) {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
        let _ = self.child.start_kill();
    }
}
