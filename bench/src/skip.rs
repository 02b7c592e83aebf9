//! What a push costs when little or nothing in it changed: of-builder skips a build whose identity the registry
//! holds and a deployment identical to the running one, so such a push should be over in a fraction of a build.
//!
//! Both scenarios run through the real `ofc up` and `ofc push`, and time from `ofc push`'s start (what a user
//! waits for) and from the webhook's acceptance (the pipeline alone) to the moment every status of the commit is
//! green, seen by polling the GitHub double every 5 ms rather than through `ofc push`'s 100 ms polling.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use testkit::git::commit;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::pipeline::{example, up, Up};
use crate::stats::Summary;

/// Measured pushes per scenario.
const RUNS: usize = 20;

/// One push's times, and each function's last status description.
struct Timed {
    from_start: Duration,
    from_webhook: Duration,
    descriptions: BTreeMap<String, String>,
}

/// Unchanged pushes: a new commit that changes no build context and no deployment; every status must be green
/// and every function `unchanged`.
pub async fn unchanged(binaries: &Path) -> anyhow::Result<()> {
    let up = up(binaries)?;
    let work = tempfile::tempdir()?;
    let repo = example(work.path(), "hello", "unchanged")?;
    timed_push(binaries, &up, &repo).await?;
    settle(binaries, &up, &repo).await?;
    let (mut from_start, mut from_webhook) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        std::fs::write(repo.join("NOTES.md"), format!("run {run}\n"))?;
        commit(&repo, "notes");
        let timed = timed_push(binaries, &up, &repo).await?;
        for (function, description) in &timed.descriptions {
            anyhow::ensure!(description.contains("unchanged"), "{function} was not unchanged: {description}");
        }
        from_start.push(timed.from_start);
        from_webhook.push(timed.from_webhook);
    }
    println!("unchanged push (examples/hello, 2 functions, a commit outside every build context, {RUNS} pushes)");
    println!("   ofc push start → every status green: {}   target: p50 < 150 ms", Summary::new(from_start).line());
    println!("   webhook accepted → every status green: {}", Summary::new(from_webhook).line());
    Ok(())
}

/// One changed function of three: the changed one's context alternates between two versions built before, so its
/// build is a cache hit (no build runs) and it alone is redeployed; the other two are unchanged.
pub async fn one_changed(binaries: &Path) -> anyhow::Result<()> {
    let up = up(binaries)?;
    let work = tempfile::tempdir()?;
    let repo = example(work.path(), "three", "one-changed")?;
    add_third_function(&repo)?;
    for version in ["a", "b"] {
        std::fs::write(repo.join("third/version.txt"), version)?;
        commit(&repo, "version");
        timed_push(binaries, &up, &repo).await?;
    }
    settle(binaries, &up, &repo).await?;
    let (mut from_start, mut from_webhook) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        std::fs::write(repo.join("third/version.txt"), if run % 2 == 0 { "a" } else { "b" })?;
        commit(&repo, "version");
        let timed = timed_push(binaries, &up, &repo).await?;
        for (function, description) in &timed.descriptions {
            let expected = if function == "third" { "updated" } else { "unchanged" };
            anyhow::ensure!(description.contains(expected), "{function}: {description} (expected {expected})");
        }
        from_start.push(timed.from_start);
        from_webhook.push(timed.from_webhook);
    }
    println!("one changed function of 3 (its build a cache hit, the 2 others unchanged, {RUNS} pushes)");
    println!("   ofc push start → every status green: {}   target: p50 < 500 ms", Summary::new(from_start).line());
    println!("   webhook accepted → every status green: {}", Summary::new(from_webhook).line());
    Ok(())
}

/// Pushes commits that change nothing until every function is `unchanged`: right after a deployment its replica
/// may still be starting, and a function with no replica available is deployed again rather than left unchanged.
async fn settle(binaries: &Path, up: &Up, repo: &Path) -> anyhow::Result<()> {
    for attempt in 0..20 {
        std::fs::write(repo.join("NOTES.md"), format!("settle {attempt}\n"))?;
        commit(repo, "settle");
        if timed_push(binaries, up, repo).await?.descriptions.values().all(|d| d.contains("unchanged")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("the functions never ran unchanged")
}

/// A third function, `third`, a copy of `hello` with a file of its own.
fn add_third_function(repo: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("cp").arg("-r").arg(repo.join("hello")).arg(repo.join("third")).status()?;
    anyhow::ensure!(status.success(), "cp failed");
    std::fs::write(
        repo.join("third/Dockerfile"),
        "FROM localhost/ofc/watchdog:latest\nCOPY index.html version.txt /home/app/public/\n",
    )?;
    let mut stack = std::fs::read_to_string(repo.join("stack.yml"))?;
    stack.push_str("  third:\n    lang: dockerfile\n    handler: ./third\n    image: third\n");
    std::fs::write(repo.join("stack.yml"), stack)?;
    Ok(())
}

/// `ofc push` of `repo`'s HEAD, timed until every status of the commit is green.
async fn timed_push(binaries: &Path, up: &Up, repo: &Path) -> anyhow::Result<Timed> {
    let sha = testkit::git::git(repo, &["rev-parse", "HEAD"]);
    let name = repo.file_name().and_then(|n| n.to_str()).context("a named repository")?;
    let endpoints: serde_json::Value =
        serde_json::from_slice(&std::fs::read(up.state().join("endpoints.json"))?).context("endpoints.json")?;
    let github_api = endpoints["github_api"].as_str().context("the GitHub double's URL")?;
    let url = format!("{github_api}repos/bench/{name}/commits/{sha}/statuses");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binaries.join("ofc"))
        .args(["push", &repo.display().to_string(), "--owner", "bench", "--timeout", "600", "--state"])
        .arg(up.state())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("ofc push's output")?).lines();
    // The first line says the webhook was accepted; the rest is read so that `ofc push` never blocks on it.
    lines.next_line().await?.context("ofc push printed nothing")?;
    let accepted = Instant::now();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let descriptions = loop {
        if let Some(descriptions) = all_green(&http, &url).await? {
            break descriptions;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "{name} {sha}: not green within 600 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (from_start, from_webhook) = (started.elapsed(), accepted.elapsed());
    anyhow::ensure!(child.wait().await?.success(), "ofc push of {name} failed");
    Ok(Timed { from_start, from_webhook, descriptions })
}

/// Each function's last description once `stack-deploy` and every function's last status are `success`; `None`
/// while any is pending; an error for a failure.
async fn all_green(http: &reqwest::Client, url: &str) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let statuses: Vec<serde_json::Value> = http.get(url).send().await?.error_for_status()?.json().await?;
    let mut latest = BTreeMap::new();
    // Newest first: the first of each context is its last state.
    for status in &statuses {
        let context = status["context"].as_str().unwrap_or_default().to_owned();
        let state = status["state"].as_str().unwrap_or_default().to_owned();
        let description = status["description"].as_str().unwrap_or_default().to_owned();
        latest.entry(context).or_insert((state, description));
    }
    if let Some((context, (state, description))) =
        latest.iter().find(|(_, (state, _))| matches!(state.as_str(), "failure" | "error"))
    {
        anyhow::bail!("{context}: {state} {description}");
    }
    let done = latest.get("stack-deploy").is_some_and(|(state, _)| state == "success")
        && latest.values().all(|(state, _)| state == "success");
    Ok(done.then(|| {
        latest.into_iter().filter(|(context, _)| context != "stack-deploy").map(|(c, (_, d))| (c, d)).collect()
    }))
}
