//! Two replicas of the real gh-push binary sharing one store (a folder, then moto's S3 bucket), every delivery sent
//! to both at once and some again later, and a replica restarted: each delivery queues git-tar exactly once.
//!
//! The S3 case needs `moto_server` on the PATH (`.ci/run` installs it).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::signature::sign_sha256;
use testkit::ports::free_port;
use testkit::process::ProcessGuard;
use testkit::RecordingGateway;

const BINARY: &str = env!("CARGO_BIN_EXE_gh-push");
const PUSH: &str = include_str!("fixtures/push.json");
const WEBHOOK_SECRET: &str = "webhook-secret";
const BUCKET: &str = "ofc-build-logs";

/// Where the replicas keep their delivery records.
enum Store {
    Folder(std::path::PathBuf),
    S3 { endpoint: String },
}

/// One gh-push process on a free loopback port.
struct Replica {
    port: u16,
    _process: ProcessGuard,
}

impl Replica {
    async fn start(gateway: &RecordingGateway, store: &Store, secrets: &std::path::Path) -> Self {
        let port = free_port();
        let mut command = Command::new(BINARY);
        command
            .env_clear()
            .env("secret_mount_path", secrets)
            .env("port", port.to_string())
            .env("bind_address", "127.0.0.1")
            .env("gateway_url", gateway.url())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match store {
            Store::Folder(folder) => command.env("log_store_path", folder),
            Store::S3 { endpoint } => command.env("s3_bucket", BUCKET).env("s3_url", endpoint).env("s3_tls", "false"),
        };
        let process = ProcessGuard::spawn(&mut command).unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !client
            .get(format!("http://127.0.0.1:{port}/_/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "gh-push did not start listening on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { port, _process: process }
    }

    /// Sends the push delivery `id`: the answer's status.
    async fn send(&self, client: &reqwest::Client, id: &str, body: &[u8]) -> u16 {
        let response = client
            .post(format!("http://127.0.0.1:{}/", self.port))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", id)
            .header("X-Hub-Signature-256", sign_sha256(WEBHOOK_SECRET.as_bytes(), body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(status == 202 || text.contains("already queued"), "delivery {id} got {status}: {text}");
        status
    }
}

/// How many times git-tar was queued for each delivery id.
fn git_tar_calls(gateway: &RecordingGateway) -> HashMap<String, usize> {
    let mut calls = HashMap::new();
    for request in gateway.requests_to("/async-function/git-tar") {
        *calls.entry(request.header("x-github-delivery").unwrap_or_default().to_owned()).or_default() += 1;
    }
    calls
}

async fn every_delivery_is_queued_once(store: &Store) {
    let gateway = RecordingGateway::start().await;
    let secrets = testkit::secrets_dir(&[
        ("payload-secret", "payload"),
        ("github-webhook-secret", WEBHOOK_SECRET),
        ("s3-access-key", "testing"),
        ("s3-secret-key", "testing"),
    ]);
    let replicas =
        [Replica::start(&gateway, store, secrets.path()).await, Replica::start(&gateway, store, secrets.path()).await];
    let client = reqwest::Client::new();
    let mut push: Value = serde_json::from_str(PUSH).unwrap();
    let deliveries: Vec<(String, Vec<u8>)> = (0..40)
        .map(|n| {
            push["after"] = Value::String(format!("a{n:039x}"));
            (format!("72d3162e-cc78-11e3-81ab-{n:012x}"), serde_json::to_vec(&push).unwrap())
        })
        .collect();

    for (id, body) in &deliveries {
        let (a, b) = tokio::join!(replicas[0].send(&client, id, body), replicas[1].send(&client, id, body));
        let mut answers = [a, b];
        answers.sort_unstable();
        assert_eq!(answers, [200, 202], "delivery {id}: one replica queues it, the other answers it was queued");
    }
    // Redeliveries, to the replica that did not queue them as often as to the one that did.
    for (n, (id, body)) in deliveries.iter().enumerate().step_by(4) {
        assert_eq!(replicas[n % 2].send(&client, id, body).await, 200, "redelivery of {id}");
    }
    // A restart: a new process on the same store knows what the old ones queued.
    let [first, second] = replicas;
    drop(first);
    let restarted = Replica::start(&gateway, store, secrets.path()).await;
    for (id, body) in deliveries.iter().step_by(3) {
        assert_eq!(restarted.send(&client, id, body).await, 200, "redelivery of {id} after a restart");
    }
    drop(second);

    let calls = git_tar_calls(&gateway);
    for (id, _) in &deliveries {
        assert_eq!(calls.get(id), Some(&1), "git-tar calls for {id}");
    }
    assert_eq!(calls.len(), deliveries.len(), "no other delivery was queued");
}

#[tokio::test]
async fn two_replicas_on_one_folder_queue_each_delivery_once() {
    let folder = tempfile::tempdir().unwrap();
    every_delivery_is_queued_once(&Store::Folder(folder.path().to_owned())).await;
    let records = std::fs::read_dir(folder.path().join("_deliveries")).unwrap().count();
    assert_eq!(records, 40, "one record a delivery, under the prefix no build log can take");
}

#[tokio::test]
async fn two_replicas_on_one_s3_bucket_queue_each_delivery_once() {
    let (_moto, endpoint) = testkit::s3::start_moto(BUCKET).await;
    every_delivery_is_queued_once(&Store::S3 { endpoint }).await;
}
