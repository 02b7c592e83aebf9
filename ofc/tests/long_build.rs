//! A build that runs for minutes completes: the chain's deadlines (git-tar's and buildshiprun's timeouts, the
//! gateway's upstream timeout, the queue's retries) let a 3-minute `RUN` end in a green `stack-deploy`, with git-tar
//! called once (no replay of a call still in progress). It takes over three minutes, so it runs where `CI` is set
//! (`.ci/run`) or with `OFC_LONG_TESTS=1`, and is skipped in the quick loop. Needs busybox-static (the `sleep`).

use std::path::Path;

use std::time::{Duration, Instant};

use testkit::git::{commit, init_repo};
use testkit::local_stack::Up;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");
const BUILD_SECONDS: u64 = 180;

fn long_tests_wanted() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("OFC_LONG_TESTS").is_some()
}

/// A repository with one function whose Dockerfile sleeps for `BUILD_SECONDS`.
fn slow_repository(parent: &Path) -> std::path::PathBuf {
    let repo = parent.join("slow");
    std::fs::create_dir_all(repo.join("slow")).unwrap();
    std::fs::write(
        repo.join("stack.yml"),
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  slow:\n    lang: dockerfile\n    handler: ./slow\n    image: slow\n",
    )
    .unwrap();
    std::fs::copy("/bin/busybox", repo.join("slow/busybox")).expect("busybox-static is installed (.ci/run)");
    std::fs::write(
        repo.join("slow/Dockerfile"),
        format!("FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"{BUILD_SECONDS}\"]\n"),
    )
    .unwrap();
    init_repo(&repo);
    commit(&repo, "a slow build");
    repo
}

#[test]
fn a_three_minute_build_ends_in_success_without_a_replay() {
    if !long_tests_wanted() {
        eprintln!("skipped: set CI or OFC_LONG_TESTS=1 to run the 3-minute build");
        return;
    }
    let stack = Up::new(OFC).start();
    let state = stack.state_path();

    let work = tempfile::tempdir().unwrap();
    let repo = slow_repository(work.path());
    let started = Instant::now();
    let output = stack.ofc(&["push", repo.to_str().unwrap(), "--timeout", "900"]);
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let ofc_log = stack.log();
    assert!(output.status.success(), "the push succeeds: {printed}\n--- ofc up:\n{ofc_log}");
    assert!(started.elapsed() >= Duration::from_secs(BUILD_SECONDS), "the build really ran: {printed}");
    assert_eq!(printed.matches("stack-deploy   success").count(), 1, "{printed}");
    let git_tar_log = std::fs::read_to_string(state.join("logs/git-tar.log")).unwrap_or_default();
    assert!(!ofc_log.contains("retrying") && !ofc_log.contains("given up"), "no replay: {ofc_log}");
    assert!(!git_tar_log.is_empty(), "git-tar logged its run");
}
