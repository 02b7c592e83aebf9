//! `ofc`: runs the whole OpenFaaS Cloud pipeline on one machine (`ofc up`) and pushes local repositories to it
//! (`ofc push`), with no OpenFaaS cluster and no GitHub account.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ofc::push::{PushOptions, DEFAULT_OWNER};
use ofc::up::UpOptions;

const USAGE: &str = "\
ofc: OpenFaaS Cloud on one machine

USAGE:
    ofc up   [--state DIR] [--gateway-port N] [--stack DIR] [--runtime buildah|none]
        start the gateway, every function of DIR/stack.yml (default: this repository), of-builder,
        the registry, the GitHub API double and the git server; Ctrl-C stops them all.
        Deployed functions run with `buildah run` (chroot isolation) unless --runtime none
    ofc push PATH [--branch B] [--owner O] [--state DIR] [--timeout SECONDS]
        send the push webhook for the git repository at PATH and follow its commit statuses
";

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> anyhow::Result<String> {
    args.next().with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ofc: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let mut state = PathBuf::from(".ofc");
    match command.as_deref() {
        None | Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some("up") => {
            let mut gateway_port = 8080;
            let mut repository = None;
            let mut run_functions = true;
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--state" => state = PathBuf::from(value(&mut args, "--state")?),
                    "--gateway-port" => {
                        gateway_port = value(&mut args, "--gateway-port")?
                            .parse()
                            .context("--gateway-port takes a port number")?;
                    }
                    "--stack" => repository = Some(PathBuf::from(value(&mut args, "--stack")?)),
                    "--runtime" => {
                        run_functions = match value(&mut args, "--runtime")?.as_str() {
                            "buildah" => true,
                            "none" => false,
                            other => bail!("--runtime takes buildah or none, not `{other}`"),
                        };
                    }
                    other => bail!("unknown argument `{other}`\n\n{USAGE}"),
                }
            }
            let repository = repository.unwrap_or_else(|| {
                if PathBuf::from("stack.yml").is_file() {
                    PathBuf::from(".")
                } else {
                    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                }
            });
            let binaries = std::env::current_exe()?.parent().context("ofc has a folder")?.to_owned();
            shared::server::init_tracing();
            ofc::up::up(
                UpOptions { state, gateway_port, repository, binaries, run_functions },
                shared::server::shutdown_signal(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Some("push") => {
            let mut path = None;
            let mut branch = None;
            let mut owner = DEFAULT_OWNER.to_owned();
            let mut timeout = Duration::from_secs(600);
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--state" => state = PathBuf::from(value(&mut args, "--state")?),
                    "--branch" => branch = Some(value(&mut args, "--branch")?),
                    "--owner" => owner = value(&mut args, "--owner")?,
                    "--timeout" => {
                        timeout = Duration::from_secs(
                            value(&mut args, "--timeout")?.parse().context("--timeout takes seconds")?,
                        );
                    }
                    other if path.is_none() && !other.starts_with('-') => path = Some(PathBuf::from(other)),
                    other => bail!("unknown argument `{other}`\n\n{USAGE}"),
                }
            }
            let path = path.with_context(|| format!("ofc push needs the path of a git repository\n\n{USAGE}"))?;
            let succeeded = ofc::push::push(&PushOptions { path, branch, owner, state, timeout }).await?;
            if succeeded {
                println!("stack-deploy succeeded");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("stack-deploy failed (see the statuses above)");
                Ok(ExitCode::FAILURE)
            }
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}
