//! A repository whose weight is its history (issue 26): ~200 MB of old, incompressible blobs over many commits, and
//! a head of 50 functions each with a small handler. One push through the real git-tar binary: the time until every
//! function's tar is handed on, git-tar's peak memory (VmHWM), and the most its `git` children held at once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use doubles::git_server::GitServer;
use shared::signature::sign_sha256;
use testkit::git::{commit, git, init_repo};
use testkit::ports::free_port;
use testkit::ServedFunction;

use crate::process::{peak_rss_kib, rss_kib, Child};

const PAYLOAD_SECRET: &str = "bench-payload-secret";
/// Functions in the head's stack.yml.
const FUNCTIONS: usize = 50;
/// Commits that each replace one old blob of [`BLOB_BYTES`]: the history's weight.
const HEAVY_COMMITS: usize = 100;
const BLOB_BYTES: usize = 2 << 20;

/// Makes `<root>/bench/history.git`: [`HEAVY_COMMITS`] commits of a changing random blob, then one that removes it,
/// over a stack of [`FUNCTIONS`] functions. Returns the head's commit and the bare repository's size in bytes.
fn make_repo(root: &Path) -> anyhow::Result<(String, u64)> {
    let work = tempfile::tempdir()?;
    let mut stack = String::from("provider:\n  name: openfaas\nfunctions:\n");
    for i in 0..FUNCTIONS {
        let _ = write!(stack, "  fn{i}:\n    lang: dockerfile\n    handler: ./fn{i}\n    image: bench/fn{i}\n");
        std::fs::create_dir_all(work.path().join(format!("fn{i}")))?;
        std::fs::write(work.path().join(format!("fn{i}/Dockerfile")), "FROM scratch\nCOPY . /\n")?;
        std::fs::write(work.path().join(format!("fn{i}/handler.txt")), format!("hello from {i}\n"))?;
    }
    std::fs::write(work.path().join("stack.yml"), stack)?;
    init_repo(work.path());
    commit(work.path(), "functions");
    let mut blob = vec![0u8; BLOB_BYTES];
    let mut random = std::fs::File::open("/dev/urandom")?;
    for i in 0..HEAVY_COMMITS {
        // Random bytes from the kernel: no delta or compression makes the history lighter.
        std::io::Read::read_exact(&mut random, &mut blob)?;
        std::fs::write(work.path().join("assets.bin"), &blob)?;
        std::fs::write(work.path().join(format!("fn{}/handler.txt", i % FUNCTIONS)), format!("version {i}\n"))?;
        commit(work.path(), &format!("assets {i}"));
    }
    std::fs::remove_file(work.path().join("assets.bin"))?;
    let sha = commit(work.path(), "assets moved out");
    let bare = root.join("bench").join("history.git");
    std::fs::create_dir_all(root.join("bench"))?;
    git(root, &["clone", "-q", "--bare", work.path().to_str().unwrap_or_default(), bare.to_str().unwrap_or_default()]);
    Ok((sha, folder_bytes(&bare)))
}

fn folder_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// The pids whose parent chain reaches `ancestor` (not `ancestor` itself).
fn descendants(ancestor: u32) -> Vec<u32> {
    let mut parents = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The parent is the second field after the parenthesised command name.
        let parent = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(parent) = parent {
            parents.insert(pid, parent);
        }
    }
    let mut found = Vec::new();
    for &pid in parents.keys() {
        let mut at = pid;
        // A chain is bounded by the number of processes.
        for _ in 0..parents.len() {
            match parents.get(&at) {
                Some(&parent) if parent == ancestor => {
                    found.push(pid);
                    break;
                }
                Some(&parent) if parent > 1 => at = parent,
                _ => break,
            }
        }
    }
    found
}

/// A gateway that reads each tar whole, counts them, and notes when the last arrived.
async fn gateway(tars: Arc<AtomicUsize>, last_tar: Arc<Mutex<Option<Instant>>>) -> ServedFunction {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let (tars, last_tar) = (tars.clone(), last_tar.clone());
        async move {
            if uri.path() == "/function/buildshiprun" {
                let _ = body.len();
                tars.fetch_add(1, Ordering::SeqCst);
                *last_tar.lock().expect("lock") = Some(Instant::now());
                return axum::Json(serde_json::json!({"deployed": "created"})).into_response();
            }
            if uri.path().starts_with("/async-function/") {
                return (StatusCode::ACCEPTED, "").into_response();
            }
            StatusCode::OK.into_response()
        }
    });
    ServedFunction::serve(app.layer(axum::extract::DefaultBodyLimit::disable())).await
}

pub async fn run(binaries: &Path) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let made = Instant::now();
    let (sha, bytes) = make_repo(root.path())?;
    println!(
        "history: a repository of {:.0} MB ({HEAVY_COMMITS} commits of a {} MiB random blob, then removed), \
         {FUNCTIONS} functions at its head (made in {:.0} s)",
        bytes as f64 / 1e6,
        BLOB_BYTES >> 20,
        made.elapsed().as_secs_f64()
    );
    let server = GitServer::start(root.path()).await?;
    let tars = Arc::new(AtomicUsize::new(0));
    let last_tar = Arc::new(Mutex::new(None));
    let gateway = gateway(tars.clone(), last_tar.clone()).await;
    let secrets = tempfile::tempdir()?;
    std::fs::write(secrets.path().join("payload-secret"), PAYLOAD_SECRET)?;
    let port = free_port();
    let child = Child::spawn(
        &binaries.join("git-tar"),
        &[
            ("port", port.to_string()),
            ("secret_mount_path", secrets.path().display().to_string()),
            ("gateway_url", gateway.url()),
            ("repository_url", "127.0.0.1:5000".into()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("RUST_LOG", "warn".into()),
            // 50 functions: over the default bound of one stack.yml (32), which an operator raises this way.
            ("max_functions", FUNCTIONS.to_string()),
        ],
    )?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    child.wait_healthy(address, Duration::from_secs(10)).await?;
    let idle = rss_kib(child.pid())?;

    // The most git-tar's children (git) hold at once, sampled every 20 ms while the push is under way.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), child.pid());
        std::thread::spawn(move || {
            let mut most = 0_u64;
            let deadline = Instant::now() + Duration::from_secs(600);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                let held: u64 = descendants(pid).into_iter().filter_map(|p| rss_kib(p).ok()).sum();
                most = most.max(held);
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        })
    };
    let event = crate::gittar::push_event(&server, "history", &sha);
    let body = serde_json::to_vec(&event)?;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{address}/"))
        .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
        .body(body)
        .timeout(Duration::from_secs(600))
        .send()
        .await?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let children = sampler.join().unwrap_or_default();
    anyhow::ensure!(status.is_success(), "git-tar answered {status}: {answer}");
    let handed = tars.load(Ordering::SeqCst);
    anyhow::ensure!(handed == FUNCTIONS, "{handed} tars handed on, not {FUNCTIONS}");
    let last = last_tar.lock().expect("lock").map_or(took, |t| t.duration_since(started));
    println!(
        "   push → all {FUNCTIONS} tars handed on in {:.2} s (answered in {:.2} s); git-tar idle {:.1} MiB, \
         peak RSS {:.1} MiB   target < 128 MiB; its git children at most {:.1} MiB at once",
        last.as_secs_f64(),
        took.as_secs_f64(),
        idle as f64 / 1024.0,
        peak_rss_kib(child.pid())? as f64 / 1024.0,
        children as f64 / 1024.0
    );
    Ok(())
}
