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

/// A registry holding the test images, and a gateway whose runtime runs them.
struct Harness {
    dir: tempfile::TempDir,
    registry: RegistryProcess,
    gateway: Gateway,
    /// The gateway's base URL.
    /// Serves the gateway until the harness is dropped.
    _served: testkit::ServedFunction,
    url: String,
    /// The runtime's Buildah storage: every replica's process names it.
    runtime_root: std::path::PathBuf,
    /// Serves `/home/app/public` (the watchdog's static mode).
    image: String,
    /// FROM scratch: nothing to run.
    no_command: String,
    http: reqwest::Client,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(&dir.path().join("registry")).await.unwrap();
    let builder = BuildahStorage::new(dir.path().join("builder"));
    assert!(build_watchdog_image(&builder, &watchdog_binary()).await.unwrap(), "built");
    assert!(!build_watchdog_image(&builder, &watchdog_binary()).await.unwrap(), "kept: same binary");

    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>live</h1>").unwrap();
    let image = push_image(&builder, &registry.host_port(), WATCHDOG_IMAGE, "site:1", &site).await;
    let no_command = push_image(&builder, &registry.host_port(), "scratch", "files:1", &site).await;

    let runtime_root = dir.path().join("runtime");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("api-key"), "s3cret").unwrap();
    let runtime = FunctionRuntime::new(RuntimeConfig {
        root: runtime_root.clone(),
        logs: dir.path().join("logs"),
        secrets: secrets.clone(),
        insecure_registry: true,
        start_timeout: Duration::from_secs(20),
        sandbox: None,
    })
    .unwrap();
    let mut config = GatewayConfig::new(&dir.path().join("gateway"), "admin", "pw");
    // One secrets folder, as `ofc up` has it: the gateway refuses a deployment whose secret is not there.
    config.secrets_dir = secrets;
    config.runtime = Some(Arc::new(runtime));
    config.logs_dir = dir.path().join("logs");
    let gateway = Gateway::new(config).unwrap();
    let served = testkit::ServedFunction::serve(gateway.router()).await;
    let url = served.url();
    Harness {
        dir,
        registry,
        gateway,
        _served: served,
        url,
        runtime_root,
        image,
        no_command,
        http: reqwest::Client::new(),
    }
}

impl Harness {
    async fn deploy(&self, method: reqwest::Method, deployment: &FunctionDeployment) -> u16 {
        let request = self.http.request(method, format!("{}system/functions", self.url));
        request.basic_auth("admin", Some("pw")).json(deployment).send().await.unwrap().status().as_u16()
    }

    async fn list(&self) -> Vec<serde_json::Value> {
        let request = self.http.get(format!("{}system/functions", self.url)).basic_auth("admin", Some("pw"));
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Deploys a function that cannot start, and checks that invoking it says why.
    async fn assert_cannot_start(&self, deployment: &FunctionDeployment, why: &str) {
        assert_eq!(self.deploy(reqwest::Method::POST, deployment).await, 202);
        let invoke = format!("{}function/{}", self.url, deployment.service);
        let (status, body) = poll(&invoke, |_, b| !b.contains("is starting")).await;
        assert_eq!(status, 503);
        assert!(body.contains(why), "{body}");
    }

    /// Waits until at most `count` replica processes run (`buildah run`; `unshare` around it names it too).
    async fn wait_for_replicas(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let running = |p: &&String| p.starts_with("buildah") && p.contains(" run ");
        while processes_under(&self.runtime_root).iter().filter(running).count() > count {
            assert!(Instant::now() < deadline, "left running: {:?}", processes_under(&self.runtime_root));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn deployed_functions_run_are_replaced_on_update_and_stopped_on_delete() {
    let harness = start().await;
    let url = harness.url.clone();

    // The env and the secret reach the replica: it serves its secrets folder.
    let mut deployment = FunctionDeployment {
        service: "octo-site".into(),
        image: harness.image.clone(),
        secrets: vec!["api-key".into()],
        ..FunctionDeployment::default()
    };
    deployment.env_vars.insert("static_path".into(), "/var/openfaas/secrets".into());
    assert_eq!(harness.deploy(reqwest::Method::POST, &deployment).await, 202);
    // A call right after the deployment waits for the replica that is starting, as OpenFaaS' gateway does.
    let first = harness.http.get(format!("{url}function/octo-site/api-key")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "s3cret");
    let listed = harness.list().await;
    assert_eq!(listed[0]["availableReplicas"], 1);
    assert!(listed[0]["invocationCount"].as_f64().unwrap() >= 1.0);
    // Its output is served by /system/logs, each line stamped with its time and the replica's container.
    let logs = harness.http.get(format!("{url}system/logs?name=octo-site&tail=20")).basic_auth("admin", Some("pw"));
    let logs = logs.send().await.unwrap().text().await.unwrap();
    let listening = logs
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|message| message["text"].as_str().is_some_and(|text| text.contains("listening on port")))
        .unwrap_or_else(|| panic!("no watchdog line in {logs}"));
    assert!(listening["instance"].as_str().unwrap().starts_with("ofc-octo-site-"), "{listening}");

    // An update starts a new replica and retires the old one.
    deployment.env_vars.clear();
    assert_eq!(harness.deploy(reqwest::Method::PUT, &deployment).await, 200);
    poll(&format!("{url}function/octo-site"), |s, b| s == 200 && b == "<h1>live</h1>").await;
    harness.wait_for_replicas(1).await;

    // What cannot start says why.
    let broken = FunctionDeployment {
        service: "octo-files".into(),
        image: harness.no_command.clone(),
        ..FunctionDeployment::default()
    };
    harness.assert_cannot_start(&broken, "neither an entrypoint nor a command").await;
    let missing = FunctionDeployment {
        service: "octo-secretive".into(),
        image: harness.image.clone(),
        secrets: vec!["nope".into()],
        ..FunctionDeployment::default()
    };
    // A secret that does not exist is refused at deployment, as OpenFaaS refuses it: nothing is recorded.
    assert_eq!(harness.deploy(reqwest::Method::POST, &missing).await, 400);
    let refused = harness.http.get(format!("{url}system/function/octo-secretive")).basic_auth("admin", Some("pw"));
    assert_eq!(refused.send().await.unwrap().status(), 404);

    // Delete stops the replica; stopping the gateway stops the rest.
    let delete = serde_json::json!({"functionName": "octo-site"});
    let deleted = harness.http.delete(format!("{url}system/functions")).basic_auth("admin", Some("pw")).json(&delete);
    assert_eq!(deleted.send().await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{url}function/octo-site")).await.unwrap().status(), 404);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes_under(&harness.runtime_root).is_empty() {
        assert!(Instant::now() < deadline, "left running: {:?}", processes_under(&harness.runtime_root));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    harness.gateway.stop_functions().await;
    assert!(processes_under(&harness.runtime_root).is_empty());
    drop(harness.registry);
    drop(harness.dir);
}
