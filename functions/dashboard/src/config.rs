//! The dashboard's settings, read once at start.

use std::sync::Arc;

use reqwest::Url;
use shared::config::{base_url, base_url_or, env_string, CommonConfig, ConfigError, SecretStore};
use shared::gateway::BasicAuth;
use shared::log_store::LogStore;
use shared::revocation::SessionGate;
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `basic-auth-user` / `basic-auth-password`: the dashboard reads `/system/functions` itself, once per page for
    /// every account of the session, and needs a function's labels to tell "not yours" (403) from "none" (404).
    pub credentials: BasicAuth,
    /// Secret `jwt-public-key` and the signed-out sessions: admits sessions; the dashboard can never mint one.
    pub sessions: SessionGate,
    /// `dashboard_url`: the dashboard's public base; every link on a page is built from it.
    pub dashboard_url: Url,
    /// `auth_url`: edge-auth's public base; a request without a valid session goes to `{auth_url}login/`.
    pub auth_url: Url,
    /// `gateway_public_url` (the gateway's own URL when unset): the base of a function's URL.
    pub gateway_public_url: Url,
    /// `gateway_pretty_url` (e.g. `https://user.o6s.io/function`): a function's URL, when set.
    pub gateway_pretty_url: Option<String>,
    /// `github_url`, default `https://github.com/`: where a deployed SHA's commit page is.
    pub github_url: Url,
    /// The build logs, as pipeline-log reads them (`log_store_path`, or the `s3_*` settings).
    pub store: Arc<LogStore>,
    pub server: ServerConfig,
}

impl shared::server::FunctionConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let secrets = SecretStore::from_env();
        let common = CommonConfig::from_env(&secrets)?;
        let gateway_public_url = match env_string("gateway_public_url") {
            Some(_) => base_url("gateway_public_url")?,
            None => common.gateway_url.clone(),
        };
        let store = LogStore::from_env(&secrets)?;
        Ok(Self {
            credentials: BasicAuth::from_secrets(&secrets)?,
            sessions: SessionGate::from_secrets(&secrets)?,
            dashboard_url: base_url("dashboard_url")?,
            auth_url: base_url("auth_url")?,
            gateway_public_url,
            gateway_pretty_url: env_string("gateway_pretty_url"),
            github_url: base_url_or("github_url", "https://github.com/")?,
            store: Arc::new(store),
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
            common,
        })
    }
}
