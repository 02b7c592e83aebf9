//! Start-up configuration: a missing or malformed log-store setting stops the start, named.
//!
//! One test in its own binary, because it changes the process's environment.

use shared::config::SecretStore;
use shared::log_store::{LogBackend, LogStoreConfig};

fn set(pairs: &[(&str, &str)]) {
    for (name, value) in pairs {
        std::env::set_var(name, value);
    }
}

#[test]
fn log_store_settings_are_read_once_and_named_when_wrong() {
    let secrets_dir = tempfile::tempdir().unwrap();
    let secrets = SecretStore::with_dirs([secrets_dir.path().to_owned()]);

    set(&[("log_retention", "a while")]);
    let err = LogStoreConfig::from_env(&secrets).unwrap_err().to_string();
    assert!(err.contains("log_retention"), "{err}");

    set(&[("log_retention", "7d"), ("s3_bucket", "ofc-logs"), ("s3_url", "minio:9000"), ("s3_tls", "false")]);
    let err = LogStoreConfig::from_env(&secrets).unwrap_err().to_string();
    assert!(err.contains("s3-access-key"), "{err}");

    // The last release's secret names, and the longer AWS-style ones.
    std::fs::write(secrets_dir.path().join("s3-access-key"), "id\n").unwrap();
    std::fs::write(secrets_dir.path().join("s3-secret-access-key"), "key\n").unwrap();
    let config = LogStoreConfig::from_env(&secrets).unwrap();
    assert_eq!(config.retention, std::time::Duration::from_secs(7 * 24 * 3600));
    let LogBackend::S3(s3) = config.backend else { panic!("s3_bucket selects the bucket") };
    assert_eq!(s3.endpoint.as_deref(), Some("http://minio:9000"), "s3_tls=false means plain HTTP");
    assert_eq!((s3.bucket.as_str(), s3.region.as_str(), s3.access_key_id.expose()), ("ofc-logs", "us-east-1", "id"));

    // Without a bucket, a folder that cannot be created stops pipeline-log's start, naming `log_store_path`.
    std::env::remove_var("s3_bucket");
    let blocker = secrets_dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    std::fs::write(secrets_dir.path().join("payload-secret"), "p").unwrap();
    set(&[
        ("log_store_path", blocker.join("logs").to_str().unwrap()),
        ("secret_mount_path", secrets_dir.path().to_str().unwrap()),
    ]);
    let err = pipeline_log::Config::from_env().unwrap_err().to_string();
    assert!(err.contains("log_store_path"), "{err}");

    let folder = secrets_dir.path().join("builds");
    set(&[("log_store_path", folder.to_str().unwrap())]);
    let config = pipeline_log::Config::from_env().unwrap();
    assert_eq!(config.store.location(), folder.display().to_string());
    assert!(folder.is_dir(), "the folder is created at start");
}
