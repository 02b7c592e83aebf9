//! Keeps the local stack's long-running children up. `ofc up` starts the registry, of-builder and every function
//! once; without supervision a child that crashes (or is killed) stays down and every later push fails. Each child
//! gets a task that waits for it to exit, logs its name and exit status, and starts it again on the same port (the
//! gateway's routes and the other parts' settings name that port) after a backoff, until the stack shuts down.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use shared::retry::Backoff;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::process::ChildProcess;

/// How soon a child that exited is started again.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// The wait before the n-th restart in a row.
    pub backoff: Backoff,
    /// A child that ran this long before it exited counts as healthy: its restart waits the shortest time again.
    pub steady_after: Duration,
}

impl Default for RestartPolicy {
    /// 0.5 s doubling to 30 s; reset after a minute of running.
    fn default() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            steady_after: Duration::from_secs(60),
        }
    }
}

/// Builds a child's command anew for every start (so its log file is opened again, for appending).
pub type CommandFactory = Box<dyn Fn() -> std::io::Result<Command> + Send + Sync>;

/// A child to run and keep running.
pub struct ChildSpec {
    pub name: String,
    /// The loopback port it listens on, the same across restarts.
    pub port: u16,
    /// The path that answers 2xx once it serves.
    pub health: &'static str,
    /// Its command, built with [`crate::process::command`] so that it dies with `ofc`.
    pub command: CommandFactory,
}

/// A supervised child, until [`Supervised::stop`].
pub struct Supervised {
    name: String,
    port: u16,
    health: &'static str,
    /// The running process's pid; `None` while it waits to be started again.
    pid: watch::Receiver<Option<u32>>,
    /// Ends the supervision, with how long the child may take to exit after SIGTERM.
    stop: oneshot::Sender<Duration>,
    task: JoinHandle<()>,
}

/// How long a child may take to exit when its supervision ends without [`Supervised::stop`].
const DROPPED_GRACE: Duration = Duration::from_secs(1);

impl Supervised {
    /// Starts the child (an error when it cannot be spawned at all) and restarts it whenever it exits.
    pub fn start(spec: ChildSpec, policy: RestartPolicy) -> std::io::Result<Self> {
        let child = start_process(&spec)?;
        let (pid_sender, pid) = watch::channel(Some(child.id()));
        let (stop, stopped) = oneshot::channel();
        let (name, port, health) = (spec.name.clone(), spec.port, spec.health);
        let task = tokio::spawn(supervise(spec, child, stopped, pid_sender, policy));
        Ok(Self { name, port, health, pid, stop, task })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the process running now, if one is.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }

    /// Waits until the child answers its health check (whichever process of it runs by then).
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + timeout;
        let http = reqwest::Client::new();
        loop {
            let probe = http.get(format!("http://{address}{}", self.health)).timeout(Duration::from_secs(2)).send();
            if probe.await.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not become healthy on {address} within {} s (see its log)", self.name, timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the supervision, then stops the child: SIGTERM, `grace`, SIGKILL.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(grace);
        let _ = self.task.await;
    }
}

/// Starts one process of `spec`, in a process group of its own: a Ctrl-C in the terminal then reaches `ofc` alone,
/// which stops the children in order (after the gateway has drained, so calls under way can finish) rather than
/// seeing them die at once and restarting them.
fn start_process(spec: &ChildSpec) -> std::io::Result<ChildProcess> {
    let mut command = (spec.command)()?;
    command.process_group(0);
    ChildProcess::spawn(&spec.name, command, false)
}

/// Runs until told to stop (or until the [`Supervised`] is dropped), restarting `child` each time it exits.
async fn supervise(
    spec: ChildSpec,
    child: ChildProcess,
    mut stop: oneshot::Receiver<Duration>,
    pid: watch::Sender<Option<u32>>,
    policy: RestartPolicy,
) {
    let mut child = Some(child);
    let mut restarts = 0u32;
    loop {
        let started = Instant::now();
        let exited = match child.as_mut() {
            Some(running) => tokio::select! {
                grace = &mut stop => {
                    running.stop(grace.unwrap_or(DROPPED_GRACE)).await;
                    return;
                }
                status = running.wait() => Some(status.map_or_else(|e| format!("unknown ({e})"), |s| s.to_string())),
            },
            None => None,
        };
        let _ = pid.send(None);
        restarts = if started.elapsed() >= policy.steady_after { 1 } else { restarts.saturating_add(1) };
        let wait = policy.backoff.wait(restarts);
        if let Some(status) = exited {
            tracing::error!(name = %spec.name, %status, restart_in_seconds = wait.as_secs_f64(), "exited unexpectedly; restarting it");
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
        child = match start_process(&spec) {
            Ok(started) => {
                tracing::info!(name = %spec.name, pid = started.id(), port = spec.port, after_seconds = wait.as_secs_f64(), "restarted");
                let _ = pid.send(Some(started.id()));
                Some(started)
            }
            Err(error) => {
                tracing::error!(name = %spec.name, %error, "could not be started again; retrying");
                None
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(name: &str) -> ChildSpec {
        ChildSpec {
            name: name.to_owned(),
            port: 1,
            health: "/",
            command: Box::new(|| {
                let mut command = crate::process::command("sleep");
                command.arg("30");
                Ok(command)
            }),
        }
    }

    fn quick() -> RestartPolicy {
        RestartPolicy {
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(200)),
            ..Default::default()
        }
    }

    fn kill(pid: u32) {
        let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        assert!(killed.success());
    }

    fn is_gone(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
    }

    async fn next_pid(child: &Supervised, other_than: u32) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = child.pid().filter(|pid| *pid != other_than) {
                return pid;
            }
            assert!(Instant::now() < deadline, "{} was not restarted", child.name());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_child_that_is_killed_is_started_again_until_the_supervision_stops() {
        let child = Supervised::start(sleeper("sleeper"), quick()).unwrap();
        let first = child.pid().unwrap();
        kill(first);
        let second = next_pid(&child, first).await;
        kill(second);
        let third = next_pid(&child, second).await;
        child.stop(Duration::from_secs(5)).await;
        assert!(is_gone(third), "the child is stopped with its supervision");
    }

    #[tokio::test]
    async fn a_child_that_cannot_start_again_is_retried_with_backoff() {
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = attempts.clone();
        let spec = ChildSpec {
            command: Box::new(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut command = crate::process::command("sh");
                command.args(["-c", "exit 3"]);
                Ok(command)
            }),
            ..sleeper("failing")
        };
        let child = Supervised::start(spec, quick()).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.stop(Duration::from_secs(1)).await;
        let attempts = attempts.load(std::sync::atomic::Ordering::SeqCst);
        // Waits of 50, 100, 200, 200, … ms: about 8 starts in 1.5 s, far fewer than without a backoff.
        assert!((4..=12).contains(&attempts), "{attempts} starts");
    }
}
