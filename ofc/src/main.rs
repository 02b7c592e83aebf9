//! `ofc`: runs the whole OpenFaaS Cloud pipeline on one machine (`ofc up`) and pushes local repositories to it
//! (`ofc push`), with no OpenFaaS cluster and no GitHub account.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use ofc::logs::LogsOptions;
use ofc::push::{PushOptions, DEFAULT_OWNER};
use ofc::up::{FrontGateway, UpOptions};

/// OpenFaaS Cloud on one machine.
#[derive(Debug, Parser)]
#[command(name = "ofc")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the gateway, every function of DIR/stack.yml (default: this repository), of-builder, the registry,
    /// the GitHub API double and the git server; Ctrl-C stops them all. Deployed functions run with `buildah run`
    /// (chroot isolation) unless --runtime none.
    Up {
        /// The state folder.
        #[arg(long, value_name = "DIR", default_value = ".ofc")]
        state: PathBuf,
        /// The gateway's port on 127.0.0.1.
        #[arg(long, value_name = "N", default_value_t = 8080)]
        gateway_port: u16,
        /// The edge router's port on loopback: pretty URLs at http://<owner>.localhost:N/<function>, the dashboard
        /// at http://system.localhost:N/dashboard/; 0 picks a free port (endpoints.json names it).
        #[arg(long, value_name = "N", default_value_t = 8081)]
        router_port: u16,
        /// The repository whose stack.yml lists the functions.
        #[arg(long, value_name = "DIR")]
        stack: Option<PathBuf>,
        /// How deployed user functions run.
        #[arg(long, value_enum, default_value_t = Runtime::Buildah)]
        runtime: Runtime,
        /// The unprivileged user pushed code (builds and deployed functions) runs as, each in its own PID namespace
        /// with a minimal /dev; `none` runs it as root, for machines without that user, and builds then keep the
        /// host's network (a warning says so at start).
        #[arg(long, value_name = "USER|none", default_value = "ofcbuild")]
        sandbox: String,
        /// The OpenFaaS gateway the functions call (and send audit events to) when a real one fronts this stack
        /// with the embedded gateway as its provider (`functions_provider_url`); the embedded gateway then answers
        /// `/system/info` as a faas-provider. Default: the embedded gateway.
        #[arg(long, value_name = "URL")]
        gateway_url: Option<String>,
        /// The gateway's public address, which the functions put in links (default: --gateway-url).
        #[arg(long, value_name = "URL", requires = "gateway_url")]
        gateway_public_url: Option<String>,
    },
    /// Send the push webhook for the git repository at PATH and follow its commit statuses.
    Push {
        /// The git repository to push.
        path: PathBuf,
        /// The branch to push (default: the checked-out one).
        #[arg(long, value_name = "B")]
        branch: Option<String>,
        /// The GitHub owner the repository is pushed as.
        #[arg(long, value_name = "O", default_value = DEFAULT_OWNER)]
        owner: String,
        /// The state folder of the running stack.
        #[arg(long, value_name = "DIR", default_value = ".ofc")]
        state: PathBuf,
        /// How long to follow the statuses.
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        timeout: u64,
    },
    /// Print the stored build logs of OWNER/REPO's newest push (or of --sha), every function under a header with
    /// its outcome and duration, or FUNCTION's alone.
    Logs {
        /// The pushed repository, as OWNER/REPO (`local/hello` for `ofc push /tmp/hello`).
        #[arg(value_name = "OWNER/REPO")]
        target: String,
        /// One function of the repository's stack.yml.
        function: Option<String>,
        /// The commit (a full SHA or a prefix of at least 7 digits); default: the newest push.
        #[arg(long, value_name = "SHA")]
        sha: Option<String>,
        /// The state folder of the stack.
        #[arg(long, value_name = "DIR", default_value = ".ofc")]
        state: PathBuf,
    },
    /// Manage the secrets user functions mount (what `faas-cli secret create` does on OpenFaaS).
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
}

#[derive(Debug, Subcommand)]
enum SecretAction {
    /// Store stdin (never echoed) as owner O's secret NAME: the file `<O's account id>--<NAME>` that a function of
    /// O whose stack.yml says `secrets: [NAME]` mounts.
    Set {
        name: String,
        /// The GitHub owner the secret belongs to (as `ofc push --owner`).
        #[arg(long, value_name = "O", default_value = DEFAULT_OWNER)]
        owner: String,
        /// The state folder of the stack.
        #[arg(long, value_name = "DIR", default_value = ".ofc")]
        state: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Runtime {
    /// `buildah run`, with chroot isolation.
    Buildah,
    /// Deployments are recorded, not run.
    None,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            let _ = Cli::command().print_help();
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Up {
            state,
            gateway_port,
            router_port,
            stack,
            runtime,
            sandbox,
            gateway_url,
            gateway_public_url,
        }) => {
            let sandbox_user = (sandbox != "none").then_some(sandbox);
            let ports = Ports { gateway: gateway_port, router: router_port };
            match front_gateway(gateway_url, gateway_public_url) {
                Ok(front) => up(state, ports, stack, runtime, sandbox_user, front).await,
                Err(error) => Err(error),
            }
        }
        Some(Command::Push { path, branch, owner, state, timeout }) => {
            let timeout = Duration::from_secs(timeout);
            push(PushOptions { path, branch, owner, state, timeout }).await
        }
        Some(Command::Logs { target, function, sha, state }) => {
            logs(LogsOptions { target, function, sha, state }).await
        }
        Some(Command::Secret { action: SecretAction::Set { name, owner, state } }) => secret_set(&name, &owner, &state),
    };
    result.unwrap_or_else(|error| {
        eprintln!("ofc: {error:#}");
        ExitCode::FAILURE
    })
}

/// The ports `ofc up` is asked to listen on.
struct Ports {
    gateway: u16,
    router: u16,
}

/// `--gateway-url` and `--gateway-public-url`, checked: absolute http(s) URLs, each ending in `/`.
fn front_gateway(url: Option<String>, public_url: Option<String>) -> anyhow::Result<Option<FrontGateway>> {
    let Some(url) = url else { return Ok(None) };
    let url = base_url(&url, "--gateway-url")?;
    let public_url = public_url.map(|u| base_url(&u, "--gateway-public-url")).transpose()?;
    Ok(Some(FrontGateway { public_url: public_url.unwrap_or_else(|| url.clone()), url }))
}

fn base_url(value: &str, flag: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(value).with_context(|| format!("{flag} is not a URL"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some(),
        "{flag} must be an http:// or https:// URL with a host"
    );
    anyhow::ensure!(parsed.query().is_none() && parsed.fragment().is_none(), "{flag} must have no query or fragment");
    let text = parsed.to_string();
    Ok(if text.ends_with('/') { text } else { format!("{text}/") })
}

async fn up(
    state: PathBuf,
    ports: Ports,
    stack: Option<PathBuf>,
    runtime: Runtime,
    sandbox_user: Option<String>,
    front_gateway: Option<FrontGateway>,
) -> anyhow::Result<ExitCode> {
    let repository = stack.unwrap_or_else(|| {
        if PathBuf::from("stack.yml").is_file() {
            PathBuf::from(".")
        } else {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        }
    });
    let binaries = std::env::current_exe()?.parent().context("ofc has a folder")?.to_owned();
    shared::server::init_tracing();
    let run_functions = runtime == Runtime::Buildah;
    let options = UpOptions {
        state,
        gateway_port: ports.gateway,
        router_port: ports.router,
        repository,
        binaries,
        run_functions,
        sandbox_user,
        front_gateway,
    };
    ofc::up::up(options, shared::server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn push(options: PushOptions) -> anyhow::Result<ExitCode> {
    if ofc::push::push(&options).await? {
        println!("stack-deploy succeeded");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("stack-deploy failed (see the statuses above)");
        Ok(ExitCode::FAILURE)
    }
}

/// Exits 0 whenever the logs were printed, failed builds' included: it reports, it does not judge.
async fn logs(options: LogsOptions) -> anyhow::Result<ExitCode> {
    ofc::logs::logs(&options).await?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the secret the way buildshiprun binds it (`<account id>--<name>`, the id `ofc push` gives the owner),
/// readable by its owner only.
fn secret_set(name: &str, owner: &str, state: &std::path::Path) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    anyhow::ensure!(shared::naming::is_github_login(owner), "`{owner}` is not a GitHub login");
    let state_dir = ofc::state::StateDir::new(state);
    let bound = shared::naming::owner_secret_name(state_dir.account_id(owner)?, name)?;
    anyhow::ensure!(shared::naming::is_valid_secret_name(&bound), "`{bound}` is not a valid secret name");
    let mut value = Vec::new();
    std::io::stdin().read_to_end(&mut value).context("reading the secret from stdin")?;
    let trimmed = value.strip_suffix(b"\n").unwrap_or(&value);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    let dir = state_dir.function_secrets();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(&bound);
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&path)?;
    std::io::Write::write_all(&mut file, trimmed)?;
    println!("secret {bound} set ({} bytes) in {}", trimmed.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}
