//! of-builder's settings, read once at start.

use std::path::PathBuf;
use std::time::Duration;

use shared::config::{
    bool_or, bytes_or, duration_or, env_string, u64_or, CommonConfig, ConfigError, Secret, SecretStore,
};
use shared::server::{ServerConfig, BUILD_MAX_BODY_BYTES};

use crate::base_images::Allowlist;
use crate::sandbox::BuildUser;
use crate::storage::{self, DriverSetting, StorageDriver};

/// Which builder runs the builds (`builder_backend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    /// Daemonless builds with Buildah (the default where `buildah` is installed).
    Buildah,
    /// `buildctl` against a BuildKit daemon at `BUILDKIT_HOST`, as the seed's of-builder did.
    Buildkit { host: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub backend: BackendKind,
    /// `max_context_bytes`: the largest build context accepted (files in the tar, added up).
    pub max_context_bytes: u64,
    /// `max_concurrent_builds`: builds beyond this wait their turn.
    pub max_concurrent_builds: usize,
    /// `max_concurrent_builds_per_owner` (default 1): one owner's builds running at once while another owner waits
    /// for a slot; alone on the builder, an owner uses every slot (see `queue`).
    pub max_concurrent_builds_per_owner: usize,
    /// `max_queued_builds_per_owner` (default 10): one owner's builds waiting for a slot; the next is refused (429)
    /// with the reason, which buildshiprun reports as the function's failing status.
    pub max_queued_builds_per_owner: usize,
    /// `registry_insecure`: push over plain HTTP (a local registry on loopback).
    pub registry_insecure: bool,
    /// `buildah_root`: Buildah's storage (layers and cache), one subfolder per storage driver; default the build
    /// user's `~/buildah`, or `/var/lib/containers/of-builder`.
    pub buildah_root: Option<PathBuf>,
    /// `build_timeout`: a build running longer is stopped and reported as failed.
    pub build_timeout: Duration,
    /// `build_user`: the unprivileged user Buildah builds run as, each in its own PID namespace with a minimal
    /// `/dev` (see `sandbox`). Unset, builds run as of-builder's own user, as before; set it wherever pushed
    /// code is not fully trusted.
    pub build_user: Option<BuildUser>,
    /// The `registry-auth` secret: a registry auth file (`{"auths": {…}}`) used to push (and pull base images);
    /// its credentials are scrubbed from build logs.
    pub registry_auth: Option<Secret>,
    /// `allowed_base_images`: the images builds may read besides the owner's own (see `base_images`).
    pub allowed_base_images: Allowlist,
    pub server: ServerConfig,
}

impl shared::server::FunctionConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

impl Config {
    /// Each registry host's `auth` (base64 of `user:password`) in the `registry-auth` file: what the build cache's
    /// registry calls sign in with.
    pub fn registry_auths(&self) -> std::collections::BTreeMap<String, String> {
        let Some(auth) = &self.registry_auth else { return std::collections::BTreeMap::new() };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(auth.expose()) else {
            return std::collections::BTreeMap::new();
        };
        let auths = json["auths"].as_object().into_iter().flatten();
        auths.filter_map(|(host, entry)| Some((host.clone(), entry["auth"].as_str()?.trim().to_owned()))).collect()
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let secrets = SecretStore::from_env();
        let backend = match env_string("builder_backend").as_deref() {
            None | Some("buildah") => BackendKind::Buildah,
            Some("buildkit") => BackendKind::Buildkit {
                host: env_string("BUILDKIT_HOST").unwrap_or_else(|| "tcp://127.0.0.1:1234".into()),
            },
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "builder_backend".into(),
                    reason: format!("`{other}` is not a backend (use buildah or buildkit)"),
                })
            }
        };
        let build_user = match env_string("build_user") {
            None => None,
            Some(name) => Some(
                BuildUser::lookup(&name)
                    .map_err(|reason| ConfigError::Invalid { name: "build_user".into(), reason })?,
            ),
        };
        let registry_auth = secrets.read("registry-auth")?;
        if let Some(auth) = &registry_auth {
            serde_json::from_str::<serde_json::Value>(auth.expose()).map_err(|e| ConfigError::Invalid {
                name: "registry-auth".into(),
                reason: format!("not a registry auth file (JSON with `auths`): {e}"),
            })?;
        }
        let max_context_bytes = bytes_or("max_context_bytes", 512 << 20)?;
        let mut server = ServerConfig::from_env_with_timeout(BUILD_MAX_BODY_BYTES, Duration::from_secs(600))?;
        // The tar carries headers and padding beyond the files' own bytes.
        server.max_body_bytes = server.max_body_bytes.max(max_context_bytes + (16 << 20));
        Ok(Self {
            common: CommonConfig::from_env(&secrets)?,
            backend,
            max_context_bytes,
            max_concurrent_builds: count("max_concurrent_builds", 2, 1)?,
            max_concurrent_builds_per_owner: count("max_concurrent_builds_per_owner", 1, 1)?,
            max_queued_builds_per_owner: count("max_queued_builds_per_owner", 10, 0)?,
            registry_insecure: bool_or("registry_insecure", false)?,
            buildah_root: env_string("buildah_root").map(PathBuf::from),
            build_timeout: duration_or("build_timeout", Duration::from_secs(600))?,
            build_user,
            registry_auth,
            allowed_base_images: Allowlist::parse(env_string("allowed_base_images").as_deref())
                .map_err(|reason| ConfigError::Invalid { name: "allowed_base_images".into(), reason })?,
            server,
        })
    }
}

/// What of-builder serves with: its settings and the storage driver chosen at start from
/// `buildah_storage_driver`. Apart from `Config` so that code building a `Config` by hand (other services' tests)
/// keeps Buildah's most portable driver without a probe.
#[derive(Debug, Clone)]
pub struct Setup {
    pub config: Config,
    pub storage: StorageDriver,
}

impl shared::server::FunctionConfig for Setup {
    fn server(&self) -> &ServerConfig {
        &self.config.server
    }
}

impl Setup {
    /// Reads the settings, then resolves `buildah_storage_driver` (`auto` by default), logging the choice and why.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let setting = DriverSetting::parse(env_string("buildah_storage_driver").as_deref()).map_err(invalid)?;
        Self::choose(config, setting)
    }

    /// Resolves `setting` for `config`'s Buildah the way its builds run (root or sandboxed as `build_user`); an
    /// explicit `overlay` that does not work is an invalid `buildah_storage_driver`. BuildKit has no use for it.
    pub fn choose(config: Config, setting: DriverSetting) -> Result<Self, ConfigError> {
        if config.backend != BackendKind::Buildah {
            return Ok(Self { config, storage: StorageDriver::Vfs });
        }
        let choice =
            storage::choose(setting, config.buildah_root.as_deref(), config.build_user.as_ref()).map_err(invalid)?;
        tracing::info!(driver = choice.driver.name(), why = %choice.why, "buildah storage driver");
        Ok(Self { config, storage: choice.driver })
    }
}

/// The count setting `name` (`default` when unset); below `min` or past `usize` it is invalid, named.
fn count(name: &str, default: u64, min: u64) -> Result<usize, ConfigError> {
    let value = u64_or(name, default)?;
    let invalid = |reason: String| ConfigError::Invalid { name: name.into(), reason };
    if value < min {
        return Err(invalid(format!("{value} is below the least, {min}")));
    }
    usize::try_from(value).map_err(|_| invalid(format!("{value} is too large")))
}

/// `buildah_storage_driver` is invalid for `reason`.
fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid { name: "buildah_storage_driver".into(), reason }
}
