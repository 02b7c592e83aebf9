//! The few calls of the Docker Registry HTTP API V2 buildshiprun needs to skip a build whose image already exists:
//! whether a tag exists (HEAD), and giving an existing manifest another tag (GET by digest, PUT under the tag). The
//! manifest's bytes are copied unchanged, so its digest, and what a deployment pinned by it runs, stays the same.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;

/// Every manifest type a build can push: OCI and Docker v2, single images and indexes (multi-platform builds). A
/// registry answers another type's representation when it is not listed, and its digest would differ.
pub const MANIFEST_TYPES: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Why a registry call failed. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{0}` is not an image reference with a registry host (`host[:port]/repository[:tag]`)")]
    Reference(String),
    #[error("the registry at {host} could not be reached: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("the registry answered {status} for {what}")]
    Status { what: String, status: StatusCode },
}

/// An image reference split the way the registry API addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`, e.g. `registry:5000` or `127.0.0.1:5000`.
    pub host: String,
    /// The repository inside the registry, e.g. `octo/fns-hello`.
    pub repository: String,
    /// The tag, when the reference has one.
    pub tag: Option<String>,
    /// The digest, when the reference is pinned (`@sha256:…`).
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `host[:port]/repository[:tag][@digest]`. The first part must name a host (a `.`, a `:` or
    /// `localhost`, Docker's rule): a Docker Hub short name has no registry this client could address.
    pub fn parse(image: &str) -> Result<Self, RegistryError> {
        let refused = || RegistryError::Reference(image.to_owned());
        let (host, rest) = image.split_once('/').ok_or_else(refused)?;
        if !(host.contains('.') || host.contains(':') || host == "localhost") || rest.is_empty() {
            return Err(refused());
        }
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(digest.to_owned())),
            None => (rest, None),
        };
        let (repository, tag) = match name.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_owned())),
            _ => (name, None),
        };
        if repository.is_empty() {
            return Err(refused());
        }
        Ok(Self { host: host.to_owned(), repository: repository.to_owned(), tag, digest })
    }

    /// `host/repository:tag`.
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{}/{}:{tag}", self.host, self.repository)
    }
}

/// A manifest as the registry stored it: its exact bytes and media type, so a copy keeps its digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Bytes,
}

/// A client for the registries images are pushed to.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    /// `registry_insecure`: every registry is spoken to over plain HTTP. Loopback hosts always are (Docker's own
    /// default), so the local stack's registry needs no setting.
    insecure: bool,
    /// `auth` (base64 of `user:password`) per registry host, from the `registry-secret` Docker `config.json`.
    auths: BTreeMap<String, String>,
}

impl RegistryClient {
    pub fn new(insecure: bool, auths: BTreeMap<String, String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("static client settings");
        Self { http, insecure, auths }
    }

    fn url(&self, host: &str, repository: &str, reference: &str) -> String {
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback =
            bare == "localhost" || bare.starts_with("127.") || bare == "[::1]" || bare.ends_with(".localhost");
        let scheme = if self.insecure || loopback { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{repository}/manifests/{reference}")
    }

    fn request(&self, method: reqwest::Method, image: &ImageRef, reference: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(&image.host, &image.repository, reference));
        match self.auths.get(&image.host) {
            Some(auth) => request.header(AUTHORIZATION, format!("Basic {auth}")),
            None => request,
        }
    }

    async fn send(
        &self,
        image: &ImageRef,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        request.send().await.map_err(|e| RegistryError::Unreachable {
            host: image.host.clone(),
            reason: crate::gateway::error_chain(&e),
        })
    }

    /// The digest `reference` (a tag) of `image`'s repository points to, or `None` when the registry has no such
    /// tag. A HEAD: nothing but headers travels.
    pub async fn digest_of(&self, image: &ImageRef, reference: &str) -> Result<Option<String>, RegistryError> {
        let request = self.request(reqwest::Method::HEAD, image, reference).header(ACCEPT, MANIFEST_TYPES);
        let response = self.send(image, request).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                Ok(response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned))
            }
            status => Err(RegistryError::Status { what: format!("{}:{reference}", image.repository), status }),
        }
    }

    /// The manifest `digest` of `image`'s repository, byte for byte.
    pub async fn manifest(&self, image: &ImageRef, digest: &str) -> Result<Manifest, RegistryError> {
        let request = self.request(reqwest::Method::GET, image, digest).header(ACCEPT, MANIFEST_TYPES);
        let response = self.send(image, request).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Status { what: format!("{}@{digest}", image.repository), status });
        }
        let media_type =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RegistryError::Unreachable { host: image.host.clone(), reason: e.to_string() })?;
        Ok(Manifest { media_type, bytes })
    }

    /// Tags the manifest `digest` of `image`'s repository as `tag` too (the registry holds its layers already).
    pub async fn tag(&self, image: &ImageRef, digest: &str, tag: &str) -> Result<(), RegistryError> {
        let manifest = self.manifest(image, digest).await?;
        let request = self
            .request(reqwest::Method::PUT, image, tag)
            .header(CONTENT_TYPE, manifest.media_type)
            .body(manifest.bytes);
        let response = self.send(image, request).await?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(RegistryError::Status { what: format!("PUT {}:{tag}", image.repository), status })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_reference_splits_into_host_repository_tag_and_digest() {
        let image = ImageRef::parse("127.0.0.1:5000/octo/fns-hello:latest-abc").unwrap();
        assert_eq!(image.host, "127.0.0.1:5000");
        assert_eq!(image.repository, "octo/fns-hello");
        assert_eq!(image.tag.as_deref(), Some("latest-abc"));
        assert_eq!(image.with_tag("build-1"), "127.0.0.1:5000/octo/fns-hello:build-1");
        let pinned = ImageRef::parse("registry.example.com/o/f@sha256:00").unwrap();
        assert_eq!((pinned.tag, pinned.digest.as_deref()), (None, Some("sha256:00")));
        assert_eq!(ImageRef::parse("localhost/f").unwrap().tag, None);
        for refused in ["alpine:3.20", "octo/fns", "registry:5000/", "plain"] {
            assert!(ImageRef::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn loopback_registries_are_spoken_to_over_http_and_others_over_https() {
        let client = RegistryClient::new(false, BTreeMap::new());
        assert!(client.url("127.0.0.1:5000", "o/f", "t").starts_with("http://127.0.0.1:5000/v2/o/f/manifests/t"));
        assert!(client.url("localhost:5000", "o/f", "t").starts_with("http://"));
        assert!(client.url("registry.example.com", "o/f", "t").starts_with("https://"));
        assert!(RegistryClient::new(true, BTreeMap::new()).url("registry:5000", "o/f", "t").starts_with("http://"));
    }
}
