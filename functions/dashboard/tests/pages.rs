//! The dashboard over real HTTP on loopback: a gateway double answering `/system/functions`, `metrics` and
//! `function-logs`, a folder log store with a few builds, and sessions signed as edge-auth signs them.
//!
//! Each page's server time (`Server-Timing`) and size are printed (`--nocapture`) for the issue's closing note.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashboard::Config;
use serde_json::json;
use shared::app_key::AppKey;
use shared::config::Secret;
use shared::gateway::BasicAuth;
use shared::log_store::{LogKey, LogMeta, LogRecord, LogStore, LogStoreConfig, Outcome, StepTiming};
use shared::openfaas::{labels, FunctionStatus};
use shared::revocation::{Revocations, SessionGate};
use shared::server::ServerConfig;
use shared::session::{Account, Session, SessionSigner, SessionVerifier, COOKIE_NAME};
use testkit::{common_config, labelled_function, RecordingGateway, Reply, ServedFunction};

const DASHBOARD_URL: &str = "http://system.localhost:8081/dashboard/";
const AUTH_URL: &str = "http://auth.system.localhost:8081/";
const PRETTY_URL: &str = "http://user.localhost:8081/function";
const OLD_SHA: &str = "1111111111111111111111111111111111111111";
const MID_SHA: &str = "2222222222222222222222222222222222222222";
const NEW_SHA: &str = "3333333333333333333333333333333333333333";
const ALICE: u64 = 11;
const ACME: u64 = 99;

struct Keys {
    signer: SessionSigner,
    verifier: SessionVerifier,
    /// Another key pair: a session it signs is not ours.
    stranger: SessionSigner,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ours = AppKey::generate();
        let theirs = AppKey::generate();
        Keys {
            signer: SessionSigner::from_pem(&Secret::new(ours.private_pem)).unwrap(),
            verifier: SessionVerifier::from_pem(&ours.public_pem).unwrap(),
            stranger: SessionSigner::from_pem(&Secret::new(theirs.private_pem)).unwrap(),
        }
    })
}

/// alice, member of acme, signed in at `issued` for an hour.
fn alice(issued: DateTime<Utc>) -> Session {
    Session {
        id: Session::new_id(),
        user: Account { login: "alice".into(), id: ALICE },
        name: Some("Alice".into()),
        orgs: vec![Account { login: "acme".into(), id: ACME }],
        issued,
        expires: issued + chrono::Duration::hours(1),
    }
}

fn cookie(token: &str) -> String {
    format!("{COOKIE_NAME}={token}")
}

/// The sessions the dashboard admits: our key, and the sign-outs recorded in the log store's folder `store`.
fn gate(store: &std::path::Path) -> SessionGate {
    let revocations = Revocations::open(&LogStoreConfig::folder(store)).unwrap().fresh_for(Duration::ZERO);
    SessionGate::new(keys().verifier.clone(), Arc::new(revocations))
}

fn alice_cookie() -> String {
    cookie(&keys().signer.sign(&alice(Utc::now())))
}

/// A cloud function of `owner` (with the owner id label) from `repo`, deployed at `sha`.
fn function(name: &str, owner: &str, owner_id: u64, repo: &str, sha: &str) -> FunctionStatus {
    let mut f = labelled_function(name, owner, repo, true);
    let found = f.labels.get_or_insert_with(BTreeMap::new);
    found.insert(labels::OWNER_ID.into(), owner_id.to_string());
    found.insert(labels::GIT_SHA.into(), sha.into());
    f
}

struct Dashboard {
    gateway: RecordingGateway,
    served: ServedFunction,
    http: reqwest::Client,
    logs: tempfile::TempDir,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

async fn record(store: &LogStore, sha: &str, outcome: Outcome, text: &str) {
    let started = Utc::now() - chrono::Duration::seconds(90);
    let meta = LogMeta {
        outcome,
        started,
        finished: started + chrono::Duration::milliseconds(83_500),
        steps: vec![
            StepTiming { step: "build".into(), duration_ms: 80_000 },
            StepTiming { step: "deploy".into(), duration_ms: 3_500 },
        ],
        image: Some(format!("registry:5000/alice/fns-hello:{sha}")),
        digest: None,
    };
    let key = LogKey::new(ALICE, "fns", sha, "hello").unwrap();
    store.put(&key, &LogRecord { meta, text: text.into() }, &[]).await.unwrap();
    // Records are ordered by when they were stored.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn start() -> Dashboard {
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    gateway.add_function(function("alice-hello-5", "alice", ALICE, "fns", NEW_SHA));
    gateway.add_function(function("acme-api-4", "acme", ACME, "web", OLD_SHA));
    gateway.add_function(function("bob-secret-3", "bob", 12, "fns", OLD_SHA));
    // The login `alice` once belonged to account 77: its functions are not this alice's.
    gateway.add_function(function("alice-inherited-5", "alice", 77, "old", OLD_SHA));
    gateway.add_function(labelled_function("alice-manual-5", "alice", "fns", false));
    let logs = tempfile::tempdir().unwrap();
    let store = LogStore::open(&LogStoreConfig::folder(logs.path())).unwrap();
    record(&store, OLD_SHA, Outcome::Success, "built\n").await;
    record(&store, MID_SHA, Outcome::Failure, "step 3: <script>alert('pwned')</script> & failed\n").await;
    record(&store, NEW_SHA, Outcome::Success, "built again\n").await;
    let config = Config {
        common: common_config(&gateway, "payload"),
        credentials: BasicAuth { user: "admin".into(), password: Secret::new("pw") },
        sessions: gate(logs.path()),
        dashboard_url: DASHBOARD_URL.parse().unwrap(),
        auth_url: AUTH_URL.parse().unwrap(),
        gateway_public_url: "http://gateway.example/".parse().unwrap(),
        gateway_pretty_url: Some(PRETTY_URL.into()),
        github_url: "https://github.com/".parse().unwrap(),
        store: Arc::new(store),
        server: ServerConfig::for_tests(1 << 20),
    };
    let served = ServedFunction::start(dashboard::app(config)).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Dashboard { gateway, served, http, logs }
}

impl Dashboard {
    fn answers_metrics(&self, reply: Reply) {
        self.gateway.reply("GET", "/function/metrics", vec![reply]);
    }

    fn answers_logs(&self, reply: Reply) {
        self.gateway.reply("GET", "/function/function-logs", vec![reply]);
    }

    /// `GET path` with the cookie; prints the page's server time and size.
    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut request = self.http.get(format!("{}{path}", self.served.url()));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let started = Instant::now();
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        let page = Page { status, headers, body };
        save(path, &page);
        println!(
            "page GET /{path}: {status}, server {} ms ({:.1} ms round trip), {} bytes",
            page.header("server-timing").trim_start_matches("app;dur="),
            started.elapsed().as_secs_f64() * 1000.0,
            page.body.len()
        );
        page
    }
}

/// Keeps each HTML page under the tests' scratch folder (`target/tmp/dashboard-pages/`), to look at.
fn save(path: &str, page: &Page) {
    if !page.header("content-type").starts_with("text/html") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-pages");
    std::fs::create_dir_all(&dir).unwrap();
    let name: String = path.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let name = if name.is_empty() { "index".to_owned() } else { name };
    std::fs::write(dir.join(format!("{name}-{}.html", page.status)), &page.body).unwrap();
}

fn metrics_answer() -> Reply {
    Reply::status(200).json(&json!({
        "function": "alice-hello-5", "window_seconds": 3600, "success": 41, "client_error": 7, "server_error": 3,
        "total": 51, "source": "gateway"
    }))
}

fn logs_answer() -> Reply {
    let lines = [
        json!({"name": "alice-hello-5", "namespace": "openfaas-fn", "instance": "alice-hello-5-1",
            "timestamp": "2026-11-27T05:00:01.123456789Z", "text": "listening on 8080"}),
        json!({"name": "alice-hello-5", "namespace": "openfaas-fn", "instance": "alice-hello-5-1",
            "timestamp": "2026-11-27T05:00:02Z", "text": "served <b>GET /</b>"}),
    ];
    let body: String = lines.iter().flat_map(|l| [l.to_string(), "\n".into()]).collect();
    Reply::status(200).header("content-type", "application/x-ndjson").body(body)
}

fn login_for(requested: &str) -> String {
    reqwest::Url::parse_with_params(&format!("{AUTH_URL}login/"), [("r", requested)]).unwrap().to_string()
}

#[tokio::test]
async fn without_a_valid_session_every_page_redirects_to_the_login_and_back() {
    let dashboard = start().await;
    let page = dashboard.get("functions/alice-hello-5?x=1", None).await;
    assert_eq!(page.status, 302);
    assert_eq!(page.header("location"), login_for(&format!("{DASHBOARD_URL}functions/alice-hello-5?x=1")));
    assert_eq!(page.header("cache-control"), "no-store");

    let now = Utc::now();
    let token = keys().signer.sign(&alice(now));
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = base64_url(
        &serde_json::to_vec(&json!({"iss": "openfaas-cloud/edge-auth", "sub": "bob", "uid": 12,
        "orgs": [], "iat": now.timestamp(), "exp": now.timestamp() + 3600}))
        .unwrap(),
    );
    parts[1] = &forged;
    let expired = keys().signer.sign(&alice(now - chrono::Duration::hours(2)));
    let stranger = keys().stranger.sign(&alice(now));
    for (why, token) in
        [("tampered", parts.join(".")), ("expired", expired), ("another key", stranger), ("garbage", "x.y.z".into())]
    {
        let page = dashboard.get("", Some(&cookie(&token))).await;
        assert_eq!(page.status, 302, "{why}");
        assert_eq!(page.header("location"), login_for(DASHBOARD_URL), "{why}");
    }
    assert!(dashboard.gateway.requests_to("/system").is_empty(), "nothing is read for a request without a session");
}

#[tokio::test]
async fn a_signed_out_session_no_longer_opens_a_page() {
    let dashboard = start().await;
    let session = alice(Utc::now());
    let token = keys().signer.sign(&session);
    assert_eq!(dashboard.get("", Some(&cookie(&token))).await.status, 200);
    // edge-auth's /logout/ records the sign-out in the log store the dashboard reads.
    Revocations::open(&LogStoreConfig::folder(dashboard.logs.path())).unwrap().revoke(&session).await.unwrap();
    let page = dashboard.get("", Some(&cookie(&token))).await;
    assert_eq!(page.status, 302, "the copied token is refused");
    assert_eq!(page.header("location"), login_for(DASHBOARD_URL));
    assert_eq!(dashboard.get("", Some(&alice_cookie())).await.status, 200, "a new session of the same user works");
}

/// A path the login must bring the user back to under `dashboard_url`, whatever it looks like.
#[tokio::test]
async fn the_login_s_return_address_stays_under_the_dashboard() {
    let dashboard = start().await;
    let page = dashboard.get("/evil.example/x", None).await;
    assert_eq!(page.status, 302);
    assert_eq!(page.header("location"), login_for(&format!("{DASHBOARD_URL}evil.example/x")));
}

#[tokio::test]
async fn the_list_shows_exactly_the_user_s_and_their_organisations_functions() {
    let dashboard = start().await;
    let page = dashboard.get("", Some(&alice_cookie())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for listed in ["alice-hello-5", "acme-api-4"] {
        assert!(page.body.contains(&format!("href=\"{DASHBOARD_URL}functions/{listed}\"")), "{listed} is listed");
    }
    for hidden in ["bob-secret-3", "alice-inherited-5", "alice-manual-5"] {
        assert!(!page.body.contains(hidden), "{hidden} is not listed");
    }
    assert!(page.body.contains(&format!("href=\"https://github.com/alice/fns/commit/{NEW_SHA}\"")));
    assert!(page.body.contains(&format!("<code>{}</code>", &NEW_SHA[..7])), "the short SHA is shown");
    assert!(page.body.contains("href=\"http://alice.localhost:8081/hello\""), "the pretty URL");
    assert!(page.body.contains("href=\"http://acme.localhost:8081/api\""));
    assert!(page.body.contains(">ready<"));
    assert!(page.body.contains("Signed in as <b>alice</b>"));
    assert_eq!(page.header("cache-control"), "no-store");
    let csp = page.header("content-security-policy");
    let nonce = csp.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect("a nonce in the CSP");
    assert!(csp.starts_with("default-src 'none'; script-src 'nonce-"), "{csp}");
    assert!(page.body.contains(&format!("<style nonce=\"{nonce}\">")), "the page's style carries the nonce");
    assert!(!page.body.contains("<script src") && !page.body.contains("<link"), "no external assets");
    let again = dashboard.get("", Some(&alice_cookie())).await;
    assert_ne!(again.header("content-security-policy"), csp, "every page has its own nonce");
}

#[tokio::test]
async fn a_function_page_shows_builds_newest_first_invocations_and_the_log_tail() {
    let dashboard = start().await;
    dashboard.answers_metrics(metrics_answer());
    dashboard.answers_logs(logs_answer());
    let session = alice_cookie();
    let page = dashboard.get("functions/alice-hello-5", Some(&session)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    let at = |sha: &str| body.find(&format!("{DASHBOARD_URL}functions/alice-hello-5/builds/{sha}")).expect(sha);
    assert!(at(NEW_SHA) < at(MID_SHA) && at(MID_SHA) < at(OLD_SHA), "newest first");
    let builds = &body[body.find("id=\"builds\"").unwrap()..];
    let outcomes: Vec<&str> =
        builds.match_indices("<span class=\"").map(|(i, _)| builds[i + 13..].split('"').next().unwrap()).collect();
    assert_eq!(&outcomes[..3], ["success", "failure", "success"]);
    assert!(builds.contains("1m 23s"), "each build's duration");
    for (class, count) in [("2xx", 41), ("4xx", 7), ("5xx", 3), ("total", 51)] {
        assert!(body.contains(&format!("<li>{class}<b")) && body.contains(&format!(">{count}</b></li>")), "{class}");
    }
    assert!(body.contains("05:00:01 alice-hello-5-1 listening on 8080"), "the log tail");
    assert!(body.contains("served &#60;b&#62;GET /&#60;/b&#62;"), "the log's HTML is text");
    assert!(body.contains(&format!("href=\"{DASHBOARD_URL}functions/alice-hello-5/logs?follow=true&#38;tail=100\"")));
    let token = session.trim_start_matches(&format!("{COOKIE_NAME}="));
    for called in ["/function/metrics", "/function/function-logs"] {
        let request = &dashboard.gateway.requests_to(called)[0];
        assert_eq!(request.header("authorization"), Some(format!("Bearer {token}").as_str()), "{called}");
        assert!(request.query.as_deref().unwrap().contains("name=alice-hello-5"), "{called}");
    }
    let metrics = &dashboard.gateway.requests_to("/function/metrics")[0];
    assert_eq!(metrics.query.as_deref(), Some("name=alice-hello-5&window=1h"));
}

#[tokio::test]
async fn another_owner_s_function_is_refused_and_an_unknown_one_is_not_found() {
    let dashboard = start().await;
    let session = alice_cookie();
    for path in [
        "functions/bob-secret-3",
        "functions/bob-secret-3/logs?follow=true",
        "functions/alice-inherited-5",
        "functions/alice-manual-5",
    ] {
        let page = dashboard.get(path, Some(&session)).await;
        assert_eq!(page.status, 403, "{path}");
        assert!(page.header("content-type").starts_with("text/html"), "{path}");
        assert!(page.body.contains("Not your function"), "{path}: {}", page.body);
    }
    let page = dashboard.get(&format!("functions/bob-secret-3/builds/{OLD_SHA}"), Some(&session)).await;
    assert_eq!(page.status, 403);
    assert!(!page.body.contains("built"), "nothing of bob's log");
    for path in ["functions/nobody-here", "functions/..%2F..%2Fetc", "functions/UPPER"] {
        assert_eq!(dashboard.get(path, Some(&session)).await.status, 404, "{path}");
    }
    let page = dashboard.get("functions/alice-hello-5/builds/abcdef0", Some(&session)).await;
    assert_eq!(page.status, 404, "no log at that SHA");
    assert_eq!(dashboard.get("functions/alice-hello-5/builds/not-a-sha", Some(&session)).await.status, 404);
    assert!(dashboard.gateway.requests_to("/function/function-logs").is_empty(), "bob's logs were never asked for");
}

#[tokio::test]
async fn a_build_log_page_escapes_what_the_build_printed() {
    let dashboard = start().await;
    let page = dashboard.get(&format!("functions/alice-hello-5/builds/{MID_SHA}"), Some(&alice_cookie())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "the log's HTML is not markup");
    assert!(
        page.body.contains("&#60;script&#62;alert(&#39;pwned&#39;)&#60;/script&#62; &#38; failed"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"outcome\">failure<"));
    assert!(page.body.contains(">build<") && page.body.contains(">1m 20s<"), "the steps");
    assert!(page.body.contains(">deploy<") && page.body.contains(">3.5 s<"));
}

#[tokio::test]
async fn unavailable_metrics_and_logs_leave_the_page_working() {
    let dashboard = start().await;
    dashboard.answers_metrics(Reply::status(502).body("prometheus is down"));
    dashboard.answers_logs(Reply::status(500));
    let page = dashboard.get("functions/alice-hello-5?down", Some(&alice_cookie())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Invocations are unavailable right now."));
    assert!(page.body.contains("Runtime logs are unavailable right now."));
    assert!(page.body.contains(&format!("functions/alice-hello-5/builds/{NEW_SHA}")), "the builds are still shown");
}

#[tokio::test]
async fn follow_streams_function_logs_as_ndjson() {
    let dashboard = start().await;
    dashboard.answers_logs(logs_answer());
    let session = alice_cookie();
    let page = dashboard.get("functions/alice-hello-5/logs?follow=true", Some(&session)).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/plain"), "a browser without script shows it inline");
    let asked = dashboard
        .http
        .get(format!("{}functions/alice-hello-5/logs?follow=true", dashboard.served.url()))
        .header("cookie", &session)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert!(
        asked.headers()["content-type"].to_str().unwrap().starts_with("application/x-ndjson"),
        "what the script asks for"
    );
    let lines: Vec<serde_json::Value> = page.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], "listening on 8080");
    let request = &dashboard.gateway.requests_to("/function/function-logs")[0];
    assert_eq!(request.query.as_deref(), Some("name=alice-hello-5&tail=100&follow=true"));
    assert!(request.header("authorization").unwrap().starts_with("Bearer "));
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn a_failing_gateway_is_an_error_page_that_shows_no_internal_address() {
    let dashboard = start().await;
    dashboard.gateway.reply("GET", "/system/functions", vec![Reply::status(500).body("database on fire")]);
    let page = dashboard.get("", Some(&alice_cookie())).await;
    assert_eq!(page.status, 502);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.body.contains("Try again in a moment"), "{}", page.body);
    assert!(!page.body.contains("127.0.0.1") && !page.body.contains("on fire"), "{}", page.body);
    assert_eq!(page.header("cache-control"), "no-store");
}

/// A gateway whose `function-logs` sends a line only when the test says so, and whose `/system/functions` lists
/// alice-hello-5: what "follow" looks like from the dashboard's side.
async fn following_gateway() -> (ServedFunction, tokio::sync::mpsc::Sender<String>) {
    use axum::routing::get;
    let (lines, receive) = tokio::sync::mpsc::channel::<String>(4);
    let receive = Arc::new(tokio::sync::Mutex::new(Some(receive)));
    let hello = function("alice-hello-5", "alice", ALICE, "fns", NEW_SHA);
    let router =
        axum::Router::new().route("/system/functions", get(move || async move { axum::Json(vec![hello]) })).route(
            "/function/function-logs",
            get(move || async move {
                let receive = receive.lock().await.take().expect("followed once");
                let stream = futures_util::stream::unfold(receive, |mut receive| async move {
                    let line = receive.recv().await?;
                    Some((Ok::<_, std::io::Error>(format!("{line}\n")), receive))
                });
                axum::body::Body::from_stream(stream)
            }),
        );
    (ServedFunction::serve(router).await, lines)
}

#[tokio::test]
async fn follow_passes_each_line_on_as_it_arrives() {
    let (gateway, lines) = following_gateway().await;
    let logs = tempfile::tempdir().unwrap();
    let config = Config {
        common: shared::config::CommonConfig {
            gateway_url: gateway.url().parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new("payload"),
        },
        credentials: BasicAuth { user: "admin".into(), password: Secret::new("pw") },
        sessions: gate(logs.path()),
        dashboard_url: DASHBOARD_URL.parse().unwrap(),
        auth_url: AUTH_URL.parse().unwrap(),
        gateway_public_url: "http://gateway.example/".parse().unwrap(),
        gateway_pretty_url: None,
        github_url: "https://github.com/".parse().unwrap(),
        store: Arc::new(LogStore::open(&LogStoreConfig::folder(logs.path())).unwrap()),
        server: ServerConfig::for_tests(1 << 20),
    };
    let served = ServedFunction::start(dashboard::app(config)).await;
    let mut response = reqwest::Client::new()
        .get(format!("{}functions/alice-hello-5/logs?follow=true", served.url()))
        .header("cookie", alice_cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for text in ["first", "second"] {
        lines.send(json!({"name": "alice-hello-5", "text": text}).to_string()).await.unwrap();
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk()).await.expect("in time").unwrap();
        let line: serde_json::Value = serde_json::from_slice(&chunk.expect("a line")).unwrap();
        assert_eq!(line["text"], text, "each line arrives while the stream is still open");
    }
    drop(lines);
    assert!(response.chunk().await.unwrap().is_none(), "the stream ends when function-logs ends it");
}

/// faasd's `GET /system/functions` has no `availableReplicas`: the list page reads each shown function's readiness
/// from its own `GET /system/function/NAME`.
#[tokio::test]
async fn the_list_shows_readiness_from_each_function_s_own_status_when_the_list_counts_none() {
    let dashboard = start().await;
    let mut list = serde_json::to_value(dashboard.gateway.functions()).unwrap();
    for function in list.as_array_mut().unwrap() {
        function.as_object_mut().unwrap().remove("availableReplicas");
    }
    dashboard.gateway.reply("GET", "/system/functions", vec![Reply::status(200).json(&list)]);
    let mut starting =
        serde_json::to_value(dashboard.gateway.functions().into_iter().find(|f| f.name == "acme-api-4").unwrap())
            .unwrap();
    starting["availableReplicas"] = 0.into();
    dashboard.gateway.reply("GET", "/system/function/acme-api-4", vec![Reply::status(200).json(&starting)]);

    let page = dashboard.get("", Some(&alice_cookie())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body.matches(">ready<").count(), 1, "alice-hello is ready by its own status");
    assert_eq!(page.body.matches(">not ready<").count(), 1, "acme-api is still starting by its own status");
    let mut asked: Vec<String> =
        dashboard.gateway.requests_to("/system/function/").into_iter().map(|r| r.path).collect();
    asked.sort();
    assert_eq!(
        asked,
        ["/system/function/acme-api-4", "/system/function/alice-hello-5"],
        "only the shown ones are asked"
    );
}

#[tokio::test]
async fn previews_are_listed_by_branch_and_pull_request_with_their_urls_and_builds() {
    let dashboard = start().await;
    let tag = shared::naming::preview_tag("fns", &shared::naming::PreviewOf::PullRequest(12));
    let service = format!("alice-hello-5-{tag}");
    let mut preview = function(&service, "alice", ALICE, "fns", NEW_SHA);
    preview.labels.get_or_insert_with(BTreeMap::new).insert(labels::PREVIEW.into(), tag.clone());
    preview
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(labels::PREVIEW_OF.into(), "pull request #12 <b>".into());
    dashboard.gateway.add_function(preview);
    let store = LogStore::open(&LogStoreConfig::folder(dashboard.logs.path())).unwrap();
    let key = LogKey::new(ALICE, "fns", NEW_SHA, &shared::naming::preview_log_name("hello", &tag)).unwrap();
    let meta = LogMeta {
        outcome: Outcome::Success,
        started: Utc::now(),
        finished: Utc::now(),
        steps: vec![],
        image: None,
        digest: None,
    };
    store.put(&key, &LogRecord { meta, text: "the preview's own build\n".into() }, &[]).await.unwrap();

    let page = dashboard.get("", Some(&alice_cookie())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let heading = page
        .body
        .find("Preview: alice/fns · pull request #12 &#60;b&#62;")
        .unwrap_or_else(|| panic!("the preview's heading, escaped: {}", page.body));
    let default = page.body.find("href=\"http://alice.localhost:8081/hello\"").expect("the default branch's URL");
    assert!(default < heading, "the default branch's functions come first");
    assert!(page.body[heading..].contains(&format!("href=\"http://alice--{tag}.localhost:8081/hello\"")));
    let function = dashboard.get(&format!("functions/{service}"), Some(&alice_cookie())).await;
    assert_eq!(function.status, 200, "{}", function.body);
    assert!(function.body.contains(&format!("functions/{service}/builds/{NEW_SHA}")), "{}", function.body);
    let build = dashboard.get(&format!("functions/{service}/builds/{NEW_SHA}"), Some(&alice_cookie())).await;
    assert!(
        build.body.contains("the preview&#39;s own build"),
        "the preview's build log, under its own key: {}",
        build.body
    );
}

#[tokio::test]
async fn behind_a_gateway_that_ignores_the_owner_query_one_list_serves_every_account() {
    let dashboard = start().await;
    // OpenFaaS's gateway answers every function whatever the query.
    let everything = serde_json::to_value(dashboard.gateway.functions()).unwrap();
    dashboard.gateway.reply("GET", "/system/functions", vec![Reply::status(200).json(&everything)]);
    let page = dashboard.get("", Some(&alice_cookie())).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for listed in ["alice-hello-5", "acme-api-4"] {
        assert!(page.body.contains(&format!("functions/{listed}\"")), "{listed} is listed");
    }
    for hidden in ["bob-secret-3", "alice-inherited-5", "alice-manual-5"] {
        assert!(!page.body.contains(hidden), "{hidden} is not listed");
    }
    let lists = dashboard.gateway.requests_to("/system/functions");
    assert_eq!(lists.len(), 1, "the whole list was read once for alice and acme: {lists:?}");
}
