//! Each branch's newest commit on an S3 bucket (moto's, on loopback), as replicas in production share it: of
//! writers that read the same head one wins, the head reads back, and a deploy claim is held by one at a time.
//! Needs `moto_server` on the PATH (`.ci/run` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::branch_head::{BranchHeads, BranchKey, Head};
use shared::config::Secret;
use shared::log_store::{LogBackend, LogStoreConfig, S3Settings, DEFAULT_RETENTION};

const BUCKET: &str = "ofc-branches";

/// moto's S3, stopped when dropped.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.0.kill());
        drop(self.0.wait());
    }
}

async fn start_moto() -> (Moto, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs `moto_server` (pip install 'moto[server]'): {e}"));
    let moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.put(format!("{endpoint}/{BUCKET}")).send().await {
            assert!(response.status().is_success(), "moto refused to create the bucket: {}", response.status());
            return (moto, endpoint);
        }
        assert!(Instant::now() < deadline, "moto_server did not answer on {endpoint} within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn on_a_bucket_one_writer_wins_each_head_and_a_deploy_claim_has_one_holder() {
    let (_moto, endpoint) = start_moto().await;
    let config = LogStoreConfig {
        backend: LogBackend::S3(S3Settings {
            endpoint: Some(endpoint),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: Secret::new("testing"),
            secret_access_key: Secret::new("testing"),
        }),
        retention: DEFAULT_RETENTION,
    };
    let heads = BranchHeads::open(&config).unwrap();
    let key = BranchKey::new(7, "fns", "feature/a").unwrap();
    assert_eq!(heads.read(&key).await.unwrap(), None);
    for round in 0..6u64 {
        let now = heads.read(&key).await.unwrap();
        let writers = (0..4u64).map(|writer| {
            let (heads, key, now) = (heads.clone(), key.clone(), now.clone());
            let head = Head { sha: format!("{:040x}", round * 10 + writer), pushed_at: round };
            tokio::spawn(async move { (heads.advance(&key, now.as_ref(), &head).await.unwrap(), head) })
        });
        let mut winners = Vec::new();
        for writer in writers {
            let (won, head) = writer.await.unwrap();
            if won {
                winners.push(head);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(heads.read(&key).await.unwrap().map(|r| r.head), winners.pop());
    }

    let claim = heads.claim_deploy("octo-web-4").await.unwrap();
    let waiting = {
        let heads = heads.clone();
        tokio::spawn(async move { heads.claim_deploy("octo-web-4").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!waiting.is_finished(), "the second holder waits for the first");
    claim.release().await;
    tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().release().await;
}
