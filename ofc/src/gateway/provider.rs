//! The faas-provider routes a gateway in front of the embedded one calls, beyond deploying and listing: the status of
//! the platform's own functions (`GET /system/function/NAME`, which a gateway with `scale_from_zero` asks before
//! every call), `POST /system/scale-function/NAME`, `GET /system/namespaces` and `/system/secrets`.
//!
//! Secrets are the files of the state folder's `function-secrets/`, the store `ofc secret set` writes and deployed
//! functions mount, so `faas-cli secret create` and `ofc secret set` do the same thing. Values are written, never
//! read back, listed or logged.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use functions_api::{function_name, DEFAULT_NAMESPACE};
use serde::{Deserialize, Serialize};
use shared::openfaas::FunctionStatus;

use super::{Gateway, GatewayError};

/// The largest secret body accepted (a Kubernetes secret holds at most 1 MiB; base64 makes `rawValue` larger).
pub const MAX_SECRET_BODY_BYTES: usize = 2 * 1024 * 1024;

/// faas-provider's `Secret`: a name, its namespace, and a value as text or as bytes (`rawValue`, base64 in JSON).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing)]
    pub value: String,
    #[serde(default, skip_serializing)]
    pub raw_value: Option<String>,
}

/// faas-provider's `ScaleServiceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    #[serde(default)]
    pub service_name: String,
    pub replicas: u64,
}

/// `?namespace=` of the provider routes.
#[derive(Debug, Deserialize)]
pub(super) struct NamespaceQuery {
    #[serde(default)]
    namespace: Option<String>,
}

/// The one namespace functions run in here; `None` or empty means it, another one is refused.
fn check_namespace(namespace: Option<&str>) -> Result<(), GatewayError> {
    match namespace.filter(|ns| !ns.is_empty()) {
        None | Some(DEFAULT_NAMESPACE) => Ok(()),
        Some(other) => Err(GatewayError::UnknownNamespace(other.to_owned())),
    }
}

/// What the provider lists for a platform function: one supervised process, always one replica.
fn platform_status(name: &str) -> FunctionStatus {
    FunctionStatus {
        name: name.to_owned(),
        image: format!("ofc/{name}"),
        namespace: Some(DEFAULT_NAMESPACE.to_owned()),
        replicas: 1,
        available_replicas: 1,
        ..FunctionStatus::default()
    }
}

/// Answers `GET /function/NAME` (under `/system`) for a platform function, which the deployments do not hold; every
/// other request goes on to the deployments' routes.
pub(super) async fn platform_function_status(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    if request.method() == Method::GET {
        if let Some(name) = request.uri().path().strip_prefix("/function/") {
            let name = function_name(name);
            if gateway.inner.routes.read().expect("routes lock").contains_key(name) {
                return Json(platform_status(name)).into_response();
            }
        }
    }
    next.run(request).await
}

/// `GET /system/namespaces`: the one namespace functions are deployed to.
pub(super) async fn namespaces() -> Json<[&'static str; 1]> {
    Json([DEFAULT_NAMESPACE])
}

/// `POST /system/scale-function/NAME`: one replica per function is what this provider runs. Asking for one (or more)
/// starts a user function's replica when none answers; asking for none stops it (a gateway with `scale_from_zero`
/// scales it up again on the next call). The platform's own functions always run one and refuse zero.
pub(super) async fn scale(
    State(gateway): State<Gateway>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Bytes,
) -> Result<StatusCode, GatewayError> {
    let request: ScaleServiceRequest = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::BadProviderRequest(format!("ScaleServiceRequest: {e}")))?;
    let name = function_name(&name);
    if !request.service_name.is_empty() && function_name(&request.service_name) != name {
        return Err(GatewayError::BadProviderRequest(format!(
            "serviceName {} is not the function of the path",
            request.service_name
        )));
    }
    if gateway.inner.routes.read().expect("routes lock").contains_key(name) {
        if request.replicas == 0 {
            return Err(GatewayError::NoScaleToZero(name.to_owned()));
        }
        return Ok(StatusCode::ACCEPTED);
    }
    let deployed = gateway.inner.functions.get(name).map_err(|_| GatewayError::NoSuchFunction(name.to_owned()))?;
    if request.replicas == 0 {
        tracing::info!(function = %name, "scaled to zero: stopping its replica");
        gateway.inner.replicas.scale_to_zero(name);
        return Ok(StatusCode::ACCEPTED);
    }
    if gateway.inner.replicas.available(name) == 0 {
        tracing::info!(function = %name, "scaled to one replica: starting it");
        gateway.inner.replicas.schedule_start(deployed);
    }
    Ok(StatusCode::ACCEPTED)
}

/// The secrets folder, and the path of secret `name` in it once the name is one a function can mount.
fn secret_path(dir: &Path, name: &str) -> Result<PathBuf, GatewayError> {
    if !shared::naming::is_valid_secret_name(name) {
        return Err(GatewayError::BadSecretName);
    }
    Ok(dir.join(name))
}

/// What kind of JSON error a secret's body has: serde's own message can quote the body, which holds the value.
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
        serde_json::error::Category::Data => "not {\"name\", \"value\" | \"rawValue\"}",
    }
}

/// The `Secret` of a body (at most [`MAX_SECRET_BODY_BYTES`]), asked of the one namespace, with a name a function
/// can mount; and that name's path in the store.
async fn read_secret(gateway: &Gateway, query: &NamespaceQuery, body: Body) -> Result<(Secret, PathBuf), GatewayError> {
    check_namespace(query.namespace.as_deref())?;
    let body = axum::body::to_bytes(body, MAX_SECRET_BODY_BYTES)
        .await
        .map_err(|_| GatewayError::TooLarge { limit: MAX_SECRET_BODY_BYTES as u64 })?;
    let secret: Secret = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::BadProviderRequest(format!("Secret: {}", json_error_kind(&e))))?;
    check_namespace(Some(&secret.namespace))?;
    let path = secret_path(&gateway.inner.config.secrets_dir, &secret.name)?;
    Ok((secret, path))
}

/// The bytes to store: `rawValue` (base64) when given, otherwise `value`.
fn secret_bytes(secret: &Secret) -> Result<Vec<u8>, GatewayError> {
    match secret.raw_value.as_deref().filter(|raw| !raw.is_empty()) {
        Some(raw) => base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| GatewayError::BadProviderRequest("Secret: rawValue is not base64".to_owned())),
        None => Ok(secret.value.as_bytes().to_vec()),
    }
}

/// Writes a secret's file, readable by its owner only, whole or not at all: a new one only when there is none
/// (a hard link fails on an existing name, so two creations cannot both succeed), else in place of the old one.
fn write_secret(path: &Path, value: &[u8], replace: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A leading dot: never a secret's name, so a half-written file is never listed or mounted.
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}", uuid::Uuid::new_v4()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(value).and_then(|()| file.sync_all()))
        .and_then(|()| if replace { std::fs::rename(&temporary, path) } else { std::fs::hard_link(&temporary, path) });
    let _ = std::fs::remove_file(&temporary);
    written
}

/// `GET /system/secrets`: the stored secrets' names, never their values.
pub(super) async fn list(
    State(gateway): State<Gateway>,
    Query(query): Query<NamespaceQuery>,
) -> Result<Json<Vec<Secret>>, GatewayError> {
    check_namespace(query.namespace.as_deref())?;
    list_secrets(&gateway.inner.config.secrets_dir).map(Json)
}

/// `POST /system/secrets`: a new secret (201); 409 when one of that name exists.
pub(super) async fn create(
    State(gateway): State<Gateway>,
    Query(query): Query<NamespaceQuery>,
    body: Body,
) -> Result<StatusCode, GatewayError> {
    let (secret, path) = read_secret(&gateway, &query, body).await?;
    let value = secret_bytes(&secret)?;
    match write_secret(&path, &value, false) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Err(GatewayError::SecretExists(secret.name)),
        Err(error) => Err(GatewayError::SecretStore(error)),
        Ok(()) => {
            tracing::info!(secret = %secret.name, bytes = value.len(), "secret created");
            Ok(StatusCode::CREATED)
        }
    }
}

/// `PUT /system/secrets`: a new value for an existing secret (200); 404 when there is none.
pub(super) async fn update(
    State(gateway): State<Gateway>,
    Query(query): Query<NamespaceQuery>,
    body: Body,
) -> Result<StatusCode, GatewayError> {
    let (secret, path) = read_secret(&gateway, &query, body).await?;
    if !path.is_file() {
        return Err(GatewayError::NoSuchSecret(secret.name));
    }
    let value = secret_bytes(&secret)?;
    write_secret(&path, &value, true).map_err(GatewayError::SecretStore)?;
    tracing::info!(secret = %secret.name, bytes = value.len(), "secret updated");
    Ok(StatusCode::OK)
}

/// `DELETE /system/secrets` with `{"name"}`: removes the secret (200); 404 when there is none.
pub(super) async fn delete(
    State(gateway): State<Gateway>,
    Query(query): Query<NamespaceQuery>,
    body: Body,
) -> Result<StatusCode, GatewayError> {
    let (secret, path) = read_secret(&gateway, &query, body).await?;
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(GatewayError::NoSuchSecret(secret.name)),
        Err(error) => Err(GatewayError::SecretStore(error)),
        Ok(()) => {
            tracing::info!(secret = %secret.name, "secret removed");
            Ok(StatusCode::OK)
        }
    }
}

/// The names of the stored secrets (never their values), in order.
fn list_secrets(dir: &Path) -> Result<Vec<Secret>, GatewayError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(GatewayError::SecretStore(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(GatewayError::SecretStore)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Half-written files (`.NAME.*`) and anything a function could not mount are not secrets.
        if entry.file_type().is_ok_and(|t| t.is_file()) && shared::naming::is_valid_secret_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| Secret { name, namespace: DEFAULT_NAMESPACE.to_owned(), ..Secret::default() })
        .collect())
}
