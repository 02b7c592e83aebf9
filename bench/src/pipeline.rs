//! The whole pipeline through the real `ofc up`: push to live for the example (cold and warm), and many pushes of
//! different repositories sent at once (scale).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::Summary;

struct Up {
    child: std::process::Child,
    state: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn up(binaries: &Path) -> anyhow::Result<Up> {
    let state = tempfile::tempdir()?;
    let port = crate::process::free_port()?;
    let child = Command::new(binaries.join("ofc"))
        .args(["up", "--state", &state.path().display().to_string(), "--gateway-port", &port.to_string()])
        .arg("--stack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let up = Up { child, state };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !up.state.path().join("endpoints.json").exists() {
        anyhow::ensure!(Instant::now() < deadline, "ofc up did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(up)
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@example.com"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "git {args:?} failed");
    Ok(())
}

/// A copy of `examples/hello` named `name`, as its own repository, with `marker` making its content unique.
fn example(parent: &Path, name: &str, marker: &str) -> anyhow::Result<PathBuf> {
    let repo = parent.join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let status = Command::new("cp").arg("-r").arg(&source).arg(&repo).status()?;
    anyhow::ensure!(status.success(), "cp failed");
    std::fs::write(repo.join("hello/marker.txt"), marker)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "bench"])?;
    Ok(repo)
}

fn push(binaries: &Path, up: &Up, repo: &Path) -> anyhow::Result<std::process::Child> {
    Ok(Command::new(binaries.join("ofc"))
        .args([
            "push",
            &repo.display().to_string(),
            "--owner",
            "bench",
            "--state",
            &up.state.path().display().to_string(),
            "--timeout",
            "600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

fn timed_push(binaries: &Path, up: &Up, repo: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = push(binaries, up, repo)?.wait()?;
    anyhow::ensure!(status.success(), "ofc push of {} failed", repo.display());
    Ok(started.elapsed())
}

/// Push to live: the example's first push (empty build cache) and then unchanged pushes (cache hits).
pub fn push_to_live(binaries: &Path) -> anyhow::Result<()> {
    let up = up(binaries)?;
    let work = tempfile::tempdir()?;
    let repo = example(work.path(), "hello", "cold")?;
    let cold = timed_push(binaries, &up, &repo)?;
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(timed_push(binaries, &up, &repo)?);
    }
    println!("push to live (ofc push of examples/hello, 2 functions, send → stack-deploy success)");
    println!("   cold (empty build cache): {:.2} s", cold.as_secs_f64());
    println!("   warm (unchanged): {}", Summary::new(warm).line());
    Ok(())
}

/// Scale: `n` pushes of `n` different repositories sent at once, for each `n`.
pub fn scale(binaries: &Path, sizes: &[usize]) -> anyhow::Result<()> {
    println!("scale: N pushes of N different repositories sent at once (2 functions each, max 2 concurrent builds)");
    for &n in sizes {
        let up = up(binaries)?;
        let work = tempfile::tempdir()?;
        let repos: Vec<PathBuf> =
            (0..n).map(|i| example(work.path(), &format!("repo{i}"), &format!("{n}-{i}"))).collect::<Result<_, _>>()?;
        let started = Instant::now();
        let children: Vec<_> = repos.iter().map(|r| push(binaries, &up, r)).collect::<Result<_, _>>()?;
        let mut succeeded = 0;
        for mut child in children {
            if child.wait()?.success() {
                succeeded += 1;
            }
        }
        let total = started.elapsed();
        println!(
            "   N={n:>3}: {succeeded}/{n} succeeded, total {:.1} s, {:.2} s per push",
            total.as_secs_f64(),
            total.as_secs_f64() / n as f64
        );
    }
    Ok(())
}
