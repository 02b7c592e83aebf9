//! A removed preview's images, against the real `docker-registry` behind the local stack's gate: garbage-collect
//! deletes them with the collector's account, never the default branch's; with the registry down or no account the
//! functions still go and the answer says which images stay.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::{collect, serve};
use doubles::registry::RegistryProcess;
use garbage_collect::images::RegistryConfig;
use registry_gate::{Account, GateAccounts};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use shared::openfaas::{labels, FunctionStatus};
use testkit::{labelled_function, RecordingGateway};
const TAG: &str = "p0123456789ab";
const OWNER_ID: u64 = 42;
const BUILDER: (&str, &str) = ("builder", "builder-password-for-tests");
const COLLECTOR: (&str, &str) = ("collector", "collector-password-for-tests");

fn accounts() -> GateAccounts {
    GateAccounts {
        builder: Account { user: BUILDER.0.into(), password: BUILDER.1.into() },
        operator: Account { user: "admin".into(), password: "operator-password-for-tests".into() },
        collector: Some(Account { user: COLLECTOR.0.into(), password: COLLECTOR.1.into() }),
    }
}

/// Pushes a one-blob image `repository:tag` as the builder (its config differs by `tag`, so each tag is its own
/// manifest); answers the manifest's digest and the config blob's.
async fn push(http: &reqwest::Client, host: &str, repository: &str, tag: &str) -> (String, String) {
    let config =
        format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"tag":"{tag}"}}"#);
    let config_digest = format!("sha256:{}", hex(&Sha256::digest(config.as_bytes())));
    let started = http
        .post(format!("http://{host}/v2/{repository}/blobs/uploads/"))
        .basic_auth(BUILDER.0, Some(BUILDER.1))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let separator = if location.contains('?') { '&' } else { '?' };
    let uploaded = http
        .put(format!("http://{host}{location}{separator}digest={config_digest}"))
        .basic_auth(BUILDER.0, Some(BUILDER.1))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": []
    });
    let put = http
        .put(format!("http://{host}/v2/{repository}/manifests/{tag}"))
        .basic_auth(BUILDER.0, Some(BUILDER.1))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    (put.headers()["docker-content-digest"].to_str().unwrap().to_owned(), config_digest)
}

/// Whether the registry stored under `dir` still holds the blob `digest` on disk.
fn blob_on_disk(dir: &std::path::Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    dir.join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data").is_file()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
        out
    })
}

async fn head(http: &reqwest::Client, host: &str, repository: &str, reference: &str) -> StatusCode {
    let url = format!("http://{host}/v2/{repository}/manifests/{reference}");
    let accept = shared::registry::MANIFEST_TYPES;
    http.head(url).header("accept", accept).send().await.unwrap().status()
}

/// `octo`'s function `name` (a preview's when `preview` is given) running `image`.
fn function(name: &str, preview: Option<&str>, image: String) -> FunctionStatus {
    let mut function = labelled_function(name, "octo", "fns", true);
    let labels = function.labels.get_or_insert_with(Default::default);
    labels.insert(labels::OWNER_ID.into(), OWNER_ID.to_string());
    if let Some(tag) = preview {
        labels.insert(labels::PREVIEW.into(), tag.into());
    }
    function.image = image;
    function
}

fn registry_config(host: &str, account: Option<(&str, &str)>) -> RegistryConfig {
    let auths = account.map(|(user, password)| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        BTreeMap::from([(host.to_owned(), auth)])
    });
    RegistryConfig { auths, api_host: None, insecure: false }
}

#[tokio::test]
async fn a_removed_preview_takes_its_images_and_leaves_the_default_branch_s() {
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start_gated(dir.path(), accounts()).await.unwrap();
    let host = registry.host_port();
    let http = reqwest::Client::new();
    let preview = format!("{OWNER_ID}/fns/hello__{TAG}");
    let default = format!("{OWNER_ID}/fns/hello");
    let (running, running_config) = push(&http, &host, &preview, "second").await;
    let (_, first_config) = push(&http, &host, &preview, "first").await;
    let (main, main_config) = push(&http, &host, &default, "main").await;

    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    gateway.add_function(function(&format!("octo-hello-4-{TAG}"), Some(TAG), format!("{host}/{preview}@{running}")));
    gateway.add_function(function("octo-hello-4", None, format!("{host}/{default}@{main}")));
    let served = serve(&gateway, registry_config(&host, Some(COLLECTOR))).await;

    let request = json!({"owner": "octo", "owner_id": OWNER_ID, "repo": "fns", "functions": [], "preview": TAG});
    let (status, answer) = collect(&served, &request, true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!([format!("octo-hello-4-{TAG}")]));
    assert_eq!(answer["images_deleted"].as_array().map(Vec::len), Some(2), "both tags' manifests: {answer}");
    assert_eq!(answer["images_kept"], json!([]), "{answer}");
    for reference in ["first", "second", running.as_str()] {
        assert_eq!(head(&http, &host, &preview, reference).await, StatusCode::NOT_FOUND, "{reference}");
    }
    assert_eq!(head(&http, &host, &default, "main").await, StatusCode::OK, "the default branch's image stays");

    // Even a preview-labelled function pointing at the default branch's image never removes it.
    gateway.add_function(function(&format!("octo-greet-4-{TAG}"), Some(TAG), format!("{host}/{default}@{main}")));
    let (status, answer) = collect(&served, &request, true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["images_deleted"], json!([]), "{answer}");
    assert_eq!(head(&http, &host, &default, &main).await, StatusCode::OK);

    // The registry's offline garbage collection (the operator's, with the registry stopped) then frees the
    // preview's blobs, and only those.
    registry.stop(std::time::Duration::from_secs(5)).await;
    assert!(blob_on_disk(dir.path(), &running_config), "deleting manifests frees no blob by itself");
    let collected = std::process::Command::new("docker-registry")
        .args(["garbage-collect", dir.path().join("config.yml").to_str().unwrap()])
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(collected.status.success(), "{}", String::from_utf8_lossy(&collected.stderr));
    assert!(!blob_on_disk(dir.path(), &running_config) && !blob_on_disk(dir.path(), &first_config));
    assert!(blob_on_disk(dir.path(), &main_config), "the default branch's blobs stay");
}

#[tokio::test]
async fn without_the_registry_or_an_account_the_functions_still_go_and_the_answer_names_what_stays() {
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    // A port nothing listens on: the registry is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let image = format!("{down}/{OWNER_ID}/fns/hello__{TAG}@sha256:{}", "0".repeat(64));
    gateway.add_function(function(&format!("octo-hello-4-{TAG}"), Some(TAG), image.clone()));
    let served = serve(&gateway, registry_config(&down, Some(COLLECTOR))).await;
    let request = json!({"owner": "octo", "owner_id": OWNER_ID, "repo": "fns", "functions": [], "preview": TAG});
    let (status, answer) = collect(&served, &request, true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!([format!("octo-hello-4-{TAG}")]));
    let kept = answer["images_kept"].to_string();
    assert!(kept.contains("could not be reached"), "{answer}");
    assert!(!kept.contains(COLLECTOR.1), "no password in answers: {answer}");

    gateway.add_function(function(&format!("octo-hello-4-{TAG}"), Some(TAG), image));
    let served = serve(&gateway, registry_config(&down, None)).await;
    let (status, answer) = collect(&served, &request, true).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["images_kept"].to_string().contains("registry-collector-auth"), "{answer}");
}

#[tokio::test]
async fn a_preview_repository_a_function_runs_from_again_is_left_whole_and_an_unlabelled_owner_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start_gated(dir.path(), accounts()).await.unwrap();
    let host = registry.host_port();
    let http = reqwest::Client::new();
    let preview = format!("{OWNER_ID}/fns/hello__{TAG}");
    let (old, _) = push(&http, &host, &preview, "old").await;
    let (new, _) = push(&http, &host, &preview, "new").await;

    // One function of the preview goes while another (kept by the request, as one deployed again would be) runs
    // from the same repository: nothing of it is deleted.
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    gateway.add_function(function(&format!("octo-hello-4-{TAG}"), Some(TAG), format!("{host}/{preview}@{old}")));
    gateway.add_function(function(&format!("octo-web-4-{TAG}"), Some(TAG), format!("{host}/{preview}@{new}")));
    let served = serve(&gateway, registry_config(&host, Some(COLLECTOR))).await;
    let request = json!({"owner": "octo", "owner_id": OWNER_ID, "repo": "fns", "preview": TAG,
                         "functions": [format!("octo-web-4-{TAG}")]});
    let (status, answer) = collect(&served, &request, true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!([format!("octo-hello-4-{TAG}")]));
    assert_eq!(answer["images_deleted"], json!([]), "{answer}");
    assert!(answer["images_kept"].to_string().contains("runs from it again"), "{answer}");
    for reference in [old.as_str(), new.as_str()] {
        assert_eq!(head(&http, &host, &preview, reference).await, StatusCode::OK, "{reference}");
    }

    // A preview function without the owner-id label has no owner to check its image against: it is not deleted.
    let gateway = RecordingGateway::with_credentials("admin", "pw").await;
    let mut unlabelled = function(&format!("octo-hello-4-{TAG}"), Some(TAG), format!("{host}/{preview}@{old}"));
    unlabelled.labels.as_mut().unwrap().remove(labels::OWNER_ID);
    gateway.add_function(unlabelled);
    let served = serve(&gateway, registry_config(&host, Some(COLLECTOR))).await;
    let request = json!({"owner": "octo", "repo": "fns", "functions": [], "preview": TAG});
    let (status, answer) = collect(&served, &request, true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"], json!([format!("octo-hello-4-{TAG}")]), "the function itself goes");
    assert_eq!(answer["images_deleted"], json!([]), "{answer}");
    assert_eq!(head(&http, &host, &preview, &old).await, StatusCode::OK);
}
