//! The harness every git-tar test uses: repositories made on disk and served by a real git server, git-tar on a
//! random loopback port, and a recording gateway standing in for buildshiprun, github-status and garbage-collect.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use doubles::git_server::GitServer;
use git_tar::Config;
use serde_json::Value;
use shared::branch_head::BranchHeads;
use shared::config::{CommonConfig, Secret};
use shared::event::{BuildEvent, Owner, PushEvent, PushOrder, Repository, StatusReport, StatusState};
use shared::log_store::{LogStore, LogStoreConfig};
use shared::server::ServerConfig;
use shared::signature::{sign_sha256, verify_cloud};
use testkit::git::{git, init_repo};
use testkit::{RecordingGateway, Reply, ServedFunction};

pub const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
/// GitHub's time of the next push (Unix seconds).
static PUSHED_AT: AtomicU64 = AtomicU64::new(1_765_000_000);

/// A working repository whose commits are published to a bare repository the git server serves.
pub struct Repo {
    pub work: tempfile::TempDir,
    pub bare: PathBuf,
}

impl Repo {
    pub fn new(root: &Path, name: &str) -> Self {
        let work = tempfile::tempdir().unwrap();
        init_repo(work.path());
        let bare = root.join("octo").join(format!("{name}.git"));
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        Self { work, bare }
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let full = self.work.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
        self
    }

    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let full = self.work.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, full).unwrap();
        self
    }

    /// Commits everything and publishes the branch; returns the commit's SHA.
    pub fn commit(&self, message: &str) -> String {
        git(self.work.path(), &["add", "-A"]);
        git(self.work.path(), &["commit", "-q", "-m", message]);
        if self.bare.exists() {
            git(self.work.path(), &["push", "-q", "--force", self.bare.to_str().unwrap(), "HEAD:refs/heads/main"]);
        } else {
            git(
                self.bare.parent().unwrap(),
                &["clone", "-q", "--bare", self.work.path().to_str().unwrap(), self.bare.to_str().unwrap()],
            );
        }
        git(self.work.path(), &["rev-parse", "HEAD"])
    }
}

pub struct Harness {
    pub address: SocketAddr,
    pub gateway: RecordingGateway,
    pub git: GitServer,
    pub root: tempfile::TempDir,
    /// The store git-tar writes its push records to.
    pub logs: LogStore,
    pub http: reqwest::Client,
    _served: ServedFunction,
}

pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Harness {
    start_with_git(|config, _, _| edit(config)).await
}

/// Like [`start_with`], with the git server and its root folder at hand (to serve template repositories).
pub async fn start_with_git(edit: impl FnOnce(&mut Config, &GitServer, &Path)) -> Harness {
    let root = tempfile::tempdir().unwrap();
    let git = GitServer::start(root.path()).await.unwrap();
    let gateway = RecordingGateway::start().await;
    gateway.reply(
        "POST",
        "/function/buildshiprun",
        vec![Reply::status(200).json(&serde_json::json!({"deployed": "created"}))],
    );
    let mut config = Config {
        common: CommonConfig {
            gateway_url: gateway.url().parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        repository_url: "127.0.0.1:5000".into(),
        registry_push_url: None,
        github_api_url: "http://127.0.0.1:9/".parse().unwrap(),
        app: None,
        app_private_key: None,
        gateway_public_url: "https://ofc.example/".parse().unwrap(),
        log_store: LogStore::open(&LogStoreConfig::folder(root.path().join("logs"))).unwrap(),
        branch_heads: BranchHeads::open(&LogStoreConfig::folder(root.path().join("branches"))).unwrap(),
        clone_timeout: Duration::from_secs(30),
        max_parallel_builds: 4,
        max_repo_bytes: 10 << 20,
        max_functions: 32,
        build_timeout: Duration::from_secs(30),
        custom_templates: Vec::new(),
        templates_refresh: Duration::from_secs(300),
        templates_cache: root.path().join("template-cache"),
        // The repositories of most tests bring their own template/.
        allow_user_templates: true,
        server: ServerConfig::for_tests(1 << 20),
    };
    edit(&mut config, &git, root.path());
    let server = config.server.clone();
    let logs = config.log_store.clone();
    let served = ServedFunction::start_with(git_tar::app(config), &server).await;
    Harness { address: served.address, gateway, git, root, logs, http: reqwest::Client::new(), _served: served }
}

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

impl Harness {
    pub fn repo(&self, name: &str) -> Repo {
        Repo::new(self.root.path(), name)
    }

    /// The push of `sha` as GitHub describes it: each one later than the one before (`repository.pushed_at`), so
    /// that the last push made is the branch's newest, whatever its history.
    pub fn push_event(&self, name: &str, sha: &str) -> PushEvent {
        PushEvent {
            delivery: "delivery-1".into(),
            git_ref: "refs/heads/main".into(),
            after: sha.parse().expect("a commit SHA"),
            installation_id: Some(7),
            repository: Repository {
                name: name.into(),
                full_name: format!("octo/{name}"),
                clone_url: self.git.clone_url("octo", name),
                private: false,
                default_branch: Some("main".into()),
                owner: Owner { login: "octo".into(), id: 1 },
            },
            order: PushOrder { pushed_at: PUSHED_AT.fetch_add(1, Ordering::Relaxed), ..PushOrder::default() },
            preview: None,
        }
    }

    pub async fn send(&self, event: &PushEvent) -> (u16, Value) {
        let body = serde_json::to_vec(event).unwrap();
        let response = self
            .http
            .post(format!("http://{}/", self.address))
            .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub fn statuses(&self) -> Vec<StatusReport> {
        self.gateway.requests_to("/async-function/github-status").iter().map(testkit::RecordedRequest::json).collect()
    }

    pub fn stack_deploy(&self) -> shared::event::CommitStatus {
        self.statuses()
            .iter()
            .flat_map(|r| r.statuses.clone())
            .rfind(|s| s.context == "stack-deploy")
            .expect("a stack-deploy status")
    }

    /// Each tar handed to buildshiprun: its event header and its entries (path → content).
    pub fn tars(&self) -> BTreeMap<String, (BuildEvent, BTreeMap<String, Vec<u8>>)> {
        self.gateway
            .requests_to("/function/buildshiprun")
            .into_iter()
            .map(|request| {
                verify_cloud(&request.headers, &request.body, PAYLOAD_SECRET.as_bytes()).unwrap();
                let event = BuildEvent::from_header_value(request.header("x-ofc-event").unwrap().as_bytes()).unwrap();
                let mut entries = BTreeMap::new();
                let mut archive = tar::Archive::new(request.body.as_ref());
                for entry in archive.entries().unwrap() {
                    let mut entry = entry.unwrap();
                    let path = entry.path().unwrap().display().to_string();
                    let mut content = Vec::new();
                    if entry.header().entry_type() == tar::EntryType::Symlink {
                        content = entry.link_name().unwrap().unwrap().display().to_string().into_bytes();
                    } else {
                        entry.read_to_end(&mut content).unwrap();
                    }
                    entries.insert(path, content);
                }
                (event.function.clone(), (event, entries))
            })
            .collect()
    }
}

/// Pushes a repository made by `setup` and expects a `stack-deploy` failure whose description contains `reason`.
pub async fn assert_push_fails(setup: impl FnOnce(&Repo), reason: &str) {
    let harness = start().await;
    let repo = harness.repo("broken");
    setup(&repo);
    let sha = repo.commit("broken");
    let (status, answer) = harness.send(&harness.push_event("broken", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    let failure = harness.stack_deploy();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.contains(reason), "`{reason}` in `{}`", failure.description);
    assert!(harness.gateway.requests_to("/function/buildshiprun").is_empty(), "nothing is handed on");
}
