//! git-tar's settings, read once at start.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use shared::branch_head::BranchHeads;
use shared::config::{
    base_url, base_url_or, bytes_or, duration_or, env_string, u64_or, CommonConfig, ConfigError, Secret, SecretStore,
};
use shared::github_app::AppCredentials;
use shared::log_store::{LogStore, LogStoreConfig};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};

use crate::templates::TemplateRepo;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `repository_url`: the registry (and prefix) images are named by, as the node pulls them (the deployment's
    /// `image`).
    pub repository_url: String,
    /// `registry_push_url` (`host[:port]`): where of-builder pushes, when it reaches the registry at another address
    /// than the node (faasd: the node pulls from `localhost:5000`, a container cannot reach it there). Unset: the
    /// `repository_url`'s host. Only the build tar's `image_ref` carries it.
    pub registry_push_url: Option<String>,
    /// `github_api_url`: where installation tokens for private clones come from.
    pub github_api_url: Url,
    /// The App's credentials, when `github_app_id` and the `private-key` secret are there (private repositories).
    pub app: Option<AppCredentials>,
    /// The App's private key as read, kept only to scrub it from the push records git-tar stores.
    pub app_private_key: Option<Secret>,
    /// `gateway_public_url` (the gateway's own URL when unset): the base of the pipeline-log links in statuses.
    pub gateway_public_url: Url,
    /// Where git-tar keeps each push's own record (`<owner>/<repo>/<sha>/stack-deploy`), next to the builds'.
    pub log_store: LogStore,
    /// Each branch's newest known commit, in the same store as the logs, shared by every replica (see
    /// [`crate::order`]).
    pub branch_heads: BranchHeads,
    /// `clone_timeout`: the longest a clone may take.
    pub clone_timeout: Duration,
    /// `max_parallel_builds`: functions handed to buildshiprun at once.
    pub max_parallel_builds: usize,
    /// `max_repo_bytes`: the largest checkout accepted.
    pub max_repo_bytes: u64,
    /// `max_functions`: the most functions one stack.yml may have.
    pub max_functions: usize,
    /// `build_timeout`: how long one function's build and deployment may take at buildshiprun.
    pub build_timeout: Duration,
    /// `custom_templates`: the operator's template repositories (`url[#ref]`, separated by commas or spaces), where
    /// a function's `lang` is looked up, the first offering it winning.
    pub custom_templates: Vec<TemplateRepo>,
    /// `templates_refresh`: how old a template repository's copy may get before it is looked at again.
    pub templates_refresh: Duration,
    /// `templates_cache_path`: where the copies are kept, one folder per repository and commit.
    pub templates_cache: PathBuf,
    /// `enable_dockerfile_lang` (`shared::build::user_build_definitions_enabled`, the one reading of it): whether
    /// user build definitions are built: `lang: dockerfile` (buildshiprun's policy decides that), and, here, the
    /// repository's own `template/` and `configuration.templates` sources that are not the operator's.
    pub allow_user_templates: bool,
    pub server: ServerConfig,
}

/// The official OpenFaaS template repositories, the default of `custom_templates` (the last release always pulled
/// the first).
pub const DEFAULT_TEMPLATES: &str = "https://github.com/openfaas/templates.git";

impl shared::server::FunctionConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let secrets = SecretStore::from_env();
        let private_key = secrets.read("private-key")?.or(secrets.read("derek-private-key")?);
        let app = match (env_string("github_app_id"), &private_key) {
            (Some(id), Some(key)) => Some(
                AppCredentials::from_pem(&id, key)
                    .map_err(|e| ConfigError::Invalid { name: "private-key".into(), reason: e.to_string() })?,
            ),
            _ => None,
        };
        let common = CommonConfig::from_env(&secrets)?;
        let gateway_public_url = match env_string("gateway_public_url") {
            Some(_) => base_url("gateway_public_url")?,
            None => common.gateway_url.clone(),
        };
        Ok(Self {
            log_store: LogStore::from_env(&secrets)?,
            branch_heads: BranchHeads::from_env(&LogStoreConfig::from_env(&secrets)?)?,
            gateway_public_url,
            common,
            app_private_key: private_key,
            repository_url: env_string("repository_url").unwrap_or_default(),
            registry_push_url: shared::registry::registry_host_setting("registry_push_url")?,
            github_api_url: base_url_or("github_api_url", "https://api.github.com/")?,
            app,
            clone_timeout: duration_or("clone_timeout", Duration::from_secs(120))?,
            max_parallel_builds: usize::try_from(u64_or("max_parallel_builds", 4)?.max(1)).unwrap_or(4),
            max_repo_bytes: bytes_or("max_repo_bytes", 200 << 20)?,
            max_functions: usize::try_from(u64_or("max_functions", 32)?).unwrap_or(32),
            build_timeout: duration_or("build_timeout", Duration::from_secs(600))?,
            custom_templates: TemplateRepo::parse_list(
                &env_string("custom_templates").unwrap_or_else(|| DEFAULT_TEMPLATES.to_owned()),
            )
            .map_err(|reason| ConfigError::Invalid { name: "custom_templates".into(), reason })?,
            templates_refresh: duration_or("templates_refresh", Duration::from_secs(300))?,
            templates_cache: env_string("templates_cache_path")
                .map_or_else(|| std::env::temp_dir().join("ofc-templates"), PathBuf::from),
            allow_user_templates: shared::build::user_build_definitions_enabled()?,
            server: ServerConfig::from_env_with_timeout(DEFAULT_MAX_BODY_BYTES, Duration::from_secs(900))?,
        })
    }
}
