//! Starting the project's release binaries and reading their memory from /proc.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::process::ProcessGuard;

/// A child process stopped when dropped, so a failed benchmark leaves nothing behind.
pub struct Child(ProcessGuard);

impl Child {
    pub fn spawn(binary: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: build the release binaries first (`cargo build --release --workspace --bins`)",
            binary.display()
        );
        let mut command = Command::new(binary);
        command.env_clear().stdout(Stdio::null()).stderr(Stdio::null());
        // `BENCH_CHILD_LOGS=1` shows the measured processes' logs, to find out why a figure is off.
        if std::env::var_os("BENCH_CHILD_LOGS").is_some() {
            command.stderr(Stdio::inherit());
        }
        // Experiments with the runtime's threads (`TOKIO_WORKER_THREADS`) reach the measured process.
        if let Some(threads) = std::env::var_os("TOKIO_WORKER_THREADS") {
            command.env("TOKIO_WORKER_THREADS", threads);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        Ok(Self(ProcessGuard::spawn(&mut command)?))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits until `GET /_/health` answers 200.
    pub async fn wait_healthy(&self, address: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                stream.write_all(b"GET /_/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
                let mut text = String::new();
                stream.read_to_string(&mut text).await?;
                if text.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "the process did not become healthy at {address}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// Resident memory now, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_field(pid, "VmRSS:")
}

/// The most resident memory the process has had, in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_field(pid, "VmHWM:")
}

/// CPU time the whole process (every thread) has used so far: utime + stime of `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(") ").map(|(_, rest)| rest).ok_or_else(|| anyhow::anyhow!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// The processes `ofc up` runs from `binaries`, by name, with their pids.
pub fn stack_processes(binaries: &Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else { continue };
        if exe.parent() == Some(binaries) {
            let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name != "bench" {
                found.push((name, pid));
            }
        }
    }
    found.sort();
    found
}
