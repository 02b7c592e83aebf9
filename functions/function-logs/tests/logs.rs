//! function-logs over real HTTP, against a gateway double that speaks OpenFaaS's `/system/functions` (the one of
//! `functions_api`) and `/system/logs` (newline-delimited JSON, kept open with `follow=true`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;
use axum::routing;
use axum::Router;
use function_logs::Config;
use functions_api::{require_basic_auth, Credentials, FunctionsApi, NoHooks};
use futures_util::StreamExt as _;
use serde_json::Value;
use shared::config::Secret;
use shared::gateway::BasicAuth;
use shared::server::ServerConfig;
use shared::session::COOKIE_NAME;
use testkit::sessions::{alice_token, expired_token, function_of, tampered_token, ACME, ADMIN, ALICE, MALLORY};
use testkit::ServedFunction;
use tokio::sync::broadcast;

/// The lines the gateway double has written for every function.
const WRITTEN: &str = concat!(
    r#"{"name":"alice-hello-5","namespace":"openfaas-fn","instance":"alice-hello-5-1","timestamp":"2026-11-27T05:00:00.000000001Z","text":"started"}"#,
    "\n",
    r#"{"name":"alice-hello-5","namespace":"openfaas-fn","instance":"alice-hello-5-1","timestamp":"2026-11-27T05:00:01Z","text":"GET / 200 \"ünïcode\""}"#,
    "\n",
);

/// The gateway double's `/system/logs`: what it was asked, and the follows it has open.
#[derive(Clone)]
struct LogsApi {
    queries: Arc<Mutex<Vec<String>>>,
    /// Lines a follow passes on as they are "written".
    appended: broadcast::Sender<String>,
    open_follows: Arc<AtomicUsize>,
}

/// Counts an open follow while it lives.
struct OpenFollow(Arc<AtomicUsize>);

impl Drop for OpenFollow {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn system_logs(State(api): State<LogsApi>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    api.queries.lock().unwrap().push(query.clone());
    let written = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from_static(WRITTEN.as_bytes()))]);
    let body = if query.split('&').any(|pair| pair == "follow=true") {
        api.open_follows.fetch_add(1, Ordering::SeqCst);
        let open = OpenFollow(api.open_follows.clone());
        let appended = futures_util::stream::unfold((api.appended.subscribe(), open), |(mut lines, open)| async {
            let line = lines.recv().await.ok()?;
            Some((Ok(Bytes::from(line)), (lines, open)))
        });
        Body::from_stream(written.chain(appended))
    } else {
        Body::from_stream(written)
    };
    Response::builder().header(header::CONTENT_TYPE, "application/x-ndjson").body(body).unwrap()
}

struct Stack {
    logs: LogsApi,
    _gateway: ServedFunction,
    function_logs: ServedFunction,
}

impl Stack {
    fn log_queries(&self) -> Vec<String> {
        self.logs.queries.lock().unwrap().clone()
    }
}

/// A gateway double with alice's, acme's, mallory's and a platform function deployed, and function-logs on it.
async fn start() -> Stack {
    let functions = FunctionsApi::new(BTreeMap::new(), Arc::new(NoHooks));
    functions.insert(function_of("alice-hello-5", ALICE));
    functions.insert(function_of("acme-api-4", ACME));
    functions.insert(function_of("mallory-x-7", MALLORY));
    functions.insert(shared::openfaas::FunctionStatus { name: "gh-push".into(), ..Default::default() });
    let logs = LogsApi { queries: Arc::default(), appended: broadcast::channel(16).0, open_follows: Arc::default() };
    let system =
        functions.router().merge(Router::new().route("/logs", routing::get(system_logs)).with_state(logs.clone()));
    let credentials = Credentials { user: ADMIN.0.into(), password: ADMIN.1.into() };
    let gateway = ServedFunction::serve(Router::new().nest("/system", require_basic_auth(system, credentials))).await;
    let config = Config {
        common: shared::config::CommonConfig {
            gateway_url: gateway.url().parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new("payload"),
        },
        credentials: BasicAuth { user: ADMIN.0.into(), password: Secret::new(ADMIN.1) },
        sessions: testkit::sessions::gate(),
        server: ServerConfig::for_tests(1 << 20),
    };
    let function_logs = ServedFunction::start(function_logs::app(config)).await;
    Stack { logs, _gateway: gateway, function_logs }
}

/// `GET function-logs?query` with `Authorization: Bearer token`.
async fn get(stack: &Stack, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}?{query}", stack.function_logs.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn refuses_a_request_without_a_valid_session() {
    let stack = start().await;
    let response = get(&stack, "name=alice-hello-5", None).await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer", "a 401 says how to authenticate");
    let (status, error) = error_of(response).await;
    assert_eq!((status, error.as_str()), (401, "not signed in: sign in to the dashboard first"));
    let (status, error) = error_of(get(&stack, "name=alice-hello-5", Some(&expired_token())).await).await;
    assert_eq!((status, error.as_str()), (401, "the session has expired: sign in to the dashboard first"));
    let (status, error) = error_of(get(&stack, "name=alice-hello-5", Some(&tampered_token())).await).await;
    assert_eq!(status, 401);
    assert!(error.contains("signature does not verify"), "{error}");
    let (status, _) = error_of(get(&stack, "name=alice-hello-5", Some("not.a.token")).await).await;
    assert_eq!(status, 401);
    let signed_out = alice_token();
    testkit::sessions::sign_out(&signed_out).await;
    let (status, error) = error_of(get(&stack, "name=alice-hello", Some(&signed_out)).await).await;
    assert_eq!((status, error.as_str()), (401, "the session has been signed out: sign in to the dashboard first"));
    assert!(stack.log_queries().is_empty(), "no log was read for anyone");
}

#[tokio::test]
async fn refuses_another_owner_s_function_and_the_platform_s_own() {
    let stack = start().await;
    let token = alice_token();
    for name in ["mallory-x-7", "gh-push"] {
        let (status, error) = error_of(get(&stack, &format!("name={name}"), Some(&token)).await).await;
        assert_eq!(status, 403, "{name}: {error}");
        assert!(error.contains("does not belong to you"), "{error}");
    }
    let (status, error) = error_of(get(&stack, "name=alice-nothing-5", Some(&token)).await).await;
    assert_eq!((status, error.as_str()), (404, "no function `alice-nothing-5` is deployed"));
    assert!(stack.log_queries().is_empty());
}

#[tokio::test]
async fn a_login_that_changed_hands_does_not_reach_the_old_owner_s_functions() {
    let stack = start().await;
    // Someone who now holds the login "mallory" on GitHub, with another id than the one the function was deployed for.
    let newcomer = testkit::sessions::signer().sign(&testkit::sessions::session(("mallory", 67), &[]));
    let (status, _) = error_of(get(&stack, "name=mallory-x-7", Some(&newcomer)).await).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn refuses_malformed_parameters() {
    let stack = start().await;
    let token = alice_token();
    for query in ["", "name=", "name=Alice_Hello", "name=alice-hello-5&tail=x", "name=alice-hello-5&since=today"] {
        let (status, error) = error_of(get(&stack, query, Some(&token)).await).await;
        assert_eq!(status, 400, "{query}: {error}");
    }
    let (status, error) = error_of(get(&stack, "name=alice-hello-5&follow=maybe", Some(&token)).await).await;
    assert_eq!((status, error.as_str()), (400, "`follow` \"maybe\" is not true or false"));
}

#[tokio::test]
async fn streams_the_owner_s_log_unchanged() {
    let stack = start().await;
    let response = reqwest::Client::new()
        .get(format!("{}?name=alice-hello-5&tail=2&since=2026-11-27T04:00:00Z", stack.function_logs.url()))
        .header("cookie", format!("theme=dark; {COOKIE_NAME}={}", alice_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert_eq!(response.text().await.unwrap(), WRITTEN, "byte for byte what the gateway wrote");
    assert_eq!(
        stack.log_queries(),
        vec!["name=alice-hello-5&tail=2&since=2026-11-27T04%3A00%3A00Z&follow=false".to_owned()]
    );
}

#[tokio::test]
async fn an_organisation_s_function_is_its_members() {
    let stack = start().await;
    let response = get(&stack, "name=acme-api-4", Some(&alice_token())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), WRITTEN);
    let outsider = testkit::sessions::signer().sign(&testkit::sessions::session(MALLORY, &[]));
    assert_eq!(get(&stack, "name=acme-api-4", Some(&outsider)).await.status(), 403);
}

/// Reads from `body` until it holds `lines` lines.
async fn read_lines(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin),
    text: &mut String,
    lines: usize,
) {
    while text.lines().count() < lines {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the next line within 10 s")
            .expect("the answer is still open")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// Waits until the gateway double has `open` follows open.
async fn wait_for_follows(stack: &Stack, open: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.logs.open_follows.load(Ordering::SeqCst) != open {
        assert!(tokio::time::Instant::now() < deadline, "the gateway's follows never became {open}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn follows_the_log_until_the_client_goes_away() {
    let stack = start().await;
    let response = get(&stack, "name=alice-hello-5&follow=true", Some(&alice_token())).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    read_lines(&mut body, &mut text, 2).await;
    assert_eq!(text, WRITTEN);
    wait_for_follows(&stack, 1).await;
    let appended = "{\"name\":\"alice-hello-5\",\"text\":\"a line written later\"}\n";
    stack.logs.appended.send(appended.into()).unwrap();
    read_lines(&mut body, &mut text, 3).await;
    assert_eq!(text, format!("{WRITTEN}{appended}"), "passed on as it is written");
    assert_eq!(stack.log_queries(), vec!["name=alice-hello-5&follow=true".to_owned()]);
    drop(body);
    // Nothing more is written: the gateway's request ends because the client went away, not at the next line.
    wait_for_follows(&stack, 0).await;
}
