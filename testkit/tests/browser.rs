//! The browser the dashboard's test drives: Debian's headless Chromium reaches a `*.localhost` name on loopback
//! (the local stack's pretty URLs), runs the page's script, and saves a screenshot.

use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use testkit::browser::Browser;
use testkit::ServedFunction;

async fn page(headers: HeaderMap) -> Html<String> {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    Html(format!(
        "<!doctype html><title>smoke</title><p id=host>{host}</p><p id=js></p>\
         <script>document.getElementById('js').textContent = 'script ran';</script>"
    ))
}

#[tokio::test]
async fn chromium_opens_a_localhost_subdomain_and_saves_a_screenshot() {
    let served = ServedFunction::serve(Router::new().route("/", get(page))).await;
    let browser = Browser::start(800, 600).await;
    let port = served.address().port();
    browser.open(&format!("http://smoke.localhost:{port}/")).await;
    browser.wait_for_text("script ran").await;
    let host = browser.find("#host").await.text().await.unwrap();
    assert_eq!(host, format!("smoke.localhost:{port}"));
    let shot = browser.screenshot("smoke").await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{} is not a PNG", shot.display());
    browser.close().await;
}
