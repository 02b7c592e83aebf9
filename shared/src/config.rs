//! Configuration read once at start: environment variables and secret files, as OpenFaaS provides them.
//!
//! Every reader names the setting it failed on, so a function that cannot start says exactly what to fix.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// Where OpenFaaS on Kubernetes and faasd mount secrets.
pub(crate) const OPENFAAS_SECRETS_DIR: &str = "/var/openfaas/secrets";
/// Where Docker Swarm mounts secrets.
pub(crate) const SWARM_SECRETS_DIR: &str = "/run/secrets";

/// A setting that is missing or malformed; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting `{0}`: set it in the function's environment (stack.yml `environment` or an `environment_file`)")]
    Missing(String),
    #[error("setting `{name}` is invalid: {reason}")]
    Invalid { name: String, reason: String },
    #[error("missing secret `{name}`: looked in {searched}")]
    MissingSecret { name: String, searched: String },
    #[error("secret `{name}` at {path} could not be read: {reason}")]
    UnreadableSecret { name: String, path: String, reason: String },
}

impl ConfigError {
    fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Self::Invalid { name: name.to_owned(), reason: reason.into() }
    }
}

/// The value of an environment variable, trimmed; an empty value counts as unset.
pub fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A setting that must be present.
pub fn required(name: &str) -> Result<String, ConfigError> {
    env_string(name).ok_or_else(|| ConfigError::Missing(name.to_owned()))
}

/// A boolean setting: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case.
pub fn bool_or(name: &str, default: bool) -> Result<bool, ConfigError> {
    match env_string(name) {
        None => Ok(default),
        Some(v) => parse_bool(&v).ok_or_else(|| ConfigError::invalid(name, format!("`{v}` is not true or false"))),
    }
}

/// Parses the boolean spellings OpenFaaS configurations use.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A duration setting in seconds (`10`) or Go-style units (`500ms`, `10s`, `5m`, `1h30m`).
pub fn duration_or(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    match env_string(name) {
        None => Ok(default),
        Some(v) => parse_duration(&v).map_err(|reason| ConfigError::invalid(name, reason)),
    }
}

/// Parses `10`, `10s`, `1.5s`, `500ms`, `5m`, `1h30m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs, value);
    }
    let mut total = 0f64;
    let mut rest = value;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("`{value}` is not a duration (use seconds, or units like 10s, 5m, 1h)"));
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| format!("`{value}` has a malformed number"))?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("`{value}` has an unknown unit `{other}` (use ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        total += number * factor;
    }
    seconds(total, value)
}

fn seconds(secs: f64, original: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{original}` is not a valid duration"))
}

/// An unsigned integer setting.
pub fn u64_or(name: &str, default: u64) -> Result<u64, ConfigError> {
    match env_string(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::invalid(name, format!("`{v}` is not a whole number"))),
    }
}

/// A size in bytes: a plain number, or with a unit (`512Mi`, `32MB`, `1G`).
pub fn bytes_or(name: &str, default: u64) -> Result<u64, ConfigError> {
    match env_string(name) {
        None => Ok(default),
        Some(v) => parse_bytes(&v)
            .ok_or_else(|| ConfigError::invalid(name, format!("`{v}` is not a size (e.g. 33554432, 32Mi, 512MB)"))),
    }
}

/// Parses a byte size with an optional decimal (`K`, `M`, `G`, `KB`…) or binary (`Ki`, `Mi`, `Gi`) unit.
pub fn parse_bytes(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let number: u64 = value[..split].parse().ok()?;
    let factor: u64 = match value[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A base URL setting (`gateway_url`, `builder_url`…): http or https, always ending in `/` so paths join onto it.
pub fn base_url(name: &str) -> Result<Url, ConfigError> {
    parse_base_url(&required(name)?).map_err(|reason| ConfigError::invalid(name, reason))
}

/// Like [`base_url`], with a default.
pub fn base_url_or(name: &str, default: &str) -> Result<Url, ConfigError> {
    let value = env_string(name).unwrap_or_else(|| default.to_owned());
    parse_base_url(&value).map_err(|reason| ConfigError::invalid(name, reason))
}

/// An optional base URL: unset or empty disables what it configures.
pub fn optional_base_url(name: &str) -> Result<Option<Url>, ConfigError> {
    env_string(name).map(|v| parse_base_url(&v).map_err(|reason| ConfigError::invalid(name, reason))).transpose()
}

/// Parses an http(s) URL and makes sure it ends in `/`.
pub(crate) fn parse_base_url(value: &str) -> Result<Url, String> {
    let mut url = Url::parse(value.trim()).map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{value}` must be an http:// or https:// URL"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A secret's value. Its `Debug` and `Display` never show the value, so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: call this only where the secret is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Finds secrets as files in the folders OpenFaaS mounts them in, first match wins.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dirs: Vec<PathBuf>,
}

impl SecretStore {
    /// `$secret_mount_path` first (when set), then `/var/openfaas/secrets`, then `/run/secrets`.
    pub fn from_env() -> Self {
        let mut dirs = Vec::new();
        if let Some(dir) = env_string("secret_mount_path") {
            dirs.push(PathBuf::from(dir));
        }
        dirs.push(PathBuf::from(OPENFAAS_SECRETS_DIR));
        dirs.push(PathBuf::from(SWARM_SECRETS_DIR));
        Self { dirs }
    }

    /// Only the given folders (tests, and the local stack's state folder).
    pub fn with_dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        Self { dirs: dirs.into_iter().collect() }
    }

    /// The secret `name`, or `None` when no folder has it. Surrounding whitespace (a trailing newline from
    /// `echo`) is trimmed.
    pub fn read(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        for dir in &self.dirs {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(value) => return Ok(Some(Secret(value.trim().to_owned()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfigError::UnreadableSecret {
                        name: name.to_owned(),
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(None)
    }

    /// The first of `names` that exists (a secret may have an older name, like `derek-private-key`).
    pub fn required_any(&self, names: &[&str]) -> Result<Secret, ConfigError> {
        for name in names {
            if let Some(secret) = self.read(name)? {
                return Ok(secret);
            }
        }
        Err(self.missing(&names.join("` or `")))
    }

    /// A secret that must exist.
    pub fn required(&self, name: &str) -> Result<Secret, ConfigError> {
        self.required_any(&[name])
    }

    /// A secret file, or else the environment variable `env_name` (e.g. `github_webhook_secret`).
    pub fn required_or_env(&self, name: &str, env_name: &str) -> Result<Secret, ConfigError> {
        if let Some(secret) = self.read(name)? {
            return Ok(secret);
        }
        env_string(env_name).map(Secret).ok_or_else(|| {
            let mut err = self.missing(name);
            if let ConfigError::MissingSecret { searched, .. } = &mut err {
                searched.push_str(", and env `");
                searched.push_str(env_name);
                searched.push('`');
            }
            err
        })
    }

    fn missing(&self, name: &str) -> ConfigError {
        ConfigError::MissingSecret {
            name: name.to_owned(),
            searched: self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        }
    }

    /// The folders searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// What every function needs: where the gateway is, where audit events go, and the key that signs calls.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// Internal gateway base URL, ending in `/`.
    pub gateway_url: Url,
    /// Where audit events are POSTed; `None` disables auditing.
    pub audit_url: Option<Url>,
    /// HMAC key for `X-Cloud-Signature` on every call between our functions.
    pub payload_secret: Secret,
}

impl CommonConfig {
    pub fn from_env(secrets: &SecretStore) -> Result<Self, ConfigError> {
        Ok(Self {
            gateway_url: base_url_or("gateway_url", "http://gateway:8080/")?,
            audit_url: optional_url("audit_url")?,
            payload_secret: secrets.required("payload-secret")?,
        })
    }
}

/// An optional URL taken as written (no trailing slash added): audit or Slack endpoints.
pub fn optional_url(name: &str) -> Result<Option<Url>, ConfigError> {
    env_string(name)
        .map(|v| {
            let url = Url::parse(&v).map_err(|e| ConfigError::invalid(name, format!("`{v}` is not a URL: {e}")))?;
            if matches!(url.scheme(), "http" | "https") {
                Ok(url)
            } else {
                Err(ConfigError::invalid(name, format!("`{v}` must be an http:// or https:// URL")))
            }
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_go_units() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5").is_err());
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("32Mi"), Some(32 << 20));
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("lots"), None);
    }

    #[test]
    fn booleans_accept_common_spellings() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn base_urls_gain_a_trailing_slash() {
        assert_eq!(parse_base_url("http://gateway:8080").unwrap().as_str(), "http://gateway:8080/");
        assert_eq!(parse_base_url("http://h/p").unwrap().as_str(), "http://h/p/");
        assert!(parse_base_url("ftp://h/").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn secrets_are_found_in_order_and_trimmed() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        std::fs::write(second.path().join("payload-secret"), "s3cret\n").unwrap();
        std::fs::write(first.path().join("derek-private-key"), "pem").unwrap();
        let store = SecretStore::with_dirs([first.path().to_owned(), second.path().to_owned()]);
        assert_eq!(store.required("payload-secret").unwrap().expose(), "s3cret");
        assert_eq!(store.required_any(&["private-key", "derek-private-key"]).unwrap().expose(), "pem");
        let err = store.required("basic-auth-user").unwrap_err().to_string();
        assert!(err.contains("basic-auth-user"), "{err}");
        assert!(err.contains(&first.path().display().to_string()), "{err}");
    }

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
    }
}
