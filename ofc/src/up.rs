//! `ofc up`: the whole pipeline on one machine. The gateway, the GitHub double and the git server run in this
//! process; the registry, of-builder and every function of the repository's `stack.yml` run as child processes,
//! configured from stack.yml exactly as OpenFaaS would configure them, each restarted when it exits
//! ([`crate::supervisor`]) and killed by the kernel if `ofc` dies ([`crate::process`]). Ctrl-C or SIGTERM stops every
//! part ([`LocalStack::shutdown`]): the gateway drains, then every child gets SIGTERM and, after a bounded wait,
//! SIGKILL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use doubles::git_server::GitServer;
use doubles::github_double::{GitHubDouble, RunningDouble};
use of_builder::storage::StorageDriver;
use shared::stack::Stack;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::gateway::{Gateway, GatewayConfig};
use crate::process::free_port;
use crate::runtime::{build_watchdog_image, FunctionRuntime, RuntimeConfig, Sandbox, WATCHDOG_IMAGE};
use crate::state::{Endpoints, StateDir, APP_ID, INSTALLATION_ID};
use crate::supervisor::{ChildSpec, RestartPolicy, Supervised};

/// How long the gateway may take to finish the requests under way once it stops accepting.
const GATEWAY_DRAIN: Duration = Duration::from_secs(3);
/// How long a child may take to exit after SIGTERM before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(5);
/// How long the registry, of-builder and each function may take to answer their health check.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// What `ofc up` is started with.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub state: PathBuf,
    pub gateway_port: u16,
    /// The edge router's port on 127.0.0.1 (0: any free one).
    pub router_port: u16,
    /// The repository whose stack.yml lists the functions (this repository).
    pub repository: PathBuf,
    /// Where the workspace's binaries are (next to `ofc`).
    pub binaries: PathBuf,
    /// Run deployed user functions (with Buildah's chroot isolation); off, they are only recorded.
    pub run_functions: bool,
    /// The unprivileged user builds and deployed functions run as, sandboxed (`shared::sandbox`); `None` runs
    /// them as root (`--sandbox none`).
    pub sandbox_user: Option<String>,
    /// A real OpenFaaS gateway in front, whose provider the embedded gateway is; `None`: the embedded gateway is
    /// the functions' gateway.
    pub front_gateway: Option<FrontGateway>,
}

/// A real OpenFaaS gateway fronting the stack (`--gateway-url`, `--gateway-public-url`): the functions call it, and
/// it calls the embedded gateway as its provider.
#[derive(Debug, Clone)]
pub struct FrontGateway {
    /// Where the functions call it (`gateway_url`, and `audit_url` under it); ends in `/`.
    pub url: String,
    /// Its public address (`gateway_public_url`); ends in `/`.
    pub public_url: String,
}

/// The running stack, until [`LocalStack::shutdown`].
pub struct LocalStack {
    state: StateDir,
    endpoints: Endpoints,
    run_functions: bool,
    front_gateway: Option<FrontGateway>,
    gateway: Gateway,
    /// Tells the gateway's server to stop accepting and drain.
    gateway_stop: oneshot::Sender<()>,
    gateway_server: JoinHandle<()>,
    /// Replays the async queue; aborted at shutdown (what it had not finished stays on disk).
    worker: JoinHandle<()>,
    /// of-builder and the stack's functions, each restarted when it exits.
    children: Vec<Supervised>,
    /// Stopped after the others, which push to it.
    registry: Supervised,
    /// The registry's gate, served in this process (see the `registry_gate` crate); aborted last.
    registry_gate: JoinHandle<()>,
    /// Served in this process until dropped.
    _github: RunningDouble,
    _git: GitServer,
}

/// The state folder, ready, and what an earlier run left.
struct Prepared {
    state: StateDir,
    public_key: String,
    user: String,
    password: String,
    /// Where the parts listened last time: a restart keeps the ports, because queued calls carry clone URLs, and
    /// deployments carry image names, that name them.
    previous: Option<Endpoints>,
}

fn require_tool(tool: &str, package: &str) -> anyhow::Result<()> {
    let found =
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        bail!("`{tool}` is not installed: install it with `apt-get install {package}`");
    }
    Ok(())
}

/// The port of `url` (as kept in endpoints.json) when it is free again, otherwise any free port.
fn reuse(url: Option<&str>) -> anyhow::Result<std::net::TcpListener> {
    let port = url.and_then(|u| u.trim_end_matches('/').rsplit(':').next()).and_then(|p| p.parse::<u16>().ok());
    if let Some(listener) = port.and_then(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok()) {
        return Ok(listener);
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
}

fn into_tokio(listener: std::net::TcpListener) -> anyhow::Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(listener)?)
}

/// Starts everything, prints where it listens, and runs until `shutdown` completes.
pub async fn up(options: UpOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let stack = LocalStack::start(&options).await?;
    stack.print_summary();
    shutdown.await;
    println!("stopping");
    stack.shutdown().await;
    Ok(())
}

/// What `--sandbox none` gives up, said at every start: builds keep the host's network, so pushed code in a `RUN`
/// step reaches every part listening on loopback (functions keep their own network namespace).
pub const SANDBOX_NONE_WARNING: &str = "ofc: warning: --sandbox none: builds run as root with the host's network: \
     a pushed Dockerfile's RUN steps reach every part of this stack on loopback (of-builder, the registry's gate, \
     the gateway's /system API, the GitHub double); run only code you trust (functions still get a network of \
     their own)";

impl LocalStack {
    /// Starts every part, in order, and waits until of-builder and the functions answer.
    pub async fn start(options: &UpOptions) -> anyhow::Result<Self> {
        let stack = check_prerequisites(options)?;
        let user = crate::sandbox::build_user(options.sandbox_user.as_deref())?;
        if options.sandbox_user.is_none() {
            eprintln!("{SANDBOX_NONE_WARNING}");
        }
        let gateway_address: SocketAddr = ([127, 0, 0, 1], options.gateway_port).into();
        let gateway_listener = tokio::net::TcpListener::bind(gateway_address).await.with_context(|| {
            format!("port {} is in use: stop what listens there or pass --gateway-port", options.gateway_port)
        })?;
        let router_listener = std::net::TcpListener::bind(("127.0.0.1", options.router_port)).with_context(|| {
            format!("port {} is in use: stop what listens there or pass --router-port", options.router_port)
        })?;
        let prepared = prepare_state(&options.state)?;
        let sandbox = user.map(|u| crate::sandbox::prepare(&prepared.state, u)).transpose()?;
        let (registry, registry_gate, scoped_secrets) = start_registry(&prepared)?;
        registry.wait_healthy(HEALTHY_WITHIN).await.context("the registry did not start")?;
        let (github, git) = start_doubles(&prepared)?;
        // git-tar's template store: the local templates, on the git server (`custom_templates` below).
        let templates =
            crate::templates::publish(&prepared.state.repos()).context("the templates cannot be published")?;
        tracing::info!(commit = %templates, "local templates published");
        let gateway_url = format!("http://{gateway_address}/");
        let driver = crate::sandbox::choose_builder_driver(&prepared.state, sandbox.as_ref()).await?.driver;
        let (gateway, gateway_stop, gateway_server) =
            start_gateway(options, &prepared, sandbox.as_ref(), driver, gateway_listener).await?;
        let builder = start_builder(options, &prepared, sandbox.as_ref(), driver)?;
        let router_port = router_listener.local_addr()?.port();
        let endpoints = Endpoints {
            gateway: gateway_url,
            github_api: github.url(),
            registry: format!("127.0.0.1:{}", registry.port()),
            builder: format!("http://127.0.0.1:{}/", builder.port()),
            git: git.url(),
            router: format!("http://localhost:{router_port}/"),
        };
        drop(router_listener);
        let router = start_router(options, &prepared.state, &endpoints, router_port)?;
        let mut children = vec![builder, router];
        children.extend(start_functions(options, &stack, &prepared.state, &endpoints, &gateway, &scoped_secrets)?);
        wait_ready(&children).await?;
        // Only now: a call queued by an earlier run replayed before its function answers would use up a try.
        let worker = gateway.spawn_worker();
        prepared.state.write_endpoints(&endpoints)?;
        Ok(Self {
            state: prepared.state,
            endpoints,
            run_functions: options.run_functions,
            front_gateway: options.front_gateway.clone(),
            gateway,
            gateway_stop,
            gateway_server,
            worker,
            children,
            registry,
            registry_gate,
            _github: github,
            _git: git,
        })
    }

    /// Where every part listens, and how to use the stack.
    pub fn print_summary(&self) {
        let endpoints = &self.endpoints;
        println!("OpenFaaS Cloud is up (state in {})", self.state.root.display());
        println!("  gateway      {}", endpoints.gateway);
        if let Some(front) = &self.front_gateway {
            println!(
                "  functions    call the gateway at {} (public {}), whose provider this is",
                front.url, front.public_url
            );
        }
        println!("  github api   {}", endpoints.github_api);
        println!("  git server   {}", endpoints.git);
        println!("  registry     {}", endpoints.registry);
        println!("  of-builder   {}", endpoints.builder);
        let edge = Edge::new(endpoints);
        println!("  dashboard    {}  (sign in through the GitHub double)", edge.dashboard_url);
        println!("  functions at {}  (e.g. http://alice.localhost:{}/hello)", edge.pretty_url, edge.port);
        if self.run_functions {
            println!(
                "  functions    deployed functions run with `buildah run` (chroot isolation), FROM {WATCHDOG_IMAGE}; \
                 their secrets are read from {}",
                self.state.function_secrets().display()
            );
        } else {
            println!("  functions    deployed functions are recorded, not run (--runtime none)");
        }
        for child in self.children.iter().filter(|c| c.name() != "of-builder") {
            let (name, port) = (child.name(), child.port());
            println!("  {name:<12} http://127.0.0.1:{port}/  ({}function/{name})", endpoints.gateway);
        }
        println!(
            "logs in {}; push a repository with `ofc push PATH`; Ctrl-C stops everything",
            self.state.logs().display()
        );
    }

    /// Stops accepting calls and drains the gateway (bounded), stops the queue worker and the replicas, then each
    /// child: SIGTERM, a bounded wait, SIGKILL.
    pub async fn shutdown(mut self) {
        let _ = self.gateway_stop.send(());
        if tokio::time::timeout(GATEWAY_DRAIN, &mut self.gateway_server).await.is_err() {
            tracing::warn!(seconds = GATEWAY_DRAIN.as_secs(), "the gateway did not drain in time");
            self.gateway_server.abort();
        }
        self.worker.abort();
        let _ = self.worker.await;
        self.gateway.stop_functions().await;
        let stops = self.children.into_iter().map(|child| child.stop(CHILD_GRACE));
        futures_util::future::join_all(stops).await;
        self.registry.stop(CHILD_GRACE).await;
        self.registry_gate.abort();
    }
}

/// The tools, stack.yml and the workspace's binaries that `ofc up` needs; the stack.
fn check_prerequisites(options: &UpOptions) -> anyhow::Result<Stack> {
    let tools =
        [("git", "git"), ("buildah", "buildah"), ("docker-registry", "docker-registry"), ("setpriv", "util-linux")];
    for (tool, package) in tools {
        require_tool(tool, package)?;
    }
    let stack = Stack::read(&options.repository)
        .with_context(|| format!("{}/stack.yml cannot be used", options.repository.display()))?;
    for name in stack.functions.keys().map(String::as_str).chain(["of-builder", "ofc-watchdog", "edge-router"]) {
        let binary = options.binaries.join(name);
        if !binary.is_file() {
            bail!("{} is missing: build the workspace first (`cargo build --workspace --bins`)", binary.display());
        }
    }
    Ok(stack)
}

fn prepare_state(root: &Path) -> anyhow::Result<Prepared> {
    let state = StateDir::new(root);
    let public_key = state.prepare().context("the state folder cannot be prepared")?;
    let user = state.secret("basic-auth-user")?;
    let password = state.secret("basic-auth-password")?;
    let previous = state.endpoints().ok();
    Ok(Prepared { state, public_key, user, password, previous })
}

/// The registry: `docker-registry` on a unix socket in the state folder (no tenant can open it), behind the gate
/// on the port it had last time when that is free (deployments name it in their images). Reads are open; pushes need
/// of-builder's account, made afresh each start and handed only to of-builder ([`builder_secrets`]); deletes need
/// the operator's, whose password only the state folder holds ([`operator_password`]), or, for a preview's
/// manifests only, the collector's: made afresh each start too and answered as the scoped secret
/// `registry-collector-auth`, which only the functions that list it (garbage-collect) are given.
fn start_registry(prepared: &Prepared) -> anyhow::Result<(Supervised, JoinHandle<()>, ScopedSecrets)> {
    use registry_gate::{Account, GateAccounts};
    let listener = into_tokio(reuse(prepared.previous.as_ref().map(|e| e.registry.as_str()))?)?;
    let port = listener.local_addr()?.port();
    let storage = prepared.state.root.join("registry");
    let socket = storage.join("registry.sock");
    let builder = Account { user: BUILDER_ACCOUNT.to_owned(), password: random_password() };
    builder_secrets(&prepared.state, &format!("127.0.0.1:{port}"), &builder)?;
    let operator = Account { user: OPERATOR_ACCOUNT.to_owned(), password: operator_password(&prepared.state)? };
    let collector = Account { user: COLLECTOR_ACCOUNT.to_owned(), password: random_password() };
    let scoped =
        BTreeMap::from([(COLLECTOR_SECRET.to_owned(), registry_auth_file(&format!("127.0.0.1:{port}"), &collector))]);
    let accounts = GateAccounts { builder, operator, collector: Some(collector) };
    let gate_socket = socket.clone();
    let gate = tokio::spawn(async move {
        let upstream = registry_gate::Upstream::Socket(gate_socket);
        if let Err(error) = registry_gate::serve(listener, upstream, accounts, std::future::pending()).await {
            tracing::error!(%error, "the registry gate stopped");
        }
    });
    let log = prepared.state.logs().join("registry.log");
    let command = move || {
        let mut command = crate::process::command("docker-registry");
        doubles::registry::serve_command_on_socket(&mut command, &storage, &socket)?;
        command.stderr(append(&log)?);
        Ok(command)
    };
    // Healthy once the registry answers through the gate.
    let spec = ChildSpec { name: "registry".into(), port, health: "/healthz", command: Box::new(command) };
    match Supervised::start(spec, RestartPolicy::default()) {
        Ok(registry) => Ok((registry, gate, scoped)),
        Err(error) => {
            gate.abort();
            Err(error).context("the registry cannot start")
        }
    }
}

/// The registry account of-builder pushes with.
const BUILDER_ACCOUNT: &str = "of-builder";
/// The registry account that may delete: the operator's, given to no part of the stack.
const OPERATOR_ACCOUNT: &str = "operator";
/// The registry account that may delete a preview's manifests only: garbage-collect's.
const COLLECTOR_ACCOUNT: &str = "garbage-collect";
/// The secret garbage-collect reads the collector's account from.
const COLLECTOR_SECRET: &str = "registry-collector-auth";

/// Secrets that are not in the functions' shared folder, by name: a function listing one in stack.yml gets a folder
/// of its own holding exactly the secrets it lists ([`own_secret_folder`]), as OpenFaaS mounts only those.
type ScopedSecrets = BTreeMap<String, String>;

/// A Docker `config.json` with `account` for `registry`: how every registry account is handed out.
fn registry_auth_file(registry: &str, account: &registry_gate::Account) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", account.user, account.password));
    serde_json::json!({ "auths": { registry: { "auth": auth } } }).to_string()
}

/// The operator's registry password, made once and kept in the state folder (`registry-operator-password`).
fn operator_password(state: &StateDir) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state.registry_operator_password();
    if let Ok(password) = std::fs::read_to_string(&path) {
        if !password.trim().is_empty() {
            return Ok(password.trim().to_owned());
        }
    }
    let password = random_password();
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    std::io::Write::write_all(&mut file, password.as_bytes())?;
    Ok(password)
}

fn random_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
}

/// of-builder's own secret folder: the payload secret and `registry-auth` (its registry account for `registry`).
/// The functions' folder does not hold it, so no function can push to or delete from the registry.
fn builder_secrets(state: &StateDir, registry: &str, builder: &registry_gate::Account) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let folder = state.builder_secrets();
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder)?;
    let file = registry_auth_file(registry, builder);
    let payload = state.secret("payload-secret")?;
    for (name, value) in [("registry-auth", file), ("payload-secret", payload)] {
        let path = folder.join(name);
        let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut out, value.as_bytes())?;
    }
    Ok(())
}

/// The GitHub API double (knowing the App and its one installation) and the git server, in this process.
fn start_doubles(prepared: &Prepared) -> anyhow::Result<(RunningDouble, GitServer)> {
    let github = GitHubDouble::new(APP_ID, &prepared.public_key);
    github.add_installation(INSTALLATION_ID, "*");
    github.keep_accounts_in(&prepared.state.github_accounts())?;
    // edge-auth signs users in through the double's OAuth pages as this OAuth App.
    github.add_oauth_app(Edge::CLIENT_ID, &prepared.state.secret("of-client-secret")?);
    let previous = prepared.previous.as_ref();
    let github = github.serve(into_tokio(reuse(previous.map(|e| e.github_api.as_str()))?)?)?;
    let git = GitServer::serve(into_tokio(reuse(previous.map(|e| e.git.as_str()))?)?, &prepared.state.repos())?;
    Ok((github, git))
}

/// The base image templates start FROM (into the builder's storage for `driver`: no registry here can serve it),
/// then the gateway with the recorded deployments (its queue worker starts once the functions answer).
async fn start_gateway(
    options: &UpOptions,
    prepared: &Prepared,
    sandbox: Option<&Sandbox>,
    driver: StorageDriver,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<(Gateway, oneshot::Sender<()>, JoinHandle<()>)> {
    let state = &prepared.state;
    let builder_storage = crate::sandbox::builder_storage_on(state, sandbox, driver)?;
    build_watchdog_image(&builder_storage, &options.binaries.join("ofc-watchdog"))
        .await
        .with_context(|| format!("the base image {WATCHDOG_IMAGE} could not be built"))?;
    let mut config = GatewayConfig::new(&state.root, &prepared.user, &prepared.password);
    config.secrets_dir = state.function_secrets();
    config.behind_gateway = options.front_gateway.is_some();
    config.payload_secret = Some(shared::config::Secret::new(state.secret("payload-secret")?));
    if options.run_functions {
        let runtime = FunctionRuntime::new(RuntimeConfig {
            root: crate::sandbox::runtime_root(state, sandbox),
            logs: state.logs(),
            secrets: state.function_secrets(),
            insecure_registry: true,
            start_timeout: Duration::from_secs(30),
            sandbox: sandbox.cloned(),
        })?;
        runtime.set_gateway(&format!("http://{}/", listener.local_addr()?));
        runtime.remove_leftovers().await;
        config.runtime = Some(std::sync::Arc::new(runtime));
    }
    let gateway = Gateway::new(config)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = gateway.clone();
    let server = tokio::spawn(async move {
        let serving = serving.serve(listener, async {
            let _ = stopped.await;
        });
        if let Err(error) = serving.await {
            tracing::error!(%error, "the gateway stopped");
        }
    });
    gateway.start_deployed();
    Ok((gateway, stop, server))
}

/// of-builder, on the port it had last time when that is free, on the storage driver chosen at start (named, not
/// `auto`: its base image is in that driver's storage only).
fn start_builder(
    options: &UpOptions,
    prepared: &Prepared,
    sandbox: Option<&Sandbox>,
    driver: StorageDriver,
) -> anyhow::Result<Supervised> {
    let state = &prepared.state;
    let port = reuse(prepared.previous.as_ref().map(|e| e.builder.as_str()))?.local_addr()?.port();
    let mut env = BTreeMap::from([
        ("port".to_owned(), port.to_string()),
        ("secret_mount_path".to_owned(), state.builder_secrets().display().to_string()),
        ("builder_backend".to_owned(), "buildah".to_owned()),
        ("registry_insecure".to_owned(), "true".to_owned()),
        ("buildah_root".to_owned(), crate::sandbox::builder_root(state, sandbox).display().to_string()),
        ("buildah_storage_driver".to_owned(), driver.name().to_owned()),
    ]);
    if let Some(sandbox) = sandbox {
        env.insert("build_user".to_owned(), sandbox.user.name.clone());
    }
    supervise(&options.binaries.join("of-builder"), "of-builder", port, env, state)
}

/// The edge router (pretty URLs, the dashboard's and the login's hosts) in front of the gateway, on the port
/// bound at start. Browsers resolve `*.localhost` to loopback, so `http://alice.localhost:PORT/hello` works as is.
fn start_router(options: &UpOptions, state: &StateDir, endpoints: &Endpoints, port: u16) -> anyhow::Result<Supervised> {
    let env = BTreeMap::from([
        ("domain".to_owned(), Edge::DOMAIN.to_owned()),
        ("upstream_url".to_owned(), endpoints.gateway.clone()),
        ("port".to_owned(), port.to_string()),
        // A followed runtime log streams for as long as the page is open.
        ("write_timeout".to_owned(), "0".to_owned()),
        ("exec_timeout".to_owned(), "0".to_owned()),
    ]);
    supervise(&options.binaries.join("edge-router"), "edge-router", port, env, state)
}

/// The local stack's public addresses, all on the router's port of `localhost`.
struct Edge {
    port: u16,
    dashboard_url: String,
    auth_url: String,
    pretty_url: String,
}

impl Edge {
    const DOMAIN: &'static str = "localhost";
    /// The OAuth App `ofc up` registers with the GitHub double for edge-auth.
    const CLIENT_ID: &'static str = "ofc-local";

    fn new(endpoints: &Endpoints) -> Self {
        let port = endpoints.router.trim_end_matches('/').rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let domain = Self::DOMAIN;
        Self {
            port,
            dashboard_url: format!("http://system.{domain}:{port}/dashboard/"),
            auth_url: format!("http://auth.system.{domain}:{port}/"),
            pretty_url: format!("http://user.{domain}:{port}/function"),
        }
    }

    /// What edge-auth, the dashboard and the status links need to know about the public addresses.
    fn function_env(&self, github_double: &str) -> [(String, String); 6] {
        [
            ("auth_url".to_owned(), self.auth_url.clone()),
            ("dashboard_url".to_owned(), self.dashboard_url.clone()),
            ("cookie_root_domain".to_owned(), format!("system.{}", Self::DOMAIN)),
            ("gateway_pretty_url".to_owned(), self.pretty_url.clone()),
            ("oauth_provider_base_url".to_owned(), github_double.to_owned()),
            ("client_id".to_owned(), Self::CLIENT_ID.to_owned()),
        ]
    }
}

/// Every function of stack.yml, configured as stack.yml says and pointed at the local parts, routed by the gateway.
fn start_functions(
    options: &UpOptions,
    stack: &Stack,
    state: &StateDir,
    endpoints: &Endpoints,
    gateway: &Gateway,
    scoped: &ScopedSecrets,
) -> anyhow::Result<Vec<Supervised>> {
    let (gateway_url, gateway_public_url) = match &options.front_gateway {
        Some(front) => (&front.url, &front.public_url),
        None => (&endpoints.gateway, &endpoints.gateway),
    };
    let overrides = BTreeMap::from([
        ("gateway_url".to_owned(), gateway_url.clone()),
        ("gateway_public_url".to_owned(), gateway_public_url.clone()),
        ("github_api_url".to_owned(), endpoints.github_api.clone()),
        ("builder_url".to_owned(), endpoints.builder.clone()),
        ("repository_url".to_owned(), endpoints.registry.clone()),
        ("audit_url".to_owned(), format!("{gateway_url}function/audit-event")),
        ("report_status".to_owned(), "true".to_owned()),
        ("validate_customers".to_owned(), "false".to_owned()),
        // The local stack builds the examples' `lang: dockerfile` functions (the deployed stack.yml does not).
        ("enable_dockerfile_lang".to_owned(), "true".to_owned()),
        ("github_app_id".to_owned(), APP_ID.to_owned()),
        ("secret_mount_path".to_owned(), state.secrets().display().to_string()),
        // Build logs live in the state folder, where `ofc logs` and pipeline-log find them.
        ("log_store_path".to_owned(), state.logs().join("builds").display().to_string()),
        // git-tar's template store: the local templates `ofc up` publishes on the git server, cached in the state.
        ("custom_templates".to_owned(), custom_templates(endpoints)),
        ("templates_cache_path".to_owned(), state.root.join("templates").display().to_string()),
    ]);
    let mut children = Vec::new();
    for (name, function) in &stack.functions {
        let mut env =
            function.resolved_environment(name, &options.repository).map_err(|e| anyhow::anyhow!("stack.yml: {e}"))?;
        env.extend(overrides.clone());
        env.extend(Edge::new(endpoints).function_env(&endpoints.github_api));
        if function.secrets.iter().any(|secret| scoped.contains_key(secret)) {
            let folder = own_secret_folder(state, name, &function.secrets, scoped)?;
            env.insert("secret_mount_path".into(), folder.display().to_string());
        }
        let port = free_port()?;
        env.insert("port".into(), port.to_string());
        children.push(supervise(&options.binaries.join(name), name, port, env, state)?);
        gateway.set_route(name, &format!("http://127.0.0.1:{port}/"));
    }
    Ok(children)
}

/// `function`'s own secret folder (`platform-secrets/<function>/`, written afresh each start): each secret
/// it lists, from `scoped` or else the functions' shared folder. A listed secret found in neither is left out, as
/// in the shared folder.
fn own_secret_folder(
    state: &StateDir,
    function: &str,
    secrets: &[String],
    scoped: &ScopedSecrets,
) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let folder = state.own_secrets(function);
    if folder.exists() {
        std::fs::remove_dir_all(&folder)?;
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder)?;
    for name in secrets {
        let value = match scoped.get(name) {
            Some(value) => value.clone(),
            None => match state.secret(name) {
                Ok(value) => value,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error).with_context(|| format!("the secret {name} cannot be read")),
            },
        };
        let mut out =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(folder.join(name))?;
        std::io::Write::write_all(&mut out, value.as_bytes())?;
    }
    Ok(folder)
}

/// git-tar's `custom_templates`: the local templates first, then the repositories `ofc up` was given in its own
/// `custom_templates` variable (e.g. the official ones, on a machine that can reach them).
fn custom_templates(endpoints: &Endpoints) -> String {
    let local = format!("{}{}", endpoints.git, crate::templates::REPOSITORY);
    match std::env::var("custom_templates").ok().filter(|more| !more.trim().is_empty()) {
        Some(more) => format!("{local} {more}"),
        None => local,
    }
}

/// Waits until of-builder and every function answer their health check.
async fn wait_ready(children: &[Supervised]) -> anyhow::Result<()> {
    for child in children {
        child.wait_healthy(HEALTHY_WITHIN).await?;
    }
    Ok(())
}

/// `path` opened for appending (a child's log, kept across its restarts).
fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// Starts `binary` with only `env` (and PATH, RUST_LOG, log_format), logging to `logs/NAME.log`, and keeps it
/// running on `port`.
fn supervise(
    binary: &Path,
    name: &str,
    port: u16,
    env: BTreeMap<String, String>,
    state: &StateDir,
) -> anyhow::Result<Supervised> {
    let log = state.logs().join(format!("{name}.log"));
    let program = binary.to_owned();
    let command = move || {
        let log = append(&log)?;
        let mut command = crate::process::command(&program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(std::env::var("log_format").ok().map(|f| ("log_format", f)))
            // Loopback only: every function (shared::server) and ofc-watchdog read `bind_address`.
            .env("bind_address", "127.0.0.1")
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        Ok(command)
    };
    let health = if name == "of-builder" { "/healthz" } else { "/_/health" };
    let spec = ChildSpec { name: name.to_owned(), port, health, command: Box::new(command) };
    Supervised::start(spec, RestartPolicy::default()).with_context(|| format!("{} cannot start", binary.display()))
}
