//! Deployed functions really run: images built here (FROM the watchdog image `ofc up` builds), pushed to a real
//! registry, pulled and started by the gateway's runtime with `buildah run`, reached through `/function/NAME`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doubles::registry::RegistryProcess;
use ofc::gateway::{Gateway, GatewayConfig};
use ofc::runtime::{build_watchdog_image, BuildahStorage, FunctionRuntime, RuntimeConfig, WATCHDOG_IMAGE};
use shared::openfaas::FunctionDeployment;

fn watchdog_binary() -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ofc")).with_file_name("ofc-watchdog")
}

/// Builds `name` from `from` with `files` copied to `/home/app/public/`, pushes it, and answers its reference.
async fn push_image(builder: &BuildahStorage, registry: &str, from: &str, name: &str, files: &Path) -> String {
    let container = builder.run("from", &["from", "--quiet", "--pull=false", from]).await.unwrap();
    builder.run("copy", &["copy", "--quiet", &container, files.to_str().unwrap(), "/home/app/public/"]).await.unwrap();
    builder.run("commit", &["commit", "--quiet", "--rm", &container, name]).await.unwrap();
    let reference = format!("{registry}/{name}");
    builder
        .run("push", &["push", "--quiet", "--tls-verify=false", name, &format!("docker://{reference}")])
        .await
        .unwrap();
    reference
}

fn processes_under(root: &Path) -> Vec<String> {
    let needle = root.display().to_string();
    let output = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

/// GETs `url` until `done` holds for its status and body.
async fn poll(url: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = reqwest::get(url).await.unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "{url}: still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gateway whose runtime runs replicas under `dir/runtime`, with the secret `api-key` to hand them.
fn gateway_with_runtime(dir: &Path) -> Gateway {
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("api-key"), "s3cret").unwrap();
    let runtime = FunctionRuntime::new(RuntimeConfig {
        root: dir.join("runtime"),
        logs: dir.join("logs"),
        secrets,
        insecure_registry: true,
        start_timeout: Duration::from_secs(20),
    })
    .unwrap();
    let mut config = GatewayConfig::new(&dir.join("gateway"), "admin", "pw");
    config.runtime = Some(Arc::new(runtime));
    Gateway::new(config).unwrap()
}

#[tokio::test]
async fn deployed_functions_run_are_replaced_on_update_and_stopped_on_delete() {
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(&dir.path().join("registry")).await.unwrap();
    let builder = BuildahStorage { root: dir.path().join("builder") };
    assert!(build_watchdog_image(&builder, &watchdog_binary()).await.unwrap(), "built");
    assert!(!build_watchdog_image(&builder, &watchdog_binary()).await.unwrap(), "kept: same binary");

    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>live</h1>").unwrap();
    let image = push_image(&builder, &registry.host_port(), WATCHDOG_IMAGE, "site:1", &site).await;
    let no_command = push_image(&builder, &registry.host_port(), "scratch", "files:1", &site).await;

    let runtime_root = dir.path().join("runtime");
    let gateway = gateway_with_runtime(dir.path());
    let served = testkit::ServedFunction::serve(gateway.router()).await;
    let url = served.url();
    let http = reqwest::Client::new();
    let deploy = |method: reqwest::Method, deployment: FunctionDeployment| {
        http.request(method, format!("{url}system/functions")).basic_auth("admin", Some("pw")).json(&deployment).send()
    };

    // The env and the secret reach the replica: it serves its secrets folder.
    let mut deployment = FunctionDeployment {
        service: "octo-site".into(),
        image: image.clone(),
        secrets: vec!["api-key".into()],
        ..FunctionDeployment::default()
    };
    deployment.env_vars.insert("static_path".into(), "/var/openfaas/secrets".into());
    assert_eq!(deploy(reqwest::Method::POST, deployment.clone()).await.unwrap().status(), 202);
    let (_, body) = poll(&format!("{url}function/octo-site/api-key"), |s, _| s == 200).await;
    assert_eq!(body, "s3cret");
    let listed: Vec<serde_json::Value> = http
        .get(format!("{url}system/functions"))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["availableReplicas"], 1);
    assert!(listed[0]["invocationCount"].as_f64().unwrap() >= 1.0);

    // An update starts a new replica and retires the old one.
    deployment.env_vars.clear();
    assert_eq!(deploy(reqwest::Method::PUT, deployment.clone()).await.unwrap().status(), 200);
    poll(&format!("{url}function/octo-site"), |s, b| s == 200 && b == "<h1>live</h1>").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_under(&runtime_root).iter().filter(|p| p.contains(" run ")).count() > 1 {
        assert!(Instant::now() < deadline, "the old replica was not stopped: {:?}", processes_under(&runtime_root));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What cannot start says why.
    let broken =
        FunctionDeployment { service: "octo-files".into(), image: no_command, ..FunctionDeployment::default() };
    assert_eq!(deploy(reqwest::Method::POST, broken).await.unwrap().status(), 202);
    let (status, body) = poll(&format!("{url}function/octo-files"), |_, b| !b.contains("is starting")).await;
    assert_eq!(status, 503);
    assert!(body.contains("neither an entrypoint nor a command"), "{body}");
    let missing = FunctionDeployment {
        service: "octo-secretive".into(),
        image: image.clone(),
        secrets: vec!["nope".into()],
        ..FunctionDeployment::default()
    };
    assert_eq!(deploy(reqwest::Method::POST, missing).await.unwrap().status(), 202);
    let (status, body) = poll(&format!("{url}function/octo-secretive"), |_, b| !b.contains("is starting")).await;
    assert_eq!(status, 503);
    assert!(body.contains("secret nope does not exist"), "{body}");

    // Delete stops the replica; stopping the gateway stops the rest.
    let delete = serde_json::json!({"functionName": "octo-site"});
    let deleted =
        http.delete(format!("{url}system/functions")).basic_auth("admin", Some("pw")).json(&delete).send().await;
    assert_eq!(deleted.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{url}function/octo-site")).await.unwrap().status(), 404);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes_under(&runtime_root).is_empty() {
        assert!(Instant::now() < deadline, "left running: {:?}", processes_under(&runtime_root));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.stop_functions().await;
    assert!(processes_under(&runtime_root).is_empty());
    drop(registry);
}
