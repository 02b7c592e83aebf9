//! github-status against the GitHub API double: statuses written per second, and token requests for a burst.

use std::sync::Arc;
use std::time::{Duration, Instant};

use doubles::github_double::{AppKey, GitHubDouble};
use shared::event::{CommitStatus, StatusEvent, StatusReport, StatusState};
use shared::signature::sign_sha256;
use testkit::ports::free_port;

use crate::process::{rss_kib, Child};
use crate::stats::Summary;

const PAYLOAD_SECRET: &str = "bench-payload-secret";

pub async fn run(binaries: &std::path::Path) -> anyhow::Result<()> {
    let key = AppKey::generate();
    let github = GitHubDouble::new("4242", &key.public_pem);
    github.add_installation(1, "octo");
    let github = github.start().await?;
    let secrets = tempfile::tempdir()?;
    std::fs::write(secrets.path().join("payload-secret"), PAYLOAD_SECRET)?;
    std::fs::write(secrets.path().join("private-key"), &key.private_pem)?;
    let port = free_port();
    let child = Child::spawn(
        &binaries.join("github-status"),
        &[
            ("port", port.to_string()),
            ("secret_mount_path", secrets.path().display().to_string()),
            ("report_status", "true".into()),
            ("github_app_id", "4242".into()),
            ("github_api_url", github.url()),
            ("RUST_LOG", "warn".into()),
        ],
    )?;
    let address = ([127, 0, 0, 1], port).into();
    child.wait_healthy(address, Duration::from_secs(10)).await?;
    let idle = rss_kib(child.pid())?;
    let http = reqwest::Client::new();
    let url = Arc::new(format!("http://{address}/"));
    let send = |i: usize| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let report = StatusReport {
                event: StatusEvent {
                    owner: "octo".into(),
                    owner_id: 0,
                    repo: "fns".into(),
                    sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".parse().expect("a commit SHA"),
                    installation_id: Some(1),
                    delivery: None,
                },
                statuses: vec![CommitStatus::new(format!("fn-{i}"), StatusState::Success, "deployed")],
            };
            let body = serde_json::to_vec(&report).expect("serialises");
            let started = Instant::now();
            let response = http
                .post(url.as_str())
                .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(response.status().is_success(), "github-status answered {}", response.status());
            anyhow::Ok(started.elapsed())
        }
    };
    println!("github-status against the GitHub API double (idle RSS {:.1} MiB)", idle as f64 / 1024.0);
    let burst: Vec<_> = (0..100).map(send).map(tokio::spawn).collect();
    for task in burst {
        task.await??;
    }
    println!(
        "   a burst of 100 concurrent statuses for one installation: {} token request(s)",
        github.token_requests()
    );
    let started = Instant::now();
    let mut latencies = Vec::new();
    for round in 0..40 {
        let tasks: Vec<_> = (0..50).map(|i| tokio::spawn(send(1000 + round * 50 + i))).collect();
        for task in tasks {
            latencies.push(task.await??);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "   2,000 statuses, 50 at a time: {:.0} statuses/s; latency {}",
        2000.0 / elapsed.as_secs_f64(),
        Summary::new(latencies).line()
    );
    println!("   token requests in all: {}", github.token_requests());
    Ok(())
}
