//! pipeline-log over a folder store: real files in a temporary folder, real HTTP on loopback.

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use common::{build_record, secret, serve, SHA};
use reqwest::StatusCode;
use serde_json::Value;
use shared::log_store::{signed_log_url, LogKey, LogStore, LogStoreConfig, DEFAULT_RETENTION};

fn folder_store() -> (tempfile::TempDir, Arc<LogStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(&LogStoreConfig::folder(dir.path().join("logs/builds"))).unwrap();
    (dir, Arc::new(store))
}

fn key(function: &str) -> LogKey {
    LogKey::new(1, "fns", SHA, function).unwrap()
}

fn link(base: &str, key: &LogKey, valid_for: Duration) -> String {
    signed_log_url(&base.parse().unwrap(), key, Utc::now() + valid_for, &secret()).to_string()
}

async fn get(url: &str) -> (StatusCode, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn serves_a_long_log_whole_through_a_signed_link() {
    let (_dir, store) = folder_store();
    let record = build_record(500);
    assert!(record.text.lines().count() > 200);
    store.put(&key("hello"), &record, &[]).await.unwrap();
    let served = serve(store).await;

    let response = reqwest::get(link(&served.url(), &key("hello"), Duration::minutes(5))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(response.text().await.unwrap(), record.text, "the whole log, every line");
}

#[tokio::test]
async fn answers_json_with_the_outcome_and_timings_when_asked() {
    let (_dir, store) = folder_store();
    let record = build_record(300);
    store.put(&key("hello"), &record, &[]).await.unwrap();
    let served = serve(store).await;
    let url = link(&served.url(), &key("hello"), Duration::minutes(5));

    let by_accept: Value = reqwest::Client::new()
        .get(&url)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_format: Value = reqwest::get(format!("{url}&format=json")).await.unwrap().json().await.unwrap();
    assert_eq!(by_accept, by_format);
    assert_eq!(by_accept["outcome"], "success");
    assert_eq!(by_accept["duration_ms"], 41_000);
    assert_eq!(by_accept["steps"][0], serde_json::json!({"step": "build", "duration_ms": 38_000}));
    assert_eq!(by_accept["digest"], format!("sha256:{}", "ab".repeat(32)));
    assert_eq!(by_accept["log"], record.text.as_str());
}

#[tokio::test]
async fn refuses_unsigned_tampered_and_expired_links() {
    let (_dir, store) = folder_store();
    store.put(&key("hello"), &build_record(3), &[]).await.unwrap();
    store.put(&key("secret-fn"), &build_record(3), &[]).await.unwrap();
    let served = serve(store).await;
    let good = link(&served.url(), &key("hello"), Duration::minutes(5));

    let unsigned = format!("{}?owner_id=1&repo=fns&sha={SHA}&function=hello", served.url());
    let tampered = good.replace("function=hello", "function=secret-fn");
    let expires_moved = {
        let expires = good.split("expires=").nth(1).unwrap().split('&').next().unwrap();
        let later = expires.parse::<i64>().unwrap() + 3600;
        good.replace(&format!("expires={expires}"), &format!("expires={later}"))
    };
    let expired = link(&served.url(), &key("hello"), Duration::seconds(-1));

    for (url, status, words) in [
        (unsigned, StatusCode::UNAUTHORIZED, "not signed"),
        (tampered, StatusCode::FORBIDDEN, "does not match"),
        (expires_moved, StatusCode::FORBIDDEN, "does not match"),
        (expired, StatusCode::FORBIDDEN, "expired"),
    ] {
        let (got, body) = get(&url).await;
        assert_eq!(got, status, "{url}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(error["error"].as_str().unwrap().contains(words), "{body}");
        assert!(!body.contains("STEP"), "no log text in a refusal");
    }
    assert_eq!(get(&good).await.0, StatusCode::OK);
}

#[tokio::test]
async fn refuses_keys_that_leave_the_store_and_answers_404_for_a_missing_log() {
    let (_dir, store) = folder_store();
    let served = serve(store).await;
    let escape = format!("{}?owner_id=..&repo=fns&sha={SHA}&function=hello&expires=9999999999&sig=00", served.url());
    assert_eq!(get(&escape).await.0, StatusCode::BAD_REQUEST);
    let (status, body) = get(&link(&served.url(), &key("never-built"), Duration::minutes(5))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn a_secret_passed_to_put_is_not_in_the_stored_log() {
    let (dir, store) = folder_store();
    let mut record = build_record(250);
    record
        .text
        .push_str("npm config set //registry.npmjs.org/:_authToken=npm_T0kenValue42\nexport PASS=hunter2hunter2\n");
    let bytes = store.put(&key("hello"), &record, &["npm_T0kenValue42", "hunter2hunter2"]).await.unwrap();

    let on_disk = std::fs::read_to_string(dir.path().join(format!("logs/builds/1/fns/{SHA}/hello.log"))).unwrap();
    assert_eq!(on_disk.len() as u64, bytes);
    assert!(!on_disk.contains("npm_T0kenValue42") && !on_disk.contains("hunter2"), "scrubbed on disk");
    assert!(on_disk.contains("_authToken=***") && on_disk.contains("PASS=***"));
    let read = store.get(&key("hello")).await.unwrap();
    assert_eq!(read.meta, record.meta);
    assert_eq!(read.text.lines().count(), record.text.lines().count());
}

#[tokio::test]
async fn retention_removes_old_records_and_keeps_recent_ones() {
    let (dir, store) = folder_store();
    store.put(&key("hello"), &build_record(5), &[]).await.unwrap();
    store.put(&key("world"), &build_record(5), &[]).await.unwrap();
    assert_eq!(store.retention(), DEFAULT_RETENTION);

    assert_eq!(store.sweep().await.unwrap(), 0, "records written now are inside 30 days");
    assert_eq!(store.sweep_before(Utc::now() - Duration::days(29)).await.unwrap(), 0);
    assert_eq!(store.list(1, "fns", SHA).await.unwrap().len(), 2);

    // 31 days on, both are past the retention.
    let removed = store.sweep_before(Utc::now() + Duration::days(1)).await.unwrap();
    assert_eq!(removed, 2);
    assert!(store.list(1, "fns", SHA).await.unwrap().is_empty());
    assert!(!dir.path().join(format!("logs/builds/1/fns/{SHA}")).exists(), "empty folders go too");
}

#[tokio::test]
async fn lists_a_commits_logs_and_finds_the_latest_sha() {
    let (_dir, store) = folder_store();
    let older = "0000000000000000000000000000000000000001";
    store.put(&LogKey::new(1, "fns", older, "hello").unwrap(), &build_record(2), &[]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store.put(&key("world"), &build_record(2), &[]).await.unwrap();
    store.put(&key("hello"), &build_record(2), &[]).await.unwrap();

    let listed = store.list(1, "fns", SHA).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.function.as_str()).collect();
    assert_eq!(names, ["hello", "world"]);
    assert!(listed.iter().all(|l| l.bytes > 0));
    assert_eq!(store.latest(1, "fns").await.unwrap().as_deref(), Some(SHA));
    assert_eq!(store.latest(1, "other").await.unwrap(), None);
}
