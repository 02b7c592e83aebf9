//! The dashboard as a user sees it, in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) drives the real `ofc up` through its edge router on `*.localhost`. Alice signs in through the
//! GitHub double's OAuth pages, sees her and her organisation's functions and not Bob's, opens a failed build's log
//! and a function's runtime log, and is refused Bob's function. Every page is saved as a screenshot under
//! `target/screenshots/dashboard-*.png`, and each page's server time and size is printed (the closing note's
//! figures).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::browser::Browser;
use testkit::browser::Locator;
use testkit::git::commit;
use testkit::local_stack::{example_repo, LocalStack, Up};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

fn push(stack: &LocalStack, repo: &Path, owner: &str) -> (bool, String) {
    let output = Command::new(OFC)
        .args(["push", repo.to_str().unwrap(), "--owner", owner, "--timeout", "240", "--state"])
        .arg(stack.state_path())
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

/// The router's port, from endpoints.json.
fn router_port(stack: &LocalStack) -> u16 {
    let router = stack.endpoints()["router"].as_str().expect("endpoints.json names the router").to_owned();
    router.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap()
}

/// Calls `url` until it answers 200 (a replica starts after its deployment); answers the body.
async fn call_until_live(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(answer) = reqwest::get(url).await {
            if answer.status() == 200 {
                return answer.text().await.unwrap_or_default();
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The page's server time (request start to response end, from the browser's Navigation Timing) and size.
async fn page_figures(browser: &Browser, page: &str) {
    let figures = browser
        .client
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return [n.responseEnd - n.requestStart, n.responseStart - n.requestStart, n.transferSize, \
                     document.documentElement.outerHTML.length];",
            vec![],
        )
        .await
        .unwrap();
    println!(
        "page {page}: server {:.1} ms (first byte {:.1} ms), {} bytes transferred, {} bytes of HTML",
        figures[0].as_f64().unwrap_or_default(),
        figures[1].as_f64().unwrap_or_default(),
        figures[2],
        figures[3]
    );
}

/// The dashboard process's resident memory, from /proc (the process `ofc up` started from its binary).
fn dashboard_rss_kib() -> Option<u64> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else { continue };
        if exe.file_name().is_some_and(|n| n == "dashboard") {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            return line.split_whitespace().nth(1)?.parse().ok();
        }
    }
    None
}

/// Alice's repository (deployed, then a commit whose `hello` fails to build), her organisation's, and Bob's.
fn push_three_owners(stack: &LocalStack, work: &Path) {
    let alice = example_repo(work, "fns");
    let (ok, output) = push(stack, &alice, "alice");
    assert!(ok, "alice's first push: {output}");
    std::fs::write(alice.join("hello/Dockerfile"), "FROM scratch\nCOPY missing-file.txt /\n").unwrap();
    commit(&alice, "broken");
    let (ok, output) = push(stack, &alice, "alice");
    assert!(!ok, "alice's broken push fails: {output}");
    for (owner, repo) in [("acme", "site"), ("bob", "fns")] {
        let repo = example_repo(&work.join(owner), repo);
        let (ok, output) = push(stack, &repo, owner);
        assert!(ok, "{owner}'s push: {output}");
    }
}

/// Calls to alice's `hello` through its pretty URL (the router on loopback, with her host).
struct PrettyUrl {
    url: String,
    host: String,
    http: reqwest::Client,
}

impl PrettyUrl {
    fn new(port: u16) -> Self {
        let http = reqwest::Client::new();
        Self { url: format!("http://127.0.0.1:{port}/hello"), host: format!("alice.localhost:{port}"), http }
    }

    async fn call(&self) -> u16 {
        let answer = self.http.get(&self.url).header("host", &self.host).send().await.unwrap();
        answer.status().as_u16()
    }

    /// Calls until the replica answers, then `more` times.
    async fn traffic(&self, more: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.call().await != 200 {
            assert!(Instant::now() < deadline, "alice's hello never answered at its pretty URL");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for _ in 0..more {
            self.call().await;
        }
    }
}

/// The dashboard sends the browser to edge-auth, which sends it to the GitHub double's sign-in page.
async fn sign_in(browser: &Browser, port: u16, login: &str, orgs: &str) {
    browser.open(&format!("http://system.localhost:{port}/dashboard/")).await;
    let form = browser.find("form").await;
    println!("screenshot {}", browser.screenshot("dashboard-github-sign-in").await.display());
    browser.find("input[name=login]").await.send_keys(login).await.unwrap();
    browser.find("input[name=orgs]").await.send_keys(orgs).await.unwrap();
    form.find(Locator::Css("button, input[type=submit]")).await.unwrap().click().await.unwrap();
}

/// On a function's page, Follow, then a call made now shows up in its runtime log.
async fn follow_a_call(browser: &Browser, pretty: &PrettyUrl) {
    let log_text = || async { browser.find("#log-tail").await.text().await.unwrap_or_default() };
    let calls_before = log_text().await.matches("GET / 200").count();
    browser.find("#follow").await.click().await.unwrap();
    browser.wait_for_text("Following").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        pretty.call().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if log_text().await.matches("GET / 200").count() > calls_before {
            break;
        }
        assert!(Instant::now() < deadline, "a followed call never appeared: {}", log_text().await);
    }
    println!("screenshot {}", browser.screenshot("dashboard-function-following").await.display());
}

/// The dashboard's answer to a request carrying only `token` (no redirects followed).
async fn dashboard_with(port: u16, token: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/dashboard/"))
        .header("host", format!("system.localhost:{port}"))
        .header("cookie", format!("{}={token}", shared::session::COOKIE_NAME))
        .send()
        .await
        .unwrap();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (response.status().as_u16(), location)
}

/// Signing out at edge-auth ends the session for the dashboard too, even for a copy of the cookie taken before.
async fn sign_out_ends_the_session(browser: &Browser, port: u16) {
    let token = browser.cookie(shared::session::COOKIE_NAME).await.expect("the session cookie");
    assert_eq!(dashboard_with(port, &token).await.0, 200, "the copied session opens the dashboard");
    browser.open(&format!("http://auth.system.localhost:{port}/logout/")).await;
    browser.wait_for_text("Signed out").await;
    println!("screenshot {}", browser.screenshot("dashboard-signed-out").await.display());
    // The dashboard trusts an answer about a session for 2 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, location) = loop {
        let answer = dashboard_with(port, &token).await;
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 302, "a signed-out session is sent to sign in again");
    assert!(location.contains("/login/"), "{location}");
    browser.open(&format!("http://system.localhost:{port}/dashboard/")).await;
    browser.find("input[name=login]").await;
}

#[tokio::test]
async fn a_user_signs_in_sees_their_functions_builds_and_logs_and_is_refused_anothers() {
    let stack = Up::new(OFC).runtime("buildah").start();
    let port = router_port(&stack);
    let work = tempfile::tempdir().unwrap();
    push_three_owners(&stack, work.path());
    let pretty = PrettyUrl::new(port);
    pretty.traffic(4).await;
    let _ = call_until_live(&format!("{}function/alice-greet-5", stack.gateway)).await;

    let browser = Browser::start(1280, 900).await;
    browser.open(&format!("http://alice.localhost:{port}/hello")).await;
    browser.wait_for_text("Hello").await;
    println!("screenshot {}", browser.screenshot("dashboard-pretty-url").await.display());
    sign_in(&browser, port, "alice", "acme").await;

    // The list: exactly alice's and acme's functions.
    browser.wait_for_text("alice-hello-5").await;
    let url = browser.url().await;
    assert!(url.starts_with(&format!("http://system.localhost:{port}/dashboard/")), "{url}");
    let list = browser.text().await;
    for name in ["alice-hello-5", "alice-greet-5", "acme-hello-4", "acme-greet-4"] {
        assert!(list.contains(name), "{name} is listed: {list}");
    }
    for name in ["bob-hello-3", "bob-greet-3"] {
        assert!(!list.contains(name), "{name} is not alice's: {list}");
    }
    page_figures(&browser, "list").await;
    println!("screenshot {}", browser.screenshot("dashboard-list").await.display());
    browser.resize(390, 844).await;
    println!("screenshot {}", browser.screenshot("dashboard-list-phone").await.display());
    browser.resize(1280, 900).await;

    // A function's page: its builds (the failed one first), its traffic and its runtime log.
    browser.find("a[href*='functions/alice-hello-5']").await.click().await.unwrap();
    browser.wait_for_text("failure").await;
    let detail = browser.text().await;
    assert!(detail.contains("success"), "the earlier build is listed: {detail}");
    assert!(detail.contains("ofc-watchdog"), "the runtime log's tail is shown: {detail}");
    page_figures(&browser, "function").await;
    println!("screenshot {}", browser.screenshot("dashboard-function").await.display());
    let function_page = browser.url().await;
    follow_a_call(&browser, &pretty).await;

    // The failed build's log names the reason.
    browser.open(&function_page).await;
    browser.find("a[href*='builds/']").await.click().await.unwrap();
    browser.wait_for_text("missing-file.txt").await;
    page_figures(&browser, "build-log").await;
    println!("screenshot {}", browser.screenshot("dashboard-build-log").await.display());

    // Bob's function is refused.
    browser.open(&format!("http://system.localhost:{port}/dashboard/functions/bob-hello-3")).await;
    let refused = browser.text().await;
    assert!(refused.contains("is not one of your functions") && refused.contains("403"), "{refused}");
    println!("screenshot {}", browser.screenshot("dashboard-refused").await.display());

    sign_out_ends_the_session(&browser, port).await;

    if let Some(rss) = dashboard_rss_kib() {
        println!("dashboard idle RSS: {rss} KiB (debug build)");
    }
    browser.close().await;
}
