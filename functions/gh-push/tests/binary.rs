//! The real gh-push binary: it refuses to start without its secrets, and serves until SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::ports::free_port;
use testkit::process::ProcessGuard;

const BINARY: &str = env!("CARGO_BIN_EXE_gh-push");

#[test]
fn refuses_to_start_without_the_webhook_secret_and_names_it() {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("payload-secret"), "p").unwrap();
    let output = Command::new(BINARY)
        .env_clear()
        .env("secret_mount_path", secrets.path())
        .env("port", free_port().to_string())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("github-webhook-secret"), "{stderr}");
}

#[test]
fn refuses_to_start_with_a_malformed_timeout_and_names_it() {
    let secrets = testkit::secrets_dir(&[("payload-secret", "p"), ("github-webhook-secret", "w")]);
    let output = Command::new(BINARY)
        .env_clear()
        .env("secret_mount_path", secrets.path())
        .env("read_timeout", "soon")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("read_timeout"), "{stderr}");
}

#[test]
fn serves_health_checks_and_stops_on_sigterm() {
    let secrets = testkit::secrets_dir(&[("payload-secret", "p"), ("github-webhook-secret", "w")]);
    let port = free_port();
    let child = Command::new(BINARY)
        .env_clear()
        .env("secret_mount_path", secrets.path())
        .env("port", port.to_string())
        .env("gateway_url", "http://127.0.0.1:9/")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = ProcessGuard::new(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let healthy = loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut stream| {
            use std::io::{Read, Write};
            stream.write_all(b"GET /_/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).ok()?;
            Some(text)
        });
        if let Some(text) = answer {
            break text.starts_with("HTTP/1.1 200");
        }
        assert!(Instant::now() < deadline, "gh-push did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(healthy);
    // SIGTERM, then SIGKILL after 10 s: a graceful shutdown exits 0 within them.
    let status = child.stop().unwrap();
    assert!(status.success(), "gh-push did not stop on SIGTERM with a graceful shutdown (exit 0), got {status}");
}
