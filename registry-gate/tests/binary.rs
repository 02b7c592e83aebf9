//! The `ofc-registry-gate` binary as a Kubernetes pod runs it: in front of a real `docker-registry` on a loopback
//! port, configured by its environment and account files, over real HTTP.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{GateClient, BUILDER, COLLECTOR, OPERATOR};
use doubles::registry::RegistryProcess;
use reqwest::{Method, StatusCode};

const BINARY: &str = env!("CARGO_BIN_EXE_ofc-registry-gate");

/// The three account files, each in a format an operator would use: the builder's and the collector's as the Docker
/// config.json their clients sign in with, the operator's as `user:password`.
fn account_files(dir: &Path) -> Vec<(&'static str, String)> {
    let config_json = |(user, password): (&str, &str)| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        serde_json::json!({ "auths": { "127.0.0.1:5000": { "auth": auth } } }).to_string()
    };
    let files = [
        ("builder_auth_file", config_json(BUILDER)),
        ("operator_auth_file", format!("{}:{}\n", OPERATOR.0, OPERATOR.1)),
        ("collector_auth_file", config_json(COLLECTOR)),
    ];
    files
        .into_iter()
        .map(|(setting, text)| {
            let path = dir.join(setting);
            std::fs::write(&path, text).unwrap();
            (setting, path.display().to_string())
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn gate_command(settings: &[(&str, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BINARY);
    command.env_clear().env("bind_address", "127.0.0.1").stdin(Stdio::null()).kill_on_drop(true);
    for (name, value) in settings {
        command.env(name, value);
    }
    command
}

/// The gate binary, killed when dropped.
struct GateProcess {
    _child: tokio::process::Child,
    address: String,
}

impl GateProcess {
    /// Starts the binary and waits (15 s at most) until its `/healthz` says the registry behind answers.
    async fn start(settings: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut settings = settings.to_vec();
        settings.push(("port", port.to_string()));
        let mut child = gate_command(&settings).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let address = format!("127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let health = http.get(format!("http://{address}/healthz")).timeout(Duration::from_secs(2)).send().await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return Self { _child: child, address };
            }
            assert!(child.try_wait().unwrap().is_none(), "the gate exited before it was healthy");
            assert!(Instant::now() < deadline, "the gate was not healthy within 15 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_binary_guards_a_registry_on_a_loopback_port() {
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(&dir.path().join("registry")).await.unwrap();
    let mut settings = account_files(dir.path());
    settings.push(("registry_upstream", registry.host_port()));
    let gate = GateProcess::start(&settings).await;
    let client = GateClient::new(&gate.address);

    // The builder pushes a preview's image and a default branch's; nobody else pushes.
    let tag = shared::naming::preview_tag("fns", &shared::naming::PreviewOf::PullRequest(7));
    let preview = format!("42/fns/hello__{tag}");
    let default = "42/fns/hello";
    assert_eq!(client.push_image(&preview, "abc", Some(BUILDER)).await, StatusCode::CREATED);
    assert_eq!(client.push_image(default, "abc", Some(BUILDER)).await, StatusCode::CREATED);
    for account in [None, Some(OPERATOR), Some(COLLECTOR)] {
        let status = client.push_image(default, "other", account).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{account:?}: {status}");
    }

    // Anyone reads; nobody anonymous lists every repository.
    let read = client.send(Method::GET, &format!("{default}/manifests/abc"), None, ("", vec![])).await;
    assert_eq!(read.status(), StatusCode::OK);
    let default_digest = read.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    let preview_digest = registry.client().manifest(&preview, "abc").await.unwrap().digest;
    let catalog = client.send(Method::GET, "_catalog", None, ("", vec![])).await;
    assert_eq!(catalog.status(), StatusCode::UNAUTHORIZED);
    let catalog = client.send(Method::GET, "_catalog", Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(catalog.status(), StatusCode::FORBIDDEN);
    // The registry decodes the path before routing: an escaped catalog is the catalog.
    for escaped in ["%5Fcatalog", "_catalo%67"] {
        let catalog = client.send(Method::GET, escaped, None, ("", vec![])).await;
        assert_eq!(catalog.status(), StatusCode::UNAUTHORIZED, "{escaped}");
    }

    // A second gate in front of the same registry, for where tenants' functions reach it (faasd's bridge): reads
    // need an account there.
    let mut signed_reads = settings.clone();
    signed_reads.push(("anonymous_reads", "false".to_owned()));
    let bridge = GateProcess::start(&signed_reads).await;
    let bridge = GateClient::new(&bridge.address);
    let manifest = format!("{default}/manifests/abc");
    assert_eq!(bridge.send(Method::GET, &manifest, None, ("", vec![])).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(bridge.send(Method::HEAD, &manifest, Some(COLLECTOR), ("", vec![])).await.status(), StatusCode::OK);
    let tags = bridge.send(Method::GET, &format!("{preview}/tags/list"), Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(tags.status(), StatusCode::OK);

    // The collector deletes the preview's manifest, not the default branch's; nor does the builder delete.
    let default_target = format!("{default}/manifests/{default_digest}");
    for account in [COLLECTOR, BUILDER] {
        let denied = client.send(Method::DELETE, &default_target, Some(account), ("", vec![])).await;
        assert_eq!(denied.status(), StatusCode::FORBIDDEN, "{}", account.0);
    }
    assert_eq!(client.head(format!("{default}/manifests/abc")).await, StatusCode::OK);
    let preview_target = format!("{preview}/manifests/{preview_digest}");
    let deleted = client.send(Method::DELETE, &preview_target, Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    assert_eq!(client.head(format!("{preview}/manifests/abc")).await, StatusCode::NOT_FOUND);
    assert!(registry.client().manifest(&preview, "abc").await.is_err(), "gone from the registry itself");

    // The operator deletes anything.
    let deleted = client.send(Method::DELETE, &default_target, Some(OPERATOR), ("", vec![])).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    assert_eq!(client.head(format!("{default}/manifests/abc")).await, StatusCode::NOT_FOUND);
}

/// Runs the binary with `settings` (no port: it must fail before binding); answers its stderr.
async fn failed_start(settings: &[(&str, String)]) -> String {
    let mut command = gate_command(settings);
    command.env("port", free_port().to_string());
    let output = tokio::time::timeout(Duration::from_secs(15), command.output()).await.unwrap().unwrap();
    assert!(!output.status.success(), "the gate started with {settings:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_missing_or_malformed_setting_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = account_files(dir.path());
    let with = |changes: &[(&'static str, Option<String>)]| {
        let mut settings = files.clone();
        settings.push(("registry_upstream", "127.0.0.1:9".to_owned()));
        for (name, value) in changes {
            settings.retain(|(n, _)| n != name);
            if let Some(value) = value {
                settings.push((name, value.clone()));
            }
        }
        settings
    };
    let missing = failed_start(&with(&[("operator_auth_file", None)])).await;
    assert!(missing.contains("operator_auth_file"), "{missing}");
    let absent = failed_start(&with(&[("builder_auth_file", Some("/nonexistent/auth".into()))])).await;
    assert!(absent.contains("builder_auth_file"), "{absent}");
    let remote = failed_start(&with(&[("registry_upstream", Some("192.0.2.1:5000".into()))])).await;
    assert!(remote.contains("registry_upstream") && remote.contains("loopback"), "{remote}");
    let no_upstream = failed_start(&with(&[("registry_upstream", None)])).await;
    assert!(no_upstream.contains("registry_upstream"), "{no_upstream}");

    let malformed = dir.path().join("malformed");
    std::fs::write(&malformed, r#"{"auths": {"a": {"password": "leaked-if-echoed"}}}"#).unwrap();
    let bad = failed_start(&with(&[("collector_auth_file", Some(malformed.display().to_string()))])).await;
    assert!(bad.contains("collector_auth_file") && !bad.contains("leaked-if-echoed"), "{bad}");
    let shared = failed_start(&with(&[("collector_auth_file", Some(files[1].1.clone()))])).await;
    assert!(shared.contains("collector_auth_file"), "an operator's account as the collector's: {shared}");
}
