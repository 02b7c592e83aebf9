//! The platform on the real faasd, deployed as docs/deploy.md section 9 tells an operator: faasd 0.16.9 (containerd,
//! `faasd provider`, `faasd up`) with gateway 0.25.4, the CE queue-worker and NATS Streaming, inside network, mount,
//! PID and cgroup namespaces this test creates (faasd's bridge, 10.62.0.0/16, exists only there), the platform's
//! images from `.ci/build-images`, the section's shell blocks read from docs/deploy.md and run as they stand, then
//! pushes as GitHub sends them. GitHub's API and the git server are doubles on the bridge address, outside faasd,
//! where of-builder and the registry (on a unix socket, behind its gates on loopback and on the bridge) also run
//! (section 9.1).
//!
//! Needs the OpenFaaS binaries in `OFC_OPENFAAS_DIR` (default `<workspace>/../shared/openfaas`), the workspace's
//! binaries next to `ofc` (`cargo test --workspace` builds them; `OFC_FAASD_BINARIES` names another folder, e.g. the
//! static release ones `.ci/build-images` built), and Debian's containerd, runc, containernetworking-plugins,
//! systemd (journald), buildah and docker-registry. `OFC_SKIP_REAL_OPENFAAS=1` skips it where the binaries are absent.
//! Checks, besides the pushes, a platform function's update, `faas-cli logs`, a failing build's log link, the
//! dashboard, the metrics function's counts, a branch's preview and its removal with the branch (function and image,
//! deleted by garbage-collect through the registry's gate on the bridge). Prints its figures (push to live, each push
//! taken apart, unchanged push to green, preview live and removed, memory); it asserts behaviour, not timings.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use testkit::openfaas::OpenFaas;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");
/// faasd's bridge address: where containers reach what runs outside faasd.
const BRIDGE: &str = "10.62.0.1";
/// faasd's gateway, inside the namespace.
const GATEWAY: &str = "http://127.0.0.1:8080/";
const REGISTRY: &str = "127.0.0.1:5000";
const BUILDER_PORT: u16 = 8088;
const GITHUB_PORT: u16 = 3000;
const GIT_PORT: u16 = 3001;
const S3_PORT: u16 = 9000;
const S3_BUCKET: &str = "ofc-build-logs";
/// The OAuth App edge-auth signs people in with, at the GitHub double.
const OAUTH_CLIENT_ID: &str = "ofc-faasd";
/// The platform's functions (stack.yml), each of which must answer its health check once deployed.
const PLATFORM: [&str; 13] = [
    "gh-push",
    "git-tar",
    "buildshiprun",
    "github-status",
    "garbage-collect",
    "list-functions",
    "git-event",
    "audit-event",
    "pipeline-log",
    "edge-auth",
    "dashboard",
    "function-logs",
    "metrics",
];
/// What the test takes from the workspace's binaries, besides the images' (`.ci/build-images` checks those).
const WORKSPACE_BINARIES: [&str; 4] = ["of-builder", "ofc-registry-gate", "ofc-watchdog", "serve-doubles"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faasd")
}

/// Writes a line to stderr past the test harness's capture, so that CI's log shows it even when the test passes.
fn loud(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Polls `ready` every 200 ms until it holds or `within` has passed; answers whether it held.
fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    let tries = within.as_millis() / 200 + 1;
    for _ in 0..tries {
        if ready() {
            return true;
        }
        if started.elapsed() > within {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ready()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs `command` to its end, failing the test with its output when it fails.
fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(output.status.success(), "{what} failed ({}):\n{}", output.status, text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The namespaces faasd runs in, their PID 1 `ns-init.sh`; dropping it kills PID 1 (so every process inside) and
/// removes the cgroups runc left under the test's own.
struct Namespace {
    unshare: Child,
    pid: u32,
    daemons: Vec<Child>,
    logs: PathBuf,
}

impl Namespace {
    fn start(work: &Path) -> Self {
        let logs = work.join("state/logs");
        fs::create_dir_all(&logs).unwrap();
        let log = fs::File::create(logs.join("ns-init.log")).unwrap();
        let unshare = Command::new("setsid")
            .args(["unshare", "--net", "--mount", "--pid", "--cgroup", "--fork", "--mount-proc", "--propagation"])
            .arg("private")
            .arg(scripts().join("ns-init.sh"))
            .env("FAASD_WORK", work)
            .env("SERVICE_TIMEOUT", "15m")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare runs");
        let mut namespace = Self { pid: 0, unshare, daemons: Vec::new(), logs };
        let children = format!("/proc/{0}/task/{0}/children", namespace.unshare.id());
        let found = wait_until(Duration::from_secs(10), || {
            namespace.pid = fs::read_to_string(&children).ok().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
            namespace.pid != 0
        });
        assert!(found, "the namespace's PID 1 did not start:\n{}", namespace.log("ns-init"));
        namespace
    }

    fn log(&self, name: &str) -> String {
        let text = fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `program`, run inside the namespaces (in `/`).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command_in(Path::new("/"), program)
    }

    /// `program`, run inside the namespaces in the folder `dir` (nsenter, entering the mount namespace, starts in
    /// `/` otherwise).
    fn command_in(&self, dir: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.pid.to_string(), "-n", "-m", "-p", "-C"]).arg(format!("--wd={}", dir.display()));
        command.arg("--").arg(program);
        command
    }

    /// A long-running process inside the namespaces, logging to `<logs>/<name>.log`.
    fn daemon(&mut self, name: &str, mut command: Command) {
        let log = fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} cannot start: {e}"));
        self.daemons.push(child);
    }

    /// GET (or what `args` make it) inside the namespaces: the status (0 when nothing answered) and the body.
    fn curl(&self, url: &str, args: &[&str]) -> (u16, String) {
        let output = self
            .command("curl")
            .args(["-sS", "-m", "10", "-w", "\n%{http_code}"])
            .args(args)
            .arg(url)
            .output()
            .expect("curl runs");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn answers(&self, url: &str) -> bool {
        self.curl(url, &[]).0 == 200
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
        let exited = wait_until(Duration::from_secs(20), || matches!(self.unshare.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        remove_container_cgroups();
    }
}

/// The cgroups runc made for faasd's containers (`openfaas`, `openfaas-fn`) under this process's own, in every v1
/// hierarchy: the namespace's cgroup view was rooted there, so the host's other cgroups were never touched.
fn remove_container_cgroups() {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let hierarchy = match controllers {
            "" => "unified".to_owned(),
            named if named.starts_with("name=") => named.trim_start_matches("name=").to_owned(),
            controller => controller.to_owned(),
        };
        for group in ["openfaas", "openfaas-fn"] {
            let root = Path::new("/sys/fs/cgroup").join(&hierarchy).join(path.trim_start_matches('/')).join(group);
            let mut dirs = Vec::new();
            collect_dirs(&root, 0, &mut dirs);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

fn collect_dirs(dir: &Path, depth: usize, into: &mut Vec<PathBuf>) {
    if depth > 4 || !dir.is_dir() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), depth + 1, into);
            }
        }
    }
    into.push(dir.to_owned());
}

/// The shell block docs/deploy.md marks `<!-- run by ofc/tests/faasd.rs: NAME -->`, as it stands there.
fn deploy_doc_block(name: &str) -> String {
    let doc = fs::read_to_string(workspace().join("docs/deploy.md")).expect("docs/deploy.md");
    let marker = format!("<!-- run by ofc/tests/faasd.rs: {name} -->\n```sh\n");
    let start = doc.find(&marker).unwrap_or_else(|| panic!("docs/deploy.md has no block `{name}`")) + marker.len();
    let end = doc[start..].find("```").expect("the block ends") + start;
    doc[start..end].to_owned()
}

/// The workspace's binaries: next to `ofc` unless `OFC_FAASD_BINARIES` names another folder.
fn binaries() -> PathBuf {
    let dir = std::env::var_os("OFC_FAASD_BINARIES")
        .map_or_else(|| Path::new(OFC).parent().expect("ofc's folder").to_owned(), PathBuf::from);
    for name in WORKSPACE_BINARIES {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: build the workspace's binaries (`cargo build --workspace --bins`) or set OFC_FAASD_BINARIES",
            dir.join(name).display()
        );
    }
    dir
}

/// A line of figures, printed and kept for the summary at the end.
fn figure(figures: &mut String, line: &str) {
    loud(&format!("figure: {line}"));
    let _ = writeln!(figures, "  {line}");
}

/// The test's scratch folder (binaries, images, faasd's state, the registry, the builder's storage), removed when
/// dropped: after the namespace, whose mounts live in it.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The platform deployed on faasd, with what the pushes need. `ns` is dropped before `scratch`.
struct Platform {
    ns: Namespace,
    _scratch: Scratch,
    work: PathBuf,
    state: ofc::state::StateDir,
    figures: String,
}

impl Platform {
    fn ofc_push(&self, repo: &Path) -> (bool, String) {
        let output = self
            .ns
            .command("timeout")
            .args(["400", OFC, "push"])
            .arg(repo)
            .arg("--state")
            .arg(&self.state.root)
            .args(["--timeout", "300"])
            .output()
            .expect("ofc push runs");
        (output.status.success(), text(&output))
    }

    /// The function's answer through faasd's gateway.
    fn call(&self, function: &str) -> (u16, String) {
        self.ns.curl(&format!("{GATEWAY}function/{function}"), &[])
    }

    /// containerd's task of a deployed function: `(pid, image)`, which a redeploy changes.
    fn task(&self, function: &str) -> (String, String) {
        let tasks = run("ctr tasks ls", self.ns.command("ctr").args(["-n", "openfaas-fn", "tasks", "ls"]));
        let pid = tasks
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(function)).then(|| f.next().unwrap_or_default().to_owned())
            })
            .unwrap_or_default();
        let containers =
            run("ctr containers ls", self.ns.command("ctr").args(["-n", "openfaas-fn", "containers", "ls"]));
        let image = containers
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(function)).then(|| f.next().unwrap_or_default().to_owned())
            })
            .unwrap_or_default();
        (pid, image)
    }

    /// The example's repository as GitHub's events describe it.
    fn hello_repository(&self) -> Value {
        let clone_url = format!("http://{BRIDGE}:{GIT_PORT}/local/hello.git");
        let owner_id = self.state.account_id("local").unwrap();
        serde_json::json!({
            "id": 1, "name": "hello", "full_name": "local/hello", "private": false,
            "owner": {"login": "local", "id": owner_id, "type": "User"},
            "clone_url": clone_url, "html_url": clone_url, "default_branch": "main", "master_branch": "main"
        })
    }

    fn sender(&self) -> Value {
        serde_json::json!({"login": "local", "id": self.state.account_id("local").unwrap(), "type": "User"})
    }

    /// `event` delivered to gh-push through faasd's gateway as GitHub sends it, signed: the answer's status and body.
    fn deliver(&self, kind: &str, event: &Value) -> (u16, String) {
        let body = serde_json::to_vec(event).unwrap();
        let file = self.work.join(format!("{kind}-event.json"));
        fs::write(&file, &body).unwrap();
        let secret = self.state.secret("github-webhook-secret").unwrap();
        let signature = format!("X-Hub-Signature-256: {}", shared::signature::sign_sha256(secret.as_bytes(), &body));
        self.ns.curl(
            &format!("{GATEWAY}function/gh-push"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-H",
                &format!("X-GitHub-Event: {kind}"),
                "-H",
                &format!("X-GitHub-Delivery: {}", uuid::Uuid::new_v4()),
                "-H",
                &signature,
                "--data-binary",
                &format!("@{}", file.display()),
            ],
        )
    }

    /// The loopback gate's answer to a `HEAD` of `image`'s manifest (`host/repository@digest` or `:tag`), as
    /// containerd asks.
    fn manifest_status(&self, image: &str) -> u16 {
        let Some((host, rest)) = image.split_once('/') else { return 0 };
        let (repository, reference) =
            rest.split_once('@').or_else(|| rest.rsplit_once(':')).unwrap_or((rest, "latest"));
        let url = format!("http://{host}/v2/{repository}/manifests/{reference}");
        let accept = format!("Accept: {}", shared::registry::MANIFEST_TYPES);
        self.ns.curl(&url, &["-I", "-H", &accept]).0
    }

    /// The GitHub double's statuses of a commit, newest first.
    fn statuses(&self, repo: &str, sha: &str) -> Vec<Value> {
        let url = format!("http://{BRIDGE}:{GITHUB_PORT}/repos/local/{repo}/commits/{sha}/statuses");
        let (status, body) = self.ns.curl(&url, &[]);
        assert_eq!(status, 200, "the GitHub double's statuses: {body}");
        serde_json::from_str(&body).expect("a status list")
    }
}

fn head(repo: &Path) -> String {
    run("git rev-parse", Command::new("git").arg("-C").arg(repo).args(["rev-parse", "HEAD"])).trim().to_owned()
}

/// The `<h1>` text of the example's `hello` page.
fn heading(repo: &Path) -> String {
    let page = fs::read_to_string(repo.join("hello/index.html")).expect("hello/index.html");
    let start = page.find("<h1>").expect("an <h1>") + 4;
    let end = page[start..].find('<').expect("a closed <h1>") + start;
    page[start..end].to_owned()
}

/// The OpenFaaS binaries (`testkit::openfaas` unpacks them once) copied into the scratch folder's `bin/`, where the
/// namespace's scripts take them from.
fn copy_openfaas(openfaas: &OpenFaas, bin: &Path) {
    fs::create_dir_all(bin).unwrap();
    for name in testkit::openfaas::BINARIES {
        fs::copy(openfaas.bin(name), bin.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// The registry of docs/deploy.md 9.1: `docker-registry` on a unix socket in a folder only root opens, behind its
/// two gates (the namespace's loopback, where containerd pulls over plain HTTP and of-builder pushes, and faasd's
/// bridge, where reads need an account); then the platform's images, as section 5 builds them, pushed as
/// of-builder's account. SIGPIPE is ignored so that the script's `ldd | grep -q` of dynamically linked binaries
/// cannot lose a library to the race of grep exiting first.
fn registry_with_images(
    ns: &mut Namespace,
    work: &Path,
    binaries: &Path,
    state: &ofc::state::StateDir,
    figures: &mut String,
) {
    use std::os::unix::fs::DirBuilderExt as _;
    let registry = work.join("registry");
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&registry).unwrap();
    let socket = registry.join("registry.sock");
    let mut serve = ns.command("docker-registry");
    doubles::registry::serve_command_on_socket(&mut serve, &registry, &socket).expect("the registry's command");
    ns.daemon("registry", serve);

    let accounts = RegistryAccounts::write(work, state);
    start_gate(ns, binaries, "gate-loopback", &socket, &accounts, "127.0.0.1", true);
    start_gate(ns, binaries, "gate-bridge", &socket, &accounts, BRIDGE, false);
    let (status, _) = ns.curl(&format!("http://{}/v2/", registry_api()), &[]);
    assert_eq!(status, 401, "the bridge's gate answers a read without an account");

    let started = Instant::now();
    let built = ns
        .command_in(&workspace(), "timeout")
        .args(["1800", "env", "--ignore-signal=PIPE", "nice", "bash", ".ci/build-images"])
        .env("REGISTRY", REGISTRY)
        .env("REGISTRY_AUTH_FILE", &accounts.builder)
        .env("BINARIES", binaries)
        .output()
        .expect(".ci/build-images runs");
    fs::write(ns.logs.join("build-images.log"), text(&built)).unwrap();
    assert!(built.status.success(), ".ci/build-images failed:\n{}", ns.log("build-images"));
    figure(figures, &format!(".ci/build-images to the registry: {:.1} s", started.elapsed().as_secs_f64()));
}

/// The registry's three account files of docs/deploy.md 9.1, each with a fresh password.
struct RegistryAccounts {
    /// of-builder's (`registry-auth` in its `secret_mount_path`), for the loopback gate.
    builder: PathBuf,
    /// garbage-collect's (`registry-collector-auth`, made an OpenFaaS secret by 9.3), for the bridge's gate.
    collector: PathBuf,
    /// The operator's, `user:password`.
    operator: PathBuf,
}

impl RegistryAccounts {
    fn write(work: &Path, state: &ofc::state::StateDir) -> Self {
        use base64::Engine as _;
        let password = || uuid::Uuid::new_v4().simple().to_string();
        let docker_config = |registry: &str, user: &str| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password()));
            serde_json::json!({ "auths": { registry: { "auth": auth } } }).to_string()
        };
        let accounts = Self {
            builder: state.secrets().join("registry-auth"),
            collector: state.secrets().join("registry-collector-auth"),
            operator: work.join("registry/operator"),
        };
        fs::write(&accounts.builder, docker_config(REGISTRY, "of-builder")).unwrap();
        fs::write(&accounts.collector, docker_config(&registry_api(), "garbage-collect")).unwrap();
        fs::write(&accounts.operator, format!("operator:{}", password())).unwrap();
        accounts
    }
}

/// A registry gate (`ofc-registry-gate`) on `address`:5000 in front of the registry's `socket`, as 9.1 starts it;
/// answers once its `/healthz` does (the registry behind it answering too).
fn start_gate(
    ns: &mut Namespace,
    binaries: &Path,
    name: &str,
    socket: &Path,
    accounts: &RegistryAccounts,
    address: &str,
    anonymous_reads: bool,
) {
    let mut gate = ns.command("env");
    gate.arg("-i")
        .arg(format!("registry_upstream={}", socket.display()))
        .arg(format!("builder_auth_file={}", accounts.builder.display()))
        .arg(format!("operator_auth_file={}", accounts.operator.display()))
        .arg(format!("collector_auth_file={}", accounts.collector.display()))
        .arg("port=5000")
        .arg(format!("bind_address={address}"))
        .arg(format!("anonymous_reads={anonymous_reads}"))
        .arg("RUST_LOG=info")
        .arg(binaries.join("ofc-registry-gate"));
    ns.daemon(name, gate);
    let up = wait_until(Duration::from_secs(20), || ns.answers(&format!("http://{address}:5000/healthz")));
    assert!(up, "the registry's gate on {address} did not start:\n{}\nregistry:\n{}", ns.log(name), ns.log("registry"));
}

/// The registry's gate on faasd's bridge, as garbage-collect reaches it (9.2's `REGISTRY_API`).
fn registry_api() -> String {
    format!("{BRIDGE}:5000")
}

/// GitHub, the git server (with the template store) and the resolver faasd names, outside faasd.
fn start_doubles(ns: &mut Namespace, binaries: &Path, state: &ofc::state::StateDir) {
    ofc::templates::publish(&state.repos()).expect("the templates published");
    let mut doubles = ns.command(binaries.join("serve-doubles"));
    doubles
        .args(["--address", BRIDGE, "--github-port", &GITHUB_PORT.to_string(), "--git-port", &GIT_PORT.to_string()])
        .arg("--repos")
        .arg(state.repos())
        .arg("--app-public-key")
        .arg(state.root.join("app-public-key.pem"))
        .arg("--oauth-app")
        .arg(format!("{OAUTH_CLIENT_ID}:{}", state.secrets().join("of-client-secret").display()))
        .args(["--dns", "8.8.8.8:53"]);
    ns.daemon("doubles", doubles);
    let url = format!("http://{BRIDGE}:{GITHUB_PORT}/repos/a/b/commits/c/statuses");
    let up = wait_until(Duration::from_secs(20), || ns.answers(&url));
    assert!(up, "the doubles did not start: {}", ns.log("doubles"));
}

/// of-builder on the bridge address, with Buildah, sandboxed as the build user where it exists, with 9.1's
/// settings (its storage driver chosen at start, as there); its base image (the watchdog, FROM scratch) in its
/// storage for either driver the start may choose.
fn start_builder(ns: &mut Namespace, binaries: &Path, state: &ofc::state::StateDir) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let user = ofc::sandbox::build_user(Some("ofcbuild")).ok().flatten();
    let sandbox = user.map(|u| ofc::sandbox::prepare(state, u).expect("the sandbox"));
    let storage = ofc::sandbox::builder_storage(state, sandbox.as_ref()).expect("of-builder's storage");
    runtime
        .block_on(ofc::runtime::build_watchdog_image(&storage, &binaries.join("ofc-watchdog")))
        .expect("the watchdog base image");
    // `ofc` builds the image into of-builder's vfs storage; its copy in the overlay storage (of-builder keeps one a
    // driver, `<buildah_root>/overlay`) is what builds read where the start picks overlay.
    let overlay = ofc::sandbox::builder_root(state, sandbox.as_ref()).join("overlay");
    let destination = format!(
        "containers-storage:[overlay@{}+{}]{}",
        overlay.join("storage").display(),
        overlay.join("run").display(),
        ofc::runtime::WATCHDOG_IMAGE
    );
    runtime
        .block_on(storage.run("push", &["push", "--quiet", ofc::runtime::WATCHDOG_IMAGE, &destination]))
        .expect("the watchdog base image in the overlay storage");
    let mut builder = ns.command("env");
    builder
        .arg("-i")
        .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .arg(format!("port={BUILDER_PORT}"))
        .arg(format!("bind_address={BRIDGE}"))
        .arg(format!("secret_mount_path={}", state.secrets().display()))
        .arg("builder_backend=buildah")
        .arg("registry_insecure=true")
        .arg(format!("buildah_root={}", ofc::sandbox::builder_root(state, sandbox.as_ref()).display()))
        .arg("RUST_LOG=info");
    if let Some(sandbox) = &sandbox {
        builder.arg(format!("build_user={}", sandbox.user.name));
    }
    builder.arg(binaries.join("of-builder"));
    ns.daemon("of-builder", builder);
    let up = wait_until(Duration::from_secs(30), || ns.answers(&format!("{}_/health", builder_url())));
    assert!(up, "of-builder did not start: {}", ns.log("of-builder"));
}

/// The build logs' bucket (an S3 server on the bridge address; an operator's is MinIO or S3) and its keys.
fn start_bucket(ns: &mut Namespace, state: &ofc::state::StateDir) {
    let mut s3 = ns.command("moto_server");
    s3.args(["-H", BRIDGE, "-p", &S3_PORT.to_string()]);
    ns.daemon("s3", s3);
    let up = wait_until(Duration::from_secs(30), || ns.answers(&format!("{}/", s3_url())));
    assert!(up, "the S3 server did not start: {}", ns.log("s3"));
    let (status, body) = ns.curl(&format!("{}/{S3_BUCKET}", s3_url()), &["-X", "PUT"]);
    assert_eq!(status, 200, "the bucket: {body}");
    fs::write(state.secrets().join("s3-access-key"), "faasd-test").unwrap();
    fs::write(state.secrets().join("s3-secret-key"), "faasd-test-secret").unwrap();
}

fn builder_url() -> String {
    format!("http://{BRIDGE}:{BUILDER_PORT}/")
}

fn github_url() -> String {
    format!("http://{BRIDGE}:{GITHUB_PORT}/")
}

fn s3_url() -> String {
    format!("http://{BRIDGE}:{S3_PORT}")
}

/// docs/deploy.md 9.2 and 9.3 as they stand, on a copy of the repository's deploy files, with the values of 9.2's
/// settings this test has; then every platform function answers its health check.
fn follow_the_guide(ns: &Namespace, work: &Path, state: &ofc::state::StateDir, figures: &mut String) {
    let copy = work.join("deploy");
    fs::create_dir_all(&copy).unwrap();
    for file in ["stack.yml", "gateway_config.yml", "github.yml", "buildshiprun_limits_k8s.yml"] {
        fs::copy(workspace().join(file), copy.join(file)).unwrap();
    }
    run("cp template", Command::new("cp").arg("-r").arg(workspace().join("template")).arg(&copy));
    let home = work.join("home");
    fs::create_dir_all(&home).unwrap();
    let path = format!("{}:{}", work.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let settings = [
        ("OPENFAAS_URL", "http://127.0.0.1:8080".to_owned()),
        ("REGISTRY", REGISTRY.to_owned()),
        ("REGISTRY_API", registry_api()),
        ("BUILDER_URL", builder_url()),
        ("PUBLIC_URL", GATEWAY.to_owned()),
        ("GITHUB_APP_ID", ofc::state::APP_ID.to_owned()),
        ("GITHUB_API_URL", github_url()),
        ("TEMPLATES", format!("http://{BRIDGE}:{GIT_PORT}/ofc/templates.git")),
        ("OAUTH_CLIENT_ID", OAUTH_CLIENT_ID.to_owned()),
        ("AUTH_URL", format!("{GATEWAY}function/edge-auth/")),
        ("DASHBOARD_URL", format!("{GATEWAY}function/dashboard/")),
        ("COOKIE_DOMAIN", "127.0.0.1".to_owned()),
        ("SECRETS", state.secrets().display().to_string()),
        ("S3_URL", s3_url()),
        ("S3_BUCKET", S3_BUCKET.to_owned()),
        ("S3_TLS", "false".to_owned()),
        ("HOME", home.display().to_string()),
        ("PATH", path),
    ];
    let guide = |blocks: &[&str], what: &str| {
        let script = blocks.iter().map(|b| deploy_doc_block(b)).collect::<Vec<_>>().join("\n");
        let mut shell = ns.command_in(&copy, "bash");
        shell.args(["-euo", "pipefail", "-c", &script]).envs(settings.iter().map(|(k, v)| (k, v.as_str())));
        run(what, &mut shell);
    };
    guide(
        &["configure", "dockerfile", "sign-in", "metrics", "previews", "secrets", "build-logs"],
        "docs/deploy.md 9.2, 9.3 (settings, secrets)",
    );
    let started = Instant::now();
    guide(&["deploy"], "docs/deploy.md 9.3 (faas-cli deploy)");
    figure(figures, &format!("faas-cli deploy of stack.yml (13 functions): {:.1} s", started.elapsed().as_secs_f64()));
    for function in PLATFORM {
        let url = format!("{GATEWAY}function/{function}/_/health");
        let healthy = wait_until(Duration::from_secs(90), || ns.answers(&url));
        let tag = format!("openfaas-fn:{function}");
        let journal =
            run("journalctl", ns.command("journalctl").args(["--no-pager", "-o", "cat", "-n", "20", "-t", &tag]));
        assert!(healthy, "{function} does not answer its health check through faasd's gateway:\n{journal}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    figure(figures, &format!("13 platform functions healthy {elapsed:.1} s after the deploy began"));
}

/// faasd in the namespaces, the registry and the platform's images, the doubles, of-builder and the bucket outside
/// faasd, then docs/deploy.md 9.2 and 9.3.
fn deploy(openfaas: &OpenFaas) -> Platform {
    let mut figures = String::new();
    let binaries = binaries();
    let target = workspace().join("target");
    fs::create_dir_all(&target).unwrap();
    let work = tempfile::Builder::new().prefix("faasd-").tempdir_in(&target).unwrap().keep();
    let scratch = Scratch(work.clone());
    copy_openfaas(openfaas, &work.join("bin"));
    run("images.sh", Command::new(scripts().join("images.sh")).arg(work.join("bin")).arg(work.join("images")));

    let started = Instant::now();
    let mut ns = Namespace::start(&work);
    let healthy = wait_until(Duration::from_secs(120), || ns.answers(&format!("{GATEWAY}healthz")));
    let logs = [ns.log("ns-init"), ns.log("faasd-up"), ns.log("provider")].join("\n");
    assert!(healthy, "faasd's gateway did not answer:\n{logs}");
    let elapsed = started.elapsed().as_secs_f64();
    figure(&mut figures, &format!("faasd up (containerd, image import, provider, gateway healthy): {elapsed:.1} s"));

    let state = ofc::state::StateDir::new(&work.join("ofc"));
    state.prepare().expect("the state folder");
    registry_with_images(&mut ns, &work, &binaries, &state, &mut figures);
    start_doubles(&mut ns, &binaries, &state);
    start_builder(&mut ns, &binaries, &state);
    start_bucket(&mut ns, &state);
    state
        .write_endpoints(&ofc::state::Endpoints {
            gateway: GATEWAY.to_owned(),
            github_api: github_url(),
            registry: REGISTRY.to_owned(),
            builder: builder_url(),
            git: format!("http://{BRIDGE}:{GIT_PORT}/"),
            router: String::new(),
        })
        .unwrap();
    follow_the_guide(&ns, &work, &state, &mut figures);
    Platform { ns, _scratch: scratch, work, state, figures }
}

/// The memory of everything in the namespace, by part (PSS, MiB).
fn memory(platform: &Platform) -> String {
    let out = run("memory.sh", &mut platform.ns.command(scripts().join("memory.sh")));
    out.lines().map(|l| format!("memory: {l}")).collect::<Vec<_>>().join("\n  ")
}

/// With `OFC_FAASD_LOGS=<folder>`, the journal (every container's log, with microsecond times) and the logs of
/// faasd, containerd, of-builder and the registry are copied there before the namespace ends, to take a push apart.
fn keep_logs(platform: &Platform) {
    let Some(folder) = std::env::var_os("OFC_FAASD_LOGS").map(PathBuf::from) else { return };
    let _ = fs::create_dir_all(&folder);
    if let Ok(journal) =
        platform.ns.command("journalctl").args(["--no-pager", "-o", "short-precise", "--since", "-1h"]).output()
    {
        let _ = fs::write(folder.join("journal.log"), &journal.stdout);
    }
    if let Ok(entries) = fs::read_dir(&platform.ns.logs) {
        for entry in entries.flatten() {
            let _ = fs::copy(entry.path(), folder.join(entry.file_name()));
        }
    }
}

/// Checks that later steps do not depend on, collected so that one run reports every one that fails.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, holds: bool, what: String) {
        if !holds {
            loud(&format!("check failed: {what}"));
            self.0.push(what);
        }
    }
}

/// The journal's lines (`identifier`, wall-clock time, message) since `since`, from every container.
fn journal_since(platform: &Platform, since: SystemTime) -> Vec<(String, SystemTime, String)> {
    let seconds = since.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().saturating_sub(1);
    let out = run(
        "journalctl",
        platform.ns.command("journalctl").args(["--no-pager", "-o", "json", "--since", &format!("@{seconds}")]),
    );
    if let Some(folder) = std::env::var_os("OFC_FAASD_LOGS") {
        let _ = fs::create_dir_all(&folder);
        let name = format!("journal-{}.json", since.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
        let _ = fs::write(Path::new(&folder).join(name), &out);
    }
    out.lines()
        .filter_map(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            let micros: u64 = entry["__REALTIME_TIMESTAMP"].as_str()?.parse().ok()?;
            let message = match &entry["MESSAGE"] {
                Value::String(text) => text.clone(),
                Value::Array(bytes) => String::from_utf8_lossy(
                    &bytes.iter().filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect::<Vec<u8>>(),
                )
                .into_owned(),
                _ => return None,
            };
            let identifier = entry["SYSLOG_IDENTIFIER"].as_str().unwrap_or_default().to_owned();
            Some((identifier, UNIX_EPOCH + Duration::from_micros(micros), without_colours(&message)))
        })
        .collect()
}

/// `text` without its ANSI colour sequences (`ESC [ ... m`), which the functions' logs carry.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for inside in chars.by_ref() {
                if inside.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Where a push's time went, from the functions' logs (seconds after the push began): the webhook queued by gh-push,
/// the build at of-builder (as buildshiprun timed it), the new replica listening (faasd's create or replace of the
/// container), buildshiprun's deploy call answered, and the new content answering through the gateway.
fn taken_apart(platform: &Platform, began: SystemTime, sha: &str, service: &str, live: Duration) -> String {
    let journal = journal_since(platform, began);
    let at = |time: SystemTime| time.duration_since(began).unwrap_or_default().as_secs_f64();
    let find = |identifier: &str, needles: &[&str]| {
        journal
            .iter()
            .find(|(id, time, message)| {
                id == identifier && *time >= began && needles.iter().all(|needle| message.contains(needle))
            })
            .map(|(_, time, message)| (*time, message.clone()))
    };
    let queued = find("openfaas-fn:gh-push", &["queued a build", sha]).map(|(time, _)| at(time));
    let built = find("openfaas-fn:buildshiprun", &["INFO built", &format!("service={service} "), sha]);
    let build = built.as_ref().and_then(|(time, message)| {
        let seconds: f64 = message.split("seconds=").nth(1)?.split_whitespace().next()?.parse().ok()?;
        Some((at(*time) - seconds, at(*time)))
    });
    let listening = built
        .as_ref()
        .and_then(|(built, _)| {
            journal.iter().find(|(id, time, message)| {
                id == &format!("openfaas-fn:{service}") && time >= built && message.contains("listening on port")
            })
        })
        .map(|(_, time, _)| at(*time));
    let deployed = find("openfaas-fn:buildshiprun", &["INFO deployed", sha, &format!("service={service}")])
        .map(|(time, _)| at(time));
    let shown = |value: Option<f64>| value.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"));
    let (build_began, build_ended) = build.map_or((None, None), |(began, ended)| (Some(began), Some(ended)));
    let replace = listening.zip(build_ended).map(|(listening, built)| listening - built);
    format!(
        "webhook queued {}, build {}-{} s, new replica listening {} ({} s after the build), deploy answered {}, \
         live {:.1}",
        shown(queued),
        shown(build_began),
        shown(build_ended),
        shown(listening),
        shown(replace),
        shown(deployed),
        live.as_secs_f64()
    )
}

/// Where of-builder's and faasd's provider's logs ended when a push began, to read what the push added.
struct LogMarks {
    builder: u64,
    provider: u64,
}

impl LogMarks {
    fn now(ns: &Namespace) -> Self {
        let length = |name: &str| fs::metadata(ns.logs.join(format!("{name}.log"))).map_or(0, |m| m.len());
        Self { builder: length("of-builder"), provider: length("provider") }
    }

    /// What `name`'s log gained after `from` bytes.
    fn added(ns: &Namespace, name: &str, from: u64) -> String {
        let bytes = fs::read(ns.logs.join(format!("{name}.log"))).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The build and deploy steps the push made, from of-builder's log (each Buildah build's `bud` and `push`) and
    /// faasd provider's (each image pulled into containerd, with its size): `function: ...` per image.
    fn steps(&self, ns: &Namespace) -> String {
        let function = |image: &str| {
            let path = image.split(['@', ' ']).next().unwrap_or_default();
            let path = path.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(path, |(path, _)| path);
            path.rsplit('/').next().unwrap_or_default().to_owned()
        };
        let field = |line: &str, name: &str| {
            line.split_whitespace().find_map(|f| f.strip_prefix(&format!("{name}="))).unwrap_or("?").to_owned()
        };
        let seconds = |value: String| value.parse::<f64>().map_or(value, |v| format!("{v:.2}"));
        let mut steps = Vec::new();
        for line in Self::added(ns, "of-builder", self.builder).lines().filter(|l| l.contains("buildah steps")) {
            let image = field(line, "image");
            steps.push(format!(
                "of-builder {}: bud {} s, push {} s",
                function(&image),
                seconds(field(line, "bud")),
                seconds(field(line, "push"))
            ));
        }
        for line in Self::added(ns, "provider", self.provider).lines() {
            let Some(pulled) = line.split("Image for: ").nth(1) else { continue };
            let took = pulled.split("took: ").nth(1).unwrap_or("?").trim_end_matches('s').to_owned();
            let size = pulled.split("size: ").nth(1).and_then(|s| s.split(',').next()?.parse::<f64>().ok());
            let size = size.map_or_else(|| "?".to_owned(), |s| format!("{:.1}", s / 1e6));
            steps.push(format!("faasd pull {}: {} s ({size} MB)", function(pulled), seconds(took)));
        }
        if steps.is_empty() {
            "no build or pull logged".to_owned()
        } else {
            steps.join("; ")
        }
    }
}

/// The first push and a second commit: each live through faasd's gateway. Answers the repository.
fn first_and_second_push(platform: &Platform, figures: &mut String) -> PathBuf {
    let repo = testkit::local_stack::example_repo(&platform.work, "hello");
    let want = heading(&repo);
    let marks = LogMarks::now(&platform.ns);
    let began = SystemTime::now();
    let (green, live) = push_until_live(platform, &repo, "local-hello-5", &want, |output| {
        format!(
            "the first push did not end green:\n{output}\nof-builder:\n{}\nfaasd provider:\n{}",
            platform.ns.log("of-builder"),
            platform.ns.log("provider")
        )
    });
    let shown = format!("{:.1} s (ofc push green: {:.1} s)", live.as_secs_f64(), green.as_secs_f64());
    figure(figures, &format!("first push -> local-hello-5 live: {shown}"));
    let apart = taken_apart(platform, began, &head(&repo), "local-hello-5", live);
    figure(figures, &format!("first push taken apart (s after it began): {apart}"));
    figure(figures, &format!("first push's builds and pulls: {}", marks.steps(&platform.ns)));
    let (status, _) = platform.call("local-greet-5");
    assert_eq!(status, 200, "local-greet-5 answers after the first push");

    let page = repo.join("hello/index.html");
    let changed = fs::read_to_string(&page).unwrap().replacen(&format!("<h1>{want}"), "<h1>Hello again, from faasd", 1);
    fs::write(&page, changed).unwrap();
    testkit::git::commit(&repo, "again");
    let marks = LogMarks::now(&platform.ns);
    let began = SystemTime::now();
    let (green, live) = push_until_live(platform, &repo, "local-hello-5", "Hello again, from faasd", |output| {
        format!("the second push did not end green:\n{output}")
    });
    let shown = format!("{:.1} s (ofc push green: {:.1} s)", live.as_secs_f64(), green.as_secs_f64());
    figure(figures, &format!("second commit -> new content live: {shown}"));
    let apart = taken_apart(platform, began, &head(&repo), "local-hello-5", live);
    figure(figures, &format!("second commit taken apart (s after it began): {apart}"));
    figure(figures, &format!("second commit's builds and pulls: {}", marks.steps(&platform.ns)));
    repo
}

/// Pushes `repo` while `function` is asked every 100 ms (the figures' grain) for `content`: answers how long after the
/// push began `ofc push` ended green and the content first answered. A push that fails ends the test with `failed`'s
/// message; the content must answer within 60 s of the green status.
fn push_until_live(
    platform: &Platform,
    repo: &Path,
    function: &str,
    content: &str,
    failed: impl FnOnce(&str) -> String,
) -> (Duration, Duration) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let asking = scope.spawn(|| {
            // Bounded: the push's own 400 s and 60 s more, every 100 ms.
            for _ in 0..(460 * 10) {
                // At most 1 s a call: one sent to the old container once faasd has removed its network waits for
                // its connection attempt to time out, and would hide the new one answering meanwhile.
                let url = format!("{GATEWAY}function/{function}");
                let (status, body) = platform.ns.curl(&url, &["-m", "1"]);
                if status == 200 && body.contains(content) {
                    return Some(started.elapsed());
                }
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        });
        let (ok, output) = platform.ofc_push(repo);
        let green = started.elapsed();
        if !ok {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = asking.join();
            panic!("{}", failed(&output));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !asking.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let live = asking.join().expect("the asking thread");
        let last = platform.call(function);
        let live = live.unwrap_or_else(|| {
            panic!("{function} did not answer with {content:?} within 60 s of the push's green; last: {last:?}")
        });
        (green, live)
    })
}

/// A platform function replaced as an operator upgrades one (`faas-cli deploy --filter`): faasd stops the running
/// container (SIGTERM to the function's own server, not the watchdog) before it starts the new one; prints how long
/// the deploy took and checks the function answers again.
fn platform_update(platform: &Platform, figures: &mut String, checks: &mut Checks) {
    let before = platform.task("audit-event");
    let started = Instant::now();
    let mut deploy = platform.ns.command_in(&platform.work.join("deploy"), platform.work.join("bin/faas-cli"));
    deploy
        .args(["deploy", "-f", "stack.yml", "--filter", "audit-event", "-g", "http://127.0.0.1:8080"])
        .env("HOME", platform.work.join("home"));
    let (ok, output) = deploy.output().map_or_else(|e| (false, e.to_string()), |o| (o.status.success(), text(&o)));
    let elapsed = started.elapsed().as_secs_f64();
    checks.check(ok, format!("platform update: faas-cli deploy --filter audit-event failed: {output}"));
    figure(figures, &format!("a platform function (audit-event) replaced by faas-cli deploy: {elapsed:.1} s"));
    let url = format!("{GATEWAY}function/audit-event/_/health");
    let healthy = wait_until(Duration::from_secs(30), || platform.ns.answers(&url));
    checks.check(healthy, "platform update: audit-event does not answer its health check again".to_owned());
    let after = platform.task("audit-event");
    checks.check(before != after, format!("platform update: audit-event's container was not replaced: {after:?}"));
}

/// `faas-cli logs buildshiprun` shows its log lines: faasd's log reader stops at the first line journald keeps as
/// bytes (a line with colour escape codes), so this fails when the functions colour their logs.
fn function_logs(platform: &Platform, checks: &mut Checks) {
    // In the folder the guide signs in from, as the other faas-cli calls: with `CI` set (as CI runs set it),
    // faas-cli keeps its sign-in in `./.openfaas` rather than `$HOME/.openfaas`.
    let read = || {
        let mut logs = platform.ns.command_in(&platform.work.join("deploy"), "timeout");
        logs.arg("60")
            .arg(platform.work.join("bin/faas-cli"))
            .args(["logs", "buildshiprun", "--tail=false", "-g", "http://127.0.0.1:8080"])
            .env("HOME", platform.work.join("home"));
        logs.output().map_or_else(|e| e.to_string(), |o| text(&o))
    };
    let deployments = |output: &str| output.contains("deployed") && output.contains("service=local-hello-5");
    // The journal faasd reads can lag behind what the function wrote: asked again, a few times.
    let mut output = read();
    for _ in 0..10 {
        if deployments(&output) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        output = read();
    }
    let shown = deployments(&output);
    let last: Vec<&str> = output.lines().rev().take(10).collect();
    checks.check(shown, format!("faas-cli logs buildshiprun does not show its deployments; its last lines: {last:?}"));
}

/// A commit that changes no function: green, nothing built, nothing redeployed (the running containers stay).
fn unchanged_push(platform: &Platform, repo: &Path, figures: &mut String, checks: &mut Checks) {
    let before = (platform.task("local-hello-5"), platform.task("local-greet-5"));
    fs::write(repo.join("NOTES.md"), "Nothing a function is built from.\n").unwrap();
    testkit::git::commit(repo, "notes");
    let started = Instant::now();
    let (ok, output) = platform.ofc_push(repo);
    let elapsed = started.elapsed();
    assert!(ok, "the unchanged push did not end green:\n{output}");
    figure(figures, &format!("unchanged push -> green: {:.1} s", elapsed.as_secs_f64()));
    let statuses = platform.statuses("hello", &head(repo));
    for function in ["hello", "greet"] {
        let status = statuses
            .iter()
            .find(|s| s["context"] == function && s["state"] == "success")
            .unwrap_or_else(|| panic!("no success status for {function}: {statuses:?}"));
        let description = status["description"].as_str().unwrap_or_default();
        let what = format!("unchanged push: {function} was rebuilt or redeployed: {description}");
        checks.check(description.contains("unchanged"), what);
    }
    let after = (platform.task("local-hello-5"), platform.task("local-greet-5"));
    let what = format!("unchanged push: a running container was replaced (task pid, image): {before:?} -> {after:?}");
    checks.check(before == after, what);
}

/// A failing build: red, with a log link that answers with the build's log.
fn failing_build(platform: &Platform, checks: &mut Checks) {
    let broken = platform.work.join("broken");
    fs::create_dir_all(broken.join("fails")).unwrap();
    let stack = "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  fails:\n    lang: dockerfile\n    handler: \
                 ./fails\n    image: fails\n";
    fs::write(broken.join("stack.yml"), stack).unwrap();
    let dockerfile = "FROM localhost/ofc/watchdog:latest\nCOPY no-such-file /home/app/\n";
    fs::write(broken.join("fails/Dockerfile"), dockerfile).unwrap();
    testkit::git::init_repo(&broken);
    testkit::git::commit(&broken, "broken");
    let (ok, output) = platform.ofc_push(&broken);
    assert!(!ok, "a failing build ended green:\n{output}");
    let statuses = platform.statuses("broken", &head(&broken));
    let failure = statuses
        .iter()
        .find(|s| s["context"] == "fails" && s["state"] == "failure")
        .unwrap_or_else(|| panic!("no failure status for the function: {statuses:?}"));
    let red = statuses.iter().any(|s| s["context"] == "stack-deploy" && s["state"] == "failure");
    checks.check(red, format!("failing build: stack-deploy is not red: {statuses:?}"));
    let link = failure["target_url"].as_str().unwrap_or_else(|| panic!("the failure has no log link: {failure}"));
    let (status, log) = platform.ns.curl(link, &[]);
    checks.check(status == 200, format!("failing build: the log link {link} answered {status}: {log}"));
    checks
        .check(log.contains("no-such-file"), format!("failing build: the build log does not name what failed: {log}"));
}

/// The `Cookie:` header of a session as edge-auth signs it for `local`, the example's owner.
fn owner_cookie(platform: &Platform) -> String {
    let key = platform.state.secret(shared::session::PRIVATE_KEY_SECRET).unwrap();
    let signer = shared::session::SessionSigner::from_pem(&shared::config::Secret::new(key)).unwrap();
    let local = shared::session::Account { login: "local".into(), id: ofc::push::account_id("local") };
    let session = shared::session::Session {
        id: shared::session::Session::new_id(),
        user: local,
        name: None,
        orgs: Vec::new(),
        issued: chrono::Utc::now(),
        expires: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    format!("Cookie: {}={}", shared::session::COOKIE_NAME, signer.sign(&session))
}

/// The dashboard lists the function as ready, for the owner's session.
fn dashboard(platform: &Platform, checks: &mut Checks) {
    let cookie = owner_cookie(platform);
    let (status, page) = platform.ns.curl(&format!("{GATEWAY}function/dashboard/"), &["-H", &cookie]);
    checks.check(status == 200, format!("dashboard: answered {status}: {page}"));
    let row = page.split("<tr").find(|r| r.contains("local-hello-5")).unwrap_or_default();
    checks.check(
        row.contains("class=\"ok\">ready<"),
        format!("dashboard: local-hello-5 is not listed as ready: {row:?}"),
    );
}

/// The metrics function, asked with the owner's session as the dashboard asks it, counts the function's calls
/// through faasd's gateway (from the gateway's counters on its port 8082, as docs/deploy.md 9.2 sets).
fn invocation_counts(platform: &Platform, checks: &mut Checks) {
    const CALLS: u64 = 5;
    let cookie = owner_cookie(platform);
    let ask = || {
        let url = format!("{GATEWAY}function/metrics/?name=local-hello-5&window=1h");
        let (status, body) = platform.ns.curl(&url, &["-H", &cookie]);
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)))
    };
    let (status, before) = ask();
    checks.check(status == 200, format!("metrics: answered {status}: {before}"));
    for _ in 0..CALLS {
        let (status, _) = platform.call("local-hello-5");
        checks.check(status == 200, format!("metrics: a call of local-hello-5 answered {status}"));
    }
    let (status, after) = ask();
    checks.check(status == 200, format!("metrics: answered {status}: {after}"));
    let success = |answer: &Value| answer["success"].as_u64().unwrap_or(0);
    checks.check(
        success(&after) >= success(&before) + CALLS && after["source"] == "gateway",
        format!("metrics: {CALLS} calls of local-hello-5 are not counted: before {before}, after {after}"),
    );
}

/// A push to a branch of a repository that asks for previews (docs/previews.md), sent as GitHub sends it: the
/// branch's preview answers at its own name with the branch's page, and the default branch's function keeps its
/// version. Prints how long the preview took to answer; answers the preview's name once it answers.
fn preview_push(platform: &Platform, repo: &Path, figures: &mut String, checks: &mut Checks) -> Option<String> {
    let main_page = heading(repo);
    testkit::git::git(repo, &["checkout", "-q", "-b", "feature"]);
    let mut stack = fs::read_to_string(repo.join("stack.yml")).unwrap();
    stack.push_str("configuration:\n  previews: true\n");
    fs::write(repo.join("stack.yml"), stack).unwrap();
    fs::write(repo.join("hello/index.html"), "<h1>Hello from the feature branch</h1>\n").unwrap();
    let sha = testkit::git::commit(repo, "a feature");
    let bare = platform.state.repos().join("local/hello.git");
    testkit::git::git(repo, &["push", "-q", "-f", &bare.display().to_string(), "HEAD:refs/heads/feature"]);
    testkit::git::git(repo, &["checkout", "-q", "main"]);
    let event = serde_json::json!({
        "ref": "refs/heads/feature", "before": "0".repeat(40), "after": sha,
        "created": true, "deleted": false, "forced": false, "base_ref": null,
        "head_commit": {"id": sha, "message": "a feature", "timestamp": chrono::Utc::now().to_rfc3339()},
        "repository": platform.hello_repository(),
        "pusher": {"name": "local"}, "sender": platform.sender(),
        "installation": {"id": ofc::state::INSTALLATION_ID}
    });
    let started = Instant::now();
    let (status, answer) = platform.deliver("push", &event);
    assert_eq!(status, 202, "gh-push did not queue the branch's push: {answer}");
    let tag = shared::naming::preview_tag("hello", &shared::naming::PreviewOf::Branch("feature".into()));
    let preview = format!("local-hello-5-{tag}");
    let live = wait_until(Duration::from_secs(180), || {
        let (status, page) = platform.ns.curl(&format!("{GATEWAY}function/{preview}"), &["-m", "2"]);
        status == 200 && page.contains("Hello from the feature branch")
    });
    let elapsed = started.elapsed().as_secs_f64();
    let statuses = platform.statuses("hello", &sha);
    checks.check(live, format!("preview: {preview} does not answer with the branch's page; statuses {statuses:?}"));
    if live {
        figure(figures, &format!("a branch's push (previews on) -> its preview {preview} live: {elapsed:.1} s"));
    }
    let (status, page) = platform.call("local-hello-5");
    checks.check(
        status == 200 && page.contains(&main_page),
        format!("preview: the default branch's local-hello-5 no longer answers {main_page:?}: {status} {page}"),
    );
    live.then_some(preview)
}

/// The branch deleted, as GitHub tells it (a signed `delete` event): its preview's function is removed and its
/// image deleted from the registry by garbage-collect through the bridge's gate with its own account (the manifest
/// answers 404 through the loopback gate), while the default branch's image still answers 200. Prints how long the
/// removal took.
fn preview_removal(platform: &Platform, preview: &str, figures: &mut String, checks: &mut Checks) {
    let preview_image = platform.task(preview).1;
    let main_image = platform.task("local-hello-5").1;
    assert!(
        !preview_image.is_empty() && !main_image.is_empty(),
        "preview removal: the images are not known: {preview_image:?}, {main_image:?}"
    );
    checks.check(
        platform.manifest_status(&preview_image) == 200,
        format!("preview removal: {preview_image} is not in the registry before the branch's deletion"),
    );
    let event = serde_json::json!({
        "ref": "feature", "ref_type": "branch", "pusher_type": "user",
        "repository": platform.hello_repository(), "sender": platform.sender(),
        "installation": {"id": ofc::state::INSTALLATION_ID}
    });
    let bare = platform.state.repos().join("local/hello.git");
    testkit::git::git(&bare, &["update-ref", "-d", "refs/heads/feature"]);
    let started = Instant::now();
    let (status, answer) = platform.deliver("delete", &event);
    checks.check(status == 200, format!("preview removal: gh-push answered the delete event {status}: {answer}"));
    let kept = serde_json::from_str::<Value>(&answer).map(|a| a["images_kept"].clone()).unwrap_or_default();
    checks.check(kept == serde_json::json!([]), format!("preview removal: images were kept: {answer}"));
    let gone = wait_until(Duration::from_secs(60), || platform.task(preview) == (String::new(), String::new()));
    let deleted = wait_until(Duration::from_secs(30), || platform.manifest_status(&preview_image) == 404);
    let elapsed = started.elapsed().as_secs_f64();
    checks.check(gone, format!("preview removal: {preview} still runs after its branch's deletion: {answer}"));
    let last = platform.manifest_status(&preview_image);
    checks.check(deleted, format!("preview removal: {preview_image}'s manifest answers {last}, not 404: {answer}"));
    if gone && deleted {
        figure(figures, &format!("a branch's deletion -> its preview and image removed: {elapsed:.1} s"));
    }
    let kept = platform.manifest_status(&main_image);
    checks.check(kept == 200, format!("preview removal: the default branch's {main_image} answers {kept}, not 200"));
    let (status, _) = platform.call("local-hello-5");
    checks.check(status == 200, format!("preview removal: local-hello-5 answers {status} after the branch's deletion"));
}

#[test]
fn the_platform_deployed_on_faasd_as_the_deploy_guide_says_builds_and_runs_pushes() {
    let Some(openfaas) = OpenFaas::locate("faasd test") else { return };
    let mut platform = deploy(&openfaas);
    let mut figures = std::mem::take(&mut platform.figures);
    let mut checks = Checks::default();
    let repo = first_and_second_push(&platform, &mut figures);
    unchanged_push(&platform, &repo, &mut figures, &mut checks);
    platform_update(&platform, &mut figures, &mut checks);
    function_logs(&platform, &mut checks);
    failing_build(&platform, &mut checks);
    dashboard(&platform, &mut checks);
    invocation_counts(&platform, &mut checks);
    let _ = writeln!(figures, "  {}", memory(&platform));
    if let Some(preview) = preview_push(&platform, &repo, &mut figures, &mut checks) {
        preview_removal(&platform, &preview, &mut figures, &mut checks);
    }
    keep_logs(&platform);
    loud(&format!("faasd figures:\n{figures}"));
    assert!(checks.0.is_empty(), "{} check(s) failed:\n{}", checks.0.len(), checks.0.join("\n"));
}
