//! A real browser for tests: Debian's headless Chromium driven over WebDriver (Debian's `chromedriver`, one per
//! test, on a free loopback port), with screenshots saved under `target/screenshots/` for people to look at.
//!
//! Chromium resolves every `*.localhost` name to loopback by itself, so the local stack's pretty URLs
//! (`http://alice.localhost:PORT/…`) work without touching `/etc/hosts`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use fantoccini::Locator;
use fantoccini::{Client, ClientBuilder};

use crate::process::ProcessGuard;

/// How long chromedriver may take to answer its status.
const DRIVER_READY_WITHIN: Duration = Duration::from_secs(20);
/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// A headless Chromium session; the browser and its driver stop when dropped.
pub struct Browser {
    pub client: Client,
    screenshots: PathBuf,
    _profile: tempfile::TempDir,
    _driver: ProcessGuard,
}

/// Why the browser test cannot run here: the packages are missing.
pub fn missing_packages() -> Option<String> {
    let found = |tool: &str| {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
    };
    let missing: Vec<&str> = [("chromium", "chromium"), ("chromedriver", "chromium-driver")]
        .into_iter()
        .filter(|(tool, _)| !found(tool))
        .map(|(_, package)| package)
        .collect();
    (!missing.is_empty()).then(|| format!("apt-get install {}", missing.join(" ")))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, `width`×`height` pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        if let Some(install) = missing_packages() {
            panic!("the browser test needs Chromium and its driver: {install}");
        }
        let port = crate::ports::free_port();
        let driver = ProcessGuard::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("chromedriver starts")
        .grace(Duration::from_secs(3));
        let url = format!("http://127.0.0.1:{port}");
        wait_for_driver(&url).await;
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    // Chromium's own sandbox needs user namespaces it cannot have as root in CI.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a WebDriver session with headless Chromium");
        let screenshots = screenshots_dir();
        Self { client, screenshots, _profile: profile, _driver: driver }
    }

    /// Opens `url` and waits until the document has loaded.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element `css` selects, once it is on the page (panics after a while, showing the page).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                return element;
            }
            if Instant::now() > deadline {
                let (url, text) = (self.url().await, self.text().await);
                unreachable_element(css, &url, &text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's text contains `text` (panics after a while, showing the page).
    pub async fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.text().await.contains(text) {
            if Instant::now() > deadline {
                let (url, shown) = (self.url().await, self.text().await);
                assert!(shown.contains(text), "`{text}` never showed on {url}: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// Saves the window as `target/screenshots/<name>.png` and answers the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Ends the WebDriver session, which closes Chromium (the driver is stopped when the value is dropped).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }

    /// The value of the cookie `name` the current page's host sees (HttpOnly ones included), as a script on the
    /// user's machine could copy it out of the profile.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client.get_named_cookie(name).await.ok().map(|cookie| cookie.value().to_owned())
    }

    /// Resizes the window (a phone's is about 390×844).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("resize the window");
    }
}

/// Fails the test: `css` never appeared on `url`, which shows `text`.
fn unreachable_element(css: &str, url: &str, text: &str) -> ! {
    panic!("no `{css}` on {url}: {text}")
}

/// `target/screenshots/`, made if needed (CI keeps `target/` as the artifact folder).
pub fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("make target/screenshots");
    dir.canonicalize().unwrap_or(dir)
}

async fn wait_for_driver(url: &str) {
    let deadline = Instant::now() + DRIVER_READY_WITHIN;
    let http = reqwest::Client::new();
    loop {
        let ready = http.get(format!("{url}/status")).send().await.ok();
        if let Some(answer) = ready {
            if let Ok(status) = answer.json::<serde_json::Value>().await {
                if status["value"]["ready"] == true {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not answer on {url} within {DRIVER_READY_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
