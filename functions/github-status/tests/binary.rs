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
