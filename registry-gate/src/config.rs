//! The binary's settings, read once at start: where the registry is, and the three accounts, each from a file
//! (a mounted Secret), so no password is ever in the environment or a process listing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use shared::config::{bool_or, env_string, required, ConfigError};
use shared::server::ServerConfig;

use crate::rules::{Account, GateAccounts, Reads};
use crate::upstream::Upstream;

/// Layers are pushed in one request each: the body limit is an image layer's, not an API call's.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 << 30;
/// A large layer over a slow link takes minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// An account file is a line or a small JSON document; anything larger is not one.
const MAX_ACCOUNT_FILE_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone)]
pub struct Config {
    /// `registry_upstream`: the registry behind the gate, a unix socket's absolute path or a loopback `host:port`.
    pub upstream: Upstream,
    /// `builder_auth_file` (pushes), `operator_auth_file` (deletes, the catalog) and `collector_auth_file`
    /// (optional: a preview's manifest deletes); `registry_host` picks the entry of a config.json with several.
    pub accounts: GateAccounts,
    /// `anonymous_reads` (default `true`): `false` where tenants' functions reach the gate (faasd's bridge), so
    /// reads need one of the accounts.
    pub reads: Reads,
    /// `bind_address` and `port` (where the gate listens), the timeouts (default 10 min) and `max_body_bytes`
    /// (default 8 GiB), as every binary of the project reads them.
    pub server: ServerConfig,
}

impl shared::server::FunctionConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let upstream = Upstream::parse(&required("registry_upstream")?)
            .map_err(|reason| ConfigError::Invalid { name: "registry_upstream".into(), reason })?;
        let host = env_string("registry_host");
        let host = host.as_deref();
        let builder = account_setting("builder_auth_file", host)?;
        let operator = account_setting("operator_auth_file", host)?;
        let collector = match env_string("collector_auth_file") {
            None => None,
            Some(path) => Some(read_account("collector_auth_file", Path::new(&path), host)?),
        };
        let accounts = GateAccounts { builder, operator, collector };
        distinct(&accounts)?;
        let reads = if bool_or("anonymous_reads", true)? { Reads::Anyone } else { Reads::SignedIn };
        Ok(Self {
            upstream,
            accounts,
            reads,
            server: ServerConfig::from_env_with_timeout(DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT)?,
        })
    }

    /// The gate's router for these settings.
    pub fn into_router(self) -> axum::Router {
        crate::gate::router(self.upstream, self.accounts, self.reads)
    }
}

fn account_setting(name: &str, host: Option<&str>) -> Result<Account, ConfigError> {
    read_account(name, &PathBuf::from(required(name)?), host)
}

/// Reads the account in the file at `path` (setting `name`): `user:password` on one line, or a Docker
/// `config.json` (`auth`, or `username` and `password`), so the same Secret that signs a client in can configure the
/// gate: its one entry, or, when it holds several (of-builder's may also sign in to base images' registries), the
/// entry of `host` (`registry_host`). Errors name the setting and the file, never its content.
pub fn read_account(name: &str, path: &Path, host: Option<&str>) -> Result<Account, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { name: name.to_owned(), reason };
    let size = std::fs::metadata(path).map_err(|e| invalid(format!("{} cannot be read: {e}", path.display())))?.len();
    if size > MAX_ACCOUNT_FILE_BYTES {
        return Err(invalid(format!("{} is larger than {MAX_ACCOUNT_FILE_BYTES} bytes", path.display())));
    }
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("{} cannot be read: {e}", path.display())))?;
    parse_account(&text, host).map_err(|reason| invalid(format!("{}: {reason}", path.display())))
}

/// The account in an account file's `text`.
pub fn parse_account(text: &str, host: Option<&str>) -> Result<Account, String> {
    let text = text.trim_end_matches(['\n', '\r']);
    let (user, password) = if text.trim_start().starts_with('{') {
        docker_config_account(text, host)?
    } else {
        if text.contains('\n') {
            return Err("expected one line, `user:password`".into());
        }
        let (user, password) = text.split_once(':').ok_or("expected `user:password` or a Docker config.json")?;
        (user.to_owned(), password.to_owned())
    };
    if user.is_empty() || user.contains(':') {
        return Err("the user name is empty or holds a `:`".into());
    }
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(Account { user, password })
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    auths: std::collections::BTreeMap<String, DockerAuth>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The one account of a Docker `config.json` (`{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}`).
fn docker_config_account(text: &str, host: Option<&str>) -> Result<(String, String), String> {
    let config: DockerConfig = serde_json::from_str(text)
        .map_err(|e| format!("not a Docker config.json (`{{\"auths\": {{…}}}}`): line {}", e.line()))?;
    let mut auths = config.auths;
    let entries = auths.len();
    let auth = match host {
        _ if entries == 1 => auths.into_values().next(),
        Some(host) => auths
            .remove(host)
            .or_else(|| auths.into_iter().find(|(key, _)| key.eq_ignore_ascii_case(host)).map(|(_, auth)| auth)),
        None => None,
    };
    let Some(auth) = auth else {
        return Err(match host {
            None if entries == 0 => "the Docker config.json has no entry".into(),
            None => "the Docker config.json holds several registries: set `registry_host` to the one to use".into(),
            Some(host) => format!("the Docker config.json has no entry for `{host}` (`registry_host`)"),
        });
    };
    match (auth.auth, auth.username, auth.password) {
        (Some(encoded), _, _) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| "its `auth` is not base64")?;
            let decoded = String::from_utf8(decoded).map_err(|_| "its `auth` is not UTF-8")?;
            let (user, password) = decoded.split_once(':').ok_or("its `auth` is not `user:password`")?;
            Ok((user.to_owned(), password.to_owned()))
        }
        (None, Some(user), Some(password)) => Ok((user, password)),
        _ => Err("its entry has neither `auth` nor `username` and `password`".into()),
    }
}

/// Two settings naming the same account would give one holder both rights (a collector that may delete anything).
fn distinct(accounts: &GateAccounts) -> Result<(), ConfigError> {
    let mut named = vec![("builder_auth_file", &accounts.builder), ("operator_auth_file", &accounts.operator)];
    if let Some(collector) = &accounts.collector {
        named.push(("collector_auth_file", collector));
    }
    for (i, (name, account)) in named.iter().enumerate() {
        if let Some((other, _)) = named[..i].iter().find(|(_, earlier)| earlier.user == account.user) {
            return Err(ConfigError::Invalid {
                name: (*name).to_owned(),
                reason: format!("its user name is also {other}'s: each account must be its own"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_file_is_a_line_or_a_docker_config() {
        let line = parse_account("of-builder:s3cret:with-colon\n", None).unwrap();
        assert_eq!((line.user.as_str(), line.password.as_str()), ("of-builder", "s3cret:with-colon"));
        let auth = base64::engine::general_purpose::STANDARD.encode("garbage-collect:pw");
        let config =
            parse_account(&format!(r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}}}}}}"#), None).unwrap();
        assert_eq!((config.user.as_str(), config.password.as_str()), ("garbage-collect", "pw"));
        let fields = parse_account(r#"{"auths": {"r": {"username": "op", "password": "pw"}}}"#, None).unwrap();
        assert_eq!((fields.user.as_str(), fields.password.as_str()), ("op", "pw"));
        for bad in [
            "",
            "no-colon",
            ":password",
            "user:",
            "user:pw\nsecond:line",
            r#"{"auths": {}}"#,
            r#"{"auths": {"a": {"auth": "dTpw"}, "b": {"auth": "dTpw"}}}"#,
            r#"{"auths": {"a": {"auth": "not base64!"}}}"#,
            r#"{"auths": {"a": {}}}"#,
            r#"{"auths": "#,
        ] {
            assert!(parse_account(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn of_several_registries_the_gate_takes_registry_host_s() {
        let config = r#"{"auths": {"docker.io": {"username": "hub", "password": "h"},
                                   "Registry.openfaas:5000": {"username": "of-builder", "password": "pw"}}}"#;
        assert!(parse_account(config, None).unwrap_err().contains("registry_host"));
        let account = parse_account(config, Some("registry.openfaas:5000")).unwrap();
        assert_eq!((account.user.as_str(), account.password.as_str()), ("of-builder", "pw"));
        assert!(parse_account(config, Some("other:5000")).unwrap_err().contains("other:5000"));
        let one = parse_account(r#"{"auths": {"a": {"username": "u", "password": "p"}}}"#, Some("b")).unwrap();
        assert_eq!(one.user, "u", "a single entry is taken whatever its key");
    }

    #[test]
    fn errors_name_the_setting_and_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_account("operator_auth_file", &dir.path().join("absent"), None).unwrap_err().to_string();
        assert!(missing.contains("operator_auth_file"), "{missing}");
        let path = dir.path().join("bad");
        std::fs::write(&path, r#"{"auths": {"a": {"password": "hunter2-secret"}}}"#).unwrap();
        let malformed = read_account("builder_auth_file", &path, None).unwrap_err().to_string();
        assert!(malformed.contains("builder_auth_file") && !malformed.contains("hunter2"), "{malformed}");
        let same = GateAccounts {
            builder: Account { user: "a".into(), password: "1".into() },
            operator: Account { user: "b".into(), password: "2".into() },
            collector: Some(Account { user: "b".into(), password: "3".into() }),
        };
        assert!(distinct(&same).unwrap_err().to_string().contains("collector_auth_file"));
    }
}
