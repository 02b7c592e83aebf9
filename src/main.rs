//! `ofc`: runs the whole OpenFaaS Cloud pipeline on one machine (the local stack).
//!
//! The stack itself is built out in a later issue; for now the binary explains its commands.

use std::process::ExitCode;

const USAGE: &str = "\
ofc: OpenFaaS Cloud on one machine

USAGE:
    ofc up   [--state DIR] [--gateway-port N]   start the gateway, functions, builder, registry and GitHub double
    ofc push PATH [--branch B] [--owner O] [--state DIR]
                                                send the push webhook for the local repository at PATH
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("ofc: `{other}` is not available yet in this build\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
