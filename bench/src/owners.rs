//! Many owners pushing at once (issue 26): [`OWNERS`] owners each push a repository of one small function (FROM the
//! stack's own watchdog image, one `ENV` step of its own, so every build is real and none is a cache hit) to
//! `ofc up --runtime none` at the same moment; of-builder runs two builds at a time (`max_concurrent_builds`'s
//! default). Every push must end in a final status; each owner's wait is `ofc push` start → its final status.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::git::{commit, init_repo};
use testkit::local_stack::Up;

use crate::stats::Summary;

/// Owners pushing at once.
const OWNERS: usize = 100;
/// How long one push may take to reach its final status, under the whole load.
const PUSH_TIMEOUT_SECONDS: u64 = 1_200;

/// `<parent>/<owner>`: a repository whose one function builds FROM the watchdog image with an `ENV` of its own.
fn repository(parent: &Path, owner: &str) -> anyhow::Result<std::path::PathBuf> {
    let repo = parent.join(owner);
    std::fs::create_dir_all(repo.join("hello"))?;
    std::fs::write(
        repo.join("hello/Dockerfile"),
        format!("FROM localhost/ofc/watchdog:latest\nENV greeting=\"hello from {owner}\"\n"),
    )?;
    std::fs::write(
        repo.join("stack.yml"),
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  hello:\n    lang: dockerfile\n    handler: ./hello\n    image: hello\n",
    )?;
    init_repo(&repo);
    commit(&repo, "first");
    Ok(repo)
}

pub fn run(binaries: &Path) -> anyhow::Result<()> {
    let ofc = binaries.join("ofc");
    anyhow::ensure!(ofc.exists(), "{} is missing: build the binaries first", ofc.display());
    let stack = Up::new(ofc.to_str().unwrap_or_default()).start();
    let work = tempfile::tempdir()?;
    let repos: Vec<(String, std::path::PathBuf)> = (0..OWNERS)
        .map(|i| {
            let owner = format!("tenant{i}");
            repository(work.path(), &owner).map(|repo| (owner, repo))
        })
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let mut pushes = Vec::new();
    for (owner, repo) in &repos {
        let child = Command::new(&ofc)
            .args(["push", &repo.display().to_string(), "--owner", owner, "--timeout"])
            .arg(PUSH_TIMEOUT_SECONDS.to_string())
            .arg("--state")
            .arg(stack.state_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        pushes.push((owner.clone(), child, Instant::now()));
    }
    let mut waits = Vec::new();
    let mut failed = Vec::new();
    // Each push ends by its own timeout; the loop visits every child at most once per 50 ms, bounded by that.
    let deadline = Instant::now() + Duration::from_secs(PUSH_TIMEOUT_SECONDS + 60);
    while !pushes.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (owner, mut child, sent) in pushes {
            match child.try_wait()? {
                Some(status) => {
                    waits.push(sent.elapsed());
                    if !status.success() {
                        failed.push(owner);
                    }
                }
                None => still.push((owner, child, sent)),
            }
        }
        pushes = still;
        std::thread::sleep(Duration::from_millis(50));
    }
    let unfinished = pushes.len();
    for (_, mut child, _) in pushes {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "owners: {OWNERS} owners push one function each at once (ofc up --runtime none, 2 builds at a time): all done \
         in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "   final status: {} of {OWNERS} success, {} failure, {unfinished} without one",
        waits.len() - failed.len(),
        failed.len()
    );
    println!("   each owner's wait, push → final status: {}", Summary::new(waits).line());
    if !failed.is_empty() {
        println!("   failed: {}", failed.join(", "));
    }
    Ok(())
}
