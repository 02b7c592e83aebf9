//! of-builder over real HTTP: real Buildah builds pushed to a real registry, read back over the registry's API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use doubles::registry::RegistryProcess;
use of_builder::storage::{DriverSetting, StorageDriver};
use of_builder::{BackendKind, Config, Setup};
use serde_json::Value;
use shared::build::{BuildConfig, BuildResult, BuildStatus};
use shared::config::{CommonConfig, Secret};
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::ServedFunction;

const PAYLOAD_SECRET: &str = "payload-secret-for-tests";

struct Harness {
    address: SocketAddr,
    registry: RegistryProcess,
    http: reqwest::Client,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _served: ServedFunction,
}

async fn start(max_context_bytes: u64) -> Harness {
    start_with(max_context_bytes, |_| {}).await
}

/// Starts of-builder with the test defaults (vfs), changed by `adjust`.
async fn start_with(max_context_bytes: u64, adjust: impl FnOnce(&mut Config)) -> Harness {
    start_on(StorageDriver::Vfs, max_context_bytes, adjust).await
}

/// The test defaults: Buildah with its storage in `buildah_root`, pushing to a plain-HTTP registry.
fn test_config(max_context_bytes: u64, buildah_root: &Path) -> Config {
    Config {
        common: CommonConfig {
            gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        backend: BackendKind::Buildah,
        max_context_bytes,
        max_concurrent_builds: 2,
        max_concurrent_builds_per_owner: 1,
        max_queued_builds_per_owner: 10,
        registry_insecure: true,
        buildah_root: Some(buildah_root.to_owned()),
        build_timeout: Duration::from_secs(120),
        build_user: None,
        registry_auth: None,
        allowed_base_images: of_builder::base_images::Allowlist::parse(None).unwrap(),
        server: ServerConfig::for_tests(max_context_bytes + (16 << 20)),
    }
}

/// Starts of-builder on `storage` with the test defaults, changed by `adjust`.
async fn start_on(storage: StorageDriver, max_context_bytes: u64, adjust: impl FnOnce(&mut Config)) -> Harness {
    let registry_dir = tempfile::tempdir().unwrap();
    let buildah_dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(registry_dir.path()).await.unwrap();
    let mut config = test_config(max_context_bytes, buildah_dir.path());
    adjust(&mut config);
    let server = config.server.clone();
    let served = ServedFunction::start_with(of_builder::serve(Setup { config, storage }), &server).await;
    Harness {
        address: served.address,
        registry,
        http: reqwest::Client::new(),
        _dirs: (registry_dir, buildah_dir),
        _served: served,
    }
}

/// A build tar: `config` and the given `context/` files.
fn build_tar(config: &BuildConfig, files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, "config", serde_json::to_string(config).unwrap().as_bytes());
    for (path, content) in files {
        append(&mut builder, &format!("context/{path}"), content.as_bytes());
    }
    builder.into_inner().unwrap()
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    append_mode(builder, path, data, 0o644);
}

fn append_mode(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data).unwrap();
}

/// An entry written byte by byte, so names the `tar` crate would refuse (`..`, `/abs`) can be sent.
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

fn config(registry: &RegistryProcess, name: &str) -> BuildConfig {
    BuildConfig {
        image_ref: format!("{}/11/fns/{name}:latest-abc123", registry.host_port()),
        build_args: BTreeMap::new(),
        platforms: vec![],
    }
}

impl Harness {
    async fn post(&self, body: Vec<u8>, signed: bool) -> (u16, Value) {
        let mut request = self.http.post(format!("http://{}/build", self.address));
        if signed {
            request = request.header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body));
        }
        let response = request.body(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn build(&self, body: Vec<u8>) -> BuildResult {
        let (status, answer) = self.post(body, true).await;
        assert_eq!(status, 200, "{answer}");
        serde_json::from_value(answer).unwrap()
    }
}

#[tokio::test]
async fn builds_a_scratch_image_and_pushes_it_to_the_registry() {
    let harness = start(1 << 20).await;
    let mut config = config(&harness.registry, "hello");
    config.build_args.insert("GREETING".into(), "ahoy".into());
    let dockerfile = "FROM scratch\nARG GREETING=hi\nENV GREETING=$GREETING\nLABEL com.openfaas.test=\"yes\"\n\
                      WORKDIR /home/app\nCOPY handler.txt .\nCMD [\"/home/app/handler\"]\n";
    let result = harness.build(build_tar(&config, &[("Dockerfile", dockerfile), ("handler.txt", "hello\n")])).await;
    assert_eq!(result.status, BuildStatus::Success, "{:?}", result.log);
    assert!(result.digest.starts_with("sha256:"), "{}", result.digest);

    let registry = harness.registry.client();
    let manifest = registry.manifest("11/fns/hello", "latest-abc123").await.unwrap();
    assert_eq!(manifest.digest, result.digest, "of-builder answers the digest the registry serves");
    assert!(!manifest.json["layers"].as_array().unwrap().is_empty());
    let image = registry.image_config("11/fns/hello", "latest-abc123").await.unwrap();
    let env: Vec<&str> = image["config"]["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(env.contains(&"GREETING=ahoy"), "the build arg reached ENV: {env:?}");
    assert_eq!(image["config"]["Labels"]["com.openfaas.test"], "yes");
    assert_eq!(image["config"]["WorkingDir"], "/home/app");
    assert_eq!(image["config"]["Cmd"][0], "/home/app/handler");
}

#[tokio::test]
async fn builds_a_multi_stage_dockerfile_and_reuses_its_cache() {
    let harness = start(1 << 20).await;
    let config = config(&harness.registry, "staged");
    let dockerfile = "FROM scratch AS build\nCOPY source.txt /src/out.txt\n\nFROM scratch\nCOPY --from=build /src/out.txt /out.txt\n";
    let tar = build_tar(&config, &[("Dockerfile", dockerfile), ("source.txt", "built\n")]);
    let first = harness.build(tar.clone()).await;
    assert_eq!(first.status, BuildStatus::Success, "{:?}", first.log);
    let second = harness.build(tar).await;
    assert_eq!(second.status, BuildStatus::Success);
    assert_eq!(second.digest, first.digest, "an unchanged context reuses its image");
    assert!(second.log.iter().any(|l| l.starts_with("build skipped")), "{:?}", second.log);
    let manifest = harness.registry.client().manifest("11/fns/staged", "latest-abc123").await.unwrap();
    assert_eq!(manifest.json["layers"].as_array().unwrap().len(), 1, "only the final stage's layer is shipped");
}

#[tokio::test]
async fn a_broken_dockerfile_is_a_failure_with_its_log_not_a_server_error() {
    let harness = start(1 << 20).await;
    let config = config(&harness.registry, "broken");
    let result = harness.build(build_tar(&config, &[("Dockerfile", "FROM scratch\nCOPY missing.txt /\n")])).await;
    assert_eq!(result.status, BuildStatus::Failure);
    assert!(result.digest.is_empty());
    assert!(result.log.iter().any(|l| l.contains("missing.txt")), "{:?}", result.log);
    assert!(harness.registry.client().manifest("11/fns/broken", "latest-abc123").await.is_err());
}

#[tokio::test]
async fn refuses_unsigned_and_mis_signed_tars() {
    let harness = start(1 << 20).await;
    let tar = build_tar(&config(&harness.registry, "x"), &[("Dockerfile", "FROM scratch\n")]);
    assert_eq!(harness.post(tar.clone(), false).await.0, 401);
    let response = harness
        .http
        .post(format!("http://{}/build", harness.address))
        .header("X-Cloud-Signature", sign_sha256(b"wrong", &tar))
        .body(tar)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

async fn assert_refused(harness: &Harness, tar: Vec<u8>, names: &str) {
    let (status, answer) = harness.post(tar, true).await;
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains(names), "the error names `{names}`: {error}");
}

#[tokio::test]
async fn refuses_bad_tars_naming_the_entry_and_writes_nothing_outside() {
    let harness = start(4096).await;
    let config = serde_json::to_vec(&config(&harness.registry, "evil")).unwrap();
    let marker = format!("of-builder-escape-{}", std::process::id());
    let with = |name: &str, kind: tar::EntryType, link: Option<&str>| {
        let mut builder = tar::Builder::new(Vec::new());
        raw_entry(&mut builder, "config", tar::EntryType::Regular, None, &config);
        raw_entry(&mut builder, "context/Dockerfile", tar::EntryType::Regular, None, b"FROM scratch\n");
        raw_entry(&mut builder, name, kind, link, if kind == tar::EntryType::Regular { b"x" } else { b"" });
        builder.into_inner().unwrap()
    };
    let absolute = format!("/tmp/{marker}");
    assert_refused(&harness, with(&absolute, tar::EntryType::Regular, None), &absolute).await;
    let climbing = format!("context/../../../tmp/{marker}");
    assert_refused(&harness, with(&climbing, tar::EntryType::Regular, None), &climbing).await;
    assert_refused(&harness, with("context/pipe", tar::EntryType::Fifo, None), "context/pipe").await;
    assert_refused(&harness, with("context/dev", tar::EntryType::Char, None), "context/dev").await;
    assert_refused(&harness, with("context/passwd", tar::EntryType::Symlink, Some("/etc/passwd")), "context/passwd")
        .await;
    assert_refused(&harness, with("context/up", tar::EntryType::Symlink, Some("../../etc")), "context/up").await;
    assert_refused(&harness, with("context/hard", tar::EntryType::Link, Some("config")), "context/hard").await;
    assert_refused(&harness, with("elsewhere.txt", tar::EntryType::Regular, None), "elsewhere.txt").await;
    assert!(!Path::new(&absolute).exists(), "nothing lands outside the temporary folder");

    let mut big = tar::Builder::new(Vec::new());
    raw_entry(&mut big, "config", tar::EntryType::Regular, None, &config);
    raw_entry(&mut big, "context/Dockerfile", tar::EntryType::Regular, None, b"FROM scratch\n");
    raw_entry(&mut big, "context/big.bin", tar::EntryType::Regular, None, &[0u8; 8192]);
    assert_refused(&harness, big.into_inner().unwrap(), "context/big.bin").await;

    let no_config = build_tar(&BuildConfig::default(), &[("Dockerfile", "FROM scratch\n")]);
    assert_refused(&harness, no_config, "config").await;
    let mut no_dockerfile = tar::Builder::new(Vec::new());
    raw_entry(&mut no_dockerfile, "config", tar::EntryType::Regular, None, &config);
    raw_entry(&mut no_dockerfile, "context/app.txt", tar::EntryType::Regular, None, b"x");
    assert_refused(&harness, no_dockerfile.into_inner().unwrap(), "Dockerfile").await;
    assert_refused(&harness, b"this is not a tar archive at all, just text that goes on".repeat(20), "tar").await;
}

#[tokio::test]
async fn accepts_links_that_stay_inside_the_context() {
    let harness = start(1 << 20).await;
    let config = serde_json::to_vec(&config(&harness.registry, "links")).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    raw_entry(&mut builder, "config", tar::EntryType::Regular, None, &config);
    raw_entry(
        &mut builder,
        "context/Dockerfile",
        tar::EntryType::Regular,
        None,
        b"FROM scratch\nCOPY real.txt alias.txt /\n",
    );
    raw_entry(&mut builder, "context/real.txt", tar::EntryType::Regular, None, b"real\n");
    raw_entry(&mut builder, "context/alias.txt", tar::EntryType::Symlink, Some("real.txt"), b"");
    let result = harness.build(builder.into_inner().unwrap()).await;
    assert_eq!(result.status, BuildStatus::Success, "{:?}", result.log);
}

#[tokio::test]
async fn reports_a_working_backend_on_healthz() {
    let harness = start(1 << 20).await;
    let answer: Value =
        harness.http.get(format!("http://{}/healthz", harness.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["backend"], "buildah");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["storage_driver"], "vfs", "the driver chosen at start: {answer}");
}

#[tokio::test]
async fn refuses_a_ref_that_is_not_a_registry_reference() {
    let harness = start(1 << 20).await;
    let marker = tempfile::tempdir().unwrap();
    let target = marker.path().join("image");
    for reference in [
        format!("dir:{}", target.display()),
        format!("oci:{}:latest", target.display()),
        format!("docker-archive:{}/a.tar", marker.path().display()),
        "containers-storage:octo/fn:latest".to_owned(),
        "dir:5000/octo/fn".to_owned(),
        "octo/fn:latest".to_owned(),
    ] {
        let config = BuildConfig { image_ref: reference.clone(), ..BuildConfig::default() };
        let tar = build_tar(&config, &[("Dockerfile", "FROM scratch\nCOPY a.txt /\n"), ("a.txt", "a\n")]);
        let (status, answer) = harness.post(tar, true).await;
        assert_eq!(status, 400, "{reference}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("`ref`") && error.contains(&reference), "the error names the ref: {error}");
    }
    assert_eq!(std::fs::read_dir(marker.path()).unwrap().count(), 0, "nothing was written to the host folder");
    assert!(!Path::new("5000").exists());
}

/// Needs busybox-static (the image's `seq`).
#[tokio::test]
async fn returns_the_whole_log_with_known_secrets_scrubbed() {
    let password = format!("registry-password-{}", std::process::id());
    let auth = format!(
        r#"{{"auths": {{"registry.invalid": {{"auth": "{}"}}}}}}"#,
        base64_encode(format!("robot:{password}").as_bytes())
    );
    let harness = start_with(16 << 20, |c| c.registry_auth = Some(Secret::new(auth))).await;
    let config = config(&harness.registry, "chatty");
    let dockerfile = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"seq\", \"1\", \"400\"]\n\
         LABEL leaked=\"{password}\" signed=\"{PAYLOAD_SECRET}\"\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "config", serde_json::to_string(&config).unwrap().as_bytes());
    append(&mut tar, "context/Dockerfile", dockerfile.as_bytes());
    append_mode(&mut tar, "context/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755);
    let result = harness.build(tar.into_inner().unwrap()).await;
    assert_eq!(result.status, BuildStatus::Success, "{:?}", result.log);
    assert!(result.log.len() > 400, "every line comes back: {}", result.log.len());
    assert!(
        result.log.iter().any(|l| l.starts_with("STEP 1/") && l.ends_with(": FROM scratch")),
        "{:?}",
        &result.log[..5]
    );
    for n in ["1", "2", "200", "201", "400"] {
        assert!(result.log.iter().any(|l| l == n), "line {n} is in the log");
    }
    assert!(result.log.iter().any(|l| l.contains(shared::log_store::SCRUBBED)));
    for line in &result.log {
        assert!(!line.contains(&password) && !line.contains(PAYLOAD_SECRET), "a secret leaked: {line}");
    }
}

/// Standard base64, so the test needs no extra crate.
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The build user `.ci/run` creates; the sandbox tests need root (to enter the namespaces and drop to it),
/// `uidmap` (newuidmap) and `busybox-static` (the probe image's shell).
const BUILD_USER: &str = "ofcbuild";

/// Fails with what to install when the machine cannot run the sandbox tests.
fn sandbox_prerequisites() -> of_builder::sandbox::BuildUser {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    assert!(root, "the sandbox tests run as root (run `.ci/run`, or cargo test as root)");
    assert!(Path::new("/bin/busybox").exists(), "the sandbox tests need busybox-static (`.ci/run` installs it)");
    of_builder::sandbox::BuildUser::lookup(BUILD_USER)
        .unwrap_or_else(|e| panic!("the sandbox tests need the build user: {e} (`.ci/run` creates it)"))
}

/// Needs root, uidmap, busybox-static and the build user (see `sandbox_prerequisites`).
#[tokio::test]
async fn a_sandboxed_run_step_cannot_reach_the_host_but_still_builds() {
    let user = sandbox_prerequisites();
    let storage = tempfile::tempdir().unwrap();
    let storage_root = storage.path().join("buildah");
    let harness = start_with(16 << 20, |c| {
        c.build_user = Some(user);
        c.buildah_root = Some(storage_root.clone());
    })
    .await;
    std::fs::set_permissions(storage.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();

    let secret_dir = tempfile::tempdir().unwrap();
    let secret_path = secret_dir.path().join("root-only");
    let secret = format!("host-secret-{}", std::process::id());
    std::fs::write(&secret_path, &secret).unwrap();
    std::fs::set_permissions(&secret_path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut victim = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let (disk, numbers) = testkit::local_stack::host_disk();
    let (major, minor) = numbers.split_once(':').unwrap();

    let mut config = config(&harness.registry, "probe");
    for (name, value) in [
        ("SECRET_PATH", secret_path.display().to_string()),
        ("VICTIM", victim.id().to_string()),
        ("DISK", disk),
        ("DISK_MAJOR", major.to_owned()),
        ("DISK_MINOR", minor.to_owned()),
        ("REGISTRY_PORT", harness.registry.host_port().rsplit(':').next().unwrap().to_owned()),
    ] {
        config.build_args.insert(name.into(), value);
    }
    let dockerfile =
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                      COPY hello.txt /app/hello.txt\nCOPY probe.sh /probe.sh\n\
                      ARG SECRET_PATH\nARG VICTIM\nARG DISK\nARG DISK_MAJOR\nARG DISK_MINOR\nARG REGISTRY_PORT\n\
                      RUN sh /probe.sh\n";
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "config", serde_json::to_string(&config).unwrap().as_bytes());
    append(&mut tar, "context/Dockerfile", dockerfile.as_bytes());
    append(&mut tar, "context/hello.txt", b"hello from the context\n");
    append(&mut tar, "context/probe.sh", include_bytes!("probe/probe.sh"));
    append_mode(&mut tar, "context/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755);
    let result = harness.build(tar.into_inner().unwrap()).await;

    assert_eq!(result.status, BuildStatus::Success, "an ordinary RUN step and COPY still work: {:?}", result.log);
    assert!(result.log.iter().any(|l| l == "hello from the context"), "{:?}", result.log);
    let probes: Vec<&String> = result.log.iter().filter(|l| l.starts_with("PROBE ")).collect();
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
        "reach-registry",
    ] {
        let line = format!("PROBE {name}: blocked");
        assert!(probes.iter().any(|l| **l == line), "{name} is blocked: {probes:?}");
    }
    assert!(probes.iter().any(|l| l.trim() == "PROBE interfaces: lo"), "a RUN step sees only lo: {probes:?}");
    let count = |name: &str| -> usize {
        let prefix = format!("PROBE {name}: ");
        probes.iter().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.trim().parse().ok()).unwrap()
    };
    assert!(count("host-pids") < 20, "the build sees only its own processes: {probes:?}");
    assert!(count("dev-entries") < 20, "the build sees a minimal /dev: {probes:?}");
    assert!(result.log.iter().all(|l| !l.contains(&secret)), "the root-only file was not read");
    assert!(victim.try_wait().unwrap().is_none(), "the host process is still running");
    victim.kill().unwrap();
    let _ = victim.wait();
    let manifest = harness.registry.client().manifest("11/fns/probe", "latest-abc123").await.unwrap();
    assert_eq!(manifest.digest, result.digest);
    let health: Value =
        harness.http.get(format!("http://{}/healthz", harness.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["ok"], true, "buildah answers from inside the sandbox: {health}");
}

/// Needs root, uidmap, busybox-static and the build user (see `sandbox_prerequisites`).
#[tokio::test]
async fn a_sandboxed_build_that_times_out_leaves_no_process_behind() {
    let user = sandbox_prerequisites();
    let storage = tempfile::tempdir().unwrap();
    std::fs::set_permissions(storage.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let storage_root = storage.path().join("buildah");
    let harness = start_with(16 << 20, |c| {
        c.build_user = Some(user);
        c.buildah_root = Some(storage_root.clone());
        c.build_timeout = Duration::from_secs(5);
    })
    .await;
    let marker = format!("{}", 40_000 + std::process::id() % 20_000);
    let mut config = config(&harness.registry, "sleeper");
    config.build_args.insert("NAP".into(), marker.clone());
    let dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\nARG NAP\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \
                      \"/bin/busybox sleep $NAP & /bin/busybox sleep $NAP\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "config", serde_json::to_string(&config).unwrap().as_bytes());
    append(&mut tar, "context/Dockerfile", dockerfile.as_bytes());
    append_mode(&mut tar, "context/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755);
    let result = harness.build(tar.into_inner().unwrap()).await;
    assert_eq!(result.status, BuildStatus::Failure);
    assert!(result.log.iter().any(|l| l.contains("build_timeout")), "{:?}", result.log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let command = std::fs::read(path.join("cmdline")).ok()?;
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            (command.contains("sleep") && command.contains(&marker)).then(|| format!("{}: {command}", path.display()))
        })
        .collect();
    assert!(survivors.is_empty(), "the build's processes end with it: {survivors:?}");
}

/// Needs root, uidmap, busybox-static and the build user (see `sandbox_prerequisites`).
#[tokio::test]
async fn sandboxed_builds_run_side_by_side_on_one_storage() {
    let user = sandbox_prerequisites();
    let storage = tempfile::tempdir().unwrap();
    std::fs::set_permissions(storage.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let storage_root = storage.path().join("buildah");
    let harness = start_with(16 << 20, |c| {
        c.build_user = Some(user);
        c.buildah_root = Some(storage_root.clone());
    })
    .await;
    let tar_for = |name: &str| {
        let config = config(&harness.registry, name);
        let dockerfile = format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \
             \"/bin/busybox echo {name} > /name.txt && /bin/busybox chown 1000:1000 /name.txt\"]\n"
        );
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "config", serde_json::to_string(&config).unwrap().as_bytes());
        append(&mut tar, "context/Dockerfile", dockerfile.as_bytes());
        append_mode(&mut tar, "context/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755);
        tar.into_inner().unwrap()
    };
    let (one, two) = tokio::join!(harness.build(tar_for("one")), harness.build(tar_for("two")));
    for (name, result) in [("one", one), ("two", two)] {
        assert_eq!(result.status, BuildStatus::Success, "{name}: {:?}", result.log);
        let manifest = harness.registry.client().manifest(&format!("11/fns/{name}"), "latest-abc123").await.unwrap();
        assert_eq!(manifest.digest, result.digest);
    }
}

/// The operator's `registry-auth` (a docker `config.json`) is how of-builder signs in to a registry that requires it;
/// without it the push is refused, and the answer says so.
#[tokio::test]
async fn pushes_to_a_registry_that_requires_credentials_only_with_registry_auth() {
    let registry_dir = tempfile::tempdir().unwrap();
    let password = format!("pw-{}", std::process::id());
    let registry = RegistryProcess::start_with_credentials(registry_dir.path(), "robot", &password).await.unwrap();
    let auth = format!(
        r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
        registry.host_port(),
        base64_encode(format!("robot:{password}").as_bytes())
    );
    let files = [("Dockerfile", "FROM scratch\nCOPY handler.txt /handler.txt\n"), ("handler.txt", "hi\n")];

    let without = start(1 << 20).await;
    let config = config(&registry, "private");
    let (status, answer) = without.post(build_tar(&config, &files), true).await;
    assert_ne!(status, 200, "a push without credentials is refused: {answer}");
    let error = answer["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("push") && error.contains("auth"), "the answer says the push was not authorised: {answer}");
    assert!(registry.client().tags("11/fns/private").await.is_err(), "nothing was pushed");

    let with = start_with(1 << 20, |c| c.registry_auth = Some(Secret::new(auth))).await;
    let result = with.build(build_tar(&config, &files)).await;
    assert_eq!(result.status, BuildStatus::Success, "{:?}", result.log);
    let manifest = registry.client().manifest("11/fns/private", "latest-abc123").await.unwrap();
    assert_eq!(manifest.digest, result.digest, "pushed with the operator's credentials");
    assert!(result.log.iter().all(|l| !l.contains(&password)), "the password is not in the log");
}

/// A context every storage driver must build alike: files copied in, a busybox shell for `RUN` steps creating
/// files, directories and a link, and configuration-only steps.
fn driver_context() -> Vec<(String, Vec<u8>, u32)> {
    let dockerfile = "FROM scratch\nENV APP=/home/app\nLABEL com.openfaas.test=\"storage\"\n\
                      COPY busybox /bin/busybox\nCOPY handler.txt /home/app/handler.txt\n\
                      RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mkdir -p /home/app/data && \
                      echo built > /home/app/data/out.txt && /bin/busybox ln -s out.txt /home/app/data/link\"]\n\
                      WORKDIR /home/app\nRUN [\"/bin/busybox\", \"rm\", \"/home/app/handler.txt\"]\n\
                      CMD [\"/home/app/data/out.txt\"]\n";
    vec![
        ("Dockerfile".into(), dockerfile.as_bytes().to_vec(), 0o644),
        ("busybox".into(), std::fs::read("/bin/busybox").unwrap(), 0o755),
        ("handler.txt".into(), b"hello\n".to_vec(), 0o644),
    ]
}

/// An image's file system as a container sees it (its layers applied in order, whiteouts removing), each file as
/// `path type mode uid:gid link content-fingerprint`, leaving out the times a build stamps; and its layer count.
/// Not the layers' own entries: overlay's diff re-states a directory a `RUN` step's mounts touched (`run/`) where
/// vfs's comparison leaves it out, the same file system either way.
async fn image_files(registry: &RegistryProcess, repository: &str) -> (BTreeMap<String, String>, usize) {
    let client = registry.client();
    let manifest = client.manifest(repository, "latest-abc123").await.unwrap();
    let layers = manifest.json["layers"].as_array().unwrap();
    let mut files = BTreeMap::new();
    for layer in layers {
        let blob = client.blob(repository, layer["digest"].as_str().unwrap()).await.unwrap();
        let tar = gunzip(&blob);
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string().trim_end_matches('/').to_owned();
            let (folder, name) = path.rsplit_once('/').map_or(("", path.as_str()), |(f, n)| (f, n));
            if name == ".wh..wh..opq" {
                files.retain(|p: &String, _| !p.starts_with(&format!("{folder}/")));
                continue;
            }
            if let Some(removed) = name.strip_prefix(".wh.") {
                let removed = if folder.is_empty() { removed.to_owned() } else { format!("{folder}/{removed}") };
                files.retain(|p: &String, _| p != &removed && !p.starts_with(&format!("{removed}/")));
                continue;
            }
            let header = entry.header().clone();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            let (mode, uid, gid) = (header.mode().unwrap(), header.uid().unwrap(), header.gid().unwrap());
            // A keyed SHA-256 with an empty key: a fingerprint of the content.
            let fingerprint = sign_sha256(b"", &content);
            files.insert(path, format!("{:?} {mode:o} {uid}:{gid} {link:?} {fingerprint}", header.entry_type()));
        }
    }
    (files, layers.len())
}

/// `gzip -dc` of a layer blob.
fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut gzip = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = gzip.stdin.take().unwrap();
    let blob = blob.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut input, &blob).unwrap());
    let output = gzip.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "the layer is gzip");
    output.stdout
}

/// Builds `driver_context` on `storage` (sandboxed as `user` when set); answers the image's files and config.
async fn build_on(
    storage: StorageDriver,
    user: Option<of_builder::sandbox::BuildUser>,
) -> ((BTreeMap<String, String>, usize), Value) {
    let folder = tempfile::tempdir().unwrap();
    std::fs::set_permissions(folder.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let root = folder.path().join("buildah");
    let harness = start_on(storage, 16 << 20, |c| {
        c.buildah_root = Some(root.clone());
        c.build_user = user;
    })
    .await;
    let config = config(&harness.registry, "same");
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, "config", serde_json::to_string(&config).unwrap().as_bytes());
    for (path, data, mode) in driver_context() {
        append_mode(&mut builder, &format!("context/{path}"), &data, mode);
    }
    let result = harness.build(builder.into_inner().unwrap()).await;
    assert_eq!(result.status, BuildStatus::Success, "{storage:?}: {:?}", result.log);
    let driver_folder = root.join(storage.name()).join("storage");
    assert!(driver_folder.is_dir(), "{storage:?} keeps its storage in {}", driver_folder.display());
    let mut image = harness.registry.client().image_config("11/fns/same", "latest-abc123").await.unwrap();
    // The build cache's seal names the registry, which differs between these builds.
    let seal = image["config"]["Labels"].as_object_mut().unwrap().remove(of_builder::cache::SEAL_LABEL);
    assert!(seal.is_some(), "every image of-builder pushes is sealed");
    (image_files(&harness.registry, "11/fns/same").await, image["config"].clone())
}

/// Needs root, busybox-static and the build user; overlay must work here (see `auto_picks_overlay_here`).
#[tokio::test]
async fn overlay_builds_the_same_image_as_vfs_as_root_and_sandboxed() {
    let user = sandbox_prerequisites();
    let (vfs_files, vfs_config) = build_on(StorageDriver::Vfs, None).await;
    assert!(vfs_files.0["home/app/data/link"].starts_with("Symlink"), "{vfs_files:#?}");
    assert!(!vfs_files.0.contains_key("home/app/handler.txt"), "removed by the last step: {vfs_files:#?}");
    let (files, config) = build_on(StorageDriver::Overlay, None).await;
    assert_eq!(files, vfs_files, "overlay as root: the same file system in as many layers");
    assert_eq!(config, vfs_config);
    let (files, config) = build_on(StorageDriver::Overlay, Some(user)).await;
    assert_eq!(files, vfs_files, "overlay sandboxed: the same file system in as many layers");
    assert_eq!(config, vfs_config);
}

/// Needs root and the build user: measured here (kernel ≥ 5.13), overlay works as root and rootless.
#[test]
fn auto_picks_overlay_here() {
    let user = sandbox_prerequisites();
    let folder = tempfile::tempdir().unwrap();
    std::fs::set_permissions(folder.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let as_root = Setup::choose(test_config(1 << 20, &folder.path().join("root")), DriverSetting::Auto).unwrap();
    assert_eq!(as_root.storage, StorageDriver::Overlay);
    let mut config = test_config(1 << 20, &folder.path().join("user"));
    config.build_user = Some(user);
    let sandboxed = Setup::choose(config, DriverSetting::Auto).unwrap();
    assert_eq!(sandboxed.storage, StorageDriver::Overlay);
    let vfs = Setup::choose(test_config(1 << 20, &folder.path().join("root")), DriverSetting::Vfs).unwrap();
    assert_eq!(vfs.storage, StorageDriver::Vfs, "an explicit vfs is kept");
}

/// An overlay filesystem mounted for a test (overlay cannot stack its store on one), unmounted when dropped.
struct OverlayMount {
    folder: tempfile::TempDir,
}

impl OverlayMount {
    fn new() -> Self {
        let folder = tempfile::tempdir().unwrap();
        for name in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir(folder.path().join(name)).unwrap();
        }
        let p = |name: &str| folder.path().join(name).display().to_string();
        let options = format!("lowerdir={},upperdir={},workdir={}", p("lower"), p("upper"), p("work"));
        let status = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options, &p("merged")])
            .status();
        assert!(status.unwrap().success(), "mounting an overlay filesystem (the test runs as root)");
        Self { folder }
    }

    fn merged(&self) -> std::path::PathBuf {
        self.folder.path().join("merged")
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.merged()).status();
    }
}

/// Needs root. Storage on an overlay filesystem, where Buildah's overlay driver cannot work.
#[test]
fn an_explicit_unusable_driver_fails_the_start_naming_the_setting() {
    sandbox_prerequisites();
    let mount = OverlayMount::new();
    let config = test_config(1 << 20, &mount.merged().join("buildah"));
    let error = Setup::choose(config.clone(), DriverSetting::Overlay).unwrap_err().to_string();
    assert!(error.contains("buildah_storage_driver"), "{error}");
    assert!(error.contains("not supported over overlayfs"), "the error carries Buildah's reason: {error}");
    let auto = Setup::choose(config, DriverSetting::Auto).unwrap();
    assert_eq!(auto.storage, StorageDriver::Vfs, "auto falls back to vfs where overlay does not work");
}

/// of-builder pushing through the local stack's registry gate with the builder's account (`registry-auth`).
async fn start_gated() -> Harness {
    use registry_gate::{Account, GateAccounts};
    let registry_dir = tempfile::tempdir().unwrap();
    let buildah_dir = tempfile::tempdir().unwrap();
    let password = format!("builder-{}", std::process::id());
    let accounts = GateAccounts {
        builder: Account { user: "builder".into(), password: password.clone() },
        operator: Account { user: "admin".into(), password: format!("admin-{}", std::process::id()) },
        collector: None,
    };
    let registry = RegistryProcess::start_gated(registry_dir.path(), accounts).await.unwrap();
    let auth = format!(
        r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
        registry.host_port(),
        base64_encode(format!("builder:{password}").as_bytes())
    );
    let mut config = test_config(16 << 20, buildah_dir.path());
    config.registry_auth = Some(Secret::new(auth));
    let server = config.server.clone();
    let served =
        ServedFunction::start_with(of_builder::serve(Setup { config, storage: StorageDriver::Vfs }), &server).await;
    Harness {
        address: served.address,
        registry,
        http: reqwest::Client::new(),
        _dirs: (registry_dir, buildah_dir),
        _served: served,
    }
}

/// `owner`'s build of `function` at `sha` pushing to the harness's registry.
/// The account ids of the two owners (as `shared::naming` lays images out: `<registry>/<owner id>/<repo>/<fn>`); one
/// id's digits a prefix of the other's, as one login is a hyphen-prefix of the other.
fn owner_id(owner: &str) -> u64 {
    match owner {
        "acme" => 99,
        "acme-corp" => 990,
        other => panic!("no account id for {other}"),
    }
}

fn owned(harness: &Harness, owner: &str, function: &str, sha: &str) -> BuildConfig {
    BuildConfig {
        image_ref: format!("{}/{}/fns/{function}:{sha}", harness.registry.host_port(), owner_id(owner)),
        build_args: BTreeMap::new(),
        platforms: vec![],
    }
}

const SAME_CONTEXT: [(&str, &str); 2] = [
    ("Dockerfile", "FROM scratch\nCOPY handler.txt /handler.txt\nCMD [\"/handler.txt\"]\n"),
    ("handler.txt", "same\n"),
];

/// Two owners (one's login a hyphen-prefix of the other's) push the identical context: each gets an image of its
/// own, built for it, and neither's log names the other's images; an owner's unchanged push reuses its own.
#[tokio::test]
async fn identical_builds_of_two_owners_share_no_image_and_no_name() {
    let harness = start_gated().await;
    let acme = harness.build(build_tar(&owned(&harness, "acme", "api", "sha1"), &SAME_CONTEXT)).await;
    assert_eq!(acme.status, BuildStatus::Success, "{:?}", acme.log);
    let corp = harness.build(build_tar(&owned(&harness, "acme-corp", "api", "sha1"), &SAME_CONTEXT)).await;
    assert_eq!(corp.status, BuildStatus::Success, "{:?}", corp.log);
    assert!(!corp.log.iter().any(|l| l.starts_with("build skipped")), "another owner's build is never reused");
    assert_ne!(corp.digest, acme.digest, "each owner's image is its own");
    for line in &corp.log {
        assert!(!line.contains("/99/"), "acme-corp's log names acme's image: {line}");
    }

    let again = harness.build(build_tar(&owned(&harness, "acme", "api", "sha2"), &SAME_CONTEXT)).await;
    assert!(again.log.iter().any(|l| l.starts_with("build skipped")), "{:?}", again.log);
    assert_eq!(again.digest, acme.digest, "an owner's unchanged push reuses its own image");
    for line in &again.log {
        assert!(!line.contains("/990/"), "acme's log names acme-corp's image: {line}");
    }
    let tagged = harness.registry.client().manifest("99/fns/api", "sha2").await.unwrap();
    assert_eq!(tagged.digest, acme.digest, "of-builder tagged the reused image with the push's own tag");
}

/// A build identity tag that points to an image of-builder did not seal for that identity (here: another image of
/// the same repository, tagged by a registry writer) is not reused: the build runs.
#[tokio::test]
async fn an_identity_tag_pointing_elsewhere_is_not_trusted() {
    use shared::registry::{ImageRef, RegistryClient};
    let harness = start_gated().await;
    let other = [("Dockerfile", "FROM scratch\nCOPY handler.txt /evil.txt\n"), ("handler.txt", "attacker\n")];
    let planted = harness.build(build_tar(&owned(&harness, "acme", "api", "sha0"), &other)).await;
    assert_eq!(planted.status, BuildStatus::Success, "{:?}", planted.log);
    let first = harness.build(build_tar(&owned(&harness, "acme", "api", "sha1"), &SAME_CONTEXT)).await;
    let client = harness.registry.client();
    let mut identity = None;
    for tag in client.tags("99/fns/api").await.unwrap() {
        if tag.starts_with("build-") && client.manifest("99/fns/api", &tag).await.unwrap().digest == first.digest {
            identity = Some(tag);
        }
    }
    let identity = identity.expect("the first build's identity tag");

    // Whoever could write the registry moves the identity tag to the other image.
    let auths = BTreeMap::from([(
        harness.registry.host_port(),
        base64_encode(format!("builder:builder-{}", std::process::id()).as_bytes()),
    )]);
    let writer = RegistryClient::new(true, auths);
    let image = ImageRef::parse(&format!("{}/99/fns/api:sha0", harness.registry.host_port())).unwrap();
    writer.tag(&image, &planted.digest, &identity).await.unwrap();

    let next = harness.build(build_tar(&owned(&harness, "acme", "api", "sha2"), &SAME_CONTEXT)).await;
    assert_eq!(next.status, BuildStatus::Success, "{:?}", next.log);
    assert!(!next.log.iter().any(|l| l.starts_with("build skipped")), "the moved tag is not trusted: {:?}", next.log);
    assert_ne!(next.digest, planted.digest, "the planted image is not what this push deploys");
}

/// An image another owner built is in the builder's shared layer storage, yet a `FROM`, `COPY --from` or
/// `RUN --mount=from=` of it fails with the rule's name, however the reference is spelled; the owner's own image and
/// the allowed base images build.
#[tokio::test]
async fn a_build_reads_no_image_of_another_owner_whatever_the_storage_holds() {
    let harness = start_gated().await;
    let secret = [("Dockerfile", "FROM scratch\nCOPY handler.txt /secret.txt\n"), ("handler.txt", "victim's secret\n")];
    let victim = harness.build(build_tar(&owned(&harness, "acme-corp", "db", "sha1"), &secret)).await;
    assert_eq!(victim.status, BuildStatus::Success, "{:?}", victim.log);
    let victims = format!("{}/990/fns/db:sha1", harness.registry.host_port());
    let busybox = "COPY busybox /bin/busybox\n";
    for dockerfile in [
        format!("FROM {victims}\n"),
        format!("ARG BASE={victims}\nFROM ${{BASE}} AS base\n"),
        format!("FROM scratch\nCOPY --from={victims} /secret.txt /stolen.txt\n"),
        format!("FROM scratch\n{busybox}RUN --mount=type=bind,from={victims},target=/v [\"/bin/busybox\", \"cat\", \"/v/secret.txt\"]\n"),
    ] {
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "config", serde_json::to_string(&owned(&harness, "acme", "thief", "sha1")).unwrap().as_bytes());
        append(&mut tar, "context/Dockerfile", dockerfile.as_bytes());
        append_mode(&mut tar, "context/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755);
        let result = harness.build(tar.into_inner().unwrap()).await;
        assert_eq!(result.status, BuildStatus::Failure, "{dockerfile}: {:?}", result.log);
        let log = result.log.join("\n");
        assert!(log.contains("allowed_base_images"), "{dockerfile}: the reason names the rule: {log}");
        assert!(!log.contains("victim's secret"), "{dockerfile}");
    }
    assert!(harness.registry.client().tags("99/fns/thief").await.is_err(), "nothing was pushed");

    let own = harness
        .build(build_tar(
            &owned(&harness, "acme-corp", "api", "sha1"),
            &[("Dockerfile", &format!("FROM {victims}\nCOPY handler.txt /more.txt\n")), ("handler.txt", "more\n")],
        ))
        .await;
    assert_eq!(own.status, BuildStatus::Success, "an owner's own image is a base it may use: {:?}", own.log);
}

/// A build of `image` that sleeps `seconds` in a RUN step (busybox copied in, FROM scratch); the label before it
/// keeps Buildah from reusing one build's RUN layer for the next.
fn sleeping_build(image: &str, seconds: u32) -> Vec<u8> {
    let config = BuildConfig { image_ref: image.to_owned(), build_args: BTreeMap::new(), platforms: vec![] };
    let dockerfile = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nLABEL com.openfaas.test.image=\"{image}\"\n\
         RUN [\"/bin/busybox\", \"sleep\", \"{seconds}\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "config", serde_json::to_string(&config).unwrap().as_bytes());
    append(&mut tar, "context/Dockerfile", dockerfile.as_bytes());
    append_mode(&mut tar, "context/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755);
    tar.into_inner().unwrap()
}

impl Harness {
    /// Sends a signed build named `ticket`; answers the HTTP status and body.
    fn send_ticketed(&self, body: Vec<u8>, ticket: &str) -> tokio::task::JoinHandle<(u16, Value)> {
        let request = self
            .http
            .post(format!("http://{}/build", self.address))
            .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
            .header(shared::build::BUILD_TICKET_HEADER, ticket)
            .body(body);
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    /// `GET /queue/{ticket}`: the place, or `None` for a ticket no open request carries.
    async fn place(&self, ticket: &str) -> Option<shared::build::QueuePlace> {
        let response = self.http.get(format!("http://{}/queue/{ticket}", self.address)).send().await.unwrap();
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200);
        Some(response.json().await.unwrap())
    }
}

/// Owner 21 queues 12 builds (two run, ten wait: its whole queue); a 13th is refused with the reason. Then owner 22
/// sends its first build: it takes the next slot that frees, before any more of 21's backlog, so it waits at most
/// one build's time. Start events are read from each build's place (`GET /queue/{ticket}`), polled.
#[tokio::test]
async fn another_owner_s_first_build_starts_past_a_backlog_of_ten() {
    use shared::build::QueuePlace;
    let harness = start_with(16 << 20, |c| {
        c.max_concurrent_builds = 2;
        c.max_concurrent_builds_per_owner = 1;
        c.max_queued_builds_per_owner = 10;
    })
    .await;
    let registry = harness.registry.host_port();
    let mut requests = BTreeMap::new();
    for n in 0..12 {
        let ticket = format!("owner-a-build-{n:02}");
        requests.insert(
            ticket.clone(),
            harness.send_ticketed(sleeping_build(&format!("{registry}/21/fns/a{n}:s"), 3), &ticket),
        );
        // Queued in this order: each request is known to the queue before the next is sent.
        let known = async {
            for _ in 0..200 {
                if harness.place(&ticket).await.is_some() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        };
        assert!(known.await, "{ticket} reached the queue");
    }
    let last_place = harness.place("owner-a-build-11").await;
    assert!(
        matches!(last_place, Some(QueuePlace::Queued { ahead }) if ahead >= 8),
        "the last of the backlog waits behind the rest: {last_place:?}"
    );
    let (status, refused) = harness
        .send_ticketed(sleeping_build(&format!("{registry}/21/fns/a12:s"), 3), "owner-a-build-12")
        .await
        .unwrap();
    assert_eq!(status, 429, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("max_queued_builds_per_owner"), "{refused}");

    let b_ticket = "owner-b-build-00";
    requests.insert(
        b_ticket.to_owned(),
        harness.send_ticketed(sleeping_build(&format!("{registry}/22/fns/b0:s"), 3), b_ticket),
    );
    let mut b_place = None;
    for _ in 0..200 {
        b_place = harness.place(b_ticket).await;
        if b_place.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(b_place, Some(QueuePlace::Queued { ahead: 0 }), "owner b comes first in the next round");

    // Starts, by the poll pass that first saw each one building, polled until b and two more of a's have started
    // (bounded: 600 polls of 100 ms). Two builds seen in one pass started within the same 100 ms: a tie.
    let mut started: Vec<(String, usize)> = Vec::new();
    for pass in 0..600 {
        for ticket in requests.keys() {
            if !started.iter().any(|(t, _)| t == ticket) && harness.place(ticket).await == Some(QueuePlace::Building) {
                started.push((ticket.clone(), pass));
            }
        }
        if started.iter().any(|(t, _)| t == b_ticket) && started.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b_pass = started.iter().find(|(t, _)| t == b_ticket).map(|(_, pass)| *pass).expect("b's build started");
    let before_b: Vec<&String> = started.iter().filter(|(_, pass)| *pass < b_pass).map(|(t, _)| t).collect();
    assert_eq!(
        before_b.len(),
        2,
        "b started on the first slot freed, right after the two builds running when it came: {started:?}"
    );

    let (status, b_result) = requests.remove(b_ticket).unwrap().await.unwrap();
    assert_eq!(status, 200, "{b_result}");
    let b_result: BuildResult = serde_json::from_value(b_result).unwrap();
    assert_eq!(b_result.status, BuildStatus::Success, "{:?}", b_result.log);
    assert!(b_result.log[0].starts_with("waited "), "the log says the build waited for a slot: {:?}", b_result.log);
    for (ticket, request) in requests {
        let (status, answer) = request.await.unwrap();
        assert_eq!(status, 200, "{ticket}: {answer}");
        assert_eq!(answer["status"], "success", "{ticket}: {answer}");
    }
}
