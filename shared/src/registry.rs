//! The few calls of the Docker Registry HTTP API V2 of-builder needs to skip a build whose image already exists:
//! whether a tag exists (HEAD), an image's config (to check the seal of-builder put on it), and giving an existing
//! manifest another tag (GET by digest, PUT under the tag). The manifest's bytes are copied unchanged, so its
//! digest, and what a deployment pinned by it runs, stays the same. Only of-builder holds credentials that write.
//! garbage-collect lists a preview's tags and deletes its manifests, with an account that may delete nothing else.

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
        if !is_registry_host(host) || rest.is_empty() {
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
}

/// Whether `part` (an image reference's first part) names a registry host, by Docker's rule: a `.`, a `:` or
/// `localhost`.
fn is_registry_host(part: &str) -> bool {
    part.contains('.') || part.contains(':') || part == "localhost"
}

/// `image` with its registry host replaced by `host`, or with `host` put in front when it names none (a Docker Hub
/// short name). The registry plays three roles that need not share an address: where the node pulls
/// (`repository_url`, in the deployment's `image`), where of-builder pushes (`registry_push_url`), and where
/// buildshiprun's API calls go (`registry_api_url`); on faasd, containerd pulls plain HTTP from localhost only,
/// which a container cannot reach.
pub fn with_registry_host(image: &str, host: &str) -> String {
    match image.split_once('/') {
        Some((first, rest)) if is_registry_host(first) => format!("{host}/{rest}"),
        _ => format!("{host}/{image}"),
    }
}

/// The `host[:port]` setting `name` (`registry_push_url`, `registry_api_url`): `None` when unset, so the image's own
/// registry (`repository_url`'s) plays that role too. A scheme is refused: the registry's scheme is decided by
/// `registry_insecure`.
pub fn registry_host_setting(name: &str) -> Result<Option<String>, crate::config::ConfigError> {
    let Some(value) = crate::config::env_string(name) else { return Ok(None) };
    parse_registry_host(&value)
        .map(Some)
        .map_err(|reason| crate::config::ConfigError::Invalid { name: name.to_owned(), reason })
}

/// A `host[:port]` that an image reference can start with.
pub(crate) fn parse_registry_host(value: &str) -> Result<String, String> {
    let host = value.trim().trim_end_matches('/');
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_');
    if host.is_empty() || !host.chars().all(allowed) {
        return Err(format!(
            "`{value}` is not a registry address such as `registry:5000` (host[:port], no scheme or path)"
        ));
    }
    if !is_registry_host(host) {
        return Err(format!("`{value}` would read as a Docker Hub user: give a port, a domain or `localhost`"));
    }
    Ok(host.to_ascii_lowercase())
}

/// Each registry host's `auth` (base64 of `user:password`) in a Docker `config.json` (`{"auths": {host: {"auth":
/// …}}}`), the form every registry account of the platform is handed in. The error never quotes the file.
pub fn auths_of_docker_config(text: &str) -> Result<BTreeMap<String, String>, String> {
    let config: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("not a registry auth file (JSON with `auths`): line {}", e.line()))?;
    let auths = config["auths"].as_object().ok_or("not a registry auth file: no `auths` object")?;
    Ok(auths
        .iter()
        .filter_map(|(host, entry)| Some((host.clone(), entry["auth"].as_str()?.trim().to_owned())))
        .collect())
}

/// The most tags of one repository read for a removal: a preview's repository gets one a push, so more is not one.
const MAX_TAGS: usize = 1000;

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
    /// `auth` (base64 of `user:password`) per registry host, from the `registry-auth` Docker `config.json`.
    auths: BTreeMap<String, String>,
}

impl RegistryClient {
    pub fn new(insecure: bool, auths: BTreeMap<String, String>) -> Self {
        let http = crate::resolver::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("static client settings");
        Self { http, insecure, auths }
    }

    /// `kind` is `manifests` or `blobs`.
    fn url(&self, host: &str, repository: &str, kind: &str, reference: &str) -> String {
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback =
            bare == "localhost" || bare.starts_with("127.") || bare == "[::1]" || bare.ends_with(".localhost");
        let scheme = if self.insecure || loopback { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{repository}/{kind}/{reference}")
    }

    /// A request to `image`'s manifest `reference`, with the registry's Basic credentials or a `bearer` token.
    fn request(
        &self,
        method: &reqwest::Method,
        image: &ImageRef,
        reference: &str,
        bearer: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let url = self.url(&image.host, &image.repository, "manifests", reference);
        self.authorized(self.http.request(method.clone(), url), &image.host, bearer)
    }

    /// `request` with a `bearer` token when one was given, else the registry's Basic credentials when it has some.
    fn authorized(
        &self,
        request: reqwest::RequestBuilder,
        host: &str,
        bearer: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match (bearer, self.auths.get(host)) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(auth)) => request.header(AUTHORIZATION, format!("Basic {auth}")),
            (None, None) => request,
        }
    }

    /// Sends what `build` makes; when the registry answers 401 with a Bearer challenge (token authentication, as
    /// Docker Hub, GHCR or Harbor ask), fetches a token for the challenge's scope and sends it again with it.
    async fn send(
        &self,
        image: &ImageRef,
        build: impl Fn(Option<&str>) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let response = self.send_once(image, build(None)).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let header = response.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
        let Some(challenge) = header.and_then(bearer_challenge) else { return Ok(response) };
        let token = self.token(image, &challenge).await?;
        self.send_once(image, build(Some(&token))).await
    }

    async fn send_once(
        &self,
        image: &ImageRef,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable { host: image.host.clone(), reason: crate::error::error_chain(&e) })
    }

    /// A token from the challenge's realm for its service and scope, asked with the registry's credentials.
    async fn token(&self, image: &ImageRef, challenge: &BTreeMap<String, String>) -> Result<String, RegistryError> {
        let realm = challenge.get("realm").map_or("", String::as_str);
        let query: Vec<(&str, &str)> = ["service", "scope"]
            .into_iter()
            .filter_map(|name| challenge.get(name).map(|value| (name, value.as_str())))
            .collect();
        let mut request = self.http.get(realm).query(&query);
        if let Some(auth) = self.auths.get(&image.host) {
            request = request.header(AUTHORIZATION, format!("Basic {auth}"));
        }
        let response = self.send_once(image, request).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Status { what: format!("a token from {realm}"), status });
        }
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| RegistryError::Unreachable { host: realm.to_owned(), reason: e.to_string() })?;
        answer["token"]
            .as_str()
            .or_else(|| answer["access_token"].as_str())
            .map(str::to_owned)
            .ok_or(RegistryError::Status { what: format!("a token from {realm} (none in the answer)"), status })
    }

    /// The digest `reference` (a tag) of `image`'s repository points to, or `None` when the registry has no such
    /// tag. A HEAD: nothing but headers travels.
    pub async fn digest_of(&self, image: &ImageRef, reference: &str) -> Result<Option<String>, RegistryError> {
        let head = |bearer: Option<&str>| {
            self.request(&reqwest::Method::HEAD, image, reference, bearer).header(ACCEPT, MANIFEST_TYPES)
        };
        let response = self.send(image, head).await?;
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
        let get = |bearer: Option<&str>| {
            self.request(&reqwest::Method::GET, image, digest, bearer).header(ACCEPT, MANIFEST_TYPES)
        };
        let response = self.send(image, get).await?;
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

    /// The image config (its `config.Labels`, env, cmd) of the single-platform manifest `digest` in `image`'s
    /// repository; an index has none and is an error.
    pub async fn image_config(&self, image: &ImageRef, digest: &str) -> Result<serde_json::Value, RegistryError> {
        let manifest = self.manifest(image, digest).await?;
        let unreadable = |reason: String| RegistryError::Unreachable { host: image.host.clone(), reason };
        let json: serde_json::Value = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| unreadable(format!("a manifest that is not JSON: {e}")))?;
        let config = json["config"]["digest"]
            .as_str()
            .filter(|d| d.starts_with("sha256:") && d.len() == 71 && d[7..].chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| unreadable(format!("{}@{digest} has no image config", image.repository)))?
            .to_owned();
        let url = self.url(&image.host, &image.repository, "blobs", &config);
        let get = |bearer: Option<&str>| self.authorized(self.http.get(url.clone()), &image.host, bearer);
        let response = self.send(image, get).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Status { what: format!("{}@{config}", image.repository), status });
        }
        // An image config is a few kilobytes; a larger answer is not one.
        let bytes = response.bytes().await.map_err(|e| unreadable(e.to_string()))?;
        if bytes.len() > 4 << 20 {
            return Err(unreadable(format!("{}@{config} is larger than an image config", image.repository)));
        }
        serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("an image config that is not JSON: {e}")))
    }

    /// Deletes the manifest `digest` (`sha256:…`) of `image`'s repository (`DELETE /v2/<name>/manifests/<digest>`,
    /// which removes every tag pointing at it); `false` when the registry has no such manifest. Its layers stay
    /// until the registry's own garbage collection.
    pub async fn delete_manifest(&self, image: &ImageRef, digest: &str) -> Result<bool, RegistryError> {
        let delete = |bearer: Option<&str>| self.request(&reqwest::Method::DELETE, image, digest, bearer);
        let response = self.send(image, delete).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            status => Err(RegistryError::Status { what: format!("DELETE {}@{digest}", image.repository), status }),
        }
    }

    /// The tags of `image`'s repository (`GET /v2/<name>/tags/list`, at most `MAX_TAGS`); none when the
    /// repository is not there.
    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let url = format!("{}?n={MAX_TAGS}", self.url(&image.host, &image.repository, "tags", "list"));
        let get = |bearer: Option<&str>| self.authorized(self.http.get(url.clone()), &image.host, bearer);
        let response = self.send(image, get).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let what = || format!("{}/tags/list", image.repository);
        if !status.is_success() {
            return Err(RegistryError::Status { what: what(), status });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RegistryError::Unreachable { host: image.host.clone(), reason: e.to_string() })?;
        if bytes.len() > MAX_TAGS * 200 {
            return Err(RegistryError::Status { what: format!("{} (too long an answer)", what()), status });
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Unreachable {
            host: image.host.clone(),
            reason: format!("a tag list that is not JSON: {e}"),
        })?;
        let tags = answer["tags"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str);
        Ok(tags.take(MAX_TAGS).map(str::to_owned).collect())
    }

    /// Tags the manifest `digest` of `image`'s repository as `tag` too (the registry holds its layers already).
    pub async fn tag(&self, image: &ImageRef, digest: &str, tag: &str) -> Result<(), RegistryError> {
        let manifest = self.manifest(image, digest).await?;
        let put = |bearer: Option<&str>| {
            self.request(&reqwest::Method::PUT, image, tag, bearer)
                .header(CONTENT_TYPE, manifest.media_type.clone())
                .body(manifest.bytes.clone())
        };
        let response = self.send(image, put).await?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(RegistryError::Status { what: format!("PUT {}:{tag}", image.repository), status })
        }
    }
}

/// The parameters of a `Bearer realm="…",service="…",scope="…"` challenge; `None` for another scheme.
fn bearer_challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let (scheme, mut rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut parameters = BTreeMap::new();
    while let Some((name, after)) = rest.split_once('=') {
        let name = name.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, next) = match after.strip_prefix('"') {
            // A quoted value may hold commas (`scope="repository:o/f:pull,push"`).
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        parameters.insert(name, value.to_owned());
        rest = next;
    }
    parameters.contains_key("realm").then_some(parameters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_registry_host_replaces_the_image_s_own_or_goes_in_front() {
        assert_eq!(
            with_registry_host("registry.openfaas:5000/octo/fns-hello:latest-abc", "127.0.0.1:5000"),
            "127.0.0.1:5000/octo/fns-hello:latest-abc"
        );
        assert_eq!(with_registry_host("localhost/octo/x:1", "registry:5000"), "registry:5000/octo/x:1");
        assert_eq!(with_registry_host("octo/fns-hello:1", "registry:5000"), "registry:5000/octo/fns-hello:1");
    }

    #[test]
    fn a_registry_setting_is_a_host_and_port_only() {
        assert_eq!(parse_registry_host("Registry:5000/").unwrap(), "registry:5000");
        assert_eq!(parse_registry_host("localhost").unwrap(), "localhost");
        assert_eq!(parse_registry_host("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        for bad in ["", "http://registry:5000", "registry:5000/ofc", "registry", "reg istry:5000"] {
            assert!(parse_registry_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_image_reference_splits_into_host_repository_tag_and_digest() {
        let image = ImageRef::parse("127.0.0.1:5000/octo/fns-hello:latest-abc").unwrap();
        assert_eq!(image.host, "127.0.0.1:5000");
        assert_eq!(image.repository, "octo/fns-hello");
        assert_eq!(image.tag.as_deref(), Some("latest-abc"));
        let pinned = ImageRef::parse("registry.example.com/o/f@sha256:00").unwrap();
        assert_eq!((pinned.tag, pinned.digest.as_deref()), (None, Some("sha256:00")));
        assert_eq!(ImageRef::parse("localhost/f").unwrap().tag, None);
        for refused in ["alpine:3.20", "octo/fns", "registry:5000/", "plain"] {
            assert!(ImageRef::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_docker_config_gives_each_host_s_auth() {
        let auths = auths_of_docker_config(r#"{"auths": {"r:5000": {"auth": " dTpw "}, "x": {}}}"#).unwrap();
        assert_eq!(auths, BTreeMap::from([("r:5000".to_owned(), "dTpw".to_owned())]));
        let refused = auths_of_docker_config("user:secret-password").unwrap_err();
        assert!(!refused.contains("secret-password"), "{refused}");
        assert!(auths_of_docker_config(r#"{"registry": 1}"#).is_err());
    }

    #[test]
    fn a_bearer_challenge_gives_its_realm_service_and_scope() {
        let challenge = bearer_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:o/f:pull,push""#,
        )
        .unwrap();
        assert_eq!(challenge["realm"], "https://auth.example.com/token");
        assert_eq!(challenge["service"], "registry.example.com");
        assert_eq!(challenge["scope"], "repository:o/f:pull,push");
        assert!(bearer_challenge(r#"Basic realm="registry""#).is_none());
    }

    /// A registry that asks for a token (as Docker Hub does), which its realm gives only for the right credentials.
    async fn token_registry() -> String {
        use axum::http::{HeaderMap, StatusCode as Code};
        use axum::response::IntoResponse as _;
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let challenge = format!(r#"Bearer realm="http://{address}/token",service="test",scope="repository:o/f:pull""#);
        let manifest = move |headers: HeaderMap| {
            let challenge = challenge.clone();
            async move {
                if headers.get("authorization").is_some_and(|v| v == "Bearer t0k3n") {
                    (Code::OK, [("docker-content-digest", "sha256:abc".to_owned())]).into_response()
                } else {
                    (Code::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
                }
            }
        };
        let token = |query: axum::extract::RawQuery, headers: HeaderMap| async move {
            // `builder:pass`, and the challenge's service and scope.
            let basic = headers.get("authorization").is_some_and(|v| v == "Basic YnVpbGRlcjpwYXNz");
            let scoped = query.0.is_some_and(|q| q.contains("service=test") && q.contains("scope=repository"));
            if basic && scoped {
                r#"{"token": "t0k3n"}"#.into_response()
            } else {
                Code::UNAUTHORIZED.into_response()
            }
        };
        let app = axum::Router::new().route("/v2/o/f/manifests/{reference}", get(manifest)).route("/token", get(token));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address.to_string()
    }

    #[tokio::test]
    async fn a_registry_asking_for_a_token_is_answered_with_one_from_its_realm() {
        let host = token_registry().await;
        let image = ImageRef::parse(&format!("{host}/o/f:latest")).unwrap();
        let auths = BTreeMap::from([(host.clone(), "YnVpbGRlcjpwYXNz".to_owned())]);
        let digest = RegistryClient::new(false, auths).digest_of(&image, "build-1").await.unwrap();
        assert_eq!(digest.as_deref(), Some("sha256:abc"));
        let refused = RegistryClient::new(false, BTreeMap::new()).digest_of(&image, "build-1").await;
        assert!(matches!(refused, Err(RegistryError::Status { .. })), "no credentials, no token: {refused:?}");
    }

    #[test]
    fn loopback_registries_are_spoken_to_over_http_and_others_over_https() {
        let client = RegistryClient::new(false, BTreeMap::new());
        assert!(client
            .url("127.0.0.1:5000", "o/f", "manifests", "t")
            .starts_with("http://127.0.0.1:5000/v2/o/f/manifests/t"));
        assert!(client.url("localhost:5000", "o/f", "manifests", "t").starts_with("http://"));
        assert!(client.url("registry.example.com", "o/f", "manifests", "t").starts_with("https://"));
        assert!(RegistryClient::new(true, BTreeMap::new())
            .url("registry:5000", "o/f", "manifests", "t")
            .starts_with("http://"));
    }
}
