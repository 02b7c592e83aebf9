//! What both tests of the gate share: the accounts, and a client that pushes, reads and deletes over real HTTP.

#![allow(dead_code)]

use registry_gate::{Account, GateAccounts};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

pub const BUILDER: (&str, &str) = ("builder", "builder-password-for-tests");
pub const OPERATOR: (&str, &str) = ("admin", "operator-password-for-tests");
pub const COLLECTOR: (&str, &str) = ("collector", "collector-password-for-tests");

pub fn accounts() -> GateAccounts {
    GateAccounts {
        builder: Account { user: BUILDER.0.into(), password: BUILDER.1.into() },
        operator: Account { user: OPERATOR.0.into(), password: OPERATOR.1.into() },
        collector: Some(Account { user: COLLECTOR.0.into(), password: COLLECTOR.1.into() }),
    }
}

/// Speaks the distribution API to the gate at `host_port`.
pub struct GateClient {
    pub host_port: String,
    http: reqwest::Client,
}

impl GateClient {
    pub fn new(host_port: &str) -> Self {
        Self { host_port: host_port.to_owned(), http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/v2/{path}", self.host_port)
    }

    /// Sends `method` to `path` (below `/v2/`) as `account` (none: anonymous) with `body` of `content_type`.
    pub async fn send(
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
    pub async fn head(&self, path: String) -> StatusCode {
        self.send(Method::HEAD, &path, None, ("", vec![])).await.status()
    }

    /// Pushes one blob as `account`: the upload's start and its end; answers the last status and the digest.
    pub async fn push_blob(
        &self,
        repository: &str,
        data: &[u8],
        account: Option<(&str, &str)>,
    ) -> (StatusCode, String) {
        let digest = format!("sha256:{}", hex(&Sha256::digest(data)));
        let started = self.send(Method::POST, &format!("{repository}/blobs/uploads/"), account, ("", vec![])).await;
        if started.status() != StatusCode::ACCEPTED {
            return (started.status(), digest);
        }
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with('/'), "upload locations are paths under the gate: {location}");
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("http://{}{location}{separator}digest={digest}", self.host_port);
        let done = self.send(Method::PUT, &url, account, ("application/octet-stream", data.to_vec())).await;
        (done.status(), digest)
    }

    /// Pushes a one-layer image as `account`; answers the manifest PUT's status.
    pub async fn push_image(&self, repository: &str, tag: &str, account: Option<(&str, &str)>) -> StatusCode {
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
        out
    })
}
