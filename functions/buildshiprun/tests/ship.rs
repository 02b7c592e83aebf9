//! buildshiprun against the real of-builder (Buildah, a real registry) and a recording gateway double.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use buildshiprun::Config;
use doubles::registry::RegistryProcess;
use serde_json::Value;
use shared::build::BuildConfig;
use shared::config::{CommonConfig, Secret};
use shared::event::{BuildEvent, StatusReport, StatusState};
use shared::gateway::BasicAuth;
use shared::openfaas::{FunctionDeployment, FunctionStatus};
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::ports::free_port;
use testkit::{RecordingGateway, Reply, ServedFunction};

const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

struct Harness {
    address: SocketAddr,
    gateway: RecordingGateway,
    registry: RegistryProcess,
    http: reqwest::Client,
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

fn common() -> CommonConfig {
    CommonConfig {
        gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
        audit_url: None,
        payload_secret: Secret::new(PAYLOAD_SECRET),
    }
}

async fn start(builder_reachable: bool) -> Harness {
    let registry_dir = tempfile::tempdir().unwrap();
    let buildah_dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(registry_dir.path()).await.unwrap();
    let builder_config = of_builder::Config {
        common: common(),
        backend: of_builder::BackendKind::Buildah,
        max_context_bytes: 1 << 20,
        max_concurrent_builds: 2,
        registry_insecure: true,
        buildah_root: Some(buildah_dir.path().to_owned()),
        build_timeout: Duration::from_secs(120),
        build_user: None,
        registry_auth: None,
        server: ServerConfig::for_tests(32 << 20),
    };
    let builder = ServedFunction::start_with(of_builder::app(builder_config), &ServerConfig::for_tests(32 << 20)).await;
    let builder_url = if builder_reachable { builder.url() } else { format!("http://127.0.0.1:{}/", free_port()) };
    let gateway = RecordingGateway::with_credentials("admin", "gateway-password").await;
    let mut common = common();
    common.gateway_url = gateway.url().parse().unwrap();
    let config = Config {
        common,
        builder_url: builder_url.parse().unwrap(),
        gateway_public_url: "https://cloud.example.com/".parse().unwrap(),
        default_memory_limit: Some("30Mi".into()),
        credentials: BasicAuth { user: "admin".into(), password: Secret::new("gateway-password") },
        max_retries: 3,
        retry_wait: Duration::from_millis(20),
        build_timeout: Duration::from_secs(120),
        server: ServerConfig::for_tests(32 << 20),
    };
    let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
    Harness {
        address: served.address,
        gateway,
        registry,
        http: reqwest::Client::new(),
        _keep: vec![Box::new(registry_dir), Box::new(buildah_dir), Box::new(builder), Box::new(served)],
    }
}

fn event(harness: &Harness, function: &str) -> BuildEvent {
    BuildEvent {
        service: format!("octo-{function}"),
        function: function.into(),
        owner: "octo".into(),
        repo: "fns".into(),
        sha: SHA.into(),
        clone_url: "http://127.0.0.1/octo/fns.git".into(),
        installation_id: Some(7),
        delivery: "d-1".into(),
        image: format!("{}/octo/{function}:latest-{SHA}", harness.registry.host_port()),
        environment: BTreeMap::from([("write_debug".into(), "true".into())]),
        secrets: vec!["api-key".into()],
        labels: BTreeMap::from([("team".into(), "platform".into())]),
        annotations: BTreeMap::from([("topic".into(), "cron".into())]),
        ..BuildEvent::default()
    }
}

fn tar(event: &BuildEvent, dockerfile: &str) -> Vec<u8> {
    let config = BuildConfig { image_ref: event.image.clone(), build_args: BTreeMap::new(), platforms: vec![] };
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("config", serde_json::to_vec(&config).unwrap()),
        ("context/Dockerfile", dockerfile.as_bytes().to_vec()),
        ("context/handler.txt", b"hi\n".to_vec()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

const DOCKERFILE: &str = "FROM scratch\nCOPY handler.txt /handler.txt\nCMD [\"/handler\"]\n";

impl Harness {
    async fn send(&self, event: &BuildEvent, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("http://{}/", self.address))
            .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
            .header("X-Ofc-Event", event.to_header_value())
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn statuses(&self) -> Vec<StatusReport> {
        self.gateway.requests_to("/async-function/github-status").iter().map(testkit::RecordedRequest::json).collect()
    }
}

#[tokio::test]
async fn builds_and_deploys_a_new_function_pinned_by_digest() {
    let harness = start(true).await;
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deployed"], "created");
    let manifest = harness.registry.client().manifest("octo/hello", &format!("latest-{SHA}")).await.unwrap();
    assert_eq!(answer["digest"], manifest.digest.as_str());

    let posts: Vec<_> =
        harness.gateway.requests_to("/system/functions").into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    let deployment: FunctionDeployment = posts[0].json();
    assert_eq!(deployment.service, "octo-hello");
    assert_eq!(deployment.image, format!("{}/octo/hello@{}", harness.registry.host_port(), manifest.digest));
    assert_eq!(deployment.env_vars["write_debug"], "true");
    assert_eq!(deployment.secrets, vec!["api-key".to_owned()]);
    assert_eq!(deployment.annotations["topic"], "cron");
    assert_eq!(deployment.limits.as_ref().unwrap().memory.as_deref(), Some("30Mi"), "default_memory_limit applies");
    for (label, value) in
        [("Git-Cloud", "1"), ("Git-Owner", "octo"), ("Git-Repo", "fns"), ("Git-SHA", SHA), ("team", "platform")]
    {
        assert_eq!(deployment.labels[label], value, "label {label}");
    }
    assert!(deployment.labels["Git-DeployTime"].parse::<i64>().is_ok());

    let statuses = harness.statuses();
    let last = &statuses.last().unwrap().statuses[0];
    assert_eq!(last.context, "hello");
    assert_eq!(last.state, StatusState::Success);
    assert_eq!(last.target_url.as_deref(), Some("https://cloud.example.com/function/octo-hello"));
    assert_eq!(statuses.last().unwrap().event.installation_id, Some(7));
}

#[tokio::test]
async fn updates_an_existing_function_with_put() {
    let harness = start(true).await;
    harness.gateway.add_function(FunctionStatus {
        name: "octo-hello".into(),
        image: "old".into(),
        ..FunctionStatus::default()
    });
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deployed"], "updated");
    let methods: Vec<String> =
        harness.gateway.requests_to("/system/functions").iter().map(|r| r.method.to_string()).collect();
    assert_eq!(methods, vec!["PUT"]);
    assert!(harness.gateway.functions()[0].image.contains("@sha256:"));
}

#[tokio::test]
async fn retries_a_gateway_that_fails_twice() {
    let harness = start(true).await;
    harness.gateway.reply(
        "GET",
        "/system/function/octo-hello",
        vec![Reply::status(500), Reply::status(503), Reply::status(404)],
    );
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(harness.gateway.requests_to("/system/function/octo-hello").len(), 3);
    assert_eq!(harness.gateway.functions().len(), 1);
}

#[tokio::test]
async fn does_not_retry_a_gateway_that_refuses() {
    let harness = start(true).await;
    harness.gateway.reply("POST", "/system/functions", vec![Reply::status(400).body("image is not allowed")]);
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("image is not allowed"), "{answer}");
    assert_eq!(harness.gateway.requests_to("/system/functions").len(), 1, "a 4xx is not retried");
    let failure = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.contains("image is not allowed"));
}

#[tokio::test]
async fn reports_a_broken_dockerfile_with_its_reason() {
    let harness = start(true).await;
    let event = event(&harness, "broken");
    let (status, answer) = harness.send(&event, tar(&event, "FROM scratch\nCOPY nowhere.txt /\n")).await;
    assert_eq!(status, 422, "{answer}");
    let failure = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(failure.context, "broken");
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.contains("nowhere.txt"), "{}", failure.description);
    assert!(harness.gateway.requests_to("/system/").is_empty(), "nothing is deployed");
}

#[tokio::test]
async fn fails_with_502_when_the_builder_stays_unreachable() {
    let harness = start(false).await;
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("could not be reached"), "{answer}");
    assert_eq!(harness.statuses().last().unwrap().statuses[0].state, StatusState::Failure);
}

#[tokio::test]
async fn deploys_a_skip_build_function_from_its_image() {
    let harness = start(true).await;
    let mut event = event(&harness, "nats");
    event.skip_build = true;
    event.image = "ghcr.io/openfaas/nats-connector:0.3.2".into();
    let (status, answer) = harness.send(&event, Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(harness.gateway.functions()[0].image, "ghcr.io/openfaas/nats-connector:0.3.2");
}

#[tokio::test]
async fn refuses_unsigned_requests_and_bad_events() {
    let harness = start(true).await;
    let event = event(&harness, "hello");
    let response = harness
        .http
        .post(format!("http://{}/", harness.address))
        .header("X-Ofc-Event", event.to_header_value())
        .body(tar(&event, DOCKERFILE))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body = tar(&event, DOCKERFILE);
    let response = harness
        .http
        .post(format!("http://{}/", harness.address))
        .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "no X-Ofc-Event");
    let mut bad_name = event.clone();
    bad_name.function = "Not_A_Name".into();
    assert_eq!(harness.send(&bad_name, tar(&event, DOCKERFILE)).await.0, 400);
    assert!(harness.gateway.requests_to("/system/").is_empty());
}
