//! `ofc up`: the whole pipeline on one machine. The gateway, the GitHub double and the git server run in this
//! process; the registry, of-builder and every function of the repository's `stack.yml` run as child processes,
//! configured from stack.yml exactly as OpenFaaS would configure them. Ctrl-C or SIGTERM stops every child.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use shared::stack::Stack;

use crate::gateway::{Gateway, GatewayConfig};
use crate::runtime::{build_watchdog_image, BuildahStorage, FunctionRuntime, RuntimeConfig, WATCHDOG_IMAGE};
use crate::state::{Endpoints, StateDir, APP_ID, INSTALLATION_ID};
use doubles::git_server::GitServer;
use doubles::github_double::GitHubDouble;
use doubles::registry::RegistryProcess;

/// What `ofc up` is started with.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub state: PathBuf,
    pub gateway_port: u16,
    /// The repository whose stack.yml lists the functions (this repository).
    pub repository: PathBuf,
    /// Where the workspace's binaries are (next to `ofc`).
    pub binaries: PathBuf,
    /// Run deployed user functions (with Buildah's chroot isolation); off, they are only recorded.
    pub run_functions: bool,
}

/// A child process, killed (with its process group) when dropped.
struct ChildProcess {
    name: String,
    child: tokio::process::Child,
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            tracing::debug!(name = %self.name, pid, "stopping");
            // SIGTERM first, so functions drain; the kill below makes sure.
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        let _ = self.child.start_kill();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn require_tool(tool: &str, package: &str) -> anyhow::Result<()> {
    let found =
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        bail!("`{tool}` is not installed: install it with `apt-get install {package}`");
    }
    Ok(())
}

async fn wait_healthy(name: &str, address: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let http = reqwest::Client::new();
    loop {
        if let Ok(response) = http.get(format!("http://{address}{path}")).timeout(Duration::from_secs(2)).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{name} did not become healthy on {address} within {} s (see its log)", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts everything, prints where it listens, and runs until `shutdown` completes.
pub async fn up(options: UpOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    for (tool, package) in [("git", "git"), ("buildah", "buildah"), ("docker-registry", "docker-registry")] {
        require_tool(tool, package)?;
    }
    let gateway_address: SocketAddr = ([127, 0, 0, 1], options.gateway_port).into();
    let gateway_listener = tokio::net::TcpListener::bind(gateway_address).await.with_context(|| {
        format!("port {} is in use: stop what listens there or pass --gateway-port", options.gateway_port)
    })?;
    let stack = Stack::read(&options.repository)
        .with_context(|| format!("{}/stack.yml cannot be used", options.repository.display()))?;
    for name in stack.functions.keys().map(String::as_str).chain(["of-builder", "ofc-watchdog"]) {
        let binary = options.binaries.join(name);
        if !binary.is_file() {
            bail!("{} is missing: build the workspace first (`cargo build --workspace --bins`)", binary.display());
        }
    }
    let state = StateDir::new(&options.state);
    let public_key = state.prepare().context("the state folder cannot be prepared")?;
    let user = state.secret("basic-auth-user")?;
    let password = state.secret("basic-auth-password")?;

    // A restart keeps the ports it had: queued calls carry clone URLs, and deployments carry image names, that
    // name them.
    let previous = state.endpoints().ok();
    let reuse = |url: Option<&str>| -> anyhow::Result<std::net::TcpListener> {
        let port = url.and_then(|u| u.trim_end_matches('/').rsplit(':').next()).and_then(|p| p.parse::<u16>().ok());
        if let Some(listener) = port.and_then(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok()) {
            return Ok(listener);
        }
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
    };
    let registry_port = {
        let listener = reuse(previous.as_ref().map(|e| e.registry.as_str()))?;
        listener.local_addr()?.port()
    };
    let registry = RegistryProcess::start_on(
        &state.root.join("registry"),
        ([127, 0, 0, 1], registry_port).into(),
        Some(&state.logs().join("registry.log")),
    )
    .await
    .context("the registry did not start")?;

    let github = GitHubDouble::new(APP_ID, &public_key);
    github.add_installation(INSTALLATION_ID, "*");
    let into_tokio = |listener: std::net::TcpListener| -> anyhow::Result<tokio::net::TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(tokio::net::TcpListener::from_std(listener)?)
    };
    let github = github.serve(into_tokio(reuse(previous.as_ref().map(|e| e.github_api.as_str()))?)?)?;
    let git = GitServer::serve(into_tokio(reuse(previous.as_ref().map(|e| e.git.as_str()))?)?, &state.repos())?;

    // Templates start FROM the watchdog image, which no registry here can serve: it goes into the builder's storage.
    let builder_storage = BuildahStorage { root: state.root.join("buildah") };
    build_watchdog_image(&builder_storage, &options.binaries.join("ofc-watchdog"))
        .await
        .with_context(|| format!("the base image {WATCHDOG_IMAGE} could not be built"))?;
    let mut gateway_config = GatewayConfig::new(&state.root, &user, &password);
    if options.run_functions {
        let runtime = FunctionRuntime::new(RuntimeConfig {
            root: state.root.join("runtime"),
            logs: state.logs(),
            secrets: state.function_secrets(),
            insecure_registry: true,
            start_timeout: Duration::from_secs(30),
        })?;
        runtime.remove_leftovers().await;
        gateway_config.runtime = Some(std::sync::Arc::new(runtime));
    }
    let gateway = Gateway::new(gateway_config)?;
    let gateway_url = format!("http://{gateway_address}/");
    let router = gateway.router();
    tokio::spawn(async move {
        let _ = axum::serve(gateway_listener, router).await;
    });
    gateway.spawn_worker();
    gateway.start_deployed();

    let mut children = Vec::new();
    let builder_port = reuse(previous.as_ref().map(|e| e.builder.as_str()))?.local_addr()?.port();
    let builder_url = format!("http://127.0.0.1:{builder_port}/");
    let builder_env = BTreeMap::from([
        ("port".to_owned(), builder_port.to_string()),
        ("secret_mount_path".to_owned(), state.secrets().display().to_string()),
        ("builder_backend".to_owned(), "buildah".to_owned()),
        ("registry_insecure".to_owned(), "true".to_owned()),
        ("buildah_root".to_owned(), state.root.join("buildah").display().to_string()),
    ]);
    children.push(spawn(&options.binaries.join("of-builder"), "of-builder", &builder_env, &state)?);

    let overrides = BTreeMap::from([
        ("gateway_url".to_owned(), gateway_url.clone()),
        ("gateway_public_url".to_owned(), gateway_url.clone()),
        ("github_api_url".to_owned(), github.url()),
        ("builder_url".to_owned(), builder_url.clone()),
        ("repository_url".to_owned(), registry.host_port()),
        ("audit_url".to_owned(), format!("{gateway_url}function/audit-event")),
        ("report_status".to_owned(), "true".to_owned()),
        ("validate_customers".to_owned(), "false".to_owned()),
        ("github_app_id".to_owned(), APP_ID.to_owned()),
        ("secret_mount_path".to_owned(), state.secrets().display().to_string()),
    ]);
    let mut ports = Vec::new();
    for (name, function) in &stack.functions {
        let mut env =
            function.resolved_environment(name, &options.repository).map_err(|e| anyhow::anyhow!("stack.yml: {e}"))?;
        env.extend(overrides.clone());
        let port = free_port()?;
        env.insert("port".into(), port.to_string());
        children.push(spawn(&options.binaries.join(name), name, &env, &state)?);
        gateway.set_route(name, &format!("http://127.0.0.1:{port}/"));
        ports.push((name.clone(), port));
    }
    wait_healthy("of-builder", ([127, 0, 0, 1], builder_port).into(), "/healthz", Duration::from_secs(30)).await?;
    for (name, port) in &ports {
        wait_healthy(name, ([127, 0, 0, 1], *port).into(), "/_/health", Duration::from_secs(30)).await?;
    }
    let endpoints = Endpoints {
        gateway: gateway_url.clone(),
        github_api: github.url(),
        registry: registry.host_port(),
        builder: builder_url,
        git: git.url(),
    };
    state.write_endpoints(&endpoints)?;
    println!("OpenFaaS Cloud is up (state in {})", state.root.display());
    println!("  gateway      {}", endpoints.gateway);
    println!("  github api   {}", endpoints.github_api);
    println!("  git server   {}", endpoints.git);
    println!("  registry     {}", endpoints.registry);
    println!("  of-builder   {}", endpoints.builder);
    if options.run_functions {
        println!(
            "  functions    deployed functions run with `buildah run` (chroot isolation), FROM {WATCHDOG_IMAGE}; \
             their secrets are read from {}",
            state.function_secrets().display()
        );
    } else {
        println!("  functions    deployed functions are recorded, not run (--runtime none)");
    }
    for (name, port) in &ports {
        println!("  {name:<12} http://127.0.0.1:{port}/  ({gateway_url}function/{name})");
    }
    println!("logs in {}; push a repository with `ofc push PATH`; Ctrl-C stops everything", state.logs().display());
    shutdown.await;
    println!("stopping");
    gateway.stop_functions().await;
    drop(children);
    drop(registry);
    Ok(())
}

fn spawn(binary: &Path, name: &str, env: &BTreeMap<String, String>, state: &StateDir) -> anyhow::Result<ChildProcess> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(state.logs().join(format!("{name}.log")))?;
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .envs(std::env::var("log_format").ok().map(|f| ("log_format", f)))
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let child = command.spawn().with_context(|| format!("{} cannot start", binary.display()))?;
    Ok(ChildProcess { name: name.to_owned(), child })
}
