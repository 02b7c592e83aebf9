//! Each branch's newest commit on an S3 bucket (moto's, on loopback), as replicas in production share it: of
//! writers that read the same head one wins, the head reads back, and a deploy claim is held by one at a time.
//! Needs `moto_server` on the PATH (`.ci/run` installs it).

use std::time::Duration;

use shared::branch_head::{BranchHeads, BranchKey, Head};
use shared::config::Secret;
use shared::log_store::{LogBackend, LogStoreConfig, S3Settings, DEFAULT_RETENTION};

const BUCKET: &str = "ofc-branches";

#[tokio::test]
async fn on_a_bucket_one_writer_wins_each_head_and_a_deploy_claim_has_one_holder() {
    let (_moto, endpoint) = testkit::s3::start_moto(BUCKET).await;
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
