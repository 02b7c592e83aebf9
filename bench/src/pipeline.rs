//! The whole pipeline through the real `ofc up`: push to live for the example (cold and warm), and many pushes of
//! different repositories sent at once (scale).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::git::{commit, init_repo};
use testkit::process::ProcessGuard;

use crate::stats::Summary;

/// A running `ofc up`, stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub(crate) struct Up {
    _child: ProcessGuard,
    state: tempfile::TempDir,
}

impl Up {
    /// The stack's state folder (`endpoints.json`, logs).
    pub(crate) fn state(&self) -> &Path {
        self.state.path()
    }
}

pub(crate) fn up(binaries: &Path) -> anyhow::Result<Up> {
    up_with(binaries, false)
}

/// A running `ofc up` (stopped when dropped).
pub fn start_stack(binaries: &Path) -> anyhow::Result<impl Sized> {
    up(binaries)
}

/// `ofc up`; with `timings`, every part logs JSON at info level (ofc's own log in `ofc.log` of the state folder).
fn up_with(binaries: &Path, timings: bool) -> anyhow::Result<Up> {
    let state = tempfile::tempdir()?;
    let port = testkit::ports::free_port();
    let mut command = Command::new(binaries.join("ofc"));
    command
        .args([
            "up",
            "--state",
            &state.path().display().to_string(),
            "--gateway-port",
            &port.to_string(),
            "--router-port",
            "0",
        ])
        .arg("--stack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")))
        .stdout(Stdio::null());
    if timings {
        command.env("RUST_LOG", "info").env("log_format", "json");
        command.stderr(Stdio::from(std::fs::File::create(state.path().join("ofc.log"))?));
    } else {
        command.env("RUST_LOG", "warn").stderr(Stdio::null());
    }
    let up = Up { _child: ProcessGuard::spawn(&mut command)?, state };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !up.state.path().join("endpoints.json").exists() {
        anyhow::ensure!(Instant::now() < deadline, "ofc up did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(up)
}

/// A copy of `examples/hello` named `name`, as its own repository, with `marker` making its content unique.
pub(crate) fn example(parent: &Path, name: &str, marker: &str) -> anyhow::Result<PathBuf> {
    let repo = parent.join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let status = Command::new("cp").arg("-r").arg(&source).arg(&repo).status()?;
    anyhow::ensure!(status.success(), "cp failed");
    std::fs::write(repo.join("hello/marker.txt"), marker)?;
    init_repo(&repo);
    commit(&repo, "bench");
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
    for run in 0..5 {
        // A new commit whose build contexts and deployments are unchanged: every build and deployment is skipped.
        std::fs::write(repo.join("NOTES.md"), format!("run {run}\n"))?;
        commit(&repo, "notes");
        warm.push(timed_push(binaries, &up, &repo)?);
    }
    println!("push to live (ofc push of examples/hello, 2 functions, send → stack-deploy success)");
    println!("   cold (empty build cache): {:.2} s", cold.as_secs_f64());
    println!(
        "   warm (new commit, nothing changed: builds and deployments skipped): {}   target: < 5 s",
        Summary::new(warm).line()
    );
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

/// One JSON log line's time and fields.
struct LogLine {
    at: chrono::DateTime<chrono::Utc>,
    fields: serde_json::Value,
}

/// The JSON lines of `path` that say `message`.
fn log_lines(path: &Path, message: &str) -> anyhow::Result<Vec<LogLine>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|fields| fields["message"] == message)
        .filter_map(|fields| {
            let at = chrono::DateTime::parse_from_rfc3339(fields["timestamp"].as_str()?).ok()?.to_utc();
            Some(LogLine { at, fields })
        })
        .collect())
}

fn seconds(fields: &serde_json::Value) -> Duration {
    Duration::from_secs_f64(fields["seconds"].as_f64().unwrap_or(0.0))
}

/// Pipeline overhead: from the webhook's arrival at the gateway to each deployment request the gateway receives,
/// for pushes whose builds are cache hits, minus the time inside git (git-tar's clone) and inside the builder
/// (buildshiprun's call to of-builder). The times come from the parts' own JSON logs.
pub fn overhead(binaries: &Path, runs: usize) -> anyhow::Result<()> {
    let up = up_with(binaries, true)?;
    let logs = up.state.path().join("logs");
    let work = tempfile::tempdir()?;
    let repo = example(work.path(), "hello", "overhead")?;
    timed_push(binaries, &up, &repo)?;
    let (mut total, mut inside_git, mut inside_builder, mut overhead) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        // hello's context changes in a file its Dockerfile does not copy (so its build runs, all from the builder's
        // cache) and so does its environment (so it is redeployed); greet is unchanged, neither built nor deployed.
        std::fs::write(repo.join("hello/marker.txt"), format!("run {run}\n"))?;
        let stack = std::fs::read_to_string(repo.join("stack.yml"))?;
        let greeting = stack.lines().find(|l| l.trim_start().starts_with("greeting:")).unwrap_or_default().to_owned();
        std::fs::write(repo.join("stack.yml"), stack.replace(&greeting, &format!("      greeting: run {run}")))?;
        let sha = commit(&repo, "notes");
        timed_push(binaries, &up, &repo)?;
        let arrival = log_lines(&up.state.path().join("ofc.log"), "invoked")?
            .into_iter()
            .filter(|l| l.fields["function"] == "gh-push")
            .map(|l| l.at - chrono::Duration::from_std(seconds(&l.fields)).unwrap_or_default())
            .next_back()
            .context_missing("gh-push's invocation in ofc's log")?;
        let git_time = log_lines(&logs.join("git-tar.log"), "cloned")?
            .into_iter()
            .find(|l| l.fields["sha"] == sha.as_str())
            .map(|l| seconds(&l.fields))
            .context_missing("git-tar's clone in its log")?;
        inside_git.push(git_time);
        let builds = log_lines(&logs.join("buildshiprun.log"), "built")?;
        for deployment in
            log_lines(&up.state.path().join("ofc.log"), "deployment recorded")?.into_iter().filter(|l| l.at > arrival)
        {
            let service = deployment.fields["function"].as_str().unwrap_or_default().to_owned();
            let build = builds
                .iter()
                .find(|b| b.fields["sha"] == sha.as_str() && b.fields["service"] == service.as_str())
                // No build: its image was reused (a function redeployed because its replica was still starting).
                .map_or(Duration::ZERO, |b| seconds(&b.fields));
            let end_to_end = (deployment.at - arrival).to_std().unwrap_or_default();
            total.push(end_to_end);
            inside_builder.push(build);
            overhead.push(end_to_end.saturating_sub(git_time + build));
        }
    }
    println!("pipeline overhead (webhook at the gateway → deployment request at the gateway; a cache-hit build of examples/hello's hello, greet unchanged, {runs} pushes)");
    println!("   end to end:             {}", Summary::new(total).line());
    println!("   inside git (clone):     {}", Summary::new(inside_git).line());
    println!("   inside the builder:     {}", Summary::new(inside_builder).line());
    println!("   overhead (the rest):    {}   target: p50 < 100 ms", Summary::new(overhead).line());
    Ok(())
}

/// `Option` → a clear error naming what was not found in the logs.
trait MissingContext<T> {
    fn context_missing(self, what: &str) -> anyhow::Result<T>;
}

impl<T> MissingContext<T> for Option<T> {
    fn context_missing(self, what: &str) -> anyhow::Result<T> {
        self.ok_or_else(|| anyhow::anyhow!("{what} was not found"))
    }
}
