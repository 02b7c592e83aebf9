//! The real github-status binary refuses to start without what `report_status` needs, naming it.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_github-status");

#[test]
fn refuses_to_start_without_the_private_key_and_names_the_secret() {
    let secrets = testkit::secrets_dir(&[("payload-secret", "p")]);
    let output = Command::new(BINARY)
        .env_clear()
        .env("secret_mount_path", secrets.path())
        .env("report_status", "true")
        .env("github_app_id", "4242")
        .env("port", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("private-key"), "{stderr}");
}

#[test]
fn refuses_an_unreadable_key_without_printing_it() {
    let secrets = testkit::secrets_dir(&[
        ("payload-secret", "p"),
        ("private-key", "-----BEGIN RSA PRIVATE KEY-----\nSECRETSTUFF\n"),
    ]);
    let output = Command::new(BINARY)
        .env_clear()
        .env("secret_mount_path", secrets.path())
        .env("report_status", "true")
        .env("github_app_id", "4242")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("private-key"), "{stderr}");
    assert!(!stderr.contains("SECRETSTUFF"), "{stderr}");
}

#[test]
fn refuses_a_malformed_use_checks_or_a_log_store_it_cannot_open_naming_the_setting() {
    let secrets = testkit::secrets_dir(&[("payload-secret", "p")]);
    let start = |env: &[(&str, &str)]| {
        let mut command = Command::new(BINARY);
        command.env_clear().env("secret_mount_path", secrets.path()).env("port", "0");
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = start(&[("use_checks", "sometimes")]);
    assert!(stderr.contains("use_checks"), "{stderr}");
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let folder = blocker.path().join("logs");
    let stderr = start(&[("use_checks", "true"), ("log_store_path", folder.to_str().unwrap())]);
    assert!(stderr.contains("log_store_path"), "{stderr}");
}
