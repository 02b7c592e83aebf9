//! `GET /system/info` and `GET /metrics`: what `faas-cli version` and Prometheus read from an OpenFaaS gateway.
//!
//! The info has OpenFaaS's shape (`provider{provider, orchestration, version{sha, release}}`, `version{commit_message,
//! sha, release}`, `arch`). The gateway and its provider are one program here, so both versions are this crate's:
//! the release is the crate's version and the sha the commit it was built from (`build.rs`; empty when it was built
//! outside a git checkout). `arch` is named as OpenFaaS names it (Go's `amd64`, `arm64`), which is what its builds
//! put there. Behind a real OpenFaaS gateway ([`super::GatewayConfig::behind_gateway`]) it answers the provider's
//! part alone, faas-provider's `ProviderInfo`, as that gateway expects from its provider.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Gateway;

/// The commit this binary was built from, if known.
const GIT_SHA: &str = env!("OFC_GIT_SHA");
/// That commit's subject line, if known.
const GIT_COMMIT_MESSAGE: &str = env!("OFC_GIT_COMMIT_MESSAGE");

/// This machine's architecture as Go (and so OpenFaaS) names it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// faas-provider's `ProviderInfo`: this program as a provider.
fn provider_info() -> serde_json::Value {
    json!({
        "provider": "ofc",
        "orchestration": "local",
        "version": {"sha": GIT_SHA, "release": env!("CARGO_PKG_VERSION")},
    })
}

/// The gateway's info, or, behind a real gateway, the provider's (which that gateway wraps with its own version).
pub(super) async fn info(State(gateway): State<Gateway>) -> Json<serde_json::Value> {
    if gateway.inner.config.behind_gateway {
        return Json(provider_info());
    }
    let release = env!("CARGO_PKG_VERSION");
    Json(json!({
        "provider": provider_info(),
        "version": {"commit_message": GIT_COMMIT_MESSAGE, "sha": GIT_SHA, "release": release},
        "arch": arch(),
    }))
}

pub(super) async fn metrics(State(gateway): State<Gateway>) -> Response {
    let mut replicas: BTreeMap<String, u64> = gateway.inner.functions.available().into_iter().collect();
    // A platform function is one supervised process.
    for name in gateway.inner.routes.read().expect("routes lock").keys() {
        replicas.insert(name.clone(), 1);
    }
    let text = gateway.inner.metrics.render(&replicas);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
