//! `ofc up` as every end-to-end test starts it: the real binary on a free gateway port and a state folder of the
//! test's own, waited for until it has written `endpoints.json`, and stopped (TERM, then KILL) when dropped. One
//! copy, so that how a test starts the local stack, and what it shows when the start fails, is the same everywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::ports::free_port;
use crate::process::ProcessGuard;

/// How long `ofc up` may take to bring every part up (it builds the watchdog image on a first start).
const UP_WITHIN: Duration = Duration::from_secs(90);

/// The repository's root (stack.yml, examples/), from testkit's own place in it.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What to start: the `ofc` binary (a test's `env!("CARGO_BIN_EXE_ofc")`), and its options.
#[derive(Debug, Clone)]
pub struct Up {
    pub ofc: PathBuf,
    /// `--stack`: the folder whose stack.yml names the platform's functions (default: this repository).
    pub stack: PathBuf,
    /// `--runtime`: `none` records deployments without running them; `buildah` runs them.
    pub runtime: &'static str,
    /// `--gateway-port`.
    pub port: u16,
    /// Extra environment for `ofc up` (e.g. `custom_templates`).
    pub env: Vec<(String, String)>,
}

impl Up {
    /// `ofc up --runtime none` of this repository's stack on a free port.
    pub fn new(ofc: &str) -> Self {
        Self { ofc: ofc.into(), stack: repository_root(), runtime: "none", port: free_port(), env: Vec::new() }
    }

    #[must_use]
    pub fn runtime(mut self, runtime: &'static str) -> Self {
        self.runtime = runtime;
        self
    }

    #[must_use]
    pub fn stack(mut self, stack: &Path) -> Self {
        stack.clone_into(&mut self.stack);
        self
    }

    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Starts it with a new state folder.
    pub fn start(self) -> LocalStack {
        self.start_in(tempfile::tempdir().expect("a temporary state folder"))
    }

    /// Starts it on `state` (a folder an earlier run may have used: the wait is for a fresh `endpoints.json`).
    pub fn start_in(self, state: tempfile::TempDir) -> LocalStack {
        let endpoints = state.path().join("endpoints.json");
        let written = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let before: Option<SystemTime> = written(&endpoints);
        let log_path = state.path().join("ofc-up.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("ofc-up.log");
        let child = Command::new(&self.ofc)
            .args(["up", "--runtime", self.runtime, "--gateway-port", &self.port.to_string(), "--router-port", "0"])
            .arg("--state")
            .arg(state.path())
            .arg("--stack")
            .arg(&self.stack)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().expect("ofc-up.log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("ofc runs (cargo build --workspace --bins first)");
        let mut stack = LocalStack {
            child: ProcessGuard::new(child),
            state,
            gateway: format!("http://127.0.0.1:{}/", self.port),
            ofc: self.ofc,
        };
        let deadline = Instant::now() + UP_WITHIN;
        while written(&endpoints) == before {
            if let Some(status) = stack.child.try_wait().expect("ofc up's status") {
                panic!("ofc up exited ({status}): {}", stack.log());
            }
            assert!(Instant::now() < deadline, "ofc up did not come up within {UP_WITHIN:?}: {}", stack.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        stack
    }
}

/// A running `ofc up`.
pub struct LocalStack {
    pub child: ProcessGuard,
    pub state: tempfile::TempDir,
    /// The gateway's base URL, with the trailing slash.
    pub gateway: String,
    ofc: PathBuf,
}

impl LocalStack {
    pub fn state_path(&self) -> &Path {
        self.state.path()
    }

    /// What `ofc up` printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("ofc-up.log")).unwrap_or_default()
    }

    /// `endpoints.json`, as `ofc up` wrote it.
    pub fn endpoints(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.path().join("endpoints.json")).expect("endpoints.json");
        serde_json::from_str(&text).expect("endpoints.json is JSON")
    }

    /// Runs `ofc ARGS --state <state>` to its end.
    pub fn ofc(&self, args: &[&str]) -> Output {
        Command::new(&self.ofc).args(args).arg("--state").arg(self.state.path()).output().expect("ofc runs")
    }

    /// Runs `ofc ARGS --state <state>`: whether it succeeded, and what it printed (stdout then stderr).
    pub fn ofc_text(&self, args: &[&str]) -> (bool, String) {
        let output = self.ofc(args);
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    /// Stops `ofc up` (TERM, then KILL) and hands back its state folder, for a test that starts it again.
    pub fn stop(self) -> tempfile::TempDir {
        let Self { child, state, .. } = self;
        let _ = child.stop();
        state
    }
}

/// Copies a folder tree (a fixture repository) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("the copy's folder");
    for entry in std::fs::read_dir(from).expect("the fixture folder") {
        let entry = entry.expect("a fixture entry");
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("a fixture file");
        }
    }
}

/// The README's example (`examples/hello`) as a git repository of its own at `parent/name`, one commit.
pub fn example_repo(parent: &Path, name: &str) -> PathBuf {
    let repo = parent.join(name);
    copy_dir(&repository_root().join("examples/hello"), &repo);
    crate::git::init_repo(&repo);
    crate::git::commit(&repo, "first");
    repo
}

/// The gateway's `/system/functions` of a local stack whose state folder is `state`, signed in with the admin
/// credentials `ofc up` wrote there: what every end-to-end test compares deployments with.
pub async fn deployed_functions(state: &Path, gateway: &str) -> Vec<shared::openfaas::FunctionStatus> {
    let secret = |name: &str| {
        std::fs::read_to_string(state.join("secrets").join(name))
            .expect("ofc up wrote the admin secret")
            .trim()
            .to_owned()
    };
    reqwest::Client::new()
        .get(format!("{gateway}system/functions"))
        .basic_auth(secret("basic-auth-user"), Some(secret("basic-auth-password")))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a function list")
}

/// The first disk of this machine (`/dev/vda`, `/dev/sda`, `/dev/nvme0n1`…) with its device numbers: what the sandbox
/// probes (a build step, a running function) try to open.
pub fn host_disk() -> (String, String) {
    let mut disks: Vec<_> = std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !["loop", "ram", "zram", "nbd"].iter().any(|p| n.starts_with(p)))
        .collect();
    disks.sort();
    let disk = disks.first().expect("this machine has a disk").clone();
    let numbers = std::fs::read_to_string(format!("/sys/block/{disk}/dev")).expect("its numbers").trim().to_owned();
    (format!("/dev/{disk}"), numbers)
}
