//! buildshiprun against the real of-builder (Buildah, a real registry) and a recording gateway double.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use buildshiprun::policy::Policy;
use buildshiprun::Config;
use doubles::registry::RegistryProcess;
use serde_json::Value;
use shared::branch_head::{BranchHeads, BranchKey, Head};
use shared::build::BuildConfig;
use shared::config::{CommonConfig, Secret};
use shared::event::{BuildEvent, StatusReport, StatusState};
use shared::gateway::BasicAuth;
use shared::log_store::{LogKey, LogStore, LogStoreConfig, Outcome};
use shared::openfaas::FunctionDeployment;
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::ports::free_port;
use testkit::{RecordingGateway, Reply, ServedFunction};

const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
/// A Docker config.json holding `builder:registry-pass` for the registry, as the `registry-secret` secret.
const REGISTRY_SECRET: &str = r#"{"auths": {"registry:5000": {"auth": "YnVpbGRlcjpyZWdpc3RyeS1wYXNz"}}}"#;

struct Harness {
    address: SocketAddr,
    builder_url: String,
    gateway: RecordingGateway,
    registry: RegistryProcess,
    /// The build-log store buildshiprun writes to (a temporary folder).
    logs: Arc<LogStore>,
    http: reqwest::Client,
    /// buildshiprun's settings, to start it again with other ones.
    config: Config,
    /// What must live as long as the harness: folders, the builder, every buildshiprun started.
    keep: Vec<Box<dyn std::any::Any + Send>>,
}

fn common() -> CommonConfig {
    CommonConfig {
        gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
        audit_url: None,
        payload_secret: Secret::new(PAYLOAD_SECRET),
    }
}

async fn start(builder_reachable: bool) -> Harness {
    start_with(builder_reachable, Policy::default()).await
}

async fn start_with(builder_reachable: bool, policy: Policy) -> Harness {
    let registry_dir = tempfile::tempdir().unwrap();
    let buildah_dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(registry_dir.path()).await.unwrap();
    let builder_config = of_builder::Config {
        common: common(),
        backend: of_builder::BackendKind::Buildah,
        max_context_bytes: 8 << 20,
        max_concurrent_builds: 2,
        max_concurrent_builds_per_owner: 1,
        max_queued_builds_per_owner: 10,
        registry_insecure: true,
        buildah_root: Some(buildah_dir.path().to_owned()),
        build_timeout: Duration::from_secs(120),
        build_user: None,
        registry_auth: None,
        allowed_base_images: of_builder::base_images::Allowlist::parse(None).unwrap(),
        server: ServerConfig::for_tests(32 << 20),
    };
    let builder = ServedFunction::start_with(of_builder::app(builder_config), &ServerConfig::for_tests(32 << 20)).await;
    let builder_url = if builder_reachable { builder.url() } else { format!("http://127.0.0.1:{}/", free_port()) };
    let gateway = RecordingGateway::with_credentials("admin", "gateway-password").await;
    let logs_dir = tempfile::tempdir().unwrap();
    let logs = LogStore::open(&LogStoreConfig::folder(logs_dir.path())).unwrap();
    // The branch records share the log store in production; apart here, so a test can break the logs alone.
    let branches_dir = tempfile::tempdir().unwrap();
    let mut common = common();
    common.gateway_url = gateway.url().parse().unwrap();
    let config = Config {
        common,
        builder_url: builder_url.parse().unwrap(),
        gateway_public_url: "https://cloud.example.com/".parse().unwrap(),
        gateway_pretty_url: None,
        default_memory_limit: Some("30Mi".into()),
        credentials: BasicAuth { user: "admin".into(), password: Secret::new("gateway-password") },
        max_retries: 3,
        retry_wait: Duration::from_millis(20),
        build_timeout: Duration::from_secs(120),
        build_queue_timeout: Duration::from_secs(120),
        log_store: logs.clone(),
        branch_heads: BranchHeads::open(&LogStoreConfig::folder(branches_dir.path())).unwrap(),
        registry_secrets: buildshiprun::config::registry_secrets(&Secret::new(REGISTRY_SECRET)),
        registry_auths: BTreeMap::new(),
        registry_insecure: false,
        registry_api_url: None,
        policy,
        max_previews_per_owner: 10,
        server: ServerConfig::for_tests(32 << 20),
    };
    let served =
        ServedFunction::start_with(buildshiprun::app(config.clone()), &ServerConfig::for_tests(32 << 20)).await;
    Harness {
        config,
        address: served.address,
        builder_url: builder.url(),
        gateway,
        registry,
        logs: Arc::new(logs),
        http: reqwest::Client::new(),
        keep: vec![
            Box::new(logs_dir),
            Box::new(branches_dir),
            Box::new(registry_dir),
            Box::new(buildah_dir),
            Box::new(builder),
            Box::new(served),
        ],
    }
}

fn event(harness: &Harness, function: &str) -> BuildEvent {
    BuildEvent {
        service: format!("octo--{function}"),
        function: function.into(),
        owner: "octo".into(),
        owner_id: 42,
        branch: "main".into(),
        repo: "fns".into(),
        sha: SHA.parse().unwrap(),
        clone_url: "http://127.0.0.1/octo/fns.git".into(),
        installation_id: Some(7),
        delivery: "d-1".into(),
        image: format!("{}/42/fns/{function}:{SHA}", harness.registry.host_port()),
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
/// The same build after its template changed (a template's Dockerfile is the build's).
const DOCKERFILE_V2: &str = "FROM scratch\nCOPY handler.txt /handler.txt\nCMD [\"/handler\", \"v2\"]\n";

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
    let manifest = harness.registry.client().manifest("42/fns/hello", SHA).await.unwrap();
    assert_eq!(answer["digest"], manifest.digest.as_str());

    let posts: Vec<_> =
        harness.gateway.requests_to("/system/functions").into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    let deployment: FunctionDeployment = posts[0].json();
    assert_eq!(deployment.service, "octo-hello-4");
    assert_eq!(deployment.image, format!("{}/42/fns/hello@{}", harness.registry.host_port(), manifest.digest));
    assert_eq!(deployment.env_vars["write_debug"], "true");
    assert_eq!(deployment.secrets, vec!["42--api-key".to_owned()], "secrets are the owner account's");
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
    assert_eq!(last.target_url.as_deref(), Some("https://cloud.example.com/function/octo-hello-4"));
    assert_eq!(statuses.last().unwrap().event.installation_id, Some(7));
}

#[tokio::test]
async fn updates_an_existing_function_with_put() {
    let harness = start(true).await;
    harness.gateway.add_function(testkit::labelled_function("octo-hello-4", "octo", "fns", true));
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
        "/system/function/octo-hello-4",
        vec![Reply::status(500), Reply::status(503), Reply::status(404)],
    );
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(harness.gateway.requests_to("/system/function/octo-hello-4").len(), 3);
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
async fn deploys_a_skip_build_function_from_the_owner_s_own_image_pinned_by_digest() {
    let mut harness = start(true).await;
    let built = event(&harness, "hello");
    let (status, answer) = harness.send(&built, tar(&built, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    let policy = Policy { repository_url: harness.registry.host_port(), ..Policy::default() };
    let config = Config { policy, ..harness.config.clone() };
    let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
    harness.address = served.address;
    harness.keep.push(Box::new(served));
    let mut event = event(&harness, "nats");
    event.skip_build = true;
    event.image = built.image.clone();
    let (status, answer) = harness.send(&event, Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
    let deployed = harness.gateway.functions().into_iter().find(|f| f.name == "octo-nats-4").unwrap();
    assert_eq!(
        deployed.image,
        format!("{}/42/fns/hello@{}", harness.registry.host_port(), answer["digest"].as_str().unwrap())
    );
    let manifest = harness.registry.client().manifest("42/fns/hello", SHA).await.unwrap();
    assert_eq!(answer["digest"], manifest.digest.as_str(), "pinned by the digest the registry holds");
}

#[tokio::test]
async fn refuses_a_skip_build_image_of_another_owner_or_one_that_cannot_be_pinned() {
    let mut harness = start(true).await;
    let built = event(&harness, "hello");
    let (status, answer) = harness.send(&built, tar(&built, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    let before = harness.gateway.functions();
    let registry = harness.registry.host_port();
    let policy = Policy { repository_url: registry.clone(), ..Policy::default() };
    let config = Config { policy, ..harness.config.clone() };
    let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
    harness.address = served.address;
    harness.keep.push(Box::new(served));
    // Owner 7 (`acme-corp`) names owner 42's image; then an image of its own that the registry does not hold.
    let mut event = event(&harness, "nats");
    event.owner = "acme-corp".into();
    event.owner_id = 7;
    event.secrets.clear();
    event.skip_build = true;
    for (image, why) in [
        (built.image.clone(), "is not one this owner may deploy"),
        ("ghcr.io/openfaas/nats-connector:0.3.2".to_owned(), "is not one this owner may deploy"),
        (format!("{registry}/7/fns/nats:latest"), "the registry has no image"),
    ] {
        event.image = image;
        let (status, answer) = harness.send(&event, Vec::new()).await;
        assert_eq!(status, 403, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(why), "{why} in {answer}");
        let failure = harness.statuses().last().unwrap().statuses[0].clone();
        assert_eq!(failure.state, StatusState::Failure);
        assert!(failure.description.contains(why), "{why} in {}", failure.description);
    }
    assert_eq!(harness.gateway.functions(), before, "the other owner's function is unchanged");
}

#[tokio::test]
async fn a_deployed_function_s_status_links_to_its_pretty_url_when_one_is_set() {
    let mut harness = start(true).await;
    let config = Config { gateway_pretty_url: Some("https://user.o6s.io/function".into()), ..harness.config.clone() };
    let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
    harness.address = served.address;
    harness.keep.push(Box::new(served));
    let event = event(&harness, "nats");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    let statuses = harness.statuses();
    let success = &statuses.last().unwrap().statuses[0];
    assert_eq!(success.target_url.as_deref(), Some("https://octo.o6s.io/nats"));
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

/// The log store keys by the lower-case SHA: an upper-case one is refused at the door, not built with its log lost.
#[tokio::test]
async fn refuses_an_event_with_an_upper_case_sha() {
    let harness = start(true).await;
    let event = event(&harness, "hello");
    let body = tar(&event, DOCKERFILE);
    let header = event.to_header_value().replace(SHA, &SHA.to_uppercase());
    let response = harness
        .http
        .post(format!("http://{}/", harness.address))
        .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
        .header("X-Ofc-Event", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("not a commit SHA"), "{answer}");
    assert!(harness.gateway.requests_to("/system/").is_empty());
}

/// Sends `event` and expects a 403 whose answer and failure status both contain every one of `why`, with nothing
/// built and nothing deployed.
async fn assert_refused(harness: &Harness, event: &BuildEvent, why: &[&str]) {
    let (status, answer) = harness.send(event, tar(event, DOCKERFILE)).await;
    assert_eq!(status, 403, "{answer}");
    let failure = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(failure.state, StatusState::Failure);
    for part in why {
        assert!(answer["error"].as_str().unwrap().contains(part), "{part} in {answer}");
        assert!(failure.description.contains(part), "{part} in {}", failure.description);
    }
    let changes: Vec<_> =
        harness.gateway.requests_to("/system/functions").into_iter().filter(|r| r.method != "GET").collect();
    assert!(changes.is_empty(), "nothing is deployed: {changes:?}");
}

#[tokio::test]
async fn carries_fprocess_read_only_root_and_constraints_to_the_deployment() {
    let policy = Policy { allowed_constraints: vec!["node.platform.os==linux".into()], ..Policy::default() };
    let harness = start_with(true, policy).await;
    let mut event = event(&harness, "hello");
    event.fprocess = Some("cat".into());
    event.constraints = vec!["node.platform.os == linux".into()];
    event.labels.insert("com.openfaas.scale.max".into(), "2".into());
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    let deployment: FunctionDeployment = harness.gateway.requests_to("/system/functions")[0].json();
    assert_eq!(deployment.env_process.as_deref(), Some("cat"));
    assert_eq!(deployment.constraints, event.constraints);
    assert!(deployment.read_only_root_filesystem, "read-only unless the operator lets a user turn it off");
    for (label, value) in [
        ("com.openfaas.cloud.git-owner", "octo"),
        ("com.openfaas.cloud.git-owner-id", "42"),
        ("com.openfaas.cloud.git-repo", "fns"),
        ("com.openfaas.cloud.git-sha", SHA),
        ("com.openfaas.cloud.git-branch", "main"),
        ("com.openfaas.cloud.git-private", "0"),
        ("com.openfaas.scale.max", "2"),
        ("com.openfaas.scale.min", "1"),
    ] {
        assert_eq!(deployment.labels[label], value, "label {label}");
    }
    assert!(deployment.labels["com.openfaas.cloud.git-deploytime"].parse::<i64>().is_ok());
}

#[tokio::test]
async fn refuses_constraints_the_operator_has_not_listed() {
    let harness = start(true).await;
    let mut event = event(&harness, "hello");
    event.constraints = vec!["node.role == manager".into()];
    assert_refused(
        &harness,
        &event,
        &["constraint `node.role == manager` is not allowed", "allowed_constraints: none"],
    )
    .await;
}

#[tokio::test]
async fn refuses_the_platform_s_secrets_and_invalid_secret_names() {
    let harness = start(true).await;
    let mut event = event(&harness, "hello");
    event.secrets = vec!["db".into(), "payload-secret".into()];
    assert_refused(&harness, &event, &["payload-secret", "platform's own secrets"]).await;
    event.secrets = vec!["../db".into()];
    assert_refused(&harness, &event, &["not a valid secret name"]).await;
    event.owner_id = 0;
    event.secrets = vec!["db".into()];
    assert_refused(&harness, &event, &["no owner account id"]).await;
    // Owner `basic` naming `auth-user` binds its own account's secret, not the gateway's admin user.
    event.owner = "basic".into();
    event.owner_id = 42;
    event.secrets = vec!["auth-user".into()];
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(harness.gateway.functions()[0].secrets.as_deref().unwrap(), ["42--auth-user"]);
}

#[tokio::test]
async fn refuses_owners_named_as_the_platform_s_hosts_and_keeps_platform_names_apart() {
    let harness = start(true).await;
    let mut event = event(&harness, "api");
    event.owner = "system".into();
    assert_refused(&harness, &event, &["`system`", "platform's hosts"]).await;
    // Owner `gh`'s function `push` is `gh-push-2`, not the platform's gh-push.
    let mut event = self::event(&harness, "push");
    event.owner = "gh".into();
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["service"], "gh-push-2");
}

#[tokio::test]
async fn owners_whose_logins_are_hyphen_prefixes_of_each_other_keep_apart() {
    let harness = start(true).await;
    // `acme-corp`'s function `api` and `acme`'s function `corp-api` were both `acme-corp-api`.
    let mut theirs = testkit::labelled_function("acme-corp-api-9", "acme-corp", "fns", true);
    theirs.labels.as_mut().unwrap().insert("com.openfaas.cloud.git-owner-id".into(), "7".into());
    harness.gateway.add_function(theirs.clone());
    let mut event = event(&harness, "corp-api");
    event.owner = "acme".into();
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["service"], "acme-corp-api-4");
    let functions = harness.gateway.functions();
    assert_eq!(functions.len(), 2);
    assert!(functions.contains(&theirs), "their deployment is unchanged");
}

#[tokio::test]
async fn the_owner_id_decides_when_a_login_changes_hands() {
    let harness = start(true).await;
    let mut theirs = testkit::labelled_function("octo-hello-4", "octo", "fns", true);
    theirs.labels.as_mut().unwrap().insert("com.openfaas.cloud.git-owner-id".into(), "7".into());
    harness.gateway.add_function(theirs);
    assert_refused(&harness, &event(&harness, "hello"), &["another owner"]).await;
}

#[tokio::test]
async fn refuses_to_replace_a_function_not_deployed_by_the_cloud() {
    let harness = start(true).await;
    harness.gateway.add_function(testkit::labelled_function("octo-hello-4", "octo", "fns", false));
    assert_refused(&harness, &event(&harness, "hello"), &["not deployed by OpenFaaS Cloud"]).await;
}

#[tokio::test]
async fn refuses_to_replace_a_function_of_another_repository_of_the_owner() {
    let harness = start(true).await;
    harness.gateway.add_function(testkit::labelled_function("octo-hello-4", "octo", "other", true));
    assert_refused(&harness, &event(&harness, "hello"), &["octo/other"]).await;
}

#[tokio::test]
async fn the_loser_of_a_race_for_a_new_name_fails_clearly() {
    let harness = start(true).await;
    let theirs = testkit::labelled_function("octo-hello-4", "someone", "fns", true);
    harness.gateway.add_function(theirs.clone());
    // The first look finds no function: the other push deploys it between that look and this push's POST.
    let found = Reply::status(200).body(serde_json::to_string(&theirs).unwrap());
    harness.gateway.reply("GET", "/system/function/octo-hello-4", vec![Reply::status(404), found]);
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("another owner"), "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("while this push was deploying"), "{answer}");
    assert_eq!(harness.gateway.functions(), vec![theirs], "the winner's deployment is unchanged");
}

#[tokio::test]
async fn refuses_what_the_operator_s_policy_does_not_allow_naming_field_value_and_bound() {
    type Change = fn(&mut BuildEvent);
    let harness = start(true).await;
    let cases: [(Change, &[&str]); 9] = [
        (|e| e.limits = Some(memory("512Mi")), &["limits.memory", "512Mi", "max_memory_limit 256Mi"]),
        (|e| e.requests = Some(memory("1Gi")), &["requests.memory", "1Gi", "max_memory_limit 256Mi"]),
        (|e| drop(e.labels.insert("Git-Owner".into(), "x".into())), &["label `Git-Owner`", "reserved"]),
        (|e| drop(e.labels.insert("com.openfaas.cloud.git-repo".into(), "x".into())), &["com.openfaas.cloud.git-repo"]),
        (
            |e| drop(e.labels.insert("com.openfaas.scale.max".into(), "50".into())),
            &["com.openfaas.scale.max", "50", "scaling_max_limit 4"],
        ),
        (
            |e| drop(e.annotations.insert("prometheus.io.scrape".into(), "x".into())),
            &["prometheus.io.scrape", "allowed_annotations: topic, schedule"],
        ),
        (
            |e| drop(e.build_args.insert("GO111MODULE".into(), "on".into())),
            &["build_args `GO111MODULE`", "allowed_build_args: none"],
        ),
        (|e| e.lang = "dockerfile".into(), &["dockerfile", "enable_dockerfile_lang=false"]),
        (
            |e| e.readonly_root_filesystem = Some(false),
            &["readonly_root_filesystem", "allow_writable_root_filesystem=false"],
        ),
    ];
    for (change, why) in cases {
        let mut event = event(&harness, "hello");
        change(&mut event);
        assert_refused(&harness, &event, why).await;
    }
}

#[tokio::test]
async fn allows_what_the_operator_enables() {
    let policy = Policy {
        enable_dockerfile_lang: true,
        allow_writable_root_filesystem: true,
        allowed_build_args: vec!["GO111MODULE".into()],
        ..Policy::default()
    };
    let harness = start_with(true, policy).await;
    let mut event = event(&harness, "hello");
    event.lang = "dockerfile".into();
    event.readonly_root_filesystem = Some(false);
    event.build_args.insert("GO111MODULE".into(), "on".into());
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(!harness.gateway.functions()[0].read_only_root_filesystem);
}

fn memory(value: &str) -> shared::event::FunctionResources {
    shared::event::FunctionResources { memory: Some(value.into()), cpu: None }
}

/// A Dockerfile that fails after printing more than 200 lines (each `ARG` is a step of two lines, quick even with
/// nothing to run), naming every secret buildshiprun knows on the way.
fn long_failing_dockerfile() -> String {
    let mut dockerfile = String::from("FROM scratch\n");
    for n in 1..=110 {
        writeln!(dockerfile, "ARG step{n}=value{n}").unwrap();
    }
    // Near the end, so that they are among the lines of-builder answers even while it cuts the log.
    writeln!(dockerfile, "ARG token={PAYLOAD_SECRET}\nARG admin=gateway-password\nARG registry=registry-pass").unwrap();
    dockerfile.push_str("COPY nowhere.txt /\n");
    dockerfile
}

/// Where buildshiprun keeps the log of `function` of the test push.
fn key(function: &str) -> LogKey {
    LogKey::new(42, "fns", SHA, function).unwrap()
}

impl Harness {
    /// What of-builder answers for `tar` when asked directly: what buildshiprun received for the same build.
    async fn build_directly(&self, tar: Vec<u8>) -> shared::build::BuildResult {
        let response = self
            .http
            .post(format!("{}build", self.builder_url))
            .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &tar))
            .header("content-type", "application/x-tar")
            .body(tar)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }
}

#[tokio::test]
async fn stores_a_failed_build_s_whole_log_without_secrets_and_links_it_from_the_status() {
    let harness = start(true).await;
    let event = event(&harness, "broken");
    // Built once first, so that buildshiprun's build and the one compared with it below both come from the cache
    // and print the same lines.
    harness.build_directly(tar(&event, &long_failing_dockerfile())).await;
    let (status, answer) = harness.send(&event, tar(&event, &long_failing_dockerfile())).await;
    assert_eq!(status, 422, "{answer}");

    let record = harness.logs.get(&key("broken")).await.unwrap();
    assert_eq!(record.meta.outcome, Outcome::Failure);
    assert_eq!(record.meta.steps.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(), ["build"]);
    for secret in [PAYLOAD_SECRET, "gateway-password", "registry-pass"] {
        assert!(!record.text.contains(secret), "{secret} is scrubbed");
    }
    assert!(record.text.contains("ARG token=***"), "the scrubbed line is kept");
    // Every line of-builder answered is stored, then buildshiprun's own last word. Only the error line differs
    // between two builds (it names of-builder's temporary folder).
    let received = harness.build_directly(tar(&event, &long_failing_dockerfile())).await.log;
    let secrets = [PAYLOAD_SECRET, "gateway-password", "registry-pass"];
    let expected: Vec<String> = received.iter().map(|line| shared::log_store::scrub(line, &secrets)).collect();
    let stored: Vec<&str> = record.text.lines().collect();
    assert_eq!(stored.len(), expected.len() + 1, "the whole log of-builder answered is stored");
    let same = expected.len() - 1;
    assert_eq!(stored[..same], expected[..same], "the whole log of-builder answered is stored");
    assert!(stored[same].contains("nowhere.txt"), "{}", stored[same]);
    let last = record.text.lines().last().unwrap();
    assert!(last.starts_with("buildshiprun: build failed:") && last.contains("nowhere.txt"), "{last}");
    // Until of-builder answers the whole log it cuts it to its last 200 lines; once it does, all of them are here.
    if received.len() > 200 {
        assert!(record.text.lines().count() > 200);
        assert!(record.text.starts_with("STEP 1/"), "from the first line");
    }

    let failure = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.starts_with("build failed: "), "{}", failure.description);
    assert!(failure.description.chars().count() <= 140, "{}", failure.description);
    let link: reqwest::Url = failure.target_url.expect("a failure links to its log").parse().unwrap();
    assert_eq!(link.as_str().split('?').next(), Some("https://cloud.example.com/function/pipeline-log"));
    let pipeline_log = serve_pipeline_log(harness.logs.clone()).await;
    let served = harness.http.get(format!("{}?{}", pipeline_log.url(), link.query().unwrap())).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.unwrap(), record.text);
}

#[tokio::test]
async fn stores_a_successful_build_and_answers_its_log_link() {
    let harness = start(true).await;
    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    let record = harness.logs.get(&key("hello")).await.unwrap();
    assert_eq!(record.meta.outcome, Outcome::Success);
    assert_eq!(record.meta.digest.as_deref(), answer["digest"].as_str());
    assert_eq!(record.meta.image.as_deref(), Some(event.image.as_str()));
    assert_eq!(record.meta.steps.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(), ["build", "deploy"]);
    assert!(record.text.contains("COPY handler.txt"), "{}", record.text);
    let link = answer["log_url"].as_str().expect("the answer carries the log link");
    assert!(link.starts_with("https://cloud.example.com/function/pipeline-log?owner_id=42&repo=fns"), "{link}");
    let success = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(success.target_url.as_deref(), Some("https://cloud.example.com/function/octo-hello-4"));
}

#[tokio::test]
async fn stores_why_an_unreachable_builder_failed_the_build() {
    let harness = start(false).await;
    let event = event(&harness, "hello");
    let (status, _) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 502);
    let record = harness.logs.get(&key("hello")).await.unwrap();
    assert_eq!(record.meta.outcome, Outcome::Failure);
    assert!(record.text.contains("of-builder could not be reached"), "{}", record.text);
    let failure = harness.statuses().last().unwrap().statuses[0].clone();
    assert!(
        failure.description.starts_with("build failed: of-builder could not be reached"),
        "{}",
        failure.description
    );
    assert!(failure.target_url.unwrap().contains("function/pipeline-log?"));
}

#[tokio::test]
async fn a_log_store_that_cannot_be_written_does_not_hide_the_build_s_outcome() {
    let harness = start(true).await;
    // The store's folder becomes a file: every write fails.
    let folder = harness.logs.location().to_owned();
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(&folder, "not a folder").unwrap();
    let event = event(&harness, "broken");
    let (status, answer) = harness.send(&event, tar(&event, "FROM scratch\nCOPY nowhere.txt /\n")).await;
    assert_eq!(status, 422, "{answer}");
    let failure = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.contains("nowhere.txt"), "{}", failure.description);
    assert_eq!(failure.target_url, None, "no link to a log that was not stored");
}

#[test]
fn a_malformed_log_store_setting_stops_the_start_naming_it() {
    let secrets = tempfile::tempdir().unwrap();
    for name in ["payload-secret", "basic-auth-user", "basic-auth-password"] {
        std::fs::write(secrets.path().join(name), "x").unwrap();
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_buildshiprun"))
        .env("secret_mount_path", secrets.path())
        .env("log_retention", "soon")
        .env("port", free_port().to_string())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("log_retention"), "{stderr}");
}

async fn serve_pipeline_log(store: Arc<LogStore>) -> ServedFunction {
    let config = pipeline_log::Config {
        common: common(),
        store,
        sweep_interval: None,
        server: ServerConfig::for_tests(32 << 20),
    };
    ServedFunction::start(pipeline_log::app(config)).await
}

/// A commit SHA of its own for the `n`th push of a test.
fn sha(n: u32) -> String {
    format!("{n:040x}")
}

/// `function`'s event at the commit `sha`: the image is tagged with that commit, as git-tar names it.
fn event_at(harness: &Harness, function: &str, sha: &str) -> BuildEvent {
    let mut event = event(harness, function);
    event.sha = sha.parse().unwrap();
    event.image = format!("{}/42/fns/{function}:{sha}", harness.registry.host_port());
    event
}

/// A build tar holding `files` (path under `context/`, bytes, mode) and `build_args`.
fn tar_of(event: &BuildEvent, files: &[(&str, &[u8], u32)], build_args: &[(&str, &str)]) -> Vec<u8> {
    let build_args = build_args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let config = BuildConfig { image_ref: event.image.clone(), build_args, platforms: vec![] };
    let config = serde_json::to_vec(&config).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(config.len() as u64);
    header.set_mode(0o644);
    builder.append_data(&mut header, "config", config.as_slice()).unwrap();
    for (path, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        // Each tar of git-tar has its own times: they must not matter.
        header.set_mtime(u64::from(varying_time()));
        builder.append_data(&mut header, format!("context/{path}"), *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn varying_time() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

const HANDLER: &[u8] = b"hi\n";

fn files(handler: &[u8], mode: u32) -> Vec<(&'static str, &[u8], u32)> {
    vec![("Dockerfile", DOCKERFILE.as_bytes(), 0o644), ("handler.txt", handler, mode)]
}

/// The files of a build whose template changed: the template's files are in the build context.
fn template_v2(handler: &[u8]) -> Vec<(&'static str, &[u8], u32)> {
    vec![("Dockerfile", DOCKERFILE_V2.as_bytes(), 0o644), ("handler.txt", handler, 0o755)]
}

impl Harness {
    /// The build-identity tags in `function`'s repository: one per image actually built.
    async fn builds(&self, function: &str) -> usize {
        let tags = self.registry.client().tags(&format!("42/fns/{function}")).await.unwrap_or_default();
        tags.iter().filter(|t| t.starts_with("build-")).count()
    }

    /// Starts buildshiprun again with the operator's `policy` and `default_memory_limit` changed, on the same
    /// registry, builder and gateway; later sends go to it.
    async fn restart_with(&mut self, policy: Policy, default_memory_limit: &str) {
        let config = Config { policy, default_memory_limit: Some(default_memory_limit.into()), ..self.config.clone() };
        let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
        self.address = served.address;
        self.keep.push(Box::new(served));
    }

    /// Whether `function`'s build at `sha` reused an earlier image rather than building, as its stored log says.
    async fn skipped(&self, function: &str, sha: &str) -> bool {
        let record = self.logs.get(&LogKey::new(42, "fns", sha, function).unwrap()).await.unwrap();
        record.text.starts_with("build skipped: ")
    }

    /// The deployments sent (POST and PUT), whatever the function.
    fn deployments_sent(&self) -> usize {
        self.gateway.requests_to("/system/functions").iter().filter(|r| r.method != "GET").count()
    }

    /// Sends `event` with `tar`, expecting a 200, and answers `deployed` and the digest.
    async fn ship(&self, event: &BuildEvent, tar: Vec<u8>) -> (String, String) {
        let (status, answer) = self.send(event, tar).await;
        assert_eq!(status, 200, "{answer}");
        (answer["deployed"].as_str().unwrap().to_owned(), answer["digest"].as_str().unwrap().to_owned())
    }
}

#[tokio::test]
async fn an_unchanged_push_builds_nothing_and_redeploys_nothing() {
    let harness = start(true).await;
    let first = event_at(&harness, "hello", &sha(1));
    let (deployed, digest) = harness.ship(&first, tar_of(&first, &files(HANDLER, 0o644), &[])).await;
    assert_eq!((deployed.as_str(), harness.builds("hello").await, harness.deployments_sent()), ("created", 1, 1));

    let next = event_at(&harness, "hello", &sha(2));
    let (deployed, reused) = harness.ship(&next, tar_of(&next, &files(HANDLER, 0o644), &[])).await;
    assert_eq!(deployed, "unchanged");
    assert_eq!(reused, digest, "the image built for the first push is reused");
    assert_eq!(harness.builds("hello").await, 1, "nothing was built");
    assert_eq!(harness.deployments_sent(), 1, "nothing was redeployed");
    let tagged = harness.registry.client().manifest("42/fns/hello", &sha(2)).await.unwrap();
    assert_eq!(tagged.digest, digest, "the push's own tag names the reused image");

    let status = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(status.state, StatusState::Success);
    assert!(status.description.contains("unchanged"), "{}", status.description);
    assert_eq!(status.target_url.as_deref(), Some("https://cloud.example.com/function/octo-hello-4"));
    let record = harness.logs.get(&LogKey::new(42, "fns", &sha(2), "hello").unwrap()).await.unwrap();
    assert!(record.text.starts_with("build skipped: "), "{}", record.text);
    assert_eq!(record.meta.digest.as_deref(), Some(digest.as_str()));
}

#[tokio::test]
async fn a_changed_file_mode_build_arg_or_template_builds_again() {
    type Push = fn(&BuildEvent) -> Vec<u8>;
    let policy = Policy { allowed_build_args: vec!["MODE".into()], ..Policy::default() };
    let harness = start_with(true, policy).await;
    let first = event_at(&harness, "hello", &sha(1));
    let (_, mut digest) = harness.ship(&first, tar_of(&first, &files(HANDLER, 0o644), &[])).await;
    let pushes: [(&str, Push, bool); 4] = [
        ("file", |e| tar_of(e, &files(b"changed\n", 0o644), &[]), true),
        ("mode", |e| tar_of(e, &files(b"changed\n", 0o755), &[]), true),
        ("build arg", |e| tar_of(e, &files(b"changed\n", 0o755), &[("MODE", "fast")]), false),
        ("template", |e| tar_of(e, &template_v2(b"changed\n"), &[("MODE", "fast")]), false),
    ];
    for (n, (what, push, changes_the_image)) in (2..).zip(pushes) {
        let event = event_at(&harness, "hello", &sha(n));
        let (deployed, built) = harness.ship(&event, push(&event)).await;
        assert_eq!(harness.builds("hello").await, n as usize, "a changed {what} builds again");
        assert!(!harness.skipped("hello", &sha(n)).await, "a changed {what} builds again");
        if changes_the_image {
            assert_ne!(built, digest, "a changed {what} makes another image");
            assert_eq!(deployed, "updated", "a changed {what} redeploys");
        }
        digest = built;
    }
}

#[tokio::test]
async fn a_changed_deployment_setting_redeploys_without_building() {
    type Change = fn(&mut BuildEvent);
    let harness = start(true).await;
    let first = event_at(&harness, "hello", &sha(1));
    harness.ship(&first, tar_of(&first, &files(HANDLER, 0o644), &[])).await;
    let changes: [(&str, Change); 5] = [
        ("env", |e| drop(e.environment.insert("mode".into(), "fast".into()))),
        ("limits", |e| e.limits = Some(memory("64Mi"))),
        ("label", |e| drop(e.labels.insert("team".into(), "payments".into()))),
        ("secrets", |e| e.secrets.push("db".into())),
        ("envProcess", |e| e.fprocess = Some("cat".into())),
    ];
    let mut event = first;
    for (n, (what, change)) in (2..).zip(changes) {
        event = BuildEvent { sha: sha(n).parse().unwrap(), image: event_at(&harness, "hello", &sha(n)).image, ..event };
        change(&mut event);
        let (deployed, _) = harness.ship(&event, tar_of(&event, &files(HANDLER, 0o644), &[])).await;
        assert_eq!(deployed, "updated", "a changed {what} redeploys");
        assert_eq!(harness.builds("hello").await, 1, "a changed {what} builds nothing");
        assert!(harness.skipped("hello", &sha(n)).await, "a changed {what} builds nothing");
    }
    let running = &harness.gateway.functions()[0];
    assert_eq!(running.env_process.as_deref(), Some("cat"));
    assert_eq!(running.secrets.as_deref().unwrap(), ["42--api-key", "42--db"]);
}

#[tokio::test]
async fn a_push_that_changes_one_of_three_functions_builds_and_deploys_one() {
    let harness = start(true).await;
    let functions = ["one", "two", "three"];
    for function in functions {
        let event = event_at(&harness, function, &sha(1));
        harness.ship(&event, tar_of(&event, &files(function.as_bytes(), 0o644), &[])).await;
    }
    assert_eq!(harness.deployments_sent(), 3);
    for function in functions {
        let event = event_at(&harness, function, &sha(2));
        let handler: &[u8] = if function == "two" { b"two, changed" } else { function.as_bytes() };
        let (deployed, _) = harness.ship(&event, tar_of(&event, &files(handler, 0o644), &[])).await;
        let expected = if function == "two" { "updated" } else { "unchanged" };
        assert_eq!(deployed, expected, "{function}");
        assert_eq!(harness.builds(function).await, if function == "two" { 2 } else { 1 }, "{function}");
        assert_eq!(harness.skipped(function, &sha(2)).await, function != "two", "{function}");
    }
    assert_eq!(harness.deployments_sent(), 4, "one redeployment");
}

#[tokio::test]
async fn a_changed_operator_setting_redeploys_without_building() {
    let mut harness = start(true).await;
    let first = event_at(&harness, "hello", &sha(1));
    harness.ship(&first, tar_of(&first, &files(HANDLER, 0o644), &[])).await;
    let settings = [
        ("scaling_max_limit", Policy { scaling_max_limit: 3, ..Policy::default() }, "30Mi"),
        ("default_memory_limit", Policy { scaling_max_limit: 3, ..Policy::default() }, "40Mi"),
    ];
    for (n, (what, policy, memory)) in (2..).zip(settings) {
        harness.restart_with(policy, memory).await;
        let event = event_at(&harness, "hello", &sha(n));
        let (deployed, _) = harness.ship(&event, tar_of(&event, &files(HANDLER, 0o644), &[])).await;
        assert_eq!(deployed, "updated", "a changed {what} redeploys");
        assert!(harness.skipped("hello", &sha(n)).await, "a changed {what} builds nothing");
    }
    let running = &harness.gateway.functions()[0];
    assert_eq!(running.label("com.openfaas.scale.max"), Some("3"));
    assert_eq!(running.limits.as_ref().unwrap().memory.as_deref(), Some("40Mi"));
}

/// faasd echoes a deployment in its own form: `GET /system/function/NAME` has the image's own `ENV` merged into
/// `envVars` and drops what it does not keep. "Unchanged" is decided by the digest of what was sent, so a second push
/// of the same content still redeploys nothing there.
#[tokio::test]
async fn an_unchanged_push_redeploys_nothing_on_a_gateway_that_echoes_as_faasd_does() {
    let harness = start(true).await;
    let first = event_at(&harness, "hello", &sha(1));
    let (deployed, _) = harness.ship(&first, tar_of(&first, &files(HANDLER, 0o644), &[])).await;
    assert_eq!(deployed, "created");
    let running = harness.gateway.functions()[0].clone();
    let digest = running.annotation(shared::openfaas::annotations::DEPLOYMENT_DIGEST).unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");

    let mut echo = serde_json::to_value(&running).unwrap();
    echo["envVars"]["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into();
    echo["envVars"]["fprocess"] = "./handler".into();
    echo.as_object_mut().unwrap().remove("limits");
    echo.as_object_mut().unwrap().remove("constraints");
    harness.gateway.reply("GET", "/system/function/octo-hello-4", vec![Reply::status(200).json(&echo)]);

    let next = event_at(&harness, "hello", &sha(2));
    let (deployed, _) = harness.ship(&next, tar_of(&next, &files(HANDLER, 0o644), &[])).await;
    assert_eq!(deployed, "unchanged");
    assert_eq!(harness.deployments_sent(), 1, "nothing was redeployed");

    // Not ready there (no replica available): redeployed, as on any gateway.
    echo["availableReplicas"] = 0.into();
    echo["replicas"] = 1.into();
    harness.gateway.reply("GET", "/system/function/octo-hello-4", vec![Reply::status(200).json(&echo)]);
    let third = event_at(&harness, "hello", &sha(3));
    let (deployed, _) = harness.ship(&third, tar_of(&third, &files(HANDLER, 0o644), &[])).await;
    assert_eq!(deployed, "updated");
    assert_eq!(harness.deployments_sent(), 2);
}

/// The registry's three roles at three addresses, as on faasd: the node pulls from `localhost:<port>` (the
/// deployment's `image`), of-builder pushes (and looks up earlier builds) where the tar's `image_ref` says (git-tar's
/// `registry_push_url`), and buildshiprun's own registry reads go to `registry_api_url`. Here the pull address reaches
/// nothing, so a deployment and a reused build prove no call went there.
#[tokio::test]
async fn the_pull_push_and_api_addresses_of_the_registry_are_each_their_own() {
    let mut harness = start(true).await;
    let real = harness.registry.host_port();
    let config = Config { registry_api_url: Some(real.clone()), ..harness.config.clone() };
    let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
    harness.address = served.address;
    harness.keep.push(Box::new(served));
    let pull_host = format!("localhost:{}", free_port());
    let push = |sha: &str| {
        let mut event = event_at(&harness, "hello", sha);
        let tar = tar_of(&event, &files(HANDLER, 0o644), &[]);
        event.image = shared::registry::with_registry_host(&event.image, &pull_host);
        (event, tar)
    };

    let (first, tar) = push(&sha(1));
    let (deployed, digest) = harness.ship(&first, tar).await;
    assert_eq!(deployed, "created");
    let running = harness.gateway.functions()[0].clone();
    assert_eq!(
        running.image,
        shared::naming::pin_by_digest(&first.image, &digest),
        "the node pulls from its own address"
    );
    assert!(running.image.starts_with(&format!("{pull_host}/")), "{}", running.image);
    let pushed_image = event_at(&harness, "hello", &sha(1)).image;
    let (name, tag) = shared::naming::split_image_tag(&pushed_image);
    let repository = name.split_once('/').unwrap().1.to_owned();
    let pushed = harness.registry.client().manifest(&repository, tag).await.unwrap();
    assert_eq!(pushed.digest, digest, "of-builder pushed to the tar's address");

    let (second, tar) = push(&sha(2));
    let (deployed, reused) = harness.ship(&second, tar).await;
    assert_eq!((deployed.as_str(), reused.as_str()), ("unchanged", digest.as_str()));
    assert_eq!(harness.builds("hello").await, 1, "the earlier build was found where of-builder pushes");
    assert!(harness.skipped("hello", &sha(2)).await);
}

/// A build tar of owner 77 whose RUN step sleeps `seconds` (busybox copied in, FROM scratch).
fn sleeping_tar(harness: &Harness, function: &str, seconds: u32) -> Vec<u8> {
    let image = format!("{}/77/other/{function}:{SHA}", harness.registry.host_port());
    let config = BuildConfig { image_ref: image, build_args: BTreeMap::new(), platforms: vec![] };
    let dockerfile = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nLABEL com.openfaas.test.function=\"{function}\"\n\
         RUN [\"/bin/busybox\", \"sleep\", \"{seconds}\"]\n"
    );
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data, mode) in [
        ("config", serde_json::to_vec(&config).unwrap(), 0o644),
        ("context/Dockerfile", dockerfile.into_bytes(), 0o644),
        ("context/busybox", std::fs::read("/bin/busybox").unwrap(), 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        builder.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Another owner's two slow builds hold both of-builder's slots: the push's build waits, its status says it is
/// queued, and it deploys, though the wait is longer than `build_timeout` (which counts from
/// the build's start).
#[tokio::test]
async fn a_build_waiting_for_a_slot_is_reported_queued_and_its_timeout_counts_from_its_start() {
    let mut harness = start(true).await;
    let config = Config { build_timeout: Duration::from_secs(15), ..harness.config.clone() };
    let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
    harness.address = served.address;
    harness.keep.push(Box::new(served));

    let mut blockers = Vec::new();
    for n in 0..2 {
        let tar = sleeping_tar(&harness, &format!("slow{n}"), 20);
        let ticket = format!("blocker-build-{n}");
        let request = harness
            .http
            .post(format!("{}build", harness.builder_url))
            .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &tar))
            .header(shared::build::BUILD_TICKET_HEADER, &ticket)
            .body(tar);
        blockers.push(tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() }));
        let mut building = false;
        for _ in 0..300 {
            let place = harness.http.get(format!("{}queue/{ticket}", harness.builder_url)).send().await.unwrap();
            if place.status() == 200 && place.json::<Value>().await.unwrap()["state"] == "building" {
                building = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(building, "{ticket} holds a slot");
    }

    let event = event(&harness, "hello");
    let sent = std::time::Instant::now();
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert!(sent.elapsed() > Duration::from_secs(15), "the build waited past build_timeout for its slot");
    assert_eq!(status, 200, "the wait for a slot is not build time: {answer}");
    assert_eq!(answer["deployed"], "created");
    let descriptions: Vec<(StatusState, String)> = harness
        .statuses()
        .into_iter()
        .flat_map(|report| report.statuses)
        .filter(|s| s.context == "hello")
        .map(|s| (s.state, s.description))
        .collect();
    // "building" is written when a poll sees the build running; a build quicker than a poll goes from queued to done.
    assert_eq!(descriptions[0], (StatusState::Pending, "queued: next to build when a slot frees".to_owned()));
    assert!(descriptions[1..descriptions.len() - 1].iter().all(|(_, d)| d == "building"), "{descriptions:?}");
    assert_eq!(descriptions.last().unwrap().0, StatusState::Success, "{descriptions:?}");
    assert!(descriptions.len() <= 3, "status writes stay few: {descriptions:?}");
    for blocker in blockers {
        assert_eq!(blocker.await.unwrap()["status"], "success");
    }
}

/// of-builder refusing a build because the owner's queue is full (429) fails the function at once, saying why:
/// another try would find the same backlog.
#[tokio::test]
async fn an_owner_s_full_build_queue_fails_the_function_with_the_reason_untried_again() {
    let mut harness = start(true).await;
    let builder = RecordingGateway::start().await;
    let refusal = r#"{"error": "10 builds of this owner wait for the builder already (max_queued_builds_per_owner); push again later"}"#;
    builder.reply("POST", "/build", vec![Reply::status(429).body(refusal)]);
    let config = Config { builder_url: builder.url().parse().unwrap(), ..harness.config.clone() };
    let served = ServedFunction::start_with(buildshiprun::app(config), &ServerConfig::for_tests(32 << 20)).await;
    harness.address = served.address;
    harness.keep.push(Box::new(served));

    let event = event(&harness, "hello");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert!(status >= 400, "{answer}");
    assert_eq!(builder.requests_to("/build").len(), 1, "not tried again");
    let failure = harness
        .statuses()
        .into_iter()
        .flat_map(|report| report.statuses)
        .find(|s| s.context == "hello" && s.state == StatusState::Failure)
        .expect("a failing status");
    assert!(failure.description.contains("max_queued_builds_per_owner"), "{}", failure.description);
}

/// Makes `sha` the newest known commit of the harness's branch (`octo`'s `fns`, `main`), as git-tar does.
async fn make_head(harness: &Harness, sha: &str) {
    let heads = &harness.config.branch_heads;
    let key = BranchKey::new(42, "fns", "main").unwrap();
    let now = heads.read(&key).await.unwrap();
    assert!(heads.advance(&key, now.as_ref(), &Head { sha: sha.into(), pushed_at: 0 }).await.unwrap());
}

#[tokio::test]
async fn a_superseded_commit_is_not_built_and_says_by_which_commit() {
    let harness = start(true).await;
    let newer = sha(2);
    make_head(&harness, &newer).await;
    let event = event(&harness, "stale");
    let (status, answer) = harness.send(&event, tar(&event, DOCKERFILE)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["deployed"].as_str(), answer["superseded_by"].as_str()), (Some("superseded"), Some(&*newer)));
    assert_eq!(answer["digest"], "", "nothing was built");
    assert!(harness.gateway.requests_to("/system/").is_empty(), "nothing is deployed");
    let status = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(status.state, StatusState::Success);
    assert_eq!(status.description, format!("superseded by {}, a newer commit of main: not built", &newer[..7]));
    assert!(harness.logs.get(&key("stale")).await.is_err(), "no build, no build log");
}

#[tokio::test]
async fn a_build_overtaken_while_it_waits_for_the_deploy_claim_is_not_deployed() {
    let harness = start(true).await;
    make_head(&harness, SHA).await;
    // Another deployment of the function holds its claim.
    let claim = harness.config.branch_heads.claim_deploy("octo-slow-4").await.unwrap();
    let event = event(&harness, "slow");
    let sending = harness.send(&event, tar(&event, DOCKERFILE));
    let overtaking = async {
        // Built (its image is in the registry), so waiting for the claim; the claim waits up to its lease.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while harness.registry.client().manifest("42/fns/slow", SHA).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the build did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        make_head(&harness, &sha(3)).await;
        claim.release().await;
    };
    let ((status, answer), ()) = tokio::join!(sending, overtaking);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deployed"], "superseded", "{answer}");
    assert_ne!(answer["digest"], "", "it was built");
    assert!(harness.gateway.requests_to("/system/").is_empty(), "nothing is deployed");
    let status = harness.statuses().last().unwrap().statuses[0].clone();
    assert_eq!(
        status.description,
        format!("superseded by {}, a newer commit of main: built, not deployed", &sha(3)[..7])
    );
    assert!(harness.logs.get(&key("slow")).await.is_ok(), "the build's log is kept");
}
