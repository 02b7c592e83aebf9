//! The S3 backend against a real S3-compatible server: moto's, started by the test on a loopback port.
//!
//! Needs `moto_server` on the PATH: `pip install 'moto[server]'` (`.ci/run` installs it).

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::{build_record, secret, serve, SHA};
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use shared::config::Secret;
use shared::log_store::{signed_log_url, LogBackend, LogKey, LogStore, LogStoreConfig, S3Settings, DEFAULT_RETENTION};

const BUCKET: &str = "ofc-build-logs";

/// An object's bytes as the bucket holds them, read around the log store.
async fn raw_object(endpoint: &str, path: &str) -> String {
    let bucket = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap();
    let bytes = bucket.get(&path.into()).await.unwrap().bytes().await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn s3_store(endpoint: &str) -> Arc<LogStore> {
    let config = LogStoreConfig {
        backend: LogBackend::S3(S3Settings {
            endpoint: Some(endpoint.to_owned()),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: Secret::new("testing"),
            secret_access_key: Secret::new("testing"),
        }),
        retention: DEFAULT_RETENTION,
    };
    Arc::new(LogStore::open(&config).unwrap())
}

#[tokio::test]
async fn stores_lists_serves_and_sweeps_logs_in_an_s3_bucket() {
    let (_moto, endpoint) = testkit::s3::start_moto(BUCKET).await;
    let store = s3_store(&endpoint);
    let key = LogKey::new(1, "fns", SHA, "hello").unwrap();
    let record = build_record(400);
    let mut with_secret = record.clone();
    with_secret.text.push_str("registry password s3cr3t-registry-pw\n");
    store.put(&key, &with_secret, &["s3cr3t-registry-pw"]).await.unwrap();

    // The object itself, read straight from the bucket with S3 credentials: one record, no secret in it.
    let raw = raw_object(&endpoint, &format!("1/fns/{SHA}/hello.log")).await;
    assert!(raw.starts_with("{\"outcome\":\"success\""), "{raw:.80}");
    assert!(!raw.contains("s3cr3t-registry-pw") && raw.contains("registry password ***"));

    let listed = store.list(1, "fns", SHA).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].function, "hello");
    assert_eq!(store.latest(1, "fns").await.unwrap().as_deref(), Some(SHA));

    let served = serve(store.clone()).await;
    let expires = Utc::now() + chrono::Duration::minutes(5);
    let url = signed_log_url(&served.url().parse().unwrap(), &key, expires, &secret());
    let response = reqwest::get(url.as_str()).await.unwrap();
    assert_eq!(response.status(), 200);
    let served_text = response.text().await.unwrap();
    assert_eq!(served_text.lines().count(), 401, "the whole log through pipeline-log");
    assert!(served_text.starts_with(&record.text));

    assert_eq!(store.sweep().await.unwrap(), 0);
    assert_eq!(store.sweep_before(Utc::now() + chrono::Duration::days(1)).await.unwrap(), 1);
    assert!(store.list(1, "fns", SHA).await.unwrap().is_empty());
    let gone = reqwest::get(url.as_str()).await.unwrap();
    assert_eq!(gone.status(), 404);
}
