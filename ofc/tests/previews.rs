//! Previews end to end: the real `ofc up` with `previews` on (a copy of this repository's stack files) and the
//! example repository asking for them. A branch's push gets a preview at its own host while the default branch's
//! function keeps serving its own version; a pull request gets one comment, edited on its next push; the owner's
//! limit refuses a further preview with a reason; closing the pull request removes its functions and images (the
//! registry answers 404 for them, and still 200 for the default branch's) and says so.

use std::path::Path;
use std::time::{Duration, Instant};

use ofc::state::{StateDir, INSTALLATION_ID};
use serde_json::{json, Value};
use shared::naming::{preview_tag, PreviewOf};
use testkit::browser::{Browser, Locator};
use testkit::git::{commit, git};
use testkit::local_stack::{example_repo, LocalStack, Up};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// This repository's stack files with `previews` on, at most two previews per owner, and garbage-collect's
/// `settings` replacing the stack's (`preview_ttl`, `preview_sweep_every`).
fn stack_with_previews(dir: &Path, settings: &[(&str, &str)]) {
    let files = ["github.yml", "gateway_config.yml", "buildshiprun_limits_swarm.yml", "buildshiprun_limits_k8s.yml"];
    for file in files {
        std::fs::copy(Path::new(ROOT).join(file), dir.join(file)).unwrap();
    }
    let stack = std::fs::read_to_string(Path::new(ROOT).join("stack.yml")).unwrap();
    assert!(stack.contains("previews: \"false\"") && stack.contains("max_previews_per_owner: \"10\""));
    let mut stack = stack
        .replace("previews: \"false\"", "previews: \"true\"")
        .replace("max_previews_per_owner: \"10\"", "max_previews_per_owner: \"2\"");
    for (name, value) in settings {
        let line = stack.lines().find(|l| l.trim_start().starts_with(&format!("{name}:"))).unwrap().to_owned();
        let indent = &line[..line.len() - line.trim_start().len()];
        stack = stack.replace(&line, &format!("{indent}{name}: \"{value}\""));
    }
    std::fs::write(dir.join("stack.yml"), stack).unwrap();
}

struct Local {
    stack: LocalStack,
    state: StateDir,
    http: reqwest::Client,
    repo: std::path::PathBuf,
    bare: std::path::PathBuf,
}

impl Local {
    /// `ofc up` (functions run with `runtime`) of the stack files with previews on (and `settings`, see
    /// [`stack_with_previews`]), and the example repository `octo/fns` asking for previews, on its git server.
    fn start(root: &Path, runtime: &'static str, settings: &[(&str, &str)]) -> Self {
        let stack_dir = root.join("stack");
        std::fs::create_dir_all(&stack_dir).unwrap();
        stack_with_previews(&stack_dir, settings);
        let stack = Up::new(OFC).runtime(runtime).stack(&stack_dir).start();
        let state = StateDir::new(stack.state_path());
        let repo = example_repo(root, "fns");
        let mut yml = std::fs::read_to_string(repo.join("stack.yml")).unwrap();
        yml.push_str("configuration:\n  previews: true\n");
        std::fs::write(repo.join("stack.yml"), yml).unwrap();
        commit(&repo, "ask for previews");
        let bare = state.repos().join("octo/fns.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare"]);
        Self { stack, state, http: reqwest::Client::new(), repo, bare }
    }

    /// Publishes `HEAD` of the work repository as `branch` on the local git server.
    fn publish(&self, branch: &str) -> String {
        git(&self.repo, &["push", "-q", "-f", self.bare.to_str().unwrap(), &format!("HEAD:refs/heads/{branch}")]);
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    fn repository(&self) -> Value {
        let clone_url = format!("{}octo/fns.git", self.state.endpoints().unwrap().git);
        json!({"id": 1, "name": "fns", "full_name": "octo/fns", "private": false, "clone_url": clone_url,
               "default_branch": "main", "owner": {"login": "octo", "id": ofc::push::account_id("octo")}})
    }

    /// A signed delivery of `event` to gh-push through the gateway; its answer's status and body.
    async fn deliver(&self, event: &str, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let secret = self.state.secret("github-webhook-secret").unwrap();
        let response = self
            .http
            .post(format!("{}function/gh-push", self.stack.gateway))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string())
            .header("X-Hub-Signature-256", shared::signature::sign_sha256(secret.as_bytes(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn push(&self, branch: &str, sha: &str) {
        let push = json!({"ref": format!("refs/heads/{branch}"), "before": "0".repeat(40), "after": sha,
                          "created": false, "deleted": false, "forced": false, "repository": self.repository(),
                          "installation": {"id": INSTALLATION_ID}});
        let (status, answer) = self.deliver("push", &push).await;
        assert_eq!(status, 202, "{answer}");
    }

    async fn pull_request(&self, action: &str, number: u64, sha: &str) -> (u16, Value) {
        let event = json!({"action": action, "number": number, "repository": self.repository(),
                           "installation": {"id": INSTALLATION_ID},
                           "pull_request": {"number": number, "merged": false,
                                            "head": {"ref": "feature", "sha": sha, "repo": {"full_name": "octo/fns"}}}});
        self.deliver("pull_request", &event).await
    }

    /// The commit's statuses, newest first.
    async fn statuses(&self, sha: &str) -> Vec<Value> {
        let api = self.state.endpoints().unwrap().github_api;
        self.http.get(format!("{api}repos/octo/fns/commits/{sha}/statuses")).send().await.unwrap().json().await.unwrap()
    }

    /// Waits for the `count`th `stack-deploy` that is not `pending` on `sha`; answers the statuses then.
    async fn wait_deployed(&self, sha: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let statuses = self.statuses(sha).await;
            let ended = statuses.iter().filter(|s| s["context"] == "stack-deploy" && s["state"] != "pending").count();
            if ended >= count {
                return statuses;
            }
            assert!(
                Instant::now() < deadline,
                "stack-deploy #{count} of {sha} did not end: {statuses:#?}\n{}",
                self.stack.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn comments(&self, number: u64) -> Vec<Value> {
        let api = self.state.endpoints().unwrap().github_api;
        let url = format!("{api}repos/octo/fns/issues/{number}/comments");
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// GETs `path` on the edge router as `host` until the body holds `expected` (a replica starts after its deployment).
    async fn serves(&self, host_label: &str, path: &str, expected: &str) {
        let router = self.state.endpoints().unwrap().router;
        let port = router.trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self
                .http
                .get(format!("http://127.0.0.1:{port}{path}"))
                .header("host", format!("{host_label}.localhost:{port}"))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            if status == 200 && body.contains(expected) {
                return;
            }
            assert!(Instant::now() < deadline, "{host_label}{path} did not serve {expected:?}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The images the deployed functions run (pinned by digest), by deployed name.
    async fn images(&self) -> Vec<(String, String)> {
        testkit::local_stack::deployed_functions(self.stack.state_path(), &self.stack.gateway)
            .await
            .into_iter()
            .map(|f| (f.name, f.image))
            .collect()
    }

    /// The registry's answer to a `HEAD` of `image`'s manifest (`host/repository@digest`), as a runtime would ask.
    async fn manifest_status(&self, image: &str) -> u16 {
        let (host, rest) = image.split_once('/').unwrap();
        let (repository, digest) = rest.split_once('@').unwrap_or_else(|| panic!("pinned by digest: {image}"));
        let url = format!("http://{host}/v2/{repository}/manifests/{digest}");
        let answer = self.http.head(url).header("accept", shared::registry::MANIFEST_TYPES).send().await.unwrap();
        answer.status().as_u16()
    }

    async fn names(&self) -> Vec<String> {
        testkit::local_stack::deployed_functions(self.stack.state_path(), &self.stack.gateway)
            .await
            .into_iter()
            .map(|f| f.name)
            .collect()
    }
}

fn latest<'a>(statuses: &'a [Value], context: &str) -> &'a Value {
    statuses.iter().find(|s| s["context"] == context).unwrap_or_else(|| panic!("no `{context}` status: {statuses:#?}"))
}

#[tokio::test]
async fn branches_and_pull_requests_get_previews_of_their_own_that_go_with_them() {
    let root = tempfile::tempdir().unwrap();
    let local = Local::start(root.path(), "buildah", &[]);

    // The default branch.
    let main = local.publish("main");
    local.push("main", &main).await;
    let statuses = local.wait_deployed(&main, 1).await;
    assert_eq!(latest(&statuses, "stack-deploy")["state"], "success", "{statuses:#?}");

    // A branch: its own names, host and version; the default branch's function is untouched.
    std::fs::write(local.repo.join("hello/index.html"), "<h1>from the feature branch</h1>\n").unwrap();
    let feature = commit(&local.repo, "feature");
    local.publish("feature");
    local.serves("octo", "/hello", "Hello").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runtime = local.state.root.join("runtime");
    let before = testkit::process::buildah_run_groups_rss_kib(&runtime);
    let started = Instant::now();
    local.push("feature", &feature).await;
    let statuses = local.wait_deployed(&feature, 1).await;
    let branch_tag = preview_tag("fns", &PreviewOf::Branch("feature".into()));
    assert_eq!(latest(&statuses, "stack-deploy")["state"], "success", "{statuses:#?}");
    let router = local.state.endpoints().unwrap().router;
    let port = router.trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
    assert_eq!(latest(&statuses, "hello")["target_url"], format!("http://octo--{branch_tag}.localhost:{port}/hello"));
    local.serves(&format!("octo--{branch_tag}"), "/hello", "from the feature branch").await;
    println!("figure: branch push to live preview in {:.1} s", started.elapsed().as_secs_f64());
    local.serves(&format!("octo--{branch_tag}"), "/greet", "").await;
    // Measured once the deployments' own buildah steps are done, as the replicas idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = testkit::process::buildah_run_groups_rss_kib(&runtime);
    println!(
        "figure: one idle preview of two functions adds {} KiB of replica RSS ({before} KiB before, {after} KiB after)",
        after.saturating_sub(before)
    );
    local.serves("octo", "/hello", "Hello").await;
    let names = local.names().await;
    for name in
        ["octo-hello-4", "octo-greet-4", &format!("octo-hello-4-{branch_tag}"), &format!("octo-greet-4-{branch_tag}")]
    {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    another_owner_s_branch_of_the_same_name_does_not_collide(&local, &branch_tag).await;

    // A pull request of that branch: its own preview, and one comment, edited on the next push.
    let (status, answer) = local.pull_request("opened", 7, &feature).await;
    assert_eq!(status, 202, "{answer}");
    local.wait_deployed(&feature, 2).await;
    let pr_tag = preview_tag("fns", &PreviewOf::PullRequest(7));
    local.serves(&format!("octo--{pr_tag}"), "/hello", "from the feature branch").await;
    let comments = local.comments(7).await;
    assert_eq!(comments.len(), 1, "{comments:#?}");
    let body = comments[0]["body"].as_str().unwrap();
    assert!(body.contains(&format!("http://octo--{pr_tag}.localhost:{port}/hello")), "{body}");
    assert!(body.contains(&feature[..7]), "{body}");

    std::fs::write(local.repo.join("hello/index.html"), "<h1>second commit of the pull request</h1>\n").unwrap();
    let second = commit(&local.repo, "second");
    local.publish("feature");
    let (status, answer) = local.pull_request("synchronize", 7, &second).await;
    assert_eq!(status, 202, "{answer}");
    local.wait_deployed(&second, 1).await;
    local.serves(&format!("octo--{pr_tag}"), "/hello", "second commit").await;
    let comments = local.comments(7).await;
    assert_eq!(comments.len(), 1, "edited, not posted again: {comments:#?}");
    assert!(comments[0]["body"].as_str().unwrap().contains(&second[..7]), "{comments:#?}");

    // The owner's dashboard, in a real browser: the previews grouped by branch and pull request, with their URLs.
    dashboard_shows_the_previews(port.parse().unwrap(), &branch_tag, &pr_tag).await;

    over_the_limit_is_refused(&local).await;
    closing_and_deleting_remove_the_previews(&local, &second, &branch_tag, &pr_tag).await;
}

/// `octo-corp` (whose login starts with `octo-`) pushes its own `fns` on a branch also named `feature`: the same
/// tag, but its own names and host, and octo's preview keeps serving octo's version.
async fn another_owner_s_branch_of_the_same_name_does_not_collide(local: &Local, branch_tag: &str) {
    let was_on = git(&local.repo, &["rev-parse", "--abbrev-ref", "HEAD"]);
    git(&local.repo, &["checkout", "-q", "-b", "octo-corp-work"]);
    std::fs::write(local.repo.join("hello/index.html"), "<h1>from octo-corp</h1>\n").unwrap();
    let sha = commit(&local.repo, "octo-corp's feature");
    let bare = local.state.repos().join("octo-corp/fns.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    git(&local.repo, &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/feature"]);
    git(&local.repo, &["checkout", "-q", &was_on]);
    let clone_url = format!("{}octo-corp/fns.git", local.state.endpoints().unwrap().git);
    let push = json!({"ref": "refs/heads/feature", "before": "0".repeat(40), "after": sha, "created": true,
                      "deleted": false, "forced": false, "installation": {"id": INSTALLATION_ID},
                      "repository": {"id": 2, "name": "fns", "full_name": "octo-corp/fns", "private": false,
                                     "clone_url": clone_url, "default_branch": "main",
                                     "owner": {"login": "octo-corp", "id": ofc::push::account_id("octo-corp")}}});
    let (status, answer) = local.deliver("push", &push).await;
    assert_eq!(status, 202, "{answer}");
    local.serves(&format!("octo-corp--{branch_tag}"), "/hello", "from octo-corp").await;
    local.serves(&format!("octo--{branch_tag}"), "/hello", "from the feature branch").await;
    let names = local.names().await;
    for name in [format!("octo-corp-hello-9-{branch_tag}"), format!("octo-hello-4-{branch_tag}")] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // octo-corp's preview is its own to remove; it does not count towards octo's limit.
    let delete = json!({"ref": "feature", "ref_type": "branch", "repository": push["repository"],
                        "installation": {"id": INSTALLATION_ID}});
    let (status, answer) = local.deliver("delete", &delete).await;
    assert_eq!((status, answer["deleted"].as_array().map(Vec::len)), (200, Some(2)), "{answer}");
    assert!(local.names().await.contains(&format!("octo-hello-4-{branch_tag}")), "octo's preview stays");
}

/// A third preview is over the owner's limit of two: refused, with the reason on the commit.
async fn over_the_limit_is_refused(local: &Local) {
    git(&local.repo, &["checkout", "-q", "-b", "other"]);
    std::fs::write(local.repo.join("greet/extra.txt"), "other\n").unwrap();
    git(&local.repo, &["add", "-A"]);
    let other = commit(&local.repo, "other");
    local.publish("other");
    local.push("other", &other).await;
    let statuses = local.wait_deployed(&other, 1).await;
    assert_eq!(latest(&statuses, "stack-deploy")["state"], "failure", "{statuses:#?}");
    let hello = latest(&statuses, "hello");
    assert_eq!(hello["state"], "failure");
    assert!(hello["description"].as_str().unwrap().contains("max_previews_per_owner"), "{hello}");
    let other_tag = preview_tag("fns", &PreviewOf::Branch("other".into()));
    assert!(!local.names().await.iter().any(|n| n.ends_with(&other_tag)));
}

/// Closing the pull request removes its functions and images (only its own) and the comment says so; deleting the
/// branch removes its preview; the default branch keeps serving, its images in the registry.
async fn closing_and_deleting_remove_the_previews(local: &Local, second: &str, branch_tag: &str, pr_tag: &str) {
    let images = local.images().await;
    let of = |suffix: &str| -> Vec<String> {
        images.iter().filter(|(name, _)| name.ends_with(suffix)).map(|(_, image)| image.clone()).collect()
    };
    let (pr_images, branch_images, main_images) = (of(pr_tag), of(branch_tag), of("-4"));
    assert_eq!((pr_images.len(), branch_images.len(), main_images.len()), (2, 2, 2), "{images:?}");
    for image in pr_images.iter().chain(&branch_images).chain(&main_images) {
        assert_eq!(local.manifest_status(image).await, 200, "{image} is in the registry");
    }
    let started = Instant::now();
    let (status, answer) = local.pull_request("closed", 7, second).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"].as_array().map(Vec::len), Some(2), "{answer}");
    assert_eq!(answer["images_kept"], json!([]), "{answer}");
    // Two pushes of the pull request: each function's repository held two manifests.
    assert!(answer["images_deleted"].as_array().map_or(0, Vec::len) >= 2, "{answer}");
    for image in &pr_images {
        assert_eq!(local.manifest_status(image).await, 404, "{image} is gone with its pull request");
    }
    println!("figure: a pull request's close to its functions and images gone in {} ms", took.as_millis());
    for image in branch_images.iter().chain(&main_images) {
        assert_eq!(local.manifest_status(image).await, 200, "{image} stays");
    }
    let names = local.names().await;
    assert!(!names.iter().any(|n| n.ends_with(pr_tag)), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(branch_tag)), "the branch's preview stays: {names:?}");
    assert!(names.iter().any(|n| n == "octo-hello-4"), "{names:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let comments = local.comments(7).await;
        assert_eq!(comments.len(), 1);
        if comments[0]["body"].as_str().unwrap().contains("functions and images were removed") {
            break;
        }
        assert!(Instant::now() < deadline, "the comment does not say the preview was removed: {comments:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deleting the branch removes its preview; the default branch keeps serving.
    let delete = json!({"ref": "feature", "ref_type": "branch", "repository": local.repository(),
                        "installation": {"id": INSTALLATION_ID}});
    let (status, answer) = local.deliver("delete", &delete).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["images_kept"], json!([]), "{answer}");
    let mut names = local.names().await;
    names.sort();
    assert_eq!(names, vec!["octo-greet-4", "octo-hello-4"]);
    for image in &branch_images {
        assert_eq!(local.manifest_status(image).await, 404, "{image} is gone with its branch");
    }
    for image in &main_images {
        assert_eq!(local.manifest_status(image).await, 200, "{image} stays");
    }
    local.serves("octo", "/hello", "Hello").await;
}

/// Signs octo in through the GitHub double's pages and reads the dashboard's list.
async fn dashboard_shows_the_previews(port: u16, branch_tag: &str, pr_tag: &str) {
    let browser = Browser::start(1280, 1000).await;
    browser.open(&format!("http://system.localhost:{port}/dashboard/")).await;
    let form = browser.find("form").await;
    browser.find("input[name=login]").await.send_keys("octo").await.unwrap();
    form.find(Locator::Css("button, input[type=submit]")).await.unwrap().click().await.unwrap();
    browser.wait_for_text("Preview: octo/fns · pull request #7").await;
    browser.wait_for_text("Preview: octo/fns · branch feature").await;
    let text = browser.text().await;
    for url in [
        format!("http://octo--{pr_tag}.localhost:{port}/hello"),
        format!("http://octo--{branch_tag}.localhost:{port}/greet"),
        format!("http://octo.localhost:{port}/hello"),
    ] {
        assert!(text.contains(&url), "{url} on the dashboard: {text}");
    }
    let pull_request = text.find("pull request #7").unwrap();
    assert!(text[pull_request..].contains(&format!("octo-hello-4-{pr_tag}")), "{text}");
    println!("screenshot {}", browser.screenshot("previews-dashboard").await.display());
    browser.close().await;
}

/// The operator's TTL, short here (`preview_ttl` 20 s, looked at every second): a branch's preview left alone for
/// longer is swept, its functions and images, while a preview deployed since and the default branch's stay.
#[tokio::test]
async fn the_sweep_removes_a_stale_preview_and_its_images_and_leaves_fresh_ones() {
    const TTL: Duration = Duration::from_secs(20);
    let root = tempfile::tempdir().unwrap();
    let local = Local::start(root.path(), "none", &[("preview_ttl", "20s"), ("preview_sweep_every", "1s")]);
    let main = local.publish("main");
    local.push("main", &main).await;
    let statuses = local.wait_deployed(&main, 1).await;
    assert_eq!(latest(&statuses, "stack-deploy")["state"], "success", "{statuses:#?}");

    // A branch's preview, and half a TTL later another's.
    let mut deployed_at: Vec<Instant> = Vec::new();
    for branch in ["stale", "fresh"] {
        git(&local.repo, &["checkout", "-q", "-B", branch, &main]);
        std::fs::write(local.repo.join("hello/index.html"), format!("<h1>{branch}</h1>\n")).unwrap();
        let sha = commit(&local.repo, branch);
        local.publish(branch);
        if let Some(first) = deployed_at.first() {
            tokio::time::sleep((*first + TTL / 2).saturating_duration_since(Instant::now())).await;
        }
        local.push(branch, &sha).await;
        let statuses = local.wait_deployed(&sha, 1).await;
        assert_eq!(latest(&statuses, "stack-deploy")["state"], "success", "{statuses:#?}");
        deployed_at.push(Instant::now());
    }
    let stale = preview_tag("fns", &PreviewOf::Branch("stale".into()));
    let fresh = preview_tag("fns", &PreviewOf::Branch("fresh".into()));
    let images = local.images().await;
    let of = |suffix: &str| -> Vec<String> {
        images.iter().filter(|(name, _)| name.ends_with(suffix)).map(|(_, image)| image.clone()).collect()
    };
    let (stale_images, fresh_images, main_images) = (of(&stale), of(&fresh), of("-4"));
    assert_eq!((stale_images.len(), fresh_images.len(), main_images.len()), (2, 2, 2), "{images:?}");

    // The stale preview goes within a few sweeps of its TTL; the fresh one is then half a TTL younger.
    let deadline = deployed_at[0] + TTL + Duration::from_secs(30);
    loop {
        let names = local.names().await;
        if !names.iter().any(|n| n.ends_with(&stale)) {
            println!(
                "figure: a preview with a {} s TTL swept {:.1} s after its deployment was seen",
                TTL.as_secs(),
                deployed_at[0].elapsed().as_secs_f64()
            );
            break;
        }
        assert!(Instant::now() < deadline, "the stale preview was not swept: {names:?}\n{}", local.stack.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names = local.names().await;
    for name in ["octo-hello-4".to_owned(), "octo-greet-4".to_owned(), format!("octo-hello-4-{fresh}")] {
        assert!(names.contains(&name), "{name} stays: {names:?}");
    }
    assert!(deployed_at[1].elapsed() < TTL, "the fresh preview was checked while fresh");
    // The sweep deletes the functions first, then their images: the images go within a few seconds after.
    for image in &stale_images {
        let gone_by = Instant::now() + Duration::from_secs(20);
        let mut status = local.manifest_status(image).await;
        while status != 404 && Instant::now() < gone_by {
            tokio::time::sleep(Duration::from_millis(200)).await;
            status = local.manifest_status(image).await;
        }
        assert_eq!(status, 404, "{image} is swept with its preview");
    }
    for image in fresh_images.iter().chain(&main_images) {
        assert_eq!(local.manifest_status(image).await, 200, "{image} stays");
    }
}
