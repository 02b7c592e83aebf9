//! What both test files of garbage-collect start it with and send it.

use garbage_collect::images::RegistryConfig;
use garbage_collect::Config;
use serde_json::Value;
use shared::config::Secret;
use shared::gateway::BasicAuth;
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::{common_config, RecordingGateway, ServedFunction};

pub const SECRET: &str = "payload";

/// garbage-collect in front of `gateway` (admin `pw`), with no sweep and `registry`'s account for images.
pub async fn serve(gateway: &RecordingGateway, registry: RegistryConfig) -> ServedFunction {
    let config = Config {
        common: common_config(gateway, SECRET),
        credentials: BasicAuth { user: "admin".into(), password: Secret::new("pw") },
        preview_ttl: std::time::Duration::ZERO,
        preview_sweep_every: std::time::Duration::ZERO,
        registry,
        server: ServerConfig::for_tests(1 << 20),
    };
    ServedFunction::start(garbage_collect::app(config)).await
}

/// Posts `body` (signed with the payload secret when `signed`); answers the status and the JSON answer.
pub async fn collect(served: &ServedFunction, body: &Value, signed: bool) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let mut request = reqwest::Client::new().post(served.url()).body(body.clone());
    if signed {
        request = request.header("X-Cloud-Signature", sign_sha256(SECRET.as_bytes(), &body));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
