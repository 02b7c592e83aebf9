//! Builds are shared fairly between owners on `ofc up`: while one owner's push of five slow functions fills
//! of-builder (two slots), another owner's push takes the first slot that frees, ahead of the rest of the backlog,
//! and goes green while the backlog still builds; the waiting builds' statuses said they were queued. It takes a few
//! minutes, so it runs where `CI` is set (`.ci/run`) or with `OFC_LONG_TESTS=1`. Needs busybox-static.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::git::{commit, init_repo};
use testkit::local_stack::Up;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");
/// How long each backlog build sleeps in its RUN step.
const BUILD_SECONDS: u64 = 20;

fn long_tests_wanted() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("OFC_LONG_TESTS").is_some()
}

/// A repository `name` with the given functions; each with `Some(seconds)` sleeps that long in a RUN step.
fn repository(parent: &Path, name: &str, functions: &[(&str, Option<u64>)]) -> PathBuf {
    let repo = parent.join(name);
    let mut stack = String::from("version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n");
    for (function, sleep) in functions {
        let _ =
            write!(stack, "  {function}:\n    lang: dockerfile\n    handler: ./{function}\n    image: {function}\n");
        let dir = repo.join(function);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy("/bin/busybox", dir.join("busybox")).expect("busybox-static is installed (.ci/run)");
        let run = sleep.map(|s| format!("RUN [\"/bin/busybox\", \"sleep\", \"{s}\"]\n")).unwrap_or_default();
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM scratch\nCOPY busybox /bin/busybox\nLABEL function=\"{name}-{function}\"\n{run}"),
        )
        .unwrap();
    }
    std::fs::write(repo.join("stack.yml"), stack).unwrap();
    init_repo(&repo);
    commit(&repo, "functions");
    repo
}

/// of-builder's "building" lines so far, in the order the builds took their slots.
fn starts(state: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(state.join("logs/of-builder.log")).unwrap_or_default();
    let ours = |l: &&str| l.contains("/backlog/") || l.contains("/quick/");
    log.lines().filter(|l| l.contains("building")).filter(ours).map(str::to_owned).collect()
}

#[test]
fn another_owner_s_push_goes_green_while_one_owner_s_backlog_builds() {
    if !long_tests_wanted() {
        eprintln!("skipped: set CI or OFC_LONG_TESTS=1 to run the fair-build push");
        return;
    }
    let stack = Up::new(OFC).start();
    let state = stack.state_path();
    let work = tempfile::tempdir().unwrap();
    let backlog: Vec<(String, Option<u64>)> = (0..5).map(|n| (format!("slow{n}"), Some(BUILD_SECONDS))).collect();
    let backlog: Vec<(&str, Option<u64>)> = backlog.iter().map(|(f, s)| (f.as_str(), *s)).collect();
    let backlog = repository(work.path(), "backlog", &backlog);
    let quick = repository(work.path(), "quick", &[("hello", None)]);

    let alice = Command::new(OFC)
        .args(["push", backlog.to_str().unwrap(), "--owner", "alice", "--timeout", "900", "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut polls = 0;
    while starts(state).len() < 2 {
        polls += 1;
        assert!(polls < 1200, "alice's builds never started: {}", stack.log());
        std::thread::sleep(Duration::from_millis(250));
    }
    // The other three of alice's builds were sent with the first two; they reach of-builder's queue meanwhile.
    std::thread::sleep(Duration::from_secs(5));

    let (green, printed) = stack.ofc_text(&["push", quick.to_str().unwrap(), "--owner", "bob", "--timeout", "600"]);
    assert!(green && printed.contains("stack-deploy   success"), "bob's push goes green: {printed}");
    let mut alice = alice;
    assert!(alice.try_wait().unwrap().is_none(), "bob's push went green while alice's backlog still built");
    let order = starts(state);
    let bob_at = order.iter().position(|l| l.contains("/quick/"));
    assert_eq!(bob_at, Some(2), "bob's build took the first slot freed after alice's two: {order:#?}");

    let output = alice.wait_with_output().unwrap();
    let alice_printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "alice's push goes green too: {alice_printed}\n--- ofc up:\n{}", stack.log());
    assert!(alice_printed.contains("queued"), "a waiting build's status said it was queued: {alice_printed}");
}
