//! Order per branch through the real pipeline (`ofc up` with running functions, real builds, the GitHub double):
//! a deployment never replaces one made from a newer commit of the same branch (`docs/ordering.md`).
//! - a slow build of v1 overtaken by v2: v2 is deployed and served, v1 is built but never deployed, and its
//!   statuses say it was superseded;
//! - v2 delivered before v1: v1 is not built at all;
//! - a force-push back to an older commit: that commit is deployed.
//!
//! The deliveries are made here as GitHub makes them (signed, with `before`, `forced` and `repository.pushed_at`),
//! so their order and timing are the test's. Needs busybox-static (the slow build's `sleep`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::git::{commit, git, init_repo};
use testkit::local_stack::{LocalStack, Up};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");
const OWNER: &str = "octo";
/// The slow build's `sleep`: long enough for v2 to be pushed, built and deployed while it runs.
const SLOW_SECONDS: u64 = 25;
const NULL_SHA: &str = "0000000000000000000000000000000000000000";

struct Stack {
    local: LocalStack,
    endpoints: Value,
    http: reqwest::Client,
}

fn up() -> Stack {
    let local = Up::new(OFC).runtime("buildah").start();
    let endpoints = local.endpoints();
    Stack { local, endpoints, http: reqwest::Client::new() }
}

/// Writes the repository's one function `function`, which serves `page`; `slow` adds a `RUN sleep` to its build.
fn write_function(repo: &Path, function: &str, page: &str, slow: bool) {
    let dir = repo.join(function);
    std::fs::create_dir_all(&dir).unwrap();
    let stack = format!(
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  {function}:\n    lang: dockerfile\n    handler: ./{function}\n    image: {function}\n"
    );
    std::fs::write(repo.join("stack.yml"), stack).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{page}</h1>\n")).unwrap();
    let slow_step = if slow {
        std::fs::copy("/bin/busybox", dir.join("busybox")).expect("busybox-static is installed (.ci/run)");
        format!("COPY busybox /tmp/busybox\nRUN [\"/tmp/busybox\", \"sleep\", \"{SLOW_SECONDS}\"]\n")
    } else {
        drop(std::fs::remove_file(dir.join("busybox")));
        String::new()
    };
    let dockerfile = format!("FROM localhost/ofc/watchdog:latest\n{slow_step}COPY index.html /home/app/public/\n");
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
}

fn new_repo(parent: &Path, name: &str) -> PathBuf {
    let repo = parent.join(name);
    init_repo(&repo);
    repo
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// One push as GitHub describes it.
struct Push<'a> {
    name: &'a str,
    before: &'a str,
    after: &'a str,
    forced: bool,
    pushed_at: u64,
}

impl Stack {
    fn state(&self) -> &Path {
        self.local.state_path()
    }

    fn endpoint(&self, name: &str) -> String {
        self.endpoints[name].as_str().unwrap_or_else(|| panic!("endpoints.json has {name}")).to_owned()
    }

    /// Makes `sha` the served copy's `main` (as the push moved it), from the local repository's objects.
    fn publish(&self, repo: &Path, name: &str, sha: &str) {
        let bare = self.state().join("repos").join(OWNER).join(format!("{name}.git"));
        if !bare.join("HEAD").exists() {
            std::fs::create_dir_all(&bare).unwrap();
            git(&bare, &["init", "-q", "--bare"]);
        }
        git(repo, &["push", "-q", "--force", bare.to_str().unwrap(), &format!("{sha}:refs/heads/main")]);
    }

    /// Sends the push webhook GitHub would send for `push`, signed, through the gateway to gh-push.
    async fn deliver(&self, push: &Push<'_>) {
        let clone_url = format!("{}{OWNER}/{}.git", self.endpoint("git"), push.name);
        let owner_id = ofc::push::account_id(OWNER);
        let payload = json!({
            "ref": "refs/heads/main", "before": push.before, "after": push.after,
            "created": push.before == NULL_SHA, "deleted": false, "forced": push.forced,
            "commits": [], "head_commit": null,
            "repository": {
                "id": 1, "name": push.name, "full_name": format!("{OWNER}/{}", push.name), "private": false,
                "owner": {"login": OWNER, "id": owner_id, "type": "User"},
                "html_url": clone_url, "clone_url": clone_url, "default_branch": "main",
                "created_at": push.pushed_at, "pushed_at": push.pushed_at
            },
            "sender": {"login": OWNER, "id": owner_id, "type": "User"},
            "installation": {"id": ofc::state::INSTALLATION_ID}
        });
        let body = serde_json::to_vec(&payload).unwrap();
        let secret = std::fs::read_to_string(self.state().join("secrets/github-webhook-secret")).unwrap();
        let response = self
            .http
            .post(format!("{}function/gh-push", self.local.gateway))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", uuid_like(push.after, push.pushed_at))
            .header("X-Hub-Signature-256", shared::signature::sign_sha256(secret.trim().as_bytes(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(status, 202, "gh-push queued {}: {}", push.after, response.text().await.unwrap_or_default());
    }

    /// The commit's statuses, oldest first.
    async fn statuses(&self, name: &str, sha: &str) -> Vec<Value> {
        let url = format!("{}repos/{OWNER}/{name}/commits/{sha}/statuses", self.endpoint("github_api"));
        let mut listed: Vec<Value> = self.http.get(url).send().await.unwrap().json().await.unwrap();
        listed.reverse();
        listed
    }

    /// Waits until a status of `context` after the first `skip` statuses of the commit is no longer pending;
    /// answers it.
    async fn final_status(&self, name: &str, sha: &str, context: &str, skip: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let statuses = self.statuses(name, sha).await;
            let ended = statuses.iter().skip(skip).find(|s| s["context"] == context && s["state"] != "pending");
            if let Some(ended) = ended {
                return ended.clone();
            }
            assert!(Instant::now() < deadline, "{context} of {sha} did not end: {statuses:#?}\n{}", self.local.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the commit has a pending status of `context`.
    async fn pending(&self, name: &str, sha: &str, context: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.statuses(name, sha).await.iter().any(|s| s["context"] == context && s["state"] == "pending") {
            assert!(Instant::now() < deadline, "{context} of {sha} never went pending");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `Git-SHA` of the deployed function `service`, if it is deployed.
    async fn deployed_sha(&self, service: &str) -> Option<String> {
        let functions = testkit::local_stack::deployed_functions(self.state(), &self.local.gateway).await;
        functions.iter().find(|f| f.name == service).and_then(|f| f.label("Git-SHA").map(str::to_owned))
    }

    /// Invokes `service` until it answers with `expected` (a new replica starts after a deployment).
    async fn served(&self, service: &str, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.http.get(format!("{}function/{service}", self.local.gateway)).send().await.unwrap();
            let body = answer.text().await.unwrap_or_default();
            if body.contains(expected) {
                return body;
            }
            assert!(Instant::now() < deadline, "{service} did not answer {expected:?}: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A delivery id GitHub would send (one per push and time, so a test's deliveries are all distinct).
fn uuid_like(sha: &str, at: u64) -> String {
    format!("{}-{at}-{}", &sha[..8], now_secs())
}

/// Samples the deployed `Git-SHA` of `service` every 100 ms until `stop` is set: every commit it was ever seen
/// deployed from.
fn watch_deployments(stack: &Stack, service: &'static str) -> (Arc<Mutex<BTreeSet<String>>>, Arc<Mutex<bool>>) {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(Mutex::new(false));
    let (state, gateway) = (stack.state().to_owned(), stack.local.gateway.clone());
    let (seen_by_task, stop_by_task) = (seen.clone(), stop.clone());
    tokio::spawn(async move {
        // Bounded: at most 10 minutes of samples.
        for _ in 0..6000 {
            if *stop_by_task.lock().unwrap() {
                return;
            }
            let functions = testkit::local_stack::deployed_functions(&state, &gateway).await;
            if let Some(sha) = functions.iter().find(|f| f.name == service).and_then(|f| f.label("Git-SHA")) {
                seen_by_task.lock().unwrap().insert(sha.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (seen, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_commit_never_replaces_a_newer_one_and_a_force_push_back_is_deployed() {
    let stack = up();
    let work = tempfile::tempdir().unwrap();
    let service = "octo-web-4";
    let started = now_secs();

    // 1. v1 builds slowly; v2, pushed while it builds, is deployed; v1 is built but never deployed.
    let repo = new_repo(work.path(), "slow");
    write_function(&repo, "web", "v1", true);
    let v1 = commit(&repo, "v1: a slow build");
    write_function(&repo, "web", "v2", false);
    let v2 = commit(&repo, "v2");
    let (seen, stop) = watch_deployments(&stack, service);
    stack.publish(&repo, "slow", &v1);
    stack.deliver(&Push { name: "slow", before: NULL_SHA, after: &v1, forced: false, pushed_at: started }).await;
    stack.pending("slow", &v1, "web").await;
    // Handed on: buildshiprun has found v1 the newest and started its build, which sleeps for SLOW_SECONDS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.publish(&repo, "slow", &v2);
    stack.deliver(&Push { name: "slow", before: &v1, after: &v2, forced: false, pushed_at: started + 1 }).await;
    let v2_stack = stack.final_status("slow", &v2, "stack-deploy", 0).await;
    assert_eq!(v2_stack["state"], "success", "{v2_stack}");
    assert_eq!(stack.deployed_sha(service).await.as_deref(), Some(v2.as_str()));
    let v1_web = stack.final_status("slow", &v1, "web", 0).await;
    let v1_stack = stack.final_status("slow", &v1, "stack-deploy", 0).await;
    *stop.lock().unwrap() = true;
    let superseded = format!("superseded by {}, a newer commit of main", &v2[..7]);
    assert_eq!(v1_web["state"], "success", "{v1_web}");
    assert_eq!(v1_web["description"], format!("{superseded}: built, not deployed"), "{v1_web}");
    assert_eq!(v1_stack["state"], "success", "{v1_stack}");
    assert!(v1_stack["description"].as_str().unwrap().starts_with(&superseded), "{v1_stack}");
    assert_eq!(stack.deployed_sha(service).await.as_deref(), Some(v2.as_str()), "v2 stays deployed");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.contains(&v1), "v1 was never deployed: {seen:?}");
    assert!(stack.served(service, "v2").await.contains("<h1>v2</h1>"));
    let builds = stack.state().join("logs/builds").join(ofc::push::account_id(OWNER).to_string()).join("slow");
    assert!(builds.join(&v1).join("web.log").exists(), "v1 was built (its slow build ran to its end)");
    // buildshiprun's own account: v1 superseded after its build, and no deployment of it.
    let log = std::fs::read_to_string(stack.state().join("logs/buildshiprun.log")).unwrap();
    let of_v1: Vec<&str> = log.lines().filter(|line| line.contains(v1.as_str())).collect();
    assert!(of_v1.iter().any(|line| line.contains("superseded: not deployed")), "{of_v1:#?}");
    assert!(!of_v1.iter().any(|line| line.contains("deployed owner=")), "{of_v1:#?}");

    // 2. v2 delivered before v1: v1 is not built at all.
    let repo = new_repo(work.path(), "late");
    write_function(&repo, "late", "late v1", false);
    let v1 = commit(&repo, "v1");
    write_function(&repo, "late", "late v2", false);
    let v2 = commit(&repo, "v2");
    stack.publish(&repo, "late", &v2);
    stack.deliver(&Push { name: "late", before: &v1, after: &v2, forced: false, pushed_at: started + 11 }).await;
    let v2_stack = stack.final_status("late", &v2, "stack-deploy", 0).await;
    assert_eq!(v2_stack["state"], "success", "{v2_stack}");
    stack.deliver(&Push { name: "late", before: NULL_SHA, after: &v1, forced: false, pushed_at: started + 10 }).await;
    let v1_stack = stack.final_status("late", &v1, "stack-deploy", 0).await;
    let superseded = format!("superseded by {}, a newer commit of main: not built", &v2[..7]);
    assert_eq!((v1_stack["state"].as_str(), v1_stack["description"].as_str()), (Some("success"), Some(&*superseded)));
    let v1_late = stack.final_status("late", &v1, "late", 0).await;
    assert_eq!(v1_late["description"], superseded, "{v1_late}");
    let builds = stack.state().join("logs/builds").join(ofc::push::account_id(OWNER).to_string()).join("late");
    assert!(builds.join(&v2).join("late.log").exists(), "v2 was built");
    assert!(!builds.join(&v1).join("late.log").exists(), "v1 was not built");
    assert_eq!(stack.deployed_sha("octo-late-4").await.as_deref(), Some(v2.as_str()));

    // 3. A force-push back to an older commit deploys that commit.
    let repo = new_repo(work.path(), "back");
    write_function(&repo, "back", "back v1", false);
    let f1 = commit(&repo, "f1");
    write_function(&repo, "back", "back v2", false);
    let f2 = commit(&repo, "f2");
    for (before, after, at) in [(NULL_SHA, &f1, started + 20), (f1.as_str(), &f2, started + 21)] {
        stack.publish(&repo, "back", after);
        stack.deliver(&Push { name: "back", before, after, forced: false, pushed_at: at }).await;
        let ended = stack.final_status("back", after, "stack-deploy", 0).await;
        assert_eq!(ended["state"], "success", "{ended}");
    }
    let earlier = stack.statuses("back", &f1).await.len();
    stack.publish(&repo, "back", &f1);
    stack.deliver(&Push { name: "back", before: &f2, after: &f1, forced: true, pushed_at: started + 22 }).await;
    let ended = stack.final_status("back", &f1, "stack-deploy", earlier).await;
    assert_eq!(ended["state"], "success", "{ended}");
    assert!(ended["description"].as_str().unwrap().starts_with("deployed"), "{ended}");
    let functions = testkit::local_stack::deployed_functions(stack.state(), &stack.local.gateway).await;
    let back: Vec<_> = functions.iter().filter(|f| f.label("Git-Repo") == Some("back")).collect();
    assert_eq!(back.len(), 1, "{functions:?}");
    assert_eq!(back[0].label("Git-SHA"), Some(f1.as_str()), "the force-pushed commit is deployed");
}
