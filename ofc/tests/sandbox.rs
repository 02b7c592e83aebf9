//! A deployed function runs in the sandbox a build runs in: as the build user, in its own PID namespace with a
//! minimal `/dev`, without `chroot`. The probe function tries each way out of it and answers what happened, while
//! it still answers on its loopback port and reads its secret.
//!
//! Needs root, uidmap, busybox-static and the build user `ofcbuild` (`.ci/run` sets them up).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doubles::registry::RegistryProcess;
use ofc::gateway::{Gateway, GatewayConfig};
use ofc::runtime::{build_watchdog_image, BuildahStorage, FunctionRuntime, RuntimeConfig, Sandbox, WATCHDOG_IMAGE};
use shared::openfaas::FunctionDeployment;
use shared::sandbox::BuildUser;

/// Fails with what to install when the machine cannot run the sandbox tests.
fn build_user() -> BuildUser {
    assert!(Path::new("/bin/busybox").exists(), "the sandbox tests need busybox-static (`.ci/run` installs it)");
    BuildUser::lookup("ofcbuild").unwrap_or_else(|e| panic!("the sandbox tests need the build user: {e}"))
}

/// The probe image: the watchdog image with busybox and the probe script, pushed to `registry`.
async fn push_probe(builder: &BuildahStorage, registry: &str, files: &Path) -> String {
    let container = builder.run("from", &["from", "--quiet", "--pull=false", WATCHDOG_IMAGE]).await.unwrap();
    for (source, target) in [("busybox", "/bin/busybox"), ("function.sh", "/home/app/function.sh")] {
        let source = files.join(source).display().to_string();
        builder.run("copy", &["copy", "--quiet", &container, &source, target]).await.unwrap();
    }
    builder.run("commit", &["commit", "--quiet", "--rm", &container, "probe:1"]).await.unwrap();
    let reference = format!("{registry}/probe:1");
    let target = format!("docker://{reference}");
    builder.run("push", &["push", "--quiet", "--tls-verify=false", "probe:1", &target]).await.unwrap();
    reference
}

#[tokio::test]
async fn a_deployed_function_cannot_reach_the_host_but_still_answers() {
    build_user();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let registry = RegistryProcess::start(&dir.path().join("registry")).await.unwrap();
    let builder = BuildahStorage::new(dir.path().join("builder"));
    let watchdog = Path::new(env!("CARGO_BIN_EXE_ofc")).with_file_name("ofc-watchdog");
    build_watchdog_image(&builder, &watchdog).await.unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::copy("/bin/busybox", files.join("busybox")).unwrap();
    std::fs::write(files.join("function.sh"), include_str!("probe/function.sh")).unwrap();
    let image = push_probe(&builder, &registry.host_port(), &files).await;

    let (gateway, served) = sandboxed_gateway(dir.path(), build_user()).await;

    let root_only = dir.path().join("root-only");
    let secret = format!("host-secret-{}", std::process::id());
    std::fs::write(&root_only, &secret).unwrap();
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut victim = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let (disk, numbers) = testkit::local_stack::host_disk();
    let (major, minor) = numbers.split_once(':').unwrap();
    let mut deployment = FunctionDeployment {
        service: "octo-probe".into(),
        image,
        env_process: Some("/bin/busybox sh /home/app/function.sh".into()),
        secrets: vec!["api-key".into()],
        ..FunctionDeployment::default()
    };
    for (name, value) in [
        ("mode", "serializing".to_owned()),
        ("SECRET_PATH", root_only.display().to_string()),
        ("VICTIM", victim.id().to_string()),
        ("DISK", disk),
        ("DISK_MAJOR", major.to_owned()),
        ("DISK_MINOR", minor.to_owned()),
    ] {
        deployment.env_vars.insert(name.into(), value);
    }
    let http = reqwest::Client::new();
    let deploy = http.post(format!("{}system/functions", served.url())).basic_auth("admin", Some("pw"));
    assert_eq!(deploy.json(&deployment).send().await.unwrap().status(), 202);

    let answer = invoke_when_up(&http, &format!("{}function/octo-probe", served.url())).await;
    for name in [
        "read-host-file",
        "read-via-proc-1-root",
        "read-via-any-proc-root",
        "signal-host-process",
        "kill-host-process",
        "open-block-device",
        "make-block-device",
        "chroot",
        "new-user-namespace",
    ] {
        assert!(answer.lines().any(|l| l == format!("PROBE {name}: blocked")), "{name} is blocked: {answer}");
    }
    let count = |name: &str| -> usize {
        let prefix = format!("PROBE {name}: ");
        answer.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.trim().parse().ok()).unwrap()
    };
    assert!(count("host-pids") < 20, "the function sees only its own processes: {answer}");
    assert!(count("dev-entries") < 20, "the function sees a minimal /dev: {answer}");
    assert!(answer.lines().any(|l| l == "PROBE secret: s3cret"), "its secret is readable: {answer}");
    assert!(!answer.contains(&secret), "the root-only file was not read");
    assert!(victim.try_wait().unwrap().is_none(), "the host process is still running");
    victim.kill().unwrap();
    let _ = victim.wait();

    let replicas = replica_owners(&dir.path().join("runtime"));
    assert!(!replicas.is_empty() && replicas.iter().all(|u| *u != 0), "Buildah runs as the build user: {replicas:?}");
    gateway.stop_functions().await;
    assert!(replica_owners(&dir.path().join("runtime")).is_empty(), "the replica stops with the gateway");
    drop(registry);
}

/// A gateway whose runtime runs replicas sandboxed as `user`, with `api-key` in a private secrets folder of `dir`.
async fn sandboxed_gateway(dir: &Path, user: BuildUser) -> (Gateway, testkit::ServedFunction) {
    // Root's secrets folder, private as `ofc up` keeps it: the replica gets a copy it may read.
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(secrets.join("api-key"), "s3cret").unwrap();
    std::fs::set_permissions(secrets.join("api-key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let sandbox = Sandbox::new(user, dir.join("sandbox-dev")).unwrap();
    let runtime = FunctionRuntime::new(RuntimeConfig {
        root: dir.join("runtime"),
        logs: dir.join("logs"),
        secrets: secrets.clone(),
        insecure_registry: true,
        start_timeout: Duration::from_secs(30),
        sandbox: Some(sandbox),
    })
    .unwrap();
    let mut config = GatewayConfig::new(&dir.join("gateway"), "admin", "pw");
    config.secrets_dir = secrets;
    config.runtime = Some(Arc::new(runtime));
    let gateway = Gateway::new(config).unwrap();
    let served = testkit::ServedFunction::serve(gateway.router()).await;
    (gateway, served)
}

/// POSTs to `url` until the function answers 200 (it starts in the background).
async fn invoke_when_up(http: &reqwest::Client, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http.post(url).body("").send().await.unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        if status == 200 {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real uids of the `buildah` processes working on `root` (`buildah run` lasts as long as its replica).
fn replica_owners(root: &Path) -> Vec<u32> {
    let needle = root.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let command = String::from_utf8_lossy(&std::fs::read(path.join("cmdline")).ok()?).replace('\0', " ");
            if !command.starts_with("buildah") || !command.contains(&needle) || !command.contains(" run ") {
                return None;
            }
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[test]
fn up_without_the_build_user_fails_at_start_saying_how_to_create_it() {
    let state = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ofc"))
        .args(["up", "--sandbox", "no-such-build-user", "--gateway-port", "9", "--state"])
        .arg(state.path())
        .args(["--stack", concat!(env!("CARGO_MANIFEST_DIR"), "/..")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no user `no-such-build-user`"), "{stderr}");
    assert!(stderr.contains("useradd --system") && stderr.contains("/etc/subuid"), "{stderr}");
    assert!(stderr.contains("--sandbox none"), "{stderr}");
    assert!(!state.path().join("endpoints.json").exists(), "nothing was started");
}

/// The sandbox's cost for a running function, printed: deploy → first answer and the replica's memory (the RSS of
/// every process of its group), sandboxed and as root. `cargo test -p ofc --test sandbox -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn measure_what_the_sandbox_costs_a_running_function() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let registry = RegistryProcess::start(&dir.path().join("registry")).await.unwrap();
    let builder = BuildahStorage::new(dir.path().join("builder"));
    let watchdog = Path::new(env!("CARGO_BIN_EXE_ofc")).with_file_name("ofc-watchdog");
    build_watchdog_image(&builder, &watchdog).await.unwrap();
    let reference = format!("{}/site:1", registry.host_port());
    let target = format!("docker://{reference}");
    builder.run("push", &["push", "--quiet", "--tls-verify=false", WATCHDOG_IMAGE, &target]).await.unwrap();
    for sandboxed in [true, false] {
        let folder = dir.path().join(if sandboxed { "sandboxed" } else { "root" });
        std::fs::create_dir(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o711)).unwrap();
        let runtime = FunctionRuntime::new(RuntimeConfig {
            root: folder.join("runtime"),
            logs: folder.join("logs"),
            secrets: folder.join("secrets"),
            insecure_registry: true,
            start_timeout: Duration::from_secs(30),
            sandbox: sandboxed.then(|| Sandbox::new(build_user(), folder.join("dev")).unwrap()),
        })
        .unwrap();
        let mut config = GatewayConfig::new(&folder.join("gateway"), "admin", "pw");
        config.runtime = Some(Arc::new(runtime));
        let gateway = Gateway::new(config).unwrap();
        let served = testkit::ServedFunction::serve(gateway.router()).await;
        let http = reqwest::Client::new();
        for round in 0..5 {
            let name = format!("octo-site-{round}");
            let deployment =
                FunctionDeployment { service: name.clone(), image: reference.clone(), ..Default::default() };
            let started = Instant::now();
            let deploy = http.post(format!("{}system/functions", served.url())).basic_auth("admin", Some("pw"));
            assert_eq!(deploy.json(&deployment).send().await.unwrap().status(), 202);
            let url = format!("{}function/{name}", served.url());
            // The bare watchdog image serves an empty folder: any answer from the function itself (not the
            // gateway's 503 while it starts) is the first one.
            while http.get(&url).send().await.unwrap().status().is_server_error() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let rss = testkit::process::buildah_run_groups_rss_kib(&folder.join("runtime"));
            println!("sandboxed={sandboxed} round={round} deploy-to-answer={elapsed:.2}s replica-rss={rss}KiB");
            let delete = serde_json::json!({"functionName": name});
            let deleted = http.delete(format!("{}system/functions", served.url())).basic_auth("admin", Some("pw"));
            deleted.json(&delete).send().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        gateway.stop_functions().await;
    }
    drop(registry);
}

/// `ofc up`'s builds run on the storage driver of-builder's probe picks (overlay where it works, else vfs),
/// sandboxed and with `--sandbox none`; the base image is built into that driver's own folder, where of-builder
/// reads it, and a build FROM it works there.
#[tokio::test]
async fn the_base_image_is_built_into_the_storage_driver_chosen_for_the_builder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = ofc::state::StateDir::new(dir.path());
    let watchdog = Path::new(env!("CARGO_BIN_EXE_ofc")).with_file_name("ofc-watchdog");
    let sandbox = ofc::sandbox::prepare(&state, build_user()).unwrap();
    for sandbox in [Some(&sandbox), None] {
        let choice = ofc::sandbox::choose_builder_driver(&state, sandbox).await.unwrap();
        let folder = ofc::sandbox::builder_root(&state, sandbox).join(choice.driver.name());
        let storage = ofc::sandbox::builder_storage_on(&state, sandbox, choice.driver).unwrap();
        assert_eq!(storage.root, folder);
        assert!(build_watchdog_image(&storage, &watchdog).await.unwrap(), "built the first time");
        assert!(!build_watchdog_image(&storage, &watchdog).await.unwrap(), "kept while the binary is unchanged");
        // containers/storage names its folders after the driver that wrote them.
        let driver_folder = folder.join("storage").join(format!("{}-images", choice.driver.name()));
        assert!(driver_folder.is_dir(), "{} ({})", driver_folder.display(), choice.why);
        let container = storage.run("from", &["from", "--quiet", "--pull=false", WATCHDOG_IMAGE]).await.unwrap();
        storage.run("rm", &["rm", &container]).await.unwrap();
    }
}
