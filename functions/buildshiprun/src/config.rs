//! buildshiprun's settings, read once at start.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Url;
use shared::branch_head::BranchHeads;
use shared::config::{
    base_url, base_url_or, bool_or, duration_or, env_string, u64_or, CommonConfig, ConfigError, Secret, SecretStore,
};
use shared::gateway::BasicAuth;
use shared::log_store::{LogStore, LogStoreConfig};
use shared::server::{ServerConfig, BUILD_MAX_BODY_BYTES};

use crate::policy::Policy;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `builder_url`: of-builder's base URL.
    pub builder_url: Url,
    /// `gateway_public_url`: the base of the function links in statuses.
    pub gateway_public_url: Url,
    /// `gateway_pretty_url` (e.g. `https://user.o6s.io/function`): when set, a deployed function's status links to
    /// its pretty URL instead (see [`shared::naming::function_url`]).
    pub gateway_pretty_url: Option<String>,
    /// `default_memory_limit`: the memory limit of functions whose stack.yml sets none (`30m` Swarm, `30Mi` k8s).
    pub default_memory_limit: Option<String>,
    /// `basic-auth-user` / `basic-auth-password`: the gateway's admin credentials.
    pub credentials: BasicAuth,
    /// How often a transient fault (unreachable, 5xx, 429) is retried before the function fails.
    pub max_retries: u32,
    /// The first wait between tries; it doubles each time.
    pub retry_wait: Duration,
    /// `build_timeout`: how long a build may take at of-builder, from when it has a build slot (of-builder says when).
    pub build_timeout: Duration,
    /// `build_queue_timeout` (default 10m): how long a build may wait for a slot at of-builder; the function then
    /// fails saying so. The call's own timeouts (`exec_timeout`, git-tar's `build_timeout`) bound wait and build
    /// together.
    pub build_queue_timeout: Duration,
    /// Where every build's log is written, opened at start so that a folder or bucket that cannot be used stops the
    /// start rather than losing the first build's log.
    pub log_store: LogStore,
    /// Each branch's newest known commit and the deploy claims, in the same store as the logs, shared by every
    /// replica: a build of a superseded commit is not deployed.
    pub branch_heads: BranchHeads,
    /// Registry credentials (secret `registry-auth`, or the last release's `registry-secret`: a Docker `config.json`, when mounted): never written into a
    /// stored log, like `payload-secret` and `basic-auth-password`.
    pub registry_secrets: Vec<Secret>,
    /// Each registry host's `auth` from the same secret: buildshiprun looks up and tags images there to
    /// skip builds whose image exists.
    pub registry_auths: BTreeMap<String, String>,
    /// `registry_api_url` (`host[:port]`): where buildshiprun's own registry API calls go (looking up and tagging
    /// earlier builds), when it reaches the registry at another address than the node pulls from (faasd: the node
    /// pulls from `localhost:5000`, which a container cannot reach). Unset: the image's own host (`repository_url`).
    pub registry_api_url: Option<String>,
    /// `registry_insecure`: speak to the registry over plain HTTP, as of-builder's setting of the same name pushes
    /// (loopback registries always are).
    pub registry_insecure: bool,
    /// The operator's deploy policy: labels, annotations, scaling, resources, secrets, build args, languages.
    pub policy: Policy,
    /// `max_previews_per_owner` (default 10): the most previews (branches and pull requests) one owner may have
    /// live at once; the function of a further one is refused with this reason in its status.
    pub max_previews_per_owner: u64,
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
        let log_store = LogStore::from_env(&secrets)?;
        // `registry-auth` is of-builder's name for the same file; `registry-secret` the last OpenFaaS Cloud release's.
        let registry_secret = match secrets.read("registry-auth")? {
            Some(auth) => Some(auth),
            None => secrets.read("registry-secret")?,
        };
        Ok(Self {
            log_store,
            branch_heads: BranchHeads::from_env(&LogStoreConfig::from_env(&secrets)?)?,
            registry_secrets: registry_secret.as_ref().map(registry_secrets).unwrap_or_default(),
            registry_auths: registry_secret.as_ref().map(registry_auths).unwrap_or_default(),
            registry_insecure: bool_or("registry_insecure", false)?,
            registry_api_url: shared::registry::registry_host_setting("registry_api_url")?,
            builder_url: base_url_or("builder_url", "http://of-builder:8080/")?,
            gateway_public_url,
            gateway_pretty_url: env_string("gateway_pretty_url"),
            default_memory_limit: env_string("default_memory_limit"),
            credentials: BasicAuth::from_secrets(&secrets)?,
            max_retries: u32::try_from(u64_or("max_retries", 3)?).unwrap_or(3),
            retry_wait: duration_or("retry_wait", Duration::from_secs(1))?,
            build_timeout: duration_or("build_timeout", Duration::from_secs(600))?,
            build_queue_timeout: duration_or("build_queue_timeout", Duration::from_secs(600))?,
            policy: Policy::from_env()?,
            max_previews_per_owner: u64_or("max_previews_per_owner", 10)?,
            server: ServerConfig::from_env_with_timeout(BUILD_MAX_BODY_BYTES, Duration::from_secs(300))?,
            common,
        })
    }
}

/// What of a Docker `config.json` could leak into a build log: the whole file, each `auth` (base64 of
/// `user:password`), and each password, decoded. A value that is not JSON is scrubbed whole.
pub fn registry_secrets(value: &Secret) -> Vec<Secret> {
    let mut found = vec![value.clone()];
    let Ok(config) = serde_json::from_str::<serde_json::Value>(value.expose()) else { return found };
    let auths = config["auths"].as_object().into_iter().flat_map(|auths| auths.values());
    for auth in auths.filter_map(|entry| entry["auth"].as_str()) {
        found.push(Secret::new(auth));
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok();
        let text = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some((_, password)) = text.as_deref().and_then(|t| t.split_once(':')) {
            found.push(Secret::new(password));
        }
    }
    found
}

/// Each registry host's `auth` (base64 of `user:password`) in a Docker `config.json`; none when it is not JSON.
pub fn registry_auths(value: &Secret) -> BTreeMap<String, String> {
    let Ok(config) = serde_json::from_str::<serde_json::Value>(value.expose()) else { return BTreeMap::new() };
    let auths = config["auths"].as_object().into_iter().flatten();
    auths.filter_map(|(host, entry)| Some((host.clone(), entry["auth"].as_str()?.trim().to_owned()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_config_s_auth_and_password_are_both_scrubbed() {
        // `auth` is base64 of `builder:registry-pass`.
        let config = Secret::new(r#"{"auths": {"r:5000": {"auth": "YnVpbGRlcjpyZWdpc3RyeS1wYXNz"}}}"#);
        let found: Vec<String> = registry_secrets(&config).iter().map(|s| s.expose().to_owned()).collect();
        assert!(found.contains(&"YnVpbGRlcjpyZWdpc3RyeS1wYXNz".to_owned()));
        assert!(found.contains(&"registry-pass".to_owned()));
        assert_eq!(registry_secrets(&Secret::new("plain")).len(), 1, "a value that is not JSON is scrubbed whole");
        assert_eq!(registry_auths(&config)["r:5000"], "YnVpbGRlcjpyZWdpc3RyeS1wYXNz");
    }
}
