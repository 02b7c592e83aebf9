//! The embedded gateway as a faas-provider: first its provider routes over real HTTP on loopback, then the real
//! OpenFaaS gateway 0.25.4 (basic auth through its plugin, `scale_from_zero=true`), NATS Streaming and the CE
//! queue-worker in front of `ofc up`, driven by the real faas-cli and a signed push, all inside a network namespace
//! the test creates (the gateway binds `:8080` and `:8082` on every interface).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ofc::gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};
use testkit::openfaas::{NetNs, OpenFaas};
use testkit::{RecordingGateway, ServedFunction};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Serves a gateway with one platform function (`gh-push`) and `function-secrets/` of its own.
async fn provider(state: &Path, behind_gateway: bool) -> (Gateway, ServedFunction) {
    let mut config = GatewayConfig::new(state, "admin", "pw");
    config.behind_gateway = behind_gateway;
    let gateway = Gateway::new(config).unwrap();
    (gateway.clone(), ServedFunction::serve(gateway.router()).await)
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, String) {
    let mut request = client().request(method, url).basic_auth("admin", Some("pw"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_platform_functions_have_a_status_and_a_scale_request_is_answered_as_faas_provider_does() {
    let state = tempfile::tempdir().unwrap();
    let (gateway, served) = provider(state.path(), false).await;
    let platform = RecordingGateway::start().await;
    gateway.set_route("gh-push", &platform.url());
    let url = served.url();
    let get = reqwest::Method::GET;
    let (status, body) = call(get.clone(), &format!("{url}system/function/gh-push?namespace=openfaas-fn"), None).await;
    assert_eq!(status, 200, "{body}");
    let function: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(function["name"], "gh-push");
    assert_eq!(function["namespace"], "openfaas-fn");
    assert_eq!(function["availableReplicas"], 1, "{body}");
    assert_eq!(function["replicas"], 1, "{body}");
    let (status, _) = call(get.clone(), &format!("{url}system/function/gh-push.openfaas-fn"), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(get.clone(), &format!("{url}system/function/nothing"), None).await;
    assert_eq!(status, 404);
    // Without the credentials, nothing of it.
    let anonymous = client().get(format!("{url}system/function/gh-push")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let post = reqwest::Method::POST;
    let scale = |name: &str, replicas: u64| json!({"serviceName": name, "replicas": replicas});
    let (status, body) =
        call(post.clone(), &format!("{url}system/scale-function/gh-push"), Some(scale("gh-push", 1))).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) =
        call(post.clone(), &format!("{url}system/scale-function/gh-push"), Some(scale("gh-push", 0))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot be scaled to zero"), "{body}");
    let (status, _) =
        call(post.clone(), &format!("{url}system/scale-function/nothing"), Some(scale("nothing", 1))).await;
    assert_eq!(status, 404);
    let (status, body) =
        call(post.clone(), &format!("{url}system/scale-function/gh-push"), Some(scale("other", 1))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        call(post, &format!("{url}system/scale-function/gh-push"), Some(json!({"replicas": "x"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ScaleServiceRequest"), "{body}");

    let (status, body) = call(get, &format!("{url}system/namespaces"), None).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, json!(["openfaas-fn"])));
    // The platform function is still called as before.
    assert!(platform.requests().is_empty());
}

#[tokio::test]
async fn system_info_is_the_gateway_s_alone_and_faas_provider_s_provider_info_behind_a_gateway() {
    let state = tempfile::tempdir().unwrap();
    let (_alone, served) = provider(state.path(), false).await;
    let (status, body) = call(reqwest::Method::GET, &format!("{}system/info", served.url()), None).await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["provider"]["provider"], "ofc", "{body}");
    assert!(info["version"]["release"].is_string(), "{body}");

    let behind = tempfile::tempdir().unwrap();
    let (_provider, served) = provider(behind.path(), true).await;
    let (status, body) = call(reqwest::Method::GET, &format!("{}system/info", served.url()), None).await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["provider"], "ofc", "{body}");
    assert_eq!(info["orchestration"], "local", "{body}");
    assert_eq!(info["version"]["release"], env!("CARGO_PKG_VERSION"), "{body}");
    assert!(info.get("arch").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faas_cli_version_reads_the_embedded_gateway_alone() {
    let Some(openfaas) = OpenFaas::locate("real_gateway") else { return };
    let state = tempfile::tempdir().unwrap();
    let (_gateway, served) = provider(state.path(), false).await;
    let url = served.url();
    let config = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut command = Command::new(openfaas.bin("faas-cli"));
        command.args(args).args(["-g", url.as_str()]).env("OPENFAAS_CONFIG", config.path());
        run(&mut command, stdin)
    };
    let (ok, out) = tokio::task::block_in_place(|| cli(&["login", "-u", "admin", "--password-stdin"], Some("pw")));
    assert!(ok, "login: {out}");
    let (ok, out) = tokio::task::block_in_place(|| cli(&["version", "--warn-update=false"], None));
    assert!(ok, "version: {out}");
    let provider = out.split("Provider").nth(1).unwrap_or_else(|| panic!("no provider part: {out}"));
    assert!(provider.contains("ofc") && provider.contains("local"), "{out}");
    assert!(provider.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn secrets_are_created_updated_listed_by_name_and_removed_in_the_function_secrets_folder() {
    let state = tempfile::tempdir().unwrap();
    let (_gateway, served) = provider(state.path(), false).await;
    let secrets = format!("{}system/secrets", served.url());
    let folder = state.path().join("function-secrets");
    let (post, put, delete, get) =
        (reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::GET);

    let (status, body) = call(post.clone(), &secrets, Some(json!({"name": "api-key", "value": "first-value"}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(std::fs::read_to_string(folder.join("api-key")).unwrap(), "first-value");
    assert_eq!(mode(&folder.join("api-key")), 0o600);
    let (status, body) = call(post.clone(), &secrets, Some(json!({"name": "api-key", "value": "again"}))).await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.contains("again"), "{body}");
    assert_eq!(std::fs::read_to_string(folder.join("api-key")).unwrap(), "first-value");

    let raw = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255]);
    let (status, _) = call(post.clone(), &secrets, Some(json!({"name": "binary", "rawValue": raw}))).await;
    assert_eq!(status, 201);
    assert_eq!(std::fs::read(folder.join("binary")).unwrap(), [0u8, 1, 2, 255]);
    // What `ofc secret set` wrote is in the same store.
    std::fs::write(folder.join("alice-token"), "set by ofc").unwrap();

    let (status, body) = call(get.clone(), &secrets, None).await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        listed,
        json!([
            {"name": "alice-token", "namespace": "openfaas-fn"},
            {"name": "api-key", "namespace": "openfaas-fn"},
            {"name": "binary", "namespace": "openfaas-fn"},
        ])
    );
    assert!(!body.contains("first-value") && !body.contains("set by ofc"), "{body}");

    let (status, _) = call(put.clone(), &secrets, Some(json!({"name": "api-key", "value": "second-value"}))).await;
    assert_eq!(status, 200);
    assert_eq!(std::fs::read_to_string(folder.join("api-key")).unwrap(), "second-value");
    assert_eq!(mode(&folder.join("api-key")), 0o600);
    let (status, _) = call(put, &secrets, Some(json!({"name": "missing", "value": "v"}))).await;
    assert_eq!(status, 404);
    assert!(!folder.join("missing").exists());

    let (status, _) = call(delete.clone(), &secrets, Some(json!({"name": "api-key"}))).await;
    assert_eq!(status, 200);
    assert!(!folder.join("api-key").exists());
    let (status, _) = call(delete.clone(), &secrets, Some(json!({"name": "api-key"}))).await;
    assert_eq!(status, 404);

    // Refusals: a name no function could mount (or one climbing out of the folder), another namespace, a body that is
    // not a Secret (whose value is never echoed back), a body too large.
    for name in ["../escape", "UPPER", "", ".hidden"] {
        let (status, body) = call(post.clone(), &secrets, Some(json!({"name": name, "value": "v"}))).await;
        assert_eq!(status, 400, "{name}: {body}");
    }
    assert!(!state.path().join("escape").exists());
    let (status, body) =
        call(post.clone(), &secrets, Some(json!({"name": "n", "namespace": "kube-system", "value": "v"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(get, &format!("{secrets}?namespace=kube-system"), None).await;
    assert_eq!(status, 400);
    let (status, body) = call(post.clone(), &secrets, Some(json!({"name": 5, "value": "hush-hush"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("hush-hush"), "{body}");
    let huge = "x".repeat(ofc::gateway::MAX_SECRET_BODY_BYTES + 1);
    let (status, _) = call(post, &secrets, Some(json!({"name": "huge", "value": huge}))).await;
    assert_eq!(status, 413);
    assert!(!folder.join("huge").exists());
    let (status, _) = call(delete, &secrets, Some(json!({"name": "../secrets/payload-secret"}))).await;
    assert_eq!(status, 400);

    // Creations racing for one name: one wins, the others are told it exists; no half-written file is left.
    let racing = (0..8).map(|i| {
        let secrets = secrets.clone();
        async move {
            call(reqwest::Method::POST, &secrets, Some(json!({"name": "raced", "value": format!("v{i}")}))).await.0
        }
    });
    let mut statuses = futures_util::future::join_all(racing).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    let left: Vec<String> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|name| !name.starts_with('.')), "{left:?}");
}

/// The real gateway's ports inside the namespace (it always binds these), and the other parts' there.
const GATEWAY: &str = "http://127.0.0.1:8080";
const PROVIDER_PORT: u16 = 9080;
const AUTH_PLUGIN_PORT: u16 = 9091;
const NATS_PORT: u16 = 4222;
const PROMETHEUS_PORT: u16 = 9090;
/// How long a part may take to listen, `ofc up` to come up (it builds its base image on a first start), a push.
const LISTENS_WITHIN: Duration = Duration::from_secs(30);
const UP_WITHIN: Duration = Duration::from_secs(120);
const PUSH_TIMEOUT_SECONDS: &str = "300";

/// The real OpenFaaS parts and `ofc up` in a namespace, with their logs in one folder.
struct Fronted {
    ns: NetNs,
    openfaas: OpenFaas,
    state: tempfile::TempDir,
    logs: tempfile::TempDir,
    /// faas-cli's configuration folder (`OPENFAAS_CONFIG`), where `faas-cli login` keeps the credentials.
    cli_config: tempfile::TempDir,
}

impl Fronted {
    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(name)).unwrap()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        if name == "ofc up" {
            return self.state.path().join("ofc-up.log");
        }
        self.logs.path().join(format!("{name}.log"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Every part's log, for a failure message.
    fn all_logs(&self) -> String {
        let mut all = String::new();
        for name in ["ofc up", "basic-auth", "nats", "prometheus", "gateway", "queue-worker"] {
            let _ = write!(all, "\n===== {name} =====\n{}", tail(&self.log(name)));
        }
        all
    }

    fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.path().join("secrets").join(name)).unwrap().trim().to_owned()
    }

    /// Starts `program` in the namespace with only `env` (and PATH), logging to `<name>.log`.
    fn start(&mut self, name: &str, program: &Path, args: &[&str], env: &[(&str, String)]) {
        let log = self.log_file(name);
        let mut command = self.ns.command(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(self.logs.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        self.ns.spawn(name, &mut command);
    }

    fn wait_listening(&mut self, name: &str, port: u16) {
        let listening = self.ns.wait_port(port, LISTENS_WITHIN);
        let logs = self.all_logs();
        self.ns.assert_running(|_| logs.clone());
        assert!(listening, "{name} does not listen on {port} within {LISTENS_WITHIN:?}: {logs}");
    }

    /// `faas-cli ARGS -g <gateway>` in the namespace: whether it succeeded and what it printed.
    fn faas_cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut command = self.ns.command(self.openfaas.bin("faas-cli"));
        command.args(args).args(["-g", GATEWAY]).env("OPENFAAS_CONFIG", self.cli_config.path());
        run(&mut command, stdin)
    }

    /// `curl` in the namespace: the status and the body.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut command = self.ns.command("curl");
        command.args(["-sS", "-m", "120", "-w", "\n%{http_code}"]).args(args);
        let (_, out) = run(&mut command, None);
        let (body, status) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }
}

/// The last 60 lines of a log.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn run(command: &mut Command, stdin: Option<&str>) -> (bool, String) {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("the command starts");
    if let Some(input) = stdin {
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    }
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    (status.success(), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
}

/// `ofc up` as the provider, then the basic-auth plugin, NATS Streaming, Prometheus (gateway 0.25.4 panics listing
/// functions when its Prometheus does not answer), the gateway and the queue-worker, each waited for.
fn start_fronted(openfaas: OpenFaas) -> Fronted {
    let mut fronted = Fronted {
        ns: NetNs::new(),
        openfaas,
        state: tempfile::tempdir().unwrap(),
        logs: tempfile::tempdir().unwrap(),
        cli_config: tempfile::tempdir().unwrap(),
    };
    let started = Instant::now();
    let state = fronted.state.path().to_str().unwrap().to_owned();
    let log = fronted.log_file("ofc up");
    let mut up = fronted.ns.command(OFC);
    up.args(["up", "--runtime", "buildah", "--router-port", "0", "--state", &state])
        .args(["--gateway-port", &PROVIDER_PORT.to_string(), "--gateway-url", &format!("{GATEWAY}/")])
        .arg("--stack")
        .arg(testkit::local_stack::repository_root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    fronted.ns.spawn("ofc up", &mut up);
    let endpoints = fronted.state.path().join("endpoints.json");
    let deadline = Instant::now() + UP_WITHIN;
    while !endpoints.exists() {
        let log = fronted.log("ofc up");
        fronted.ns.assert_running(|_| log.clone());
        assert!(Instant::now() < deadline, "ofc up did not come up within {UP_WITHIN:?}: {log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("ofc up answered in {:.1} s", started.elapsed().as_secs_f64());
    start_openfaas(&mut fronted);
    eprintln!("the real OpenFaaS in front of ofc up, all answering, in {:.1} s", started.elapsed().as_secs_f64());
    fronted
}

/// The OpenFaaS parts in front of the running `ofc up`, which has written the admin's credentials they read.
fn start_openfaas(fronted: &mut Fronted) {
    let secrets = fronted.state.path().join("secrets").display().to_string();
    let auth_env = [
        ("port", AUTH_PLUGIN_PORT.to_string()),
        ("secret_mount_path", secrets.clone()),
        ("user_filename", "basic-auth-user".to_owned()),
        ("pass_filename", "basic-auth-password".to_owned()),
    ];
    let bin = |name: &str| fronted.openfaas.bin(name);
    let (basic_auth, nats, gateway, queue_worker) =
        (bin("basic-auth"), bin("nats-streaming-server"), bin("ofgateway"), bin("queue-worker"));
    fronted.start("basic-auth", &basic_auth, &[], &auth_env);
    fronted.wait_listening("basic-auth", AUTH_PLUGIN_PORT);
    start_prometheus(fronted);
    let nats_port = NATS_PORT.to_string();
    let nats_args = ["-a", "127.0.0.1", "-p", &nats_port, "--cluster_id", "faas-cluster", "--store", "memory"];
    fronted.start("nats", &nats, &nats_args, &[]);
    fronted.wait_listening("nats", NATS_PORT);

    let gateway_env = [
        ("functions_provider_url", format!("http://127.0.0.1:{PROVIDER_PORT}/")),
        ("direct_functions", "false".to_owned()),
        ("basic_auth", "true".to_owned()),
        ("secret_mount_path", secrets.clone()),
        ("auth_proxy_url", format!("http://127.0.0.1:{AUTH_PLUGIN_PORT}/validate")),
        ("auth_proxy_pass_body", "false".to_owned()),
        ("faas_nats_address", "127.0.0.1".to_owned()),
        ("faas_nats_port", nats_port.clone()),
        ("faas_prometheus_host", "127.0.0.1".to_owned()),
        ("faas_prometheus_port", PROMETHEUS_PORT.to_string()),
        ("scale_from_zero", "true".to_owned()),
        ("function_namespace", "openfaas-fn".to_owned()),
        // Builds take minutes: the seed's 300 s, as docs/deploy.md asks of a real gateway.
        ("read_timeout", "5m".to_owned()),
        ("write_timeout", "5m".to_owned()),
        ("upstream_timeout", "4m55s".to_owned()),
    ];
    fronted.start("gateway", &gateway, &[], &gateway_env);
    fronted.wait_listening("gateway", 8080);
    let queue_env = [
        ("faas_nats_address", "127.0.0.1".to_owned()),
        ("faas_nats_port", nats_port),
        ("faas_gateway_address", "127.0.0.1".to_owned()),
        ("faas_gateway_port", "8080".to_owned()),
        // 0.14.0 calls through the gateway, one call at a time (its `maxInFlight` is 1, not a setting).
        ("ack_wait", "5m".to_owned()),
        ("basic_auth", "true".to_owned()),
        ("secret_mount_path", secrets),
        ("write_debug", "false".to_owned()),
    ];
    fronted.start("queue-worker", &queue_worker, &[], &queue_env);
    // The queue-worker listens nowhere: its subscription is seen in its log.
    let deadline = Instant::now() + LISTENS_WITHIN;
    while !fronted.log("queue-worker").contains("Listening on") {
        let logs = fronted.all_logs();
        fronted.ns.assert_running(|_| logs.clone());
        assert!(Instant::now() < deadline, "the queue-worker did not subscribe: {logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A real Prometheus scraping the gateway's metrics port, which the gateway asks when listing functions.
fn start_prometheus(fronted: &mut Fronted) {
    let prometheus_config = fronted.logs.path().join("prometheus.yml");
    let scrape = "scrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: ['127.0.0.1:8082']\n";
    std::fs::write(&prometheus_config, format!("global:\n  scrape_interval: 5s\n{scrape}")).unwrap();
    let prometheus_args = [
        format!("--config.file={}", prometheus_config.display()),
        format!("--storage.tsdb.path={}", fronted.logs.path().join("tsdb").display()),
        format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"),
    ];
    let prometheus_args: Vec<&str> = prometheus_args.iter().map(String::as_str).collect();
    fronted.start("prometheus", Path::new("/usr/bin/prometheus"), &prometheus_args, &[]);
    fronted.wait_listening("prometheus", PROMETHEUS_PORT);
}

/// An image FROM scratch that the runtime can run: ofc-watchdog (and the libraries it links) and a static
/// busybox, which `fprocess` names; pushed to `ofc up`'s registry as `127.0.0.1:PORT/ofc-test/cat:1` with
/// of-builder's account (the registry takes pushes from it alone), as an operator would.
fn push_test_image(fronted: &Fronted, registry: &str) -> String {
    let storage = tempfile::tempdir().unwrap();
    let root = storage.path().join("root").display().to_string();
    let runroot = storage.path().join("run").display().to_string();
    let buildah = |args: &[&str], in_ns: bool| {
        let mut command = if in_ns { fronted.ns.command("buildah") } else { Command::new("buildah") };
        command.args(["--root", &root, "--runroot", &runroot, "--storage-driver", "vfs"]).args(args);
        let (ok, out) = run(&mut command, None);
        assert!(ok, "buildah {args:?}: {out}");
        out.trim().to_owned()
    };
    let container = buildah(&["from", "--quiet", "scratch"], false);
    let watchdog = Path::new(OFC).with_file_name("ofc-watchdog");
    assert!(watchdog.is_file(), "{} is missing: cargo build --workspace --bins", watchdog.display());
    let mut files = vec![(watchdog.display().to_string(), "/usr/bin/fwatchdog".to_owned())];
    files.push(("/bin/busybox".to_owned(), "/bin/busybox".to_owned()));
    let ldd = Command::new("ldd").arg(&watchdog).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split_once("=>").map_or(line, |(_, target)| target).trim();
        let path = path.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            files.push((path.to_owned(), path.to_owned()));
        }
    }
    for (source, target) in &files {
        buildah(&["copy", "--quiet", &container, source, target], false);
    }
    buildah(&["config", "--cmd", "[\"/usr/bin/fwatchdog\"]", "--port", "8080", &container], false);
    buildah(&["commit", "--quiet", "--rm", &container, "localhost/ofc-test/cat:1"], false);
    let image = format!("{registry}/ofc-test/cat:1");
    let account = fronted.state.path().join("builder-secrets/registry-auth").display().to_string();
    let target = format!("docker://{image}");
    buildah(
        &["push", "--quiet", "--tls-verify=false", "--authfile", &account, "localhost/ofc-test/cat:1", &target],
        true,
    );
    image
}

/// Retries `attempt` every half second until it answers `Some`, for at most `within`; `None` when it never did.
fn until<T>(within: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(done) = attempt() {
            return Some(done);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_real_gateway_queue_worker_and_faas_cli_work_with_ofc_up_as_their_provider() {
    let Some(openfaas) = OpenFaas::locate("real_gateway") else { return };
    let fronted = start_fronted(openfaas);
    let logs = || fronted.all_logs();

    // The gateway's own checks pass through to the provider: healthz, and /system/* behind the plugin.
    assert_eq!(fronted.curl(&[&format!("{GATEWAY}/healthz")]).0, 200, "{}", logs());
    assert_eq!(fronted.curl(&[&format!("{GATEWAY}/system/functions")]).0, 401);
    let password = fronted.secret("basic-auth-password");
    let (ok, out) = fronted.faas_cli(&["login", "-u", "admin", "--password-stdin"], Some(&password));
    assert!(ok, "login: {out}{}", logs());
    assert!(!out.contains(&password), "{out}");
    let (ok, out) = fronted.faas_cli(&["version", "--warn-update=false"], None);
    assert!(ok, "version: {out}{}", logs());
    assert!(out.contains("ofc") && out.contains("local"), "the provider's name and orchestration: {out}");
    assert!(!fronted.log("gateway").contains("Error unmarshalling provider json"), "{}", fronted.log("gateway"));

    // Secrets through the gateway land where `ofc secret set` writes them.
    let (ok, out) = fronted.faas_cli(&["secret", "create", "api-key", "--from-literal", "from-faas-cli"], None);
    assert!(ok, "secret create: {out}{}", logs());
    let stored = fronted.state.path().join("function-secrets/api-key");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "from-faas-cli");
    let (ok, out) = fronted.faas_cli(&["secret", "list"], None);
    assert!(ok && out.contains("api-key") && !out.contains("from-faas-cli"), "secret list: {out}");

    deploy_invoke_and_remove(&fronted, &stored);
    push_ends_green_through_the_queue_worker(&fronted);
    drop(fronted);
}

/// Deploys a function of the test's own image with the secret; lists, describes, invokes it and reads its logs;
/// removes the secret and the function.
fn deploy_invoke_and_remove(fronted: &Fronted, stored: &Path) {
    let logs = || fronted.all_logs();
    let registry = fronted.state.path().join("endpoints.json");
    let registry: Value = serde_json::from_str(&std::fs::read_to_string(registry).unwrap()).unwrap();
    let image = push_test_image(fronted, registry["registry"].as_str().unwrap());
    let deploy = [
        "deploy",
        "--image",
        &image,
        "--name",
        "reader",
        "--fprocess",
        "/bin/busybox cat /var/openfaas/secrets/api-key",
        "--secret",
        "api-key",
    ];
    let (ok, out) = fronted.faas_cli(&deploy, None);
    assert!(ok && out.contains("202"), "deploy: {out}{}", logs());
    let (ok, out) = fronted.faas_cli(&["list"], None);
    assert!(ok && out.contains("reader"), "list: {out}{}", logs());
    // scale_from_zero: the gateway holds the call until the provider reports the replica available.
    let started = Instant::now();
    let (ok, out) = fronted.faas_cli(&["invoke", "reader"], Some("ignored"));
    assert!(ok && out.contains("from-faas-cli"), "invoke: {out}{}", logs());
    eprintln!("first call of a new deployment through the real gateway: {:.1} s", started.elapsed().as_secs_f64());
    let (ok, out) = fronted.faas_cli(&["describe", "reader"], None);
    assert!(ok && out.contains("Ready") && out.contains(&image), "describe: {out}");
    // The replica's own output (the watchdog's start line), through the gateway's log proxy to the provider.
    let mut last = String::new();
    let logged = until(Duration::from_secs(20), || {
        let (ok, out) = fronted.faas_cli(&["logs", "reader", "--tail=false", "--name"], None);
        let found = ok && out.contains("reader") && out.contains("ofc-watchdog");
        last = out;
        found.then_some(())
    });
    assert!(logged.is_some(), "faas-cli logs shows nothing of reader: {last}{}", logs());
    // Scaling through the gateway (its plugin checks the credentials, the provider answers).
    let admin = format!("admin:{}", fronted.secret("basic-auth-password"));
    let scale = |replicas: u64| {
        let body = json!({"serviceName": "reader", "replicas": replicas}).to_string();
        fronted.curl(&["-u", &admin, "-d", &body, &format!("{GATEWAY}/system/scale-function/reader")])
    };
    assert_eq!(scale(1).0, 202, "{}", logs());
    scaled_to_zero_and_back(fronted, &scale);
    let (ok, out) = fronted.faas_cli(&["secret", "update", "api-key", "--from-literal", "updated"], None);
    assert!(ok, "secret update: {out}");
    assert_eq!(std::fs::read_to_string(stored).unwrap(), "updated");
    let (ok, out) = fronted.faas_cli(&["secret", "remove", "api-key"], None);
    assert!(ok, "secret remove: {out}");
    assert!(!stored.exists());
    let (ok, out) = fronted.faas_cli(&["secret", "list"], None);
    assert!(ok && !out.contains("api-key"), "secret list after remove: {out}");
    let (ok, out) = fronted.faas_cli(&["remove", "reader"], None);
    assert!(ok, "remove: {out}");
    let (ok, out) = fronted.faas_cli(&["list"], None);
    assert!(ok && !out.contains("reader"), "list after remove: {out}");
}

/// Scaled to zero, `reader` has no replica (the provider says so, and answers a direct call 503); the next call
/// through the gateway (`scale_from_zero`) scales it up to one again and is answered by the new replica.
fn scaled_to_zero_and_back(fronted: &Fronted, scale: &dyn Fn(u64) -> (u16, String)) {
    let logs = || fronted.all_logs();
    let (status, body) = scale(0);
    assert_eq!(status, 202, "{body}{}", logs());
    let admin = format!("admin:{}", fronted.secret("basic-auth-password"));
    let replicas = || {
        let (status, body) = fronted.curl(&["-u", &admin, &format!("{GATEWAY}/system/function/reader")]);
        assert_eq!(status, 200, "{body}");
        let function: Value = serde_json::from_str(&body).unwrap();
        (function["replicas"].as_u64(), function["availableReplicas"].as_u64())
    };
    assert_eq!(replicas(), (Some(0), Some(0)), "scaled to zero");
    let (status, body) = fronted.curl(&[&format!("http://127.0.0.1:{PROVIDER_PORT}/function/reader")]);
    assert_eq!(status, 503, "a direct call to the provider: {body}");
    assert!(body.contains("scaled to zero"), "{body}");
    let (ok, out) = fronted.faas_cli(&["describe", "reader"], None);
    assert!(ok && out.contains("Not Ready"), "describe when scaled to zero: {out}");
    // Past the gateway's 250 ms cache of the replica counts, a call finds none and scales the function up.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (ok, out) = fronted.faas_cli(&["invoke", "reader"], Some("ignored"));
    assert!(ok && out.contains("from-faas-cli"), "invoke when scaled to zero: {out}{}", logs());
    eprintln!(
        "a call of a function scaled to zero, through the real gateway: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let gateway = fronted.log("gateway");
    assert!(gateway.contains("function=reader 0 => 1 requested"), "the gateway did not scale reader up: {gateway}");
    assert_eq!(replicas(), (Some(1), Some(1)), "scaled up again");
}

/// A signed push: the functions call the real gateway, so the async hops go through NATS and the queue-worker.
fn push_ends_green_through_the_queue_worker(fronted: &Fronted) {
    let logs = || fronted.all_logs();
    let work = tempfile::tempdir().unwrap();
    let repo = testkit::local_stack::example_repo(work.path(), "fns");
    let started = Instant::now();
    let mut push = fronted.ns.command(OFC);
    push.args(["push", repo.to_str().unwrap(), "--owner", "octo", "--timeout", PUSH_TIMEOUT_SECONDS])
        .arg("--state")
        .arg(fronted.state.path());
    let (ok, out) = run(&mut push, None);
    assert!(ok && out.contains("stack-deploy   success"), "push: {out}{}", logs());
    eprintln!("push to green through the real gateway: {:.1} s", started.elapsed().as_secs_f64());
    let queue_worker = fronted.log("queue-worker");
    assert!(queue_worker.contains("Invoked: git-tar"), "git-tar was not invoked by the queue-worker: {queue_worker}");
    let queued = std::fs::read_dir(fronted.state.path().join("queue")).unwrap().count();
    assert_eq!(queued, 0, "nothing went through the embedded gateway's own queue");
    let answer = until(Duration::from_secs(120), || {
        let (status, body) = fronted.curl(&[&format!("{GATEWAY}/function/octo-hello-4")]);
        (status == 200).then_some(body)
    });
    let answer = answer.unwrap_or_else(|| panic!("octo-hello-4 never answered through the real gateway: {}", logs()));
    assert!(answer.contains("Hello from OpenFaaS Cloud"), "{answer}");
    let gateway = fronted.log("gateway");
    for trouble in ["panic", "error finding function", "Error unmarshalling"] {
        assert!(!gateway.contains(trouble), "the gateway logged {trouble:?}: {gateway}");
    }
}

#[test]
fn up_refuses_a_front_gateway_url_it_cannot_use_naming_the_flag() {
    for (args, named) in [
        (vec!["--gateway-url", "not a url"], "--gateway-url"),
        (vec!["--gateway-url", "ftp://127.0.0.1/"], "--gateway-url"),
        (vec!["--gateway-url", "http://127.0.0.1:8080/", "--gateway-public-url", "/relative"], "--gateway-public-url"),
        (vec!["--gateway-public-url", "http://127.0.0.1:8080/"], "--gateway-url"),
    ] {
        let state = tempfile::tempdir().unwrap();
        let output = Command::new(OFC)
            .args(["up", "--runtime", "none", "--state"])
            .arg(state.path())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(text.contains(named), "{args:?}: {text}");
        assert!(!state.path().join("secrets").exists(), "{args:?}: refused before anything started");
    }
}
