//! github-status's settings, read once at start.

use std::time::Duration;

use reqwest::Url;
use shared::config::env_string;
use shared::config::{base_url_or, bool_or, duration_or, required, u64_or, CommonConfig, ConfigError, SecretStore};
use shared::github_app::AppCredentials;
use std::sync::Arc;

use object_store::ObjectStore;
use shared::log_store::{open_objects, LogStore, LogStoreConfig};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

/// Everything github-status is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `report_status`: `true` writes to GitHub; otherwise statuses are only logged.
    pub report_status: bool,
    /// `github_api_url`, default `https://api.github.com/`.
    pub github_api_url: Url,
    /// The App's id and key; `None` when `report_status` is off.
    pub app: Option<AppCredentials>,
    /// `use_checks` (the last OpenFaaS Cloud release's name; default `false`): report as check runs, one per
    /// function and one for `stack-deploy`, instead of commit statuses.
    pub use_checks: bool,
    /// Where build logs are kept, so a check run can show its log's tail: only with `use_checks`, and only when
    /// `log_store_path` or `s3_bucket` is set (the default folder is another container's on OpenFaaS).
    /// Opened at start, so a store that cannot be opened stops the start naming its setting.
    pub log_store: Option<LogStore>,
    /// Where preview comment ids are kept so replicas share them: the build-log store's folder or bucket when
    /// `log_store_path` or `s3_bucket` is set; otherwise each comment is found by listing the pull request's.
    pub comment_store: Option<Arc<dyn ObjectStore>>,
    /// How often a status write is retried after a transient fault before the request fails with 502.
    pub max_retries: u32,
    /// The longest wait between two tries, whatever GitHub's `retry-after` asks.
    pub max_retry_wait: Duration,
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
        let report_status = bool_or("report_status", false)?;
        let app = if report_status {
            let app_id = required("github_app_id")?;
            let key = secrets.required_any(&["private-key", "derek-private-key"])?;
            Some(
                AppCredentials::from_pem(&app_id, &key)
                    .map_err(|e| ConfigError::Invalid { name: "private-key".into(), reason: e.to_string() })?,
            )
        } else {
            None
        };
        let use_checks = bool_or("use_checks", false)?;
        let configured = env_string("log_store_path").is_some() || env_string("s3_bucket").is_some();
        let log_store = if use_checks && configured { Some(LogStore::from_env(&secrets)?) } else { None };
        let comment_store = if configured {
            let store_config = LogStoreConfig::from_env(&secrets)?;
            let name = if env_string("s3_bucket").is_some() { "s3_bucket" } else { "log_store_path" };
            Some(
                open_objects(&store_config)
                    .map_err(|e| ConfigError::Invalid { name: name.into(), reason: e.to_string() })?
                    .0,
            )
        } else {
            None
        };
        Ok(Self {
            common: CommonConfig::from_env(&secrets)?,
            report_status,
            use_checks,
            log_store,
            comment_store,
            github_api_url: base_url_or("github_api_url", "https://api.github.com/")?,
            app,
            max_retries: u32::try_from(u64_or("status_max_retries", 4)?).unwrap_or(u32::MAX),
            max_retry_wait: duration_or("status_max_retry_wait", Duration::from_secs(60))?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}
