//! metrics over real HTTP, against a gateway double (OpenFaaS's `/system/functions`, the one of
//! `functions_api`, and `/metrics` in the Prometheus text format) and a Prometheus double speaking the
//! documented query API.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use functions_api::{require_basic_auth, Credentials, FunctionsApi, NoHooks};
use metrics::{Config, CountsFrom};
use serde_json::{json, Value};
use shared::config::Secret;
use shared::gateway::BasicAuth;
use shared::server::ServerConfig;
use testkit::sessions::{alice_token, expired_token, function_of, tampered_token, ACME, ADMIN, ALICE, MALLORY};
use testkit::ServedFunction;

/// The gateway double's counters: `gateway_function_invocation_total` by (function_name, code), and how often
/// they were read.
#[derive(Clone, Default)]
struct GatewayCounters {
    values: Arc<Mutex<BTreeMap<(String, u16), u64>>>,
    scrapes: Arc<AtomicUsize>,
}

impl GatewayCounters {
    fn set(&self, function: &str, code: u16, value: u64) {
        self.values.lock().unwrap().insert((format!("{function}.openfaas-fn"), code), value);
    }

    /// A gateway restart: every counter starts again from nothing.
    fn reset(&self) {
        self.values.lock().unwrap().clear();
    }

    async fn wait_for_scrapes(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.scrapes.load(Ordering::SeqCst) < count {
            assert!(tokio::time::Instant::now() < deadline, "the gateway's metrics were not read {count} times");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `GET /metrics` as the OpenFaaS gateway writes it (labels in its order, other metrics around).
async fn exposition(State(counters): State<GatewayCounters>) -> String {
    counters.scrapes.fetch_add(1, Ordering::SeqCst);
    let mut text = String::from("# HELP gateway_function_invocation_total Function metrics\n");
    text.push_str("# TYPE gateway_function_invocation_total counter\n");
    for ((function, code), value) in counters.values.lock().unwrap().iter() {
        writeln!(text, "gateway_function_invocation_total{{code=\"{code}\",function_name=\"{function}\"}} {value}")
            .unwrap();
        writeln!(text, "gateway_function_invocation_started{{function_name=\"{function}\"}} 1000").unwrap();
    }
    text
}

/// Prometheus's `GET /api/v1/query`: the queries asked, and a scripted answer.
#[derive(Clone)]
struct PrometheusDouble {
    queries: Arc<Mutex<Vec<String>>>,
    answer: Arc<Mutex<(StatusCode, Value)>>,
}

async fn query(
    State(prometheus): State<PrometheusDouble>,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    prometheus.queries.lock().unwrap().push(params.get("query").cloned().unwrap_or_default());
    let (status, body) = prometheus.answer.lock().unwrap().clone();
    (status, Json(body))
}

struct Stack {
    counters: GatewayCounters,
    _gateway: ServedFunction,
    metrics: ServedFunction,
}

/// Where the function under test takes its counts from.
enum Counting {
    Prometheus(String),
    Gateway(Duration),
    /// `gateway_metrics_url` where the gateway serves nothing (an OpenFaaS gateway's functions port).
    NothingThere,
}

/// A gateway double with alice's, acme's, mallory's functions and a platform one, and metrics on it.
async fn start(counters: GatewayCounters, from: Counting) -> Stack {
    let functions = FunctionsApi::new(BTreeMap::new(), Arc::new(NoHooks));
    functions.insert(function_of("alice-hello-5", ALICE));
    functions.insert(function_of("acme-api-4", ACME));
    functions.insert(function_of("mallory-x-7", MALLORY));
    functions.insert(shared::openfaas::FunctionStatus { name: "gh-push".into(), ..Default::default() });
    let credentials = Credentials { user: ADMIN.0.into(), password: ADMIN.1.into() };
    let router = Router::new()
        .route("/metrics", get(exposition))
        .with_state(counters.clone())
        .nest("/system", require_basic_auth(functions.router(), credentials));
    let gateway = ServedFunction::serve(router).await;
    let counts = match from {
        Counting::Prometheus(url) => CountsFrom::Prometheus(url.parse().unwrap()),
        Counting::Gateway(interval) => {
            CountsFrom::Gateway { metrics_url: format!("{}metrics", gateway.url()).parse().unwrap(), interval }
        }
        Counting::NothingThere => CountsFrom::Gateway {
            metrics_url: format!("{}function/metrics", gateway.url()).parse().unwrap(),
            interval: Duration::from_secs(3600),
        },
    };
    let config = Config {
        common: shared::config::CommonConfig {
            gateway_url: gateway.url().parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new("payload"),
        },
        credentials: BasicAuth { user: ADMIN.0.into(), password: Secret::new(ADMIN.1) },
        sessions: testkit::sessions::gate(),
        counts,
        server: ServerConfig::for_tests(1 << 20),
    };
    let metrics = ServedFunction::start(metrics::app(config)).await;
    Stack { counters, _gateway: gateway, metrics }
}

/// Sampling the gateway; the first sample (at start) already taken.
async fn sampling(interval: Duration, seed: impl FnOnce(&GatewayCounters)) -> Stack {
    let counters = GatewayCounters::default();
    seed(&counters);
    let stack = start(counters, Counting::Gateway(interval)).await;
    stack.counters.wait_for_scrapes(1).await;
    stack
}

async fn ask(stack: &Stack, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{}?{query}", stack.metrics.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn counts_from_prometheus_by_status_class() {
    let prometheus = PrometheusDouble {
        queries: Arc::default(),
        answer: Arc::new(Mutex::new((
            StatusCode::OK,
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"code": "200"}, "value": [1_764_219_600.123, "2.9999"]},
                {"metric": {"code": "201"}, "value": [1_764_219_600.123, "1"]},
                {"metric": {"code": "404"}, "value": [1_764_219_600.123, "2"]},
                {"metric": {"code": "500"}, "value": [1_764_219_600.123, "1.0000001"]},
                {"metric": {"code": "503"}, "value": [1_764_219_600.123, "0"]}
            ]}}),
        ))),
    };
    let served =
        ServedFunction::serve(Router::new().route("/prom/api/v1/query", get(query)).with_state(prometheus.clone()))
            .await;
    let stack = start(GatewayCounters::default(), Counting::Prometheus(format!("{}prom", served.url()))).await;
    let (status, answer) = ask(&stack, "name=alice-hello-5&window=15m", Some(&alice_token())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"function": "alice-hello-5", "window_seconds": 900, "success": 4, "client_error": 2, "server_error": 1,
            "total": 7, "source": "prometheus"})
    );
    assert_eq!(
        prometheus.queries.lock().unwrap().clone(),
        vec![
            "sum by (code) (increase(gateway_function_invocation_total{function_name=\"alice-hello-5.openfaas-fn\"}[900s]))"
                .to_owned()
        ]
    );
    assert_eq!(stack.counters.scrapes.load(Ordering::SeqCst), 0, "with Prometheus, the gateway is never sampled");

    *prometheus.answer.lock().unwrap() = (
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"status": "error", "errorType": "execution", "error": "query timed out"}),
    );
    let (status, answer) = ask(&stack, "name=alice-hello-5", Some(&alice_token())).await;
    assert_eq!(status, 502);
    assert_eq!(answer["error"], "Prometheus refused the query (422): execution: query timed out");
}

#[tokio::test]
async fn counts_the_calls_since_the_first_sample_when_the_function_is_new() {
    let stack = sampling(Duration::from_secs(3600), |counters| {
        counters.set("alice-hello-5", 200, 5);
        counters.set("mallory-x-7", 200, 100);
    })
    .await;
    stack.counters.set("alice-hello-5", 200, 8);
    stack.counters.set("alice-hello-5", 404, 1);
    stack.counters.set("alice-hello-5", 503, 2);
    stack.counters.set("mallory-x-7", 200, 150);
    let (status, answer) = ask(&stack, "name=alice-hello-5", Some(&alice_token())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"function": "alice-hello-5", "window_seconds": 3600, "success": 3, "client_error": 1, "server_error": 2,
            "total": 6, "source": "gateway"})
    );
}

#[tokio::test]
async fn a_metrics_url_that_answers_404_is_a_clear_error_naming_the_setting() {
    let stack = start(GatewayCounters::default(), Counting::NothingThere).await;
    let (status, answer) = ask(&stack, "name=alice-hello-5", Some(&alice_token())).await;
    assert_eq!(status, 502, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    for needed in ["404", "port 8082", "gateway_metrics_url", "prometheus_url"] {
        assert!(error.contains(needed), "the error does not say {needed:?}: {error}");
    }
}

#[tokio::test]
async fn a_gateway_restart_never_gives_negative_counts() {
    let stack = sampling(Duration::from_secs(3600), |counters| counters.set("alice-hello-5", 200, 10)).await;
    stack.counters.reset();
    stack.counters.set("alice-hello-5", 200, 2);
    let (status, answer) = ask(&stack, "name=alice-hello-5", Some(&alice_token())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["success"].as_u64(), answer["total"].as_u64()), (Some(2), Some(2)), "{answer}");
}

#[tokio::test]
async fn a_short_window_counts_only_its_own_calls() {
    let stack = sampling(Duration::from_millis(100), |counters| counters.set("alice-hello-5", 200, 1)).await;
    stack.counters.set("alice-hello-5", 200, 5);
    let scraped = stack.counters.scrapes.load(Ordering::SeqCst);
    // Samples taken for well over a second since the 4 calls.
    stack.counters.wait_for_scrapes(scraped + 15).await;
    stack.counters.set("alice-hello-5", 200, 8);
    let (_, last_second) = ask(&stack, "name=alice-hello-5&window=1s", Some(&alice_token())).await;
    assert_eq!(last_second["success"], 3, "{last_second}");
    let (_, last_hour) = ask(&stack, "name=alice-hello-5&window=1h", Some(&alice_token())).await;
    assert_eq!(last_hour["success"], 7, "{last_hour}");
}

#[tokio::test]
async fn refuses_a_bad_window() {
    let stack = sampling(Duration::from_secs(3600), |_| {}).await;
    for window in ["2h", "61m", "0", "soon", "-1m"] {
        let (status, answer) = ask(&stack, &format!("name=alice-hello-5&window={window}"), Some(&alice_token())).await;
        assert_eq!(status, 400, "{window}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("`window`"), "{answer}");
    }
}

#[tokio::test]
async fn answers_only_the_owner_s_sessions() {
    let stack = sampling(Duration::from_secs(3600), |_| {}).await;
    assert_eq!(ask(&stack, "name=alice-hello-5", None).await.0, 401);
    assert_eq!(ask(&stack, "name=alice-hello-5", Some(&expired_token())).await.0, 401);
    assert_eq!(ask(&stack, "name=alice-hello-5", Some(&tampered_token())).await.0, 401);
    let signed_out = alice_token();
    assert_eq!(ask(&stack, "name=alice-hello-5", Some(&signed_out)).await.0, 200);
    testkit::sessions::sign_out(&signed_out).await;
    let (status, answer) = ask(&stack, "name=alice-hello-5", Some(&signed_out)).await;
    assert_eq!(status, 401, "a signed-out session, though its signature verifies: {answer}");
    assert_eq!(ask(&stack, "name=mallory-x-7", Some(&alice_token())).await.0, 403);
    assert_eq!(ask(&stack, "name=gh-push", Some(&alice_token())).await.0, 403);
    assert_eq!(ask(&stack, "name=alice-gone", Some(&alice_token())).await.0, 404);
    let (status, answer) = ask(&stack, "name=acme-api-4", Some(&alice_token())).await;
    assert_eq!((status, answer["total"].as_u64()), (200, Some(0)), "an organisation's function: {answer}");
}
