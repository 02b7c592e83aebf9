//! The local registry behind its gate, over real HTTP with the real `docker-registry`: reads work for anyone, a push
//! needs the builder's account, a delete the operator's, and the collector deletes a preview's manifests only.

use doubles::registry::RegistryProcess;
use doubles::registry_gate::{Account, GateAccounts};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

const BUILDER: (&str, &str) = ("builder", "builder-password-for-tests");
const OPERATOR: (&str, &str) = ("admin", "operator-password-for-tests");
const COLLECTOR: (&str, &str) = ("collector", "collector-password-for-tests");

fn accounts() -> GateAccounts {
    GateAccounts {
        builder: Account { user: BUILDER.0.into(), password: BUILDER.1.into() },
        operator: Account { user: OPERATOR.0.into(), password: OPERATOR.1.into() },
        collector: Some(Account { user: COLLECTOR.0.into(), password: COLLECTOR.1.into() }),
    }
}

struct Gated {
    registry: RegistryProcess,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Gated {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = RegistryProcess::start_gated(dir.path(), accounts()).await.unwrap();
        Self { registry, http: reqwest::Client::new(), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/v2/{path}", self.registry.host_port())
    }

    /// Sends `method` to `path` (below `/v2/`) as `account` (none: anonymous) with `body` of `content_type`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        account: Option<(&str, &str)>,
        body: (&'static str, Vec<u8>),
    ) -> reqwest::Response {
        let url = if path.starts_with("http") { path.to_owned() } else { self.url(path) };
        let mut request = self
            .http
            .request(method, url)
            .header("content-type", body.0)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .body(body.1);
        if let Some((user, password)) = account {
            request = request.basic_auth(user, Some(password));
        }
        request.send().await.unwrap()
    }

    /// The status of an anonymous `HEAD` of `path` (below `/v2/`).
    async fn head(&self, path: String) -> StatusCode {
        self.send(Method::HEAD, &path, None, ("", vec![])).await.status()
    }

    /// Pushes one blob as `account`: the upload's start and its end; answers the last status and the digest.
    async fn push_blob(&self, repository: &str, data: &[u8], account: Option<(&str, &str)>) -> (StatusCode, String) {
        let digest = format!("sha256:{}", hex(&Sha256::digest(data)));
        let started = self.send(Method::POST, &format!("{repository}/blobs/uploads/"), account, ("", vec![])).await;
        if started.status() != StatusCode::ACCEPTED {
            return (started.status(), digest);
        }
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with('/'), "upload locations are paths under the gate: {location}");
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("http://{}{location}{separator}digest={digest}", self.registry.host_port());
        let done = self.send(Method::PUT, &url, account, ("application/octet-stream", data.to_vec())).await;
        (done.status(), digest)
    }

    /// Pushes a one-layer image as `account`; answers the manifest PUT's status.
    async fn push_image(&self, repository: &str, tag: &str, account: Option<(&str, &str)>) -> StatusCode {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (status, config_digest) = self.push_blob(repository, config, account).await;
        if !status.is_success() {
            return status;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": []
        });
        let body = ("application/vnd.oci.image.manifest.v1+json", serde_json::to_vec(&manifest).unwrap());
        self.send(Method::PUT, &format!("{repository}/manifests/{tag}"), account, body).await.status()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[tokio::test]
async fn only_the_builder_pushes_and_only_the_operator_deletes_while_anyone_reads() {
    let gated = Gated::start().await;
    assert_eq!(gated.push_image("victim/fns-api", "v1", Some(BUILDER)).await, StatusCode::CREATED);
    let manifest = gated.registry.client().manifest("victim/fns-api", "v1").await.unwrap();

    // Anyone reads: the manifest, its tags, its blobs; no account is needed for that.
    let read = gated.send(Method::GET, "victim/fns-api/manifests/v1", None, ("", vec![])).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["docker-content-digest"].to_str().unwrap(), manifest.digest);
    let tags = gated.send(Method::GET, "victim/fns-api/tags/list", None, ("", vec![])).await;
    assert_eq!(tags.status(), StatusCode::OK);

    // Nobody else writes: no account, a wrong password, the operator's account.
    for (who, account) in
        [("no account", None), ("a wrong password", Some((BUILDER.0, "guess"))), ("the operator", Some(OPERATOR))]
    {
        let status = gated.push_image("victim/fns-api", "v1", account).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{who}: {status}");
        let (status, _) = gated.push_blob("attacker/x", b"layer", account).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{who}: {status}");
    }
    let challenge = gated.send(Method::POST, "victim/fns-api/blobs/uploads/", None, ("", vec![])).await;
    assert_eq!(challenge.headers()["www-authenticate"], "Basic realm=\"openfaas-cloud-registry\"");

    // Deletes: not anonymous, not the builder; the operator may.
    let target = format!("victim/fns-api/manifests/{}", manifest.digest);
    let anonymous = gated.send(Method::DELETE, &target, None, ("", vec![])).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let builder = gated.send(Method::DELETE, &target, Some(BUILDER), ("", vec![])).await;
    assert_eq!(builder.status(), StatusCode::FORBIDDEN);
    let body = builder.text().await.unwrap();
    assert!(body.contains("operator"), "{body}");
    let unchanged = gated.registry.client().manifest("victim/fns-api", "v1").await.unwrap();
    assert_eq!(unchanged.digest, manifest.digest, "the victim's tag is unchanged");

    // Listing every owner's repositories is not for anonymous readers.
    let catalog = gated.send(Method::GET, "_catalog", None, ("", vec![])).await;
    assert_eq!(catalog.status(), StatusCode::UNAUTHORIZED);

    let operator = gated.send(Method::DELETE, &target, Some(OPERATOR), ("", vec![])).await;
    assert_eq!(operator.status(), StatusCode::ACCEPTED);
    assert!(gated.registry.client().manifest("victim/fns-api", "v1").await.is_err());
}

#[tokio::test]
async fn the_collector_deletes_a_preview_s_image_and_nothing_else() {
    let gated = Gated::start().await;
    let tag = shared::naming::preview_tag("fns", &shared::naming::PreviewOf::PullRequest(7));
    let preview = format!("42/fns/hello__{tag}");
    let default = "42/fns/hello";
    assert_eq!(gated.push_image(&preview, "abc", Some(BUILDER)).await, StatusCode::CREATED);
    assert_eq!(gated.push_image(default, "abc", Some(BUILDER)).await, StatusCode::CREATED);
    let preview_digest = gated.registry.client().manifest(&preview, "abc").await.unwrap().digest;
    let default_digest = gated.registry.client().manifest(default, "abc").await.unwrap().digest;
    let head = |repository: &str, reference: &str| gated.head(format!("{repository}/manifests/{reference}"));

    // Not a default branch's image, not a push, not the catalog; an unknown account is asked to sign in.
    let denied = gated
        .send(Method::DELETE, &format!("{default}/manifests/{default_digest}"), Some(COLLECTOR), ("", vec![]))
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(head(default, "abc").await, StatusCode::OK);
    let status = gated.push_image(&preview, "pushed-by-collector", Some(COLLECTOR)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let catalog = gated.send(Method::GET, "_catalog", Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(catalog.status(), StatusCode::FORBIDDEN);
    let target = format!("{preview}/manifests/{preview_digest}");
    let unknown = gated.send(Method::DELETE, &target, Some(("someone", "else")), ("", vec![])).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let builder = gated.send(Method::DELETE, &target, Some(BUILDER), ("", vec![])).await;
    assert_eq!(builder.status(), StatusCode::FORBIDDEN);
    assert_eq!(head(&preview, "abc").await, StatusCode::OK);

    // A preview's manifest, by digest: gone, its tag with it; the default branch's stays.
    let deleted = gated.send(Method::DELETE, &target, Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    assert_eq!(head(&preview, "abc").await, StatusCode::NOT_FOUND);
    assert_eq!(head(&preview, &preview_digest).await, StatusCode::NOT_FOUND);
    assert_eq!(head(default, "abc").await, StatusCode::OK);
    let again = gated.send(Method::DELETE, &target, Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "deleting twice finds nothing");
}
