//! The embedded gateway's async queue shares its replays fairly between owners: a push of another owner is replayed
//! while one owner's backlog of ten still waits, an owner's queued pushes are capped, and only a signed body's owner
//! counts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use ofc::gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};
use shared::config::Secret;
use shared::signature::sign_sha256;
use testkit::ServedFunction;

const SECRET: &str = "payload-secret-for-tests";

type Arrivals = Arc<Mutex<Vec<String>>>;

/// A stand-in git-tar: notes each call's delivery as it arrives, then answers once the test lets one call through
/// (a permit of `gate`), as a push held up by its builds would.
async fn held_function(gate: Arc<Semaphore>) -> (ServedFunction, Arrivals) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let router = axum::Router::new()
        .route(
            "/",
            post(|State((arrivals, gate)): State<(Arrivals, Arc<Semaphore>)>, body: Bytes| async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                arrivals.lock().unwrap().push(event["delivery"].as_str().unwrap_or("?").to_owned());
                gate.acquire().await.unwrap().forget();
                "done"
            }),
        )
        .with_state((Arc::clone(&arrivals), gate));
    (ServedFunction::serve(router).await, arrivals)
}

fn push(delivery: &str, owner_id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "delivery": delivery,
        "ref": "refs/heads/main",
        "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "repository": {"name": "fns", "full_name": "o/fns", "owner": {"login": "o", "id": owner_id}}
    }))
    .unwrap()
}

struct Stack {
    url: String,
    arrivals: Arrivals,
    /// Each permit lets one held call answer.
    gate: Arc<Semaphore>,
    _keep: (tempfile::TempDir, ServedFunction, ServedFunction, tokio::task::JoinHandle<()>),
}

async fn start() -> Stack {
    let state = tempfile::tempdir().unwrap();
    let mut config = GatewayConfig::new(state.path(), "admin", "pw");
    config.max_inflight = 2;
    config.max_inflight_per_owner = 1;
    config.max_queued_pushes_per_owner = 10;
    config.payload_secret = Some(Secret::new(SECRET));
    let gateway = Gateway::new(config).unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (function, arrivals) = held_function(Arc::clone(&gate)).await;
    gateway.set_route("git-tar", &function.url());
    let worker = gateway.spawn_worker();
    let served = ServedFunction::serve(gateway.router()).await;
    Stack { url: served.url(), arrivals, gate, _keep: (state, function, served, worker) }
}

impl Stack {
    async fn queue(&self, body: Vec<u8>, signed: bool) -> (u16, String) {
        let mut request = reqwest::Client::new().post(format!("{}async-function/git-tar", self.url));
        if signed {
            request = request.header("X-Cloud-Signature", sign_sha256(SECRET.as_bytes(), &body));
        }
        let response = request.body(body).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The arrivals once `count` calls have arrived (bounded: 400 polls of 25 ms).
    async fn arrivals(&self, count: usize) -> Vec<String> {
        for _ in 0..400 {
            let seen = self.arrivals.lock().unwrap().clone();
            if seen.len() >= count {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.arrivals.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn another_owner_s_push_is_replayed_before_one_owner_s_backlog_of_ten() {
    let stack = start().await;
    for n in 0..10 {
        assert_eq!(stack.queue(push(&format!("a-{n}"), 21), true).await.0, 202);
    }
    assert_eq!(stack.arrivals(1).await, ["a-0"], "a's first push runs; the rest wait (one per owner at a time)");
    let (status, refused) = stack.queue(push("a-10", 21), true).await;
    assert_eq!(status, 429, "ten of a's pushes are queued already (one of them running): {refused}");
    assert!(refused.contains("max_queued_pushes_per_owner"), "{refused}");
    assert_eq!(stack.queue(push("b-0", 22), true).await.0, 202);
    let arrivals = stack.arrivals(2).await;
    assert_eq!(arrivals, ["a-0", "b-0"], "b's push went past a's backlog to the free slot");
    stack.gate.add_permits(100);
    let all = stack.arrivals(11).await;
    assert_eq!(all.len(), 11, "every queued push was replayed: {all:?}");
    let a: Vec<&String> = all.iter().filter(|d| d.starts_with("a-")).collect();
    let expected: Vec<String> = (0..10).map(|n| format!("a-{n}")).collect();
    assert_eq!(a, expected.iter().collect::<Vec<_>>(), "an owner's own pushes keep their order");
}

#[tokio::test]
async fn only_a_signed_body_charges_an_owner() {
    let stack = start().await;
    stack.gate.add_permits(100);
    for n in 0..12 {
        let (status, answer) = stack.queue(push(&format!("forged-{n}"), 21), false).await;
        assert_eq!(status, 202, "an unsigned call is queued, charged to no owner: {answer}");
    }
    let mut body = push("mis-signed", 21);
    let signature = sign_sha256(b"another secret", &body);
    let response = reqwest::Client::new()
        .post(format!("{}async-function/git-tar", stack.url))
        .header("X-Cloud-Signature", signature)
        .body(std::mem::take(&mut body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    for n in 0..10 {
        assert_eq!(stack.queue(push(&format!("a-{n}"), 21), true).await.0, 202, "owner 21's own queue is whole");
    }
    assert_eq!(stack.arrivals(23).await.len(), 23);
}
