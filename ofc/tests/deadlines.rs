//! One deadline through the chain: every function in stack.yml may run at least as long as the longest wait it
//! makes downstream, so a slow build fails with the reason of the part that gave up first (the builder's timeout),
//! never with a caller that stopped listening while the work went on.

use std::path::Path;
use std::time::Duration;

use shared::config::parse_duration;
use shared::stack::Stack;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// How long buildshiprun may spend deploying after the build: the gateway calls with their retries.
const DEPLOY_ALLOWANCE: Duration = Duration::from_secs(60);

/// One function's settings, as stack.yml and its environment files give them.
struct Settings(std::collections::BTreeMap<String, String>);

impl Settings {
    fn of(function: &str) -> Self {
        let stack = Stack::read(Path::new(ROOT)).expect("the repository's stack.yml parses");
        let resolved = stack.functions[function].resolved_environment(function, Path::new(ROOT));
        Self(resolved.unwrap_or_else(|e| panic!("{function}: {e}")))
    }

    /// A duration the function's stack.yml must state (a code default would hide the contradiction).
    fn duration(&self, key: &str) -> Duration {
        let value = self.0.get(key).unwrap_or_else(|| panic!("stack.yml sets `{key}`"));
        parse_duration(value).unwrap_or_else(|e| panic!("`{key}`: {e}"))
    }

    fn number(&self, key: &str) -> u32 {
        self.0.get(key).unwrap_or_else(|| panic!("stack.yml sets `{key}`")).parse().expect("a whole number")
    }

    /// How long the function's handler may run: the shorter of `exec_timeout` and `write_timeout`.
    fn runs_for(&self) -> Duration {
        self.duration("exec_timeout").min(self.duration("write_timeout"))
    }
}

#[test]
fn buildshiprun_runs_long_enough_for_a_build_and_a_deployment() {
    let buildshiprun = Settings::of("buildshiprun");
    let waits = buildshiprun.duration("build_timeout") + DEPLOY_ALLOWANCE;
    assert!(
        buildshiprun.runs_for() >= waits,
        "buildshiprun runs for {:?}, waits up to {waits:?}",
        buildshiprun.runs_for()
    );
}

#[test]
fn git_tar_waits_for_buildshiprun_to_finish() {
    let (git_tar, buildshiprun) = (Settings::of("git-tar"), Settings::of("buildshiprun"));
    assert!(
        git_tar.duration("build_timeout") >= buildshiprun.runs_for(),
        "git-tar's build_timeout {:?} gives up before buildshiprun's {:?}",
        git_tar.duration("build_timeout"),
        buildshiprun.runs_for()
    );
}

#[test]
fn git_tar_runs_long_enough_for_its_clone_and_every_round_of_builds() {
    let git_tar = Settings::of("git-tar");
    let rounds = git_tar.number("max_functions").div_ceil(git_tar.number("max_parallel_builds").max(1));
    let waits = git_tar.duration("clone_timeout") + git_tar.duration("build_timeout") * rounds;
    assert!(git_tar.runs_for() >= waits, "git-tar runs for {:?}, waits up to {waits:?}", git_tar.runs_for());
}

#[test]
fn every_secret_the_platform_mounts_is_reserved_for_it() {
    let stack = Stack::read(Path::new(ROOT)).expect("the repository's stack.yml parses");
    for (name, function) in &stack.functions {
        for secret in &function.secrets {
            assert!(
                shared::naming::PLATFORM_SECRETS.contains(&secret.as_str()),
                "{name}: secret `{secret}` must be in shared::naming::PLATFORM_SECRETS so no user function mounts it"
            );
        }
    }
}
