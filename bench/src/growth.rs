//! The cost of growth (issue 26): 10,000 functions of 1,000 owners deployed through the embedded gateway of
//! `ofc up --runtime none`, with the labels and annotations buildshiprun writes, and then what the gateway's
//! `/system/functions`, list-functions, the dashboard's list and garbage-collect cost at that size.
//!
//! Deployments are timed per thousand, so a cost that grows with what is already deployed shows as a rising row.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::config::Secret;
use shared::event::GarbageCollectRequest;
use shared::openfaas::{annotations, labels, FunctionDeployment};
use shared::session::{Account, Session, SessionSigner};
use shared::signature::{sign_sha256, CLOUD_SIGNATURE};
use testkit::local_stack::{LocalStack, Up};

use crate::process::{peak_rss_kib, rss_kib, stack_processes};
use crate::stats::Summary;

/// Owners deployed for; the first has [`BIG_OWNER_FUNCTIONS`], every other [`FUNCTIONS_PER_OWNER`].
const OWNERS: usize = 1_000;
const FUNCTIONS_PER_OWNER: usize = 10;
/// The owner whose dashboard lists 100 functions.
const BIG_OWNER_FUNCTIONS: usize = 100;
/// Functions per repository: an owner's functions come from several repositories.
const FUNCTIONS_PER_REPO: usize = 5;
/// Deployments sent at once.
const DEPLOYERS: usize = 8;
/// Requests measured per figure.
const SAMPLES: usize = 50;

fn owner_login(owner: usize) -> String {
    format!("owner{owner}")
}

fn owner_id(owner: usize) -> u64 {
    10_000 + owner as u64
}

/// The deployment buildshiprun makes of `function` of `owner`'s repository `repo`: its service name, the image in
/// the registry, the platform's labels (owner, id, repository, commit, branch, times) and the digest annotation.
fn deployment(owner: usize, repo: usize, function: usize) -> FunctionDeployment {
    let login = owner_login(owner);
    let name = format!("fn{function}");
    let service = shared::naming::service_name(&login, &name).expect("bench names are valid");
    let sha = format!("{:040x}", owner * 1_000 + function);
    let now = Utc::now().timestamp().to_string();
    let repo = format!("repo{repo}");
    let id = owner_id(owner).to_string();
    let mut function_labels: BTreeMap<String, String> = [
        (labels::SCALE_MIN, "1"),
        (labels::SCALE_MAX, "4"),
        (labels::GIT_CLOUD, "1"),
        (labels::GIT_OWNER, login.as_str()),
        (labels::GIT_REPO, repo.as_str()),
        (labels::GIT_SHA, sha.as_str()),
        (labels::GIT_DEPLOY_TIME, now.as_str()),
        (labels::CLOUD, "1"),
        (labels::OWNER, login.as_str()),
        (labels::OWNER_ID, id.as_str()),
        (labels::REPO, repo.as_str()),
        (labels::SHA, sha.as_str()),
        (labels::BRANCH, "main"),
        (labels::DEPLOY_TIME, now.as_str()),
        (labels::PRIVATE, "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    function_labels.insert("team".into(), "bench".into());
    let mut deployment = FunctionDeployment {
        service,
        image: format!("127.0.0.1:5000/{login}/{name}:latest-{sha}"),
        env_process: Some("./handler".into()),
        env_vars: BTreeMap::from([("write_debug".into(), "false".into())]),
        labels: function_labels,
        ..FunctionDeployment::default()
    };
    let digest = deployment.digest(&[labels::GIT_SHA, labels::GIT_DEPLOY_TIME, labels::SHA, labels::DEPLOY_TIME]);
    deployment.annotations.insert(annotations::DEPLOYMENT_DIGEST.into(), digest);
    deployment
}

/// Every deployment of the run: owner 0's 100 functions, then 10 of every other owner.
fn all_deployments() -> Vec<FunctionDeployment> {
    let mut all = Vec::new();
    for owner in 0..OWNERS {
        let count = if owner == 0 { BIG_OWNER_FUNCTIONS } else { FUNCTIONS_PER_OWNER };
        all.extend((0..count).map(|f| deployment(owner, f / FUNCTIONS_PER_REPO, f)));
    }
    all
}

fn pid_of(binaries: &Path, name: &str) -> anyhow::Result<u32> {
    stack_processes(binaries)
        .into_iter()
        .find_map(|(n, pid)| (n == name).then_some(pid))
        .ok_or_else(|| anyhow::anyhow!("no {name} process under {}", binaries.display()))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn memory(pid: u32) -> String {
    format!(
        "RSS {:.1} MiB, peak {:.1} MiB",
        mib(rss_kib(pid).unwrap_or_default()),
        mib(peak_rss_kib(pid).unwrap_or_default())
    )
}

/// The stack's secrets the bench signs with.
struct Keys {
    admin_password: String,
    payload_secret: String,
    signer: SessionSigner,
}

fn keys(stack: &LocalStack) -> anyhow::Result<Keys> {
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(stack.state_path().join("secrets").join(name))?.trim().to_owned())
    };
    let signer = SessionSigner::from_pem(&Secret::new(secret(shared::session::PRIVATE_KEY_SECRET)?))
        .map_err(|e| anyhow::anyhow!("jwt-private-key: {e}"))?;
    Ok(Keys { admin_password: secret("basic-auth-password")?, payload_secret: secret("payload-secret")?, signer })
}

/// Sends every deployment, [`DEPLOYERS`] at a time, and prints how long each thousand took.
async fn deploy_all(http: &reqwest::Client, gateway: &str, password: &str) -> anyhow::Result<Duration> {
    use futures_util::stream::StreamExt as _;
    let deployments = all_deployments();
    let total = deployments.len();
    let started = Instant::now();
    let mut thousand_started = Instant::now();
    let mut per_thousand = Vec::new();
    let url = format!("{gateway}system/functions");
    let mut sent = futures_util::stream::iter(deployments)
        .map(|deployment| {
            let request = http.post(&url).basic_auth("admin", Some(password)).json(&deployment);
            async move {
                let response = request.send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "deploying {} answered {}",
                    deployment.service,
                    response.status()
                );
                Ok(())
            }
        })
        .buffer_unordered(DEPLOYERS);
    let mut done = 0;
    while let Some(result) = sent.next().await {
        result?;
        done += 1;
        if done % 1_000 == 0 || done == total {
            per_thousand.push(thousand_started.elapsed());
            thousand_started = Instant::now();
        }
    }
    let mut line = String::new();
    for (i, took) in per_thousand.iter().enumerate() {
        let _ = write!(line, "{}{:.1}", if i == 0 { "" } else { " / " }, took.as_secs_f64());
    }
    println!("   deployed {total} functions ({DEPLOYERS} at a time) in {:.1} s", started.elapsed().as_secs_f64());
    println!("   each thousand, in order (s): {line}");
    Ok(started.elapsed())
}

/// `count` requests one after another: their latency, the last body's size, and the `Server-Timing` durations.
async fn timed_gets(
    count: usize,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> anyhow::Result<(Summary, usize, Vec<Duration>)> {
    let mut samples = Vec::new();
    let mut server = Vec::new();
    let mut size = 0;
    for _ in 0..count {
        let started = Instant::now();
        let response = request().send().await?;
        let status = response.status();
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|v| v.parse::<f64>().ok());
        let body = response.bytes().await?;
        samples.push(started.elapsed());
        anyhow::ensure!(status.is_success(), "answered {status}: {}", String::from_utf8_lossy(&body));
        if let Some(ms) = timing {
            server.push(Duration::from_secs_f64(ms / 1000.0));
        }
        size = body.len();
    }
    Ok((Summary::new(samples), size, server))
}

/// Garbage-collects repository `repo1` of 20 owners, one after another (each holds 5 functions): the latencies.
async fn collect_repositories(
    http: &reqwest::Client,
    gateway: &str,
    payload_secret: &str,
) -> anyhow::Result<Vec<Duration>> {
    let mut collected = Vec::new();
    for owner in 1..=20 {
        let request = GarbageCollectRequest {
            owner: owner_login(owner),
            repo: "repo1".into(),
            owner_id: Some(owner_id(owner)),
            functions: Vec::new(),
            preview: None,
            with_previews: false,
        };
        let body = serde_json::to_vec(&request)?;
        let started = Instant::now();
        let response = http
            .post(format!("{gateway}function/garbage-collect"))
            .header(CLOUD_SIGNATURE, sign_sha256(payload_secret.as_bytes(), &body))
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        collected.push(started.elapsed());
        anyhow::ensure!(status.is_success(), "garbage-collect answered {status}: {answer}");
        let deleted = answer["deleted"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(deleted == FUNCTIONS_PER_REPO, "garbage-collect deleted {deleted}, not {FUNCTIONS_PER_REPO}");
    }
    Ok(collected)
}

pub async fn run(binaries: &Path) -> anyhow::Result<()> {
    let ofc = binaries.join("ofc");
    anyhow::ensure!(ofc.exists(), "{} is missing: build the binaries first", ofc.display());
    let stack = Up::new(ofc.to_str().unwrap_or_default()).start();
    let keys = keys(&stack)?;
    let gateway = stack.gateway.clone();
    let ofc_pid = stack.child.id();
    let http = reqwest::Client::new();
    println!(
        "growth: {} functions of {OWNERS} owners through ofc's gateway (`ofc up --runtime none`)",
        BIG_OWNER_FUNCTIONS + (OWNERS - 1) * FUNCTIONS_PER_OWNER
    );
    println!("   ofc (gateway and supervisor) before: {}", memory(ofc_pid));
    deploy_all(&http, &gateway, &keys.admin_password).await?;
    println!("   ofc after deploying: {}", memory(ofc_pid));

    let password = keys.admin_password.as_str();
    let (list, size, _) =
        timed_gets(SAMPLES, || http.get(format!("{gateway}system/functions")).basic_auth("admin", Some(password)))
            .await?;
    println!(
        "   GET /system/functions ({:.1} MiB of JSON): {}   target p99 < 100 ms",
        mib(size as u64 / 1024),
        list.line()
    );
    println!("   ofc after listing: {}   target < 64 MiB", memory(ofc_pid));

    let (small, _, _) =
        timed_gets(SAMPLES, || http.get(format!("{gateway}function/list-functions?user={}", owner_login(7)))).await?;
    println!(
        "   list-functions, an owner of {FUNCTIONS_PER_OWNER} (through the gateway): {}   target p99 < 10 ms",
        small.line()
    );
    let (big, _, _) =
        timed_gets(SAMPLES, || http.get(format!("{gateway}function/list-functions?user={}", owner_login(0)))).await?;
    println!("   list-functions, an owner of {BIG_OWNER_FUNCTIONS}: {}", big.line());
    println!("   list-functions: {}", memory(pid_of(binaries, "list-functions")?));

    let now = Utc::now();
    let session = Session {
        id: Session::new_id(),
        user: Account { login: owner_login(0), id: owner_id(0) },
        name: None,
        orgs: Vec::new(),
        issued: now,
        expires: now + chrono::Duration::hours(1),
    };
    let token = keys.signer.sign(&session);
    let (page, page_size, server) =
        timed_gets(SAMPLES, || http.get(format!("{gateway}function/dashboard/")).bearer_auth(&token)).await?;
    println!(
        "   dashboard list of {BIG_OWNER_FUNCTIONS} functions ({} KiB of HTML): {}",
        page_size / 1024,
        page.line()
    );
    println!("      its Server-Timing: {}   target p50 < 20 ms", Summary::new(server).line());
    println!("   dashboard: {}", memory(pid_of(binaries, "dashboard")?));

    let collected = collect_repositories(&http, &gateway, &keys.payload_secret).await?;
    println!(
        "   garbage-collect of one repository ({FUNCTIONS_PER_REPO} functions deleted of ~10,000): {}",
        Summary::new(collected).line()
    );
    println!("   garbage-collect: {}", memory(pid_of(binaries, "garbage-collect")?));
    println!("   ofc at the end: {}", memory(ofc_pid));
    Ok(())
}
