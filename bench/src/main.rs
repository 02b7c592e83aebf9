//! `bench`: prints the figures users choose a GitOps platform by, in a form two runs can be compared with.
//!
//! # Layout
//! - [`intake`]: scenario 1, gh-push alone under load.
//! - [`gittar`]: git-tar: push to last tar handed on, memory on a 100 MiB context.
//! - [`builder`]: of-builder: cold and cached builds, memory on a 100 MiB context; a 15-step template on each
//!   storage driver (`storage`); the example's first push, two builds at once, on each (`first-push`).
//! - [`statuses`]: github-status: statuses per second, token requests for a burst.
//! - [`pipeline`]: through `ofc up`: pipeline overhead (minus git and the builder), push to live (cold, warm) and
//!   concurrent pushes (scale).
//! - [`skip`]: pushes that change nothing, or one function of three: what skipping builds and deployments saves.
//! - [`floods`]: gh-push under 10,000 half-open connections (`flood`), and two replicas sharing deliveries
//!   (`replicas`).
//! - [`fairness`]: of-builder's per-owner queues against one FIFO line: how long other owners wait past a backlog.
//! - [`growth`]: 10,000 functions of 1,000 owners: what the gateway, list-functions, the dashboard and
//!   garbage-collect cost at that size (`growth`).
//! - [`history`]: git-tar on a repository of ~200 MB of history and 50 functions (`history`).
//! - [`owners`]: 100 owners pushing at once, two builds at a time: every push's final status and each owner's
//!   wait (`owners`).
//! - [`cost`]: idle memory of every process of the stack, and each function's image size.
//! - [`load`]: the HTTP/1.1 load generator (saturation and fixed rate).
//! - [`process`]: starting release binaries, reading their memory.
//! - [`stats`]: min/p50/p99/max summaries.
//!
//! Run `cargo build --release --workspace --bins && target/release/bench` (see `docs/benchmarks.md`).

mod builder;
mod cost;
mod fairness;
mod floods;
mod gittar;
mod growth;
mod history;
mod intake;
mod load;
mod owners;
mod pipeline;
mod process;
mod skip;
mod stats;
mod statuses;

use anyhow::Context as _;

const USAGE: &str =
    "usage: bench [intake] [overhead] [git-tar] [builder] [storage] [first-push] [statuses] [push] [unchanged] [one-changed] [scale] [cost] [flood] [replicas] [fairness] [growth] [history] [owners] [--seconds N]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut scenarios = Vec::new();
    let mut seconds = 10;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().context(USAGE)?.parse().context("--seconds takes a whole number")?,
            "intake" | "overhead" | "git-tar" | "builder" | "storage" | "first-push" | "statuses" | "push"
            | "unchanged" | "one-changed" | "scale" | "cost" | "flood" | "replicas" | "fairness" | "growth"
            | "history" | "owners" => {
                scenarios.push(arg);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if scenarios.is_empty() {
        scenarios.extend(
            [
                "intake",
                "overhead",
                "git-tar",
                "builder",
                "storage",
                "statuses",
                "push",
                "unchanged",
                "one-changed",
                "scale",
                "cost",
                "flood",
                "replicas",
                "fairness",
                "growth",
                "history",
                "owners",
            ]
            .map(String::from),
        );
    }
    let binaries = std::env::current_exe()?.parent().context("the bench binary has a folder")?.to_owned();
    println!("machine: {} cores", std::thread::available_parallelism().map_or(0, std::num::NonZero::get));
    for scenario in scenarios {
        match scenario.as_str() {
            "intake" => intake::run(&binaries, seconds).await?,
            "git-tar" => gittar::run(&binaries).await?,
            "builder" => builder::run(&binaries).await?,
            "storage" => builder::storage(&binaries).await?,
            "first-push" => builder::first_push(&binaries).await?,
            "overhead" => pipeline::overhead(&binaries, 10)?,
            "cost" => cost::run(&binaries)?,
            "flood" => floods::flood(&binaries).await?,
            "replicas" => floods::replicas(&binaries).await?,
            "growth" => growth::run(&binaries).await?,
            "history" => history::run(&binaries).await?,
            "owners" => owners::run(&binaries)?,
            "push" => pipeline::push_to_live(&binaries)?,
            "unchanged" => skip::unchanged(&binaries).await?,
            "one-changed" => skip::one_changed(&binaries).await?,
            "scale" => pipeline::scale(&binaries, &[10, 25, 50])?,
            "fairness" => fairness::run().await?,
            _ => statuses::run(&binaries).await?,
        }
    }
    Ok(())
}
