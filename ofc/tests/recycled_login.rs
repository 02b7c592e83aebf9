//! A recycled login through the real pipeline (`ofc up`, `ofc push`, `ofc secret`, `ofc logs`, the dashboard
//! behind the edge router): account 1 is `acme`, keeps a secret and deploys; it is renamed away (the GitHub double's
//! site-admin rename), and a new account 2 takes `acme`. Account 2 reaches nothing of account 1: not its secret (the
//! deployment is refused naming the missing secret), not its build logs, not its images (as a base or with
//! `skip_build`), not its deployed name (refused as another owner's, so account 1's function keeps running as it
//! was), and its dashboard lists nothing of account 1's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::git::{commit, init_repo};
use testkit::local_stack::{LocalStack, Up};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

/// A repository `fns` under `parent` with `stack` as its stack.yml and each `(function, Dockerfile)`.
fn repo(parent: &Path, stack: &str, dockerfiles: &[(&str, String)]) -> PathBuf {
    let repo = parent.join("fns");
    for (function, dockerfile) in dockerfiles {
        std::fs::create_dir_all(repo.join(function)).unwrap();
        std::fs::write(repo.join(function).join("Dockerfile"), dockerfile).unwrap();
    }
    std::fs::write(repo.join("stack.yml"), stack).unwrap();
    init_repo(&repo);
    commit(&repo, "first");
    repo
}

fn own_dockerfile(function: &str) -> String {
    format!("FROM localhost/ofc/watchdog:latest\nENV greeting=\"{function}\"\n")
}

fn function(name: &str, extra: &str) -> String {
    format!("  {name}:\n    lang: dockerfile\n    handler: ./{name}\n    image: {name}\n{extra}")
}

fn stack_of(functions: &[String]) -> String {
    format!("version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n{}", functions.concat())
}

fn push(stack: &LocalStack, repo: &Path, owner: &str) -> (bool, String) {
    stack.ofc_text(&["push", repo.to_str().unwrap(), "--owner", owner, "--timeout", "120"])
}

fn secret_set(stack: &LocalStack, owner: &str, name: &str, value: &str) -> String {
    let mut child = Command::new(OFC)
        .args(["secret", "set", "--owner", owner, name, "--state"])
        .arg(stack.state_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The failure line of `context` in `ofc push`'s output.
fn failure_of<'a>(output: &'a str, context: &str) -> &'a str {
    output
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some(context) && line.contains("failure"))
        .unwrap_or_else(|| panic!("a failure status for {context} in:\n{output}"))
}

/// The GitHub double's answer for `login` (`GET /users/{login}`): its account id.
async fn user_id(http: &reqwest::Client, github: &str, login: &str) -> u64 {
    let user: serde_json::Value =
        http.get(format!("{github}users/{login}")).send().await.unwrap().json().await.unwrap();
    user["id"].as_u64().unwrap_or_else(|| panic!("{user}"))
}

/// A browser's walk through the edge router's sign-in, without a browser: every `*.localhost` host is the router
/// on loopback, every other address is called as it is; cookies are kept by name.
struct SignIn {
    http: reqwest::Client,
    router_port: u16,
    cookies: BTreeMap<String, String>,
}

impl SignIn {
    fn new(router_port: u16) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, router_port, cookies: BTreeMap::new() }
    }

    /// The request for `url`, sent to the router when its host is one of the router's.
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let parsed = reqwest::Url::parse(url).unwrap();
        let host = parsed.host_str().unwrap().to_owned();
        let mut request = if host.ends_with("localhost") {
            let mut direct = parsed.clone();
            direct.set_host(Some("127.0.0.1")).unwrap();
            direct.set_port(Some(self.router_port)).unwrap();
            self.http.request(method, direct).header("host", format!("{host}:{}", self.router_port))
        } else {
            self.http.request(method, parsed)
        };
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", jar.join("; "));
        }
        request
    }

    /// Sends it, keeps its cookies; answers the status, the `location` made absolute, and the body.
    async fn send(&mut self, request: reqwest::RequestBuilder, url: &str) -> (u16, Option<String>, String) {
        let response = request.send().await.unwrap();
        for cookie in response.headers().get_all("set-cookie") {
            let pair = cookie.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|l| reqwest::Url::parse(url).unwrap().join(l.to_str().unwrap()).unwrap().to_string());
        (status, location, response.text().await.unwrap())
    }

    /// Follows redirects from `url` (at most ten) until a page answers; at the GitHub double's sign-in form, signs
    /// in as `login`. Answers the last status and body.
    async fn walk(&mut self, url: &str, login: &str) -> (u16, String) {
        let mut url = url.to_owned();
        for _ in 0..10 {
            let (status, location, body) = if url.contains("/login/oauth/authorize") {
                let query: BTreeMap<String, String> =
                    reqwest::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
                let mut form = vec![("login", login.to_owned()), ("orgs", String::new())];
                for field in ["client_id", "redirect_uri", "state", "scope"] {
                    if let Some(value) = query.get(field) {
                        form.push((field, value.clone()));
                    }
                }
                let request = self.request(reqwest::Method::POST, &url).form(&form);
                self.send(request, &url).await
            } else {
                let request = self.request(reqwest::Method::GET, &url);
                self.send(request, &url).await
            };
            match location {
                Some(next) if (300..400).contains(&status) => url = next,
                _ => return (status, body),
            }
        }
        panic!("more than ten redirects from {url}");
    }
}

fn router_port(stack: &LocalStack) -> u16 {
    let router = stack.endpoints()["router"].as_str().expect("endpoints.json names the router").to_owned();
    router.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap()
}

/// What account 1 left before its rename: its id, its function `api`, its image's tag and its build logs.
struct FirstAccount {
    id: u64,
    api: shared::openfaas::FunctionStatus,
    tag: String,
    logs: String,
}

/// Account 1 is `acme`: its secret `db`, and its function `api` mounting it.
async fn first_account_deploys(stack: &LocalStack, http: &reqwest::Client, github: &str, work: &Path) -> FirstAccount {
    let first = user_id(http, github, "acme").await;
    let printed = secret_set(stack, "acme", "db", "first-account-password");
    assert!(printed.contains(&format!("{first}--db")), "{printed}");
    let stack_yml = stack_of(&[function("api", "    secrets:\n      - db\n")]);
    let theirs = repo(&work.join("first"), &stack_yml, &[("api", own_dockerfile("api"))]);
    let (ok, output) = push(stack, &theirs, "acme");
    assert!(ok, "{output}");
    let before = testkit::local_stack::deployed_functions(stack.state_path(), &stack.gateway).await;
    let api = before.iter().find(|f| f.name == "acme-api-4").cloned().unwrap_or_else(|| panic!("{before:?}"));
    assert_eq!(api.secrets.as_deref().unwrap(), [format!("{first}--db")]);
    assert_eq!(api.labels.as_ref().unwrap()["com.openfaas.cloud.git-owner-id"], first.to_string());
    let their_image = api.image.clone();
    assert!(their_image.contains(&format!("/{first}/fns/api@sha256:")), "{their_image}");
    let their_tag = their_image.split('@').next().unwrap().to_owned()
        + ":"
        + &api.labels.as_ref().unwrap()["com.openfaas.cloud.git-sha"];
    let (ok, their_logs) = stack.ofc_text(&["logs", "acme/fns"]);
    assert!(ok && their_logs.contains("==> api: success"), "{their_logs}");

    FirstAccount { id: first, api, tag: their_tag, logs: their_logs }
}

/// Renames account 1 away (GitHub Enterprise's site-admin rename); `acme` is then a new account's: its id.
async fn rename_away(http: &reqwest::Client, github: &str, first: u64) -> u64 {
    let renamed = http
        .patch(format!("{github}admin/users/acme"))
        .json(&serde_json::json!({ "login": "acme-renamed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 202);
    assert_eq!(user_id(http, github, "acme-renamed").await, first);
    let second = user_id(http, github, "acme").await;
    assert_ne!(second, first);
    let taken = http.patch(format!("{github}admin/users/bob")).json(&serde_json::json!({ "login": "acme-renamed" }));
    assert_eq!(taken.send().await.unwrap().status(), 422, "a login a rename took is not free");

    second
}

/// Signed in as `acme` (account 2) through the edge router: its function is listed, nothing of account 1's.
async fn dashboard_shows_nothing_of_the_first(stack: &LocalStack) {
    let port = router_port(stack);
    let mut browser = SignIn::new(port);
    let dashboard = format!("http://system.localhost:{port}/dashboard/");
    let (status, page) = browser.walk(&dashboard, "acme").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("acme-own-4"), "{page}");
    assert!(!page.contains("acme-api-4"), "account 1's function is not listed for account 2: {page}");
    let (status, page) = browser.walk(&format!("{dashboard}functions/acme-api-4"), "acme").await;
    assert_eq!(status, 403, "{page}");
    let (status, page) = browser.walk(&format!("{dashboard}functions/acme-api-4/logs?follow=false"), "acme").await;
    assert_eq!(status, 403, "{page}");
}

#[tokio::test]
async fn a_new_account_on_a_recycled_login_reaches_nothing_of_the_old_account() {
    let stack = Up::new(OFC).start();
    let github = stack.endpoints()["github_api"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let work = tempfile::tempdir().unwrap();
    let FirstAccount { id: first, api, tag: their_tag, logs: their_logs } =
        first_account_deploys(&stack, &http, &github, work.path()).await;
    let second = rename_away(&http, &github, first).await;

    // Account 2's view of `acme/fns` before it pushed: nothing stored (account 1's logs are under its id).
    let (ok, printed) = stack.ofc_text(&["logs", "acme/fns"]);
    assert!(!ok && printed.contains("no build of acme/fns is stored"), "{printed}");
    assert!(!printed.contains("first-account") && !printed.contains("==> api"), "{printed}");

    // Account 2 pushes as `acme`: its own function, one naming `db`, the old function's name, and account 1's image
    // as a base and as a ready image.
    let functions = [
        function("own", ""),
        function("reader", "    secrets:\n      - db\n"),
        function("api", ""),
        function("based", ""),
        format!("  borrowed:\n    skip_build: true\n    image: {their_tag}\n"),
    ];
    let dockerfiles = [
        ("own", own_dockerfile("own")),
        ("reader", own_dockerfile("reader")),
        ("api", own_dockerfile("second api")),
        ("based", format!("FROM {their_tag}\n")),
    ];
    let ours = repo(&work.path().join("second"), &stack_of(&functions), &dockerfiles);
    let (ok, output) = push(&stack, &ours, "acme");
    assert!(!ok, "{output}");
    assert!(
        failure_of(&output, "reader").contains(&format!("required secrets not found: {second}--db")),
        "the secret `db` is account 2's, which does not exist: {output}"
    );
    assert!(failure_of(&output, "api").contains("belongs to another owner"), "{output}");
    assert!(failure_of(&output, "based").contains("not this owner's image"), "{output}");
    assert!(failure_of(&output, "borrowed").contains("not one this owner may deploy"), "{output}");
    assert!(!output.contains("first-account-password"), "{output}");

    let after = testkit::local_stack::deployed_functions(stack.state_path(), &stack.gateway).await;
    let names: Vec<&str> = after.iter().map(|f| f.name.as_str()).collect();
    assert!(!names.contains(&"acme-reader-4") && !names.contains(&"acme-borrowed-4"), "{names:?}");
    let own = after.iter().find(|f| f.name == "acme-own-4").unwrap_or_else(|| panic!("{after:?}"));
    assert!(own.image.contains(&format!("/{second}/fns/own@sha256:")), "account 2's images are its own: {}", own.image);
    let unchanged = after.iter().find(|f| f.name == "acme-api-4").unwrap();
    assert_eq!(
        (&unchanged.image, &unchanged.secrets, &unchanged.labels),
        (&api.image, &api.secrets, &api.labels),
        "account 1's function is as it was"
    );
    let secret_file = stack.state_path().join(format!("function-secrets/{first}--db"));
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), "first-account-password");

    // Logs: `acme/fns` is now account 2's; account 1 reads its own under its new login.
    let (_, printed) = stack.ofc_text(&["logs", "acme/fns"]);
    assert!(printed.contains("==> own: success") && !printed.contains("==> api: success"), "{printed}");
    let (ok, renamed_logs) = stack.ofc_text(&["logs", "acme-renamed/fns"]);
    assert!(ok, "{renamed_logs}");
    assert_eq!(renamed_logs.replacen("acme-renamed/fns", "acme/fns", 1), their_logs, "account 1's logs are unchanged");

    dashboard_shows_nothing_of_the_first(&stack).await;
}
