//! A running function is walled in: its own network namespace (nothing listening on the host's loopback answers
//! it: not the registry, the gateway's `/system` API, another replica, nor any other port), and the limits OpenFaaS
//! applies on Kubernetes (memory, cpu, a pids limit, a read-only root with a bounded `/tmp`), through the runtime
//! and embedded gateway `ofc up` runs. A build's `RUN` steps get a network of their own too (of-builder's tests).
//!
//! Needs root, cgroup v1 (memory, pids, cpu), uidmap, busybox-static and the build user `ofcbuild` (`.ci/run`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doubles::registry::RegistryProcess;
use ofc::gateway::{Gateway, GatewayConfig};
use ofc::runtime::{
    build_watchdog_image, BuildahStorage, FunctionRuntime, ReplicaLimits, RuntimeConfig, Sandbox, WATCHDOG_IMAGE,
};
use shared::event::FunctionResources;
use shared::openfaas::FunctionDeployment;
use shared::sandbox::BuildUser;

fn build_user() -> BuildUser {
    assert!(Path::new("/bin/busybox").exists(), "the isolation tests need busybox-static (`.ci/run` installs it)");
    BuildUser::lookup("ofcbuild").unwrap_or_else(|e| panic!("the isolation tests need the build user: {e}"))
}

/// The probe image (the watchdog image with busybox and the probe script), built and pushed to `registry`.
async fn push_probe(dir: &Path, registry: &str) -> String {
    let builder = BuildahStorage::new(dir.join("builder"));
    let watchdog = Path::new(env!("CARGO_BIN_EXE_ofc")).with_file_name("ofc-watchdog");
    build_watchdog_image(&builder, &watchdog).await.unwrap();
    let files = dir.join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::copy("/bin/busybox", files.join("busybox")).unwrap();
    std::fs::write(files.join("function.sh"), include_str!("isolation/function.sh")).unwrap();
    let container = builder.run("from", &["from", "--quiet", "--pull=false", WATCHDOG_IMAGE]).await.unwrap();
    for (source, target) in [("busybox", "/bin/busybox"), ("function.sh", "/home/app/function.sh")] {
        let source = files.join(source).display().to_string();
        builder.run("copy", &["copy", "--quiet", &container, &source, target]).await.unwrap();
    }
    builder.run("commit", &["commit", "--quiet", "--rm", &container, "isolation-probe:1"]).await.unwrap();
    let reference = format!("{registry}/isolation-probe:1");
    let target = format!("docker://{reference}");
    builder.run("push", &["push", "--quiet", "--tls-verify=false", "isolation-probe:1", &target]).await.unwrap();
    reference
}

/// A gateway whose runtime runs replicas sandboxed as the build user with `limits`.
async fn gateway(dir: &Path, limits: ReplicaLimits) -> (Gateway, testkit::ServedFunction) {
    let (gateway, served, _) = gateway_and_runtime(dir, limits).await;
    (gateway, served)
}

/// [`gateway`], with the runtime, which gives replicas the gateway's function routes.
async fn gateway_and_runtime(
    dir: &Path,
    limits: ReplicaLimits,
) -> (Gateway, testkit::ServedFunction, Arc<FunctionRuntime>) {
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    let runtime = FunctionRuntime::new(RuntimeConfig {
        root: dir.join("runtime"),
        logs: dir.join("logs"),
        secrets,
        insecure_registry: true,
        start_timeout: Duration::from_secs(30),
        sandbox: Some(Sandbox::new(build_user(), dir.join("sandbox-dev")).unwrap()),
    })
    .unwrap()
    .with_limits(limits);
    let runtime = Arc::new(runtime);
    let mut config = GatewayConfig::new(&dir.join("gateway"), "admin", "pw");
    config.runtime = Some(runtime.clone());
    let gateway = Gateway::new(config).unwrap();
    let served = testkit::ServedFunction::serve(gateway.router()).await;
    runtime.set_gateway(&served.url());
    (gateway, served, runtime)
}

fn probe_deployment(name: &str, image: &str) -> FunctionDeployment {
    let mut deployment = FunctionDeployment {
        service: name.into(),
        image: image.into(),
        env_process: Some("/bin/busybox sh /home/app/function.sh".into()),
        ..FunctionDeployment::default()
    };
    deployment.env_vars.insert("mode".into(), "serializing".into());
    // The network probe waits on a few calls in turn.
    deployment.env_vars.insert("exec_timeout".into(), "60s".into());
    deployment
}

async fn deploy(http: &reqwest::Client, gateway: &testkit::ServedFunction, deployment: &FunctionDeployment) {
    let deploy = http.post(format!("{}system/functions", gateway.url())).basic_auth("admin", Some("pw"));
    assert_eq!(deploy.json(deployment).send().await.unwrap().status(), 202);
}

/// POSTs `action` until the function answers (it starts in the background); its status and body.
async fn invoke(http: &reqwest::Client, gateway: &testkit::ServedFunction, name: &str, action: &str) -> (u16, String) {
    let url = format!("{}function/{name}", gateway.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http.post(&url).body(format!("{action}\n")).send().await.unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        // 503 while the replica starts; anything else comes from the function.
        if status != 503 || !body.contains("starting") {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "{url}: still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The line of `answer` that starts with `prefix`, without it.
fn line<'a>(answer: &'a str, prefix: &str) -> &'a str {
    answer.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in: {answer}"))
}

/// The cgroup folder of `name`'s replica under `controller`.
fn replica_cgroup(controller: &str, name: &str) -> PathBuf {
    let parent = Path::new("/sys/fs/cgroup").join(controller).join("ofc-replicas");
    let prefix = format!("ofc-{name}-{}-", std::process::id());
    std::fs::read_dir(&parent)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&prefix)))
        .unwrap_or_else(|| panic!("no cgroup for {name} under {}", parent.display()))
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn a_running_function_reaches_nothing_listening_on_the_host() {
    build_user();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let registry = RegistryProcess::start(&dir.path().join("registry")).await.unwrap();
    let image = push_probe(dir.path(), &registry.host_port()).await;
    let (gateway, served) = gateway(dir.path(), ReplicaLimits::default()).await;
    let http = reqwest::Client::new();

    // Another tenant's replica, and some other part of the platform listening on the host's loopback.
    deploy(&http, &served, &probe_deployment("other-probe", &image)).await;
    let (status, answer) = invoke(&http, &served, "other-probe", "none").await;
    assert_eq!(status, 200, "{answer}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    // Every port this process listens on besides the gateway's and that listener: the replicas' bridges.
    let gateway_port: u16 = served.url().trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let others: Vec<u16> =
        own_listening_ports().into_iter().filter(|p| ![gateway_port, host_port].contains(p)).collect();
    assert!(!others.is_empty(), "the other replica's bridge listens");

    let mut deployment = probe_deployment("octo-probe", &image);
    let registry_port = registry.host_port().rsplit(':').next().unwrap().to_owned();
    for (name, value) in [
        ("REGISTRY_PORT", registry_port),
        ("GATEWAY_PORT", gateway_port.to_string()),
        ("HOST_PORT", host_port.to_string()),
        ("OTHER_PORTS", others.iter().map(u16::to_string).collect::<Vec<_>>().join(" ")),
    ] {
        deployment.env_vars.insert(name.into(), value);
    }
    deploy(&http, &served, &deployment).await;
    let (status, answer) = invoke(&http, &served, "octo-probe", "network").await;
    assert_eq!(status, 200, "{answer}");
    let mut targets = vec!["registry".to_owned(), "gateway-system".to_owned(), "host-listener".to_owned()];
    targets.extend(others.iter().map(|p| format!("other-replica-{p}")));
    for target in targets {
        let outcome = line(&answer, &format!("REACH {target}: "));
        assert!(outcome.contains("Connection refused"), "{target} is unreachable from the function: {answer}");
    }
    // What it is given on purpose: the gateway's function routes at its gateway_url, and nothing else of it.
    assert!(line(&answer, "REACH function-route: ").contains("200 OK"), "{answer}");
    for refused in ["system-route", "dot-segments", "encoded-dot-segments"] {
        let outcome = line(&answer, &format!("REACH {refused}: "));
        assert!(outcome.contains("404 Not Found"), "{refused} is refused by the function routes' forwarder: {answer}");
    }
    assert_eq!(line(&answer, "INTERFACES: ").trim(), "lo", "the function's namespace has only lo: {answer}");
    assert!(listener.accept().is_err(), "nothing reached the host's listener");
    // The registry answers on the host: it is the function that cannot reach it.
    assert!(http.get(format!("http://{}/v2/", registry.host_port())).send().await.unwrap().status().is_success());

    gateway.stop_functions().await;
    drop(registry);
}

/// The ports this process listens on at 127.0.0.1 (its sockets in `/proc/net/tcp`).
fn own_listening_ports() -> Vec<u16> {
    let own: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_string_lossy().strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    std::fs::read_to_string("/proc/self/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let (address, port) = fields.get(1)?.split_once(':')?;
            let listening = fields.get(3) == Some(&"0A") && address == "0100007F";
            (listening && own.iter().any(|i| Some(&i.as_str()) == fields.get(9)))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

#[tokio::test]
async fn a_function_is_held_to_its_limits_and_the_host_keeps_working() {
    build_user();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let registry = RegistryProcess::start(&dir.path().join("registry")).await.unwrap();
    let image = push_probe(dir.path(), &registry.host_port()).await;
    let limits = ReplicaLimits { pids_max: 96, tmp_bytes: 8 << 20, ..ReplicaLimits::default() };
    let (gateway, served) = gateway(dir.path(), limits).await;
    let http = reqwest::Client::new();
    let name = "limited-probe";
    let mut deployment = probe_deployment(name, &image);
    deployment.limits = Some(FunctionResources { memory: Some("40Mi".into()), cpu: Some("250m".into()) });
    deployment.read_only_root_filesystem = true;
    deploy(&http, &served, &deployment).await;

    let (status, answer) = invoke(&http, &served, name, "write-root").await;
    assert_eq!(status, 200, "{answer}");
    assert!(line(&answer, "ROOT: ").contains("Read-only file system"), "{answer}");

    let (_, answer) = invoke(&http, &served, name, "fill-tmp").await;
    assert!(line(&answer, "TMP: ").contains("No space left on device"), "/tmp holds 8 MiB: {answer}");

    assert_eq!(read_number(&replica_cgroup("cpu", name).join("cpu.cfs_quota_us")), 25_000, "250m of a cpu");
    let memory = replica_cgroup("memory", name).join("function");
    assert_eq!(read_number(&memory.join("memory.limit_in_bytes")), 40 << 20);

    // Over the limit: the kernel kills the function's process, and its log and ofc's say why.
    let (status, answer) = invoke(&http, &served, name, "memory").await;
    assert!(!answer.contains("MEMORY: kept"), "a 100 MB string does not fit in 40Mi: {status} {answer}");
    let log = dir.path().join("logs").join(format!("function-{name}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("over the memory limit (40Mi)") {
        assert!(Instant::now() < deadline, "the function's log says it was killed over its limit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read_number(&memory.join("memory.max_usage_in_bytes")) <= 40 << 20);
    let kills = std::fs::read_to_string(memory.join("memory.oom_control")).unwrap();
    let kills: u64 = kills.lines().find_map(|l| l.strip_prefix("oom_kill ")).unwrap().trim().parse().unwrap();
    assert!(kills >= 1, "the function's own cgroup (its exact limit, not Buildah's allowance) killed it");

    // A fork bomb: the replica's processes stop at its pids limit, and the host still starts processes.
    let pids = replica_cgroup("pids", name);
    let (_, answer) = invoke(&http, &served, name, "fork-bomb").await;
    assert!(answer.contains("FORK: done"), "{answer}");
    assert!(read_number(&pids.join("pids.current")) <= 96, "the replica's processes are capped");
    let refused = std::fs::read_to_string(pids.join("pids.events")).unwrap();
    let refused: u64 = refused.lines().find_map(|l| l.strip_prefix("max ")).unwrap().trim().parse().unwrap();
    assert!(refused > 0, "forks past the limit were refused");
    assert!(std::process::Command::new("true").status().unwrap().success(), "the host still starts processes");

    gateway.stop_functions().await;
    assert!(!pids.exists(), "the replica's cgroups go with it");
    drop(registry);
}
