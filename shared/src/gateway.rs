//! A client for the OpenFaaS gateway: invoking functions (sync and async, signed) and managing deployments.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};

use axum::http::Uri;

use crate::config::Secret;
use crate::error::error_chain;
use crate::keepalive::KeepAliveClient;
use crate::openfaas::{DeleteFunctionRequest, FunctionDeployment, FunctionStatus};
use crate::signature::sign_sha256;

/// Why a gateway call failed. Messages carry the gateway's answer, never credentials.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway at {url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the gateway answered {status} for {what}: {body}")]
    Status { what: String, status: StatusCode, body: String },
    #[error("the gateway's answer for {what} could not be read: {reason}")]
    BadAnswer { what: String, reason: String },
    #[error("the gateway admin credentials (basic-auth-user/basic-auth-password) are not configured")]
    NoCredentials,
}

impl GatewayError {
    /// `true` for faults that may pass (unreachable, 5xx, 429): worth retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
            Self::BadAnswer { .. } | Self::NoCredentials => false,
        }
    }

    /// The HTTP status the gateway answered, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The gateway's admin user and password, for `/system/*`.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

impl BasicAuth {
    /// The `basic-auth-user` and `basic-auth-password` secrets, as the gateway's own are mounted.
    pub fn from_secrets(secrets: &crate::config::SecretStore) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            user: secrets.required("basic-auth-user")?.expose().to_owned(),
            password: secrets.required("basic-auth-password")?,
        })
    }
}

/// Talks to one gateway. Cheap to clone: the HTTP connection pool and the URL cache are shared.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    base_url: Url,
    payload_secret: Secret,
    credentials: Option<BasicAuth>,
    http: reqwest::Client,
    /// Parsed URLs of the paths called so far, as reqwest and hyper take them (parsing costs more than it seems).
    urls: Arc<RwLock<HashMap<String, ParsedUrl>>>,
    /// For a plain-HTTP gateway without credentials in its URL: the lean client async calls go through (see
    /// [`KeepAliveClient`]).
    keepalive: Option<KeepAliveClient>,
}

/// A path under the gateway, parsed once: as reqwest takes it, and as hyper does where it can.
type ParsedUrl = (Url, Option<Uri>);

/// The URL cache holds the few functions and `/system` paths a function calls; past this, URLs are parsed each time.
const MAX_CACHED_URLS: usize = 64;

/// How many `GET /system/function/NAME` a readiness check makes at once.
const READINESS_CONCURRENCY: usize = 8;

/// How long a management call (`/system/*`) or an async enqueue may take.
const SHORT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl GatewayClient {
    /// `base_url` ends in `/` (see [`crate::config::base_url`]).
    pub fn new(base_url: Url, payload_secret: Secret) -> Self {
        let http = crate::resolver::client_builder()
            .connect_timeout(Duration::from_secs(5))
            // Under the servers' idle bound (`read_header_timeout`, 10 s by default), so an idle connection is
            // never reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("the HTTP client builds with static settings");
        let plain = base_url.scheme() == "http" && base_url.username().is_empty() && base_url.password().is_none();
        let keepalive = plain.then(KeepAliveClient::new);
        Self { base_url, payload_secret, credentials: None, http, urls: Arc::default(), keepalive }
    }

    /// Adds the admin credentials that `/system/*` calls need.
    #[must_use]
    pub fn with_credentials(mut self, credentials: BasicAuth) -> Self {
        self.credentials = Some(credentials);
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The shared HTTP client, for callers that need one more request to the same places.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `X-Cloud-Signature` for `body` with this gateway's payload secret.
    pub fn sign(&self, body: &[u8]) -> String {
        sign_sha256(self.payload_secret.expose().as_bytes(), body)
    }

    fn url(&self, path: &str) -> Url {
        self.parsed(path).0
    }

    /// `path` under the base URL, as a `Url` and, where hyper can take it, as a `Uri`.
    fn parsed(&self, path: &str) -> ParsedUrl {
        if let Some(parsed) = self.urls.read().expect("URL cache lock").get(path) {
            return parsed.clone();
        }
        let url = self.base_url.join(path).expect("function paths are relative URLs");
        let uri = Uri::try_from(url.as_str()).ok();
        let mut urls = self.urls.write().expect("URL cache lock");
        if urls.len() < MAX_CACHED_URLS {
            urls.insert(path.to_owned(), (url.clone(), uri.clone()));
        }
        (url, uri)
    }

    /// Calls `function/<name>` synchronously with a signed body and waits for its answer, whatever its status.
    pub async fn invoke(
        &self,
        name: &str,
        body: Bytes,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<reqwest::Response, GatewayError> {
        let signature = self.sign(&body);
        self.invoke_presigned(name, reqwest::Body::from(body), &signature, headers, timeout).await
    }

    /// Like [`invoke`](Self::invoke), but an answer other than 2xx is a [`GatewayError::Status`] naming the function:
    /// for callers that only go on when the function succeeded.
    pub async fn invoke_ok(
        &self,
        name: &str,
        body: Bytes,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<reqwest::Response, GatewayError> {
        let response = self.invoke(name, body, headers, timeout).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(status_error(name.to_owned(), response).await)
        }
    }

    /// Like [`invoke`](Self::invoke), for a streamed body whose signature the caller computed over the same bytes.
    pub async fn invoke_presigned(
        &self,
        name: &str,
        body: reqwest::Body,
        signature: &str,
        mut headers: HeaderMap,
        timeout: Duration,
    ) -> Result<reqwest::Response, GatewayError> {
        let url = self.url(&format!("function/{name}"));
        headers.insert(HeaderName::from_static("x-cloud-signature"), header_value(signature));
        self.http
            .post(url.clone())
            .headers(headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))
    }

    /// Queues a signed call to `async-function/<name>`; the gateway answers 202 and makes the call later (once, on
    /// OpenFaaS CE: its queue-worker never retries, so the called function retries what it must itself).
    /// Returns the gateway's `X-Call-Id` when it gives one.
    pub async fn invoke_async(
        &self,
        name: &str,
        body: Bytes,
        mut headers: HeaderMap,
    ) -> Result<Option<String>, GatewayError> {
        let (url, uri) = self.parsed(&format!("async-function/{name}"));
        headers.insert(HeaderName::from_static("x-cloud-signature"), header_value(&self.sign(&body)));
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let (status, answer_headers, answer) = if let (Some(keepalive), Some(uri)) = (&self.keepalive, uri) {
            let answer = keepalive
                .post(uri, headers, body, SHORT_CALL_TIMEOUT)
                .await
                .map_err(|reason| GatewayError::Unreachable { url: shown(&url), reason })?;
            (answer.status, answer.headers, answer.body)
        } else {
            let response = self
                .http
                .post(url.clone())
                .headers(headers)
                .body(body)
                .timeout(SHORT_CALL_TIMEOUT)
                .send()
                .await
                .map_err(|e| unreachable(&url, &e))?;
            let (status, answer_headers) = (response.status(), response.headers().clone());
            (status, answer_headers, response.bytes().await.unwrap_or_default())
        };
        if !status.is_success() {
            return Err(answer_error(format!("async-function/{name}"), status, &answer));
        }
        Ok(answer_headers.get("x-call-id").and_then(|v| v.to_str().ok()).map(str::to_owned))
    }

    async fn system(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, GatewayError> {
        self.system_with_query(method, path, &[], body).await
    }

    /// [`Self::system`] with a query (kept out of `path`, whose parsed URL is cached).
    async fn system_with_query(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, GatewayError> {
        let credentials = self.credentials.as_ref().ok_or(GatewayError::NoCredentials)?;
        let url = self.url(path);
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .basic_auth(&credentials.user, Some(credentials.password.expose()))
            .timeout(SHORT_CALL_TIMEOUT);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(|e| unreachable(&url, &e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(status_error(format!("{method} /{path}"), response).await)
        }
    }

    /// `GET /system/functions`.
    pub async fn list_functions(&self) -> Result<Vec<FunctionStatus>, GatewayError> {
        let response = self.system(Method::GET, "system/functions", None).await?;
        response
            .json()
            .await
            .map_err(|e| GatewayError::BadAnswer { what: "GET /system/functions".into(), reason: e.to_string() })
    }

    /// `GET /system/functions?owner=LOGIN[&ownerId=ID]`: ofc's gateway answers the cloud functions of that owner
    /// alone (by [`FunctionStatus::is_cloud_function_of`]'s rule), so a list for one owner does not read every
    /// owner's; a gateway that ignores the query (OpenFaaS's own) lists every function, so the caller still keeps
    /// only the owner's.
    pub async fn list_functions_of(
        &self,
        owner: &str,
        owner_id: Option<u64>,
    ) -> Result<Vec<FunctionStatus>, GatewayError> {
        let id = owner_id.filter(|id| *id != 0).map(|id| id.to_string());
        let mut query = vec![("owner", owner)];
        if let Some(id) = &id {
            query.push(("ownerId", id));
        }
        let response = self.system_with_query(Method::GET, "system/functions", &query, None).await?;
        response
            .json()
            .await
            .map_err(|e| GatewayError::BadAnswer { what: "GET /system/functions".into(), reason: e.to_string() })
    }

    /// `GET /system/function/{name}`; `None` when the gateway answers 404.
    pub async fn get_function(&self, name: &str) -> Result<Option<FunctionStatus>, GatewayError> {
        match self.system(Method::GET, &format!("system/function/{name}"), None).await {
            Ok(response) => response.json().await.map(Some).map_err(|e| GatewayError::BadAnswer {
                what: format!("GET /system/function/{name}"),
                reason: e.to_string(),
            }),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `functions` (a list's entries, filtered by the caller first) with `availableReplicas` as
    /// `GET /system/function/NAME` counts it for each entry the list counts none for: faasd's list has no
    /// `availableReplicas`, so the list alone says nothing is ready there. A function gone meanwhile is dropped; one
    /// whose status cannot be read keeps the list's count, and the reason is logged.
    pub async fn with_readiness(&self, functions: Vec<FunctionStatus>) -> Vec<FunctionStatus> {
        use futures_util::stream::StreamExt as _;
        let checked: Vec<Option<FunctionStatus>> = futures_util::stream::iter(functions)
            .map(|mut listed| async move {
                if listed.is_ready() {
                    return Some(listed);
                }
                match self.get_function(&listed.name).await {
                    Ok(Some(status)) => {
                        listed.available_replicas = status.available_replicas;
                        listed.replicas = listed.replicas.max(status.replicas);
                        Some(listed)
                    }
                    Ok(None) => None,
                    Err(error) => {
                        tracing::warn!(function = %listed.name, %error, "readiness unknown: the list's count is shown");
                        Some(listed)
                    }
                }
            })
            .buffered(READINESS_CONCURRENCY)
            .collect()
            .await;
        checked.into_iter().flatten().collect()
    }

    /// `POST /system/functions`: a new deployment.
    pub async fn deploy(&self, deployment: &FunctionDeployment) -> Result<(), GatewayError> {
        let body = serde_json::to_vec(deployment).expect("deployments serialise");
        self.system(Method::POST, "system/functions", Some(body)).await.map(drop)
    }

    /// `PUT /system/functions`: an update of an existing deployment.
    pub async fn update(&self, deployment: &FunctionDeployment) -> Result<(), GatewayError> {
        let body = serde_json::to_vec(deployment).expect("deployments serialise");
        self.system(Method::PUT, "system/functions", Some(body)).await.map(drop)
    }

    /// `DELETE /system/functions`.
    pub async fn delete(&self, name: &str) -> Result<(), GatewayError> {
        let body = serde_json::to_vec(&DeleteFunctionRequest { function_name: name.to_owned() }).expect("serialises");
        self.system(Method::DELETE, "system/functions", Some(body)).await.map(drop)
    }
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("signatures are ASCII hex")
}

/// Only scheme, host and path: a URL never carries credentials here, but a query could carry anything.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    let _ = shown.set_password(None);
    shown.to_string()
}

fn unreachable(url: &Url, error: &reqwest::Error) -> GatewayError {
    let reason = if error.is_timeout() { "timed out".to_owned() } else { error_chain(error) };
    GatewayError::Unreachable { url: shown(url), reason }
}

/// The one mapping of a non-2xx answer to an error: its status and the start of its body.
async fn status_error(what: String, response: reqwest::Response) -> GatewayError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    answer_error(what, status, &body)
}

fn answer_error(what: String, status: StatusCode, body: &[u8]) -> GatewayError {
    let body = String::from_utf8_lossy(body).trim().chars().take(300).collect();
    GatewayError::Status { what, status, body }
}
