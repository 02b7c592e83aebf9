//! gh-push's settings, read once at start.

use std::time::Duration;

use shared::config::{bool_or, bytes_or, duration_or, env_string, CommonConfig, ConfigError, SecretStore};
use shared::log_store::LogStoreConfig;
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
use shared::signature::WebhookCheck;

use crate::delivery_records::DeliveryRecords;

pub use shared::customers::CustomersSource;

/// Everything gh-push is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `validate_hmac` (default on) with `github-webhook-secret` (or env `github_webhook_secret`, required when it is
    /// on): how GitHub's signature is checked; off only for local trials.
    pub webhook: WebhookCheck,
    /// `customers_url` when `validate_customers` is on: only these owners are built.
    pub customers: Option<CustomersSource>,
    /// How long a fetched customers list is trusted before it is read again.
    pub customers_ttl: Duration,
    /// `build_branch`: the one branch built; `None` builds the repository's default branch.
    pub build_branch: Option<String>,
    /// `previews` (default off): other branches and pull requests of the same repository are built as previews
    /// under names of their own (see docs/previews.md), where the repository also asks for them.
    pub previews: bool,
    /// How long a delivery id is remembered, so a redelivery is not built twice.
    pub delivery_ttl: Duration,
    /// `delivery_log_max_bytes` (a size: `4Mi`, `8MB`…; default 4 MiB, 20,000 to 30,000 ids): the most heap the
    /// remembered delivery ids may take, past which the oldest are forgotten before their `delivery_ttl`. Without
    /// it, a burst of webhooks kept gh-push tens of MiB larger for the rest of the hour.
    pub delivery_log_max_bytes: u64,
    /// The delivery records all replicas share, in the build-log store (`log_store_path`, or `s3_bucket` and its
    /// settings), so a delivery is queued once however many replicas receive it.
    pub delivery_records: DeliveryRecords,
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
        let webhook = WebhookCheck::from_env(&secrets)?;
        let customers = CustomersSource::from_env()?;
        Ok(Self {
            common: CommonConfig::from_env(&secrets)?,
            webhook,
            customers,
            customers_ttl: duration_or("customers_cache_ttl", Duration::from_secs(60))?,
            build_branch: env_string("build_branch"),
            previews: bool_or("previews", false)?,
            delivery_ttl: duration_or("delivery_ttl", Duration::from_secs(3600))?,
            delivery_log_max_bytes: bytes_or("delivery_log_max_bytes", crate::deliveries::DEFAULT_MAX_BYTES)?,
            delivery_records: DeliveryRecords::from_env(&LogStoreConfig::from_env(&secrets)?)?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }
}
