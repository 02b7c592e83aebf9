//! git-tar: time from a push to the last tar handed on (3 functions, local clone), and peak memory while streaming a
//! 100 MiB build context.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use doubles::git_server::GitServer;
use shared::event::{Owner, PushEvent, PushOrder, Repository};
use shared::signature::sign_sha256;
use testkit::git::{commit, git, init_repo};
use testkit::ports::free_port;
use testkit::ServedFunction;

use crate::process::{peak_rss_kib, rss_kib, Child};
use crate::stats::Summary;

const PAYLOAD_SECRET: &str = "bench-payload-secret";

/// Makes `<root>/bench/<name>.git` with `functions` dockerfile functions, one of them holding `big_bytes` of data.
fn make_repo(root: &Path, name: &str, functions: usize, big_bytes: usize) -> anyhow::Result<String> {
    let work = tempfile::tempdir()?;
    let mut stack = String::from("provider:\n  name: openfaas\nfunctions:\n");
    for i in 0..functions {
        let _ = write!(stack, "  fn{i}:\n    lang: dockerfile\n    handler: ./fn{i}\n    image: bench/fn{i}\n");
        std::fs::create_dir_all(work.path().join(format!("fn{i}")))?;
        std::fs::write(work.path().join(format!("fn{i}/Dockerfile")), "FROM scratch\nCOPY . /\n")?;
        std::fs::write(work.path().join(format!("fn{i}/handler.txt")), "hello\n")?;
    }
    if big_bytes > 0 {
        let mut data = vec![0u8; big_bytes];
        rand::Rng::fill(&mut rand::thread_rng(), data.as_mut_slice());
        std::fs::write(work.path().join("fn0/big.bin"), data)?;
    }
    std::fs::write(work.path().join("stack.yml"), stack)?;
    init_repo(work.path());
    let sha = commit(work.path(), "bench");
    let bare = root.join("bench").join(format!("{name}.git"));
    std::fs::create_dir_all(root.join("bench"))?;
    git(root, &["clone", "-q", "--bare", work.path().to_str().unwrap_or_default(), bare.to_str().unwrap_or_default()]);
    Ok(sha)
}

/// A gateway that reads each tar whole, answers at once, and notes when the last one arrived.
async fn gateway(last_tar: Arc<Mutex<Option<Instant>>>) -> ServedFunction {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let last_tar = last_tar.clone();
        async move {
            if uri.path().starts_with("/async-function/") {
                return (StatusCode::ACCEPTED, "").into_response();
            }
            if uri.path() == "/function/buildshiprun" {
                let _ = body.len();
                *last_tar.lock().expect("lock") = Some(Instant::now());
                return axum::Json(serde_json::json!({"deployed": "created"})).into_response();
            }
            StatusCode::OK.into_response()
        }
    });
    ServedFunction::serve(app.layer(axum::extract::DefaultBodyLimit::disable())).await
}

/// The push event of `bench/<name>` at `sha` on `server`, as gh-push hands it to git-tar.
pub(crate) fn push_event(server: &GitServer, name: &str, sha: &str) -> PushEvent {
    PushEvent {
        delivery: "bench".into(),
        git_ref: "refs/heads/main".into(),
        after: sha.parse().expect("a commit SHA"),
        installation_id: None,
        repository: Repository {
            name: name.into(),
            full_name: format!("bench/{name}"),
            clone_url: server.clone_url("bench", name),
            private: false,
            default_branch: Some("main".into()),
            owner: Owner { login: "bench".into(), id: 1 },
        },
        order: PushOrder::default(),
        preview: None,
    }
}

pub async fn run(binaries: &Path) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let server = GitServer::start(root.path()).await?;
    let small = make_repo(root.path(), "three", 3, 0)?;
    let big = make_repo(root.path(), "big", 1, 100 << 20)?;
    let last_tar = Arc::new(Mutex::new(None));
    let gateway = gateway(last_tar.clone()).await;
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
        ],
    )?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    child.wait_healthy(address, Duration::from_secs(10)).await?;
    println!("git-tar (idle RSS {:.1} MiB)", rss_kib(child.pid())? as f64 / 1024.0);
    let http = reqwest::Client::new();
    let push = |name: &str, sha: &str| push_event(&server, name, sha);
    let mut to_last_tar = Vec::new();
    for _ in 0..10 {
        let body = serde_json::to_vec(&push("three", &small))?;
        let started = Instant::now();
        let response = http
            .post(format!("http://{address}/"))
            .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "git-tar answered {}", response.status());
        let last = last_tar.lock().expect("lock").take().ok_or_else(|| anyhow::anyhow!("no tar arrived"))?;
        to_last_tar.push(last.duration_since(started));
    }
    println!(
        "   push of 3 functions to the last tar handed on (local clone, 10 runs): {}",
        Summary::new(to_last_tar).line()
    );
    let before = peak_rss_kib(child.pid())?;
    let body = serde_json::to_vec(&push("big", &big))?;
    let started = Instant::now();
    let response = http
        .post(format!("http://{address}/"))
        .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "git-tar answered {status}: {}", response.text().await.unwrap_or_default());
    println!(
        "   100 MiB build context: handed on in {:.2} s; git-tar peak RSS {:.1} MiB (before: {:.1} MiB)",
        started.elapsed().as_secs_f64(),
        peak_rss_kib(child.pid())? as f64 / 1024.0,
        before as f64 / 1024.0
    );
    Ok(())
}
