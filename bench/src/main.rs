//! `bench`: prints the figures users choose a GitOps platform by, in a form two runs can be compared with.
//!
//! # Layout
//! - [`intake`]: scenario 1, gh-push alone under load.
//! - [`load`]: the HTTP/1.1 load generator (saturation and fixed rate).
//! - [`process`]: starting release binaries, reading their memory.
//! - [`stats`]: min/p50/p99/max summaries.
//!
//! Run `cargo build --release --workspace --bins && target/release/bench` (see the README).

mod intake;
mod load;
mod process;
mod stats;

use anyhow::Context as _;

const USAGE: &str = "usage: bench [intake] [--seconds N]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut scenarios = Vec::new();
    let mut seconds = 10;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().context(USAGE)?.parse().context("--seconds takes a whole number")?,
            "intake" => scenarios.push(arg),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if scenarios.is_empty() {
        scenarios.push("intake".into());
    }
    let binaries = std::env::current_exe()?.parent().context("the bench binary has a folder")?.to_owned();
    println!("machine: {} cores", std::thread::available_parallelism().map_or(0, std::num::NonZero::get));
    for scenario in scenarios {
        if scenario == "intake" {
            intake::run(&binaries, seconds).await?;
        }
    }
    Ok(())
}
