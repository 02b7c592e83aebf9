//! How `ofc up` looks after its processes, through the real binary (mostly `--runtime none`, where no replica is
//! needed): a child that dies is started again, `kill -9` of `ofc up` takes every child with it (replicas under
//! `buildah run` too), and a call queued by an earlier run is replayed only once the functions answer. Processes are
//! found through /proc, as an operator would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::local_stack::{LocalStack, Up};
use testkit::process::ProcessGuard;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

/// A running `ofc up`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Stack {
    child: ProcessGuard,
    state: tempfile::TempDir,
}

/// Starts `ofc up --runtime none` on `state` and waits until it has written endpoints.json (everything answers).
fn up(state: tempfile::TempDir) -> Stack {
    up_with(state, "none")
}

fn up_with(state: tempfile::TempDir, runtime: &'static str) -> Stack {
    let LocalStack { child, state, .. } = Up::new(OFC).runtime(runtime).start_in(state);
    Stack { child, state }
}

impl Stack {
    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("ofc-up.log")).unwrap_or_default()
    }

    /// Every process below `ofc up`, by pid, with its program's file name.
    fn descendants(&self) -> BTreeMap<u32, String> {
        let parents = processes();
        let mut found = BTreeMap::new();
        let mut frontier = vec![self.child.id()];
        while let Some(parent) = frontier.pop() {
            for (pid, (ppid, program)) in &parents {
                if *ppid == parent && found.insert(*pid, program.clone()).is_none() {
                    frontier.push(*pid);
                }
            }
        }
        found
    }

    /// The pid of the one child running `program`.
    fn pid_of(&self, program: &str) -> Option<u32> {
        self.descendants().into_iter().find(|(_, p)| p == program).map(|(pid, _)| pid)
    }

    /// Waits until `program` runs again under a pid other than `old`.
    fn restarted(&self, program: &str, old: u32) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = self.pid_of(program).filter(|pid| *pid != old) {
                return pid;
            }
            assert!(Instant::now() < deadline, "{program} was not restarted: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every live process: pid → (parent pid, program file name).
fn processes() -> BTreeMap<u32, (u32, String)> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Some((ppid, alive)) = parent_and_liveness(pid) else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let program = PathBuf::from(String::from_utf8_lossy(program).into_owned());
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if alive {
            all.insert(pid, (ppid, name));
        }
    }
    all
}

/// The parent pid of `pid`, and whether it is alive (not a zombie), from /proc/PID/stat.
fn parent_and_liveness(pid: u32) -> Option<(u32, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    Some((fields.next()?.parse().ok()?, state != "Z"))
}

/// The process group of `pid`, from /proc/PID/stat.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// The addresses `pid` listens on over TCP, as /proc/net/tcp{,6} spell them (`0100007F:1F90` is 127.0.0.1:8080).
fn listening(pid: u32) -> Vec<String> {
    let sockets: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| fds.filter_map(Result::ok).filter_map(|fd| std::fs::read_link(fd.path()).ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|link| link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let mut addresses = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for fields in text.lines().skip(1).map(|line| line.split_whitespace().collect::<Vec<_>>()) {
            // local_address is the 2nd field, the state the 4th (0A: listening), the inode the 10th.
            if fields.len() > 9 && fields[3] == "0A" && sockets.contains(fields[9]) {
                addresses.push(fields[1].to_owned());
            }
        }
    }
    addresses
}

fn kill(pid: u32) {
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success(), "kill -9 {pid}");
}

/// The example repository as its own git repository, with one commit.
fn example_repo(parent: &Path) -> PathBuf {
    testkit::local_stack::example_repo(parent, "fns")
}

impl Stack {
    /// `ofc push` of `repo` as octo; its success and output.
    fn push(&self, repo: &Path) -> (bool, String) {
        let output = Command::new(OFC)
            .args(["push", "--owner", "octo", "--timeout", "120"])
            .arg("--state")
            .arg(self.state.path())
            .arg(repo)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success() && text.contains("stack-deploy   success"), text)
    }
}

/// Waits until every process of `children` has ended (a zombie has: no one may be left to reap it).
fn all_ended(children: &BTreeMap<u32, String>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let alive = |pid: u32| parent_and_liveness(pid).is_some_and(|(_, alive)| alive);
        let left: Vec<_> = children.iter().filter(|(pid, _)| alive(**pid)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running after kill -9 of ofc up: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_builder_function_and_registry_are_started_again_and_a_push_still_succeeds() {
    let stack = up(tempfile::tempdir().unwrap());
    for program in ["of-builder", "git-tar", "docker-registry"] {
        let old = stack.pid_of(program).unwrap_or_else(|| panic!("{program} runs: {:?}", stack.descendants()));
        kill(old);
        stack.restarted(program, old);
    }
    let log = stack.log();
    for name in ["of-builder", "git-tar", "registry"] {
        assert!(
            log.lines().any(|l| l.contains("exited unexpectedly") && l.contains(name) && l.contains("SIGKILL")),
            "the exit of {name} is logged with its status: {log}"
        );
    }

    let work = tempfile::tempdir().unwrap();
    let (ok, output) = stack.push(&example_repo(work.path()));
    assert!(ok, "{output}\n{}", stack.log());
}

#[test]
fn kill_9_of_ofc_up_leaves_no_process_behind() {
    let mut stack = up(tempfile::tempdir().unwrap());
    let children = stack.descendants();
    let programs: BTreeSet<&str> = children.values().map(String::as_str).collect();
    for expected in ["docker-registry", "of-builder", "gh-push", "git-tar", "buildshiprun", "github-status"] {
        assert!(programs.contains(expected), "{expected} runs under ofc up: {children:?}");
    }
    kill(stack.child.id());
    let _ = stack.child.child_mut().wait();
    all_ended(&children, Duration::from_secs(5));
}

#[test]
fn kill_9_of_ofc_up_takes_the_replicas_under_buildah_run_with_it() {
    let mut stack = up_with(tempfile::tempdir().unwrap(), "buildah");
    let work = tempfile::tempdir().unwrap();
    let (ok, output) = stack.push(&example_repo(work.path()));
    assert!(ok, "{output}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let children = loop {
        let children = stack.descendants();
        if children.values().filter(|p| *p == "fwatchdog").count() == 2 {
            break children;
        }
        assert!(Instant::now() < deadline, "the two replicas did not start: {children:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    kill(stack.child.id());
    let _ = stack.child.child_mut().wait();
    all_ended(&children, Duration::from_secs(5));
}

#[test]
fn a_ctrl_c_in_the_terminal_reaches_ofc_alone_which_stops_its_children_in_order() {
    let stack = up(tempfile::tempdir().unwrap());
    let terminal_group = process_group(stack.child.id()).unwrap();
    let children = stack.descendants();
    let in_terminal_group: Vec<_> =
        children.iter().filter(|(pid, _)| process_group(**pid) == Some(terminal_group)).collect();
    assert!(in_terminal_group.is_empty(), "these would get the terminal's SIGINT themselves: {in_terminal_group:?}");
}

#[test]
fn every_part_of_the_stack_listens_on_loopback_only() {
    let stack = up(tempfile::tempdir().unwrap());
    let mut parts = vec![("ofc".to_owned(), stack.child.id())];
    for name in ["of-builder", "gh-push", "git-tar", "buildshiprun", "github-status"] {
        parts.push((name.to_owned(), stack.pid_of(name).unwrap()));
    }
    // The registry itself serves only its unix socket; ofc's gate in front of it is on loopback (checked above).
    let registry = listening(stack.pid_of("docker-registry").unwrap());
    assert!(registry.is_empty(), "docker-registry listens on TCP: {registry:?}");
    for (name, pid) in parts {
        let addresses = listening(pid);
        assert!(!addresses.is_empty(), "{name} listens");
        assert!(addresses.iter().all(|a| a.starts_with("0100007F:")), "{name} listens beyond loopback: {addresses:?}");
    }
}

#[test]
fn a_call_queued_by_an_earlier_run_is_replayed_once_its_function_answers() {
    let state = tempfile::tempdir().unwrap();
    // A call to git-tar's health check, as the gateway's queue keeps it on disk, waiting since the last run.
    let queue = state.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let id = "0000000000001-000000-earlier";
    let job = serde_json::json!({
        "id": id, "function": "git-tar", "method": "GET", "rest": "_/health", "headers": [],
        "body_base64": "", "attempts": 0, "not_before_ms": 0,
    });
    std::fs::write(queue.join(format!("{id}.json")), job.to_string()).unwrap();

    let stack = up(state);
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.join(format!("{id}.json")).exists() {
        assert!(Instant::now() < deadline, "the queued call was not replayed: {}", stack.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = stack.log();
    assert!(log.contains("async call done"), "{log}");
    assert!(!log.contains("async call failed"), "the first try was used up before git-tar answered: {log}");
}
