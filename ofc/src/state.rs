//! The state folder (`.ofc/` by default): the local stack's whole memory, so scripts and tests can find things.
//! What a first run lacks (secrets, the App's key pair, gateway credentials) is generated and reused later.
//! Only its owner may read it: the folders are 0700 and the secrets' files 0600, also when an earlier run (or the
//! user, for function secrets) left them readable by others.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};

/// Where every part listens (`endpoints.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoints {
    pub gateway: String,
    pub github_api: String,
    pub registry: String,
    pub builder: String,
    pub git: String,
    /// The edge router: pretty URLs, the dashboard and the login (`http://localhost:PORT/`; its hosts are
    /// `<owner>.localhost`, `system.localhost` and `auth.system.localhost` on that port).
    #[serde(default)]
    pub router: String,
}

/// The App id the local GitHub double knows the App by.
pub const APP_ID: &str = "1";
/// The one installation of the App in the local stack; it covers every owner.
pub const INSTALLATION_ID: u64 = 1;

/// The state folder's paths.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// The folder at `root`, made absolute: its paths are handed to processes (git, buildah, the functions) that
    /// run in other working directories.
    pub fn new(root: &Path) -> Self {
        Self { root: std::path::absolute(root).unwrap_or_else(|_| root.to_owned()) }
    }

    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// of-builder's secrets: the payload secret and its registry account (`registry-auth`), which no function sees.
    pub fn builder_secrets(&self) -> PathBuf {
        self.root.join("builder-secrets")
    }

    /// The secrets of `function` when it lists one the shared folder does not hold (garbage-collect's registry
    /// account): only the secrets it lists, written each start.
    pub fn own_secrets(&self, function: &str) -> PathBuf {
        self.root.join("platform-secrets").join(function)
    }

    /// The password of the registry's `operator` account, the one that may delete images: no part of the stack
    /// has it.
    pub fn registry_operator_password(&self) -> PathBuf {
        self.root.join("registry-operator-password")
    }

    /// User functions' secrets, one file each (what `faas-cli secret create` makes on OpenFaaS).
    pub fn function_secrets(&self) -> PathBuf {
        self.root.join("function-secrets")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The GitHub double's renamed accounts: which account id each login is now.
    pub fn github_accounts(&self) -> PathBuf {
        self.root.join("github-accounts.json")
    }

    /// The account id GitHub (the double) gives `login` now: a renamed-away login names a new account.
    pub fn account_id(&self, login: &str) -> Result<u64, doubles::github_double::AccountError> {
        Ok(doubles::github_double::Accounts::load(&self.github_accounts())?.id_of(login))
    }

    pub fn repos(&self) -> PathBuf {
        self.root.join("repos")
    }

    pub fn endpoints_file(&self) -> PathBuf {
        self.root.join("endpoints.json")
    }

    /// A secret's value (trimmed).
    pub fn secret(&self, name: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.secrets().join(name)).map(|s| s.trim().to_owned())
    }

    pub fn endpoints(&self) -> std::io::Result<Endpoints> {
        let text = std::fs::read_to_string(self.endpoints_file())?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }

    pub fn write_endpoints(&self, endpoints: &Endpoints) -> std::io::Result<()> {
        std::fs::write(self.endpoints_file(), serde_json::to_vec_pretty(endpoints).map_err(std::io::Error::other)?)
    }

    /// Creates the folders (0700), and every secret that is not there yet (0600). Returns the App's public key.
    pub fn prepare(&self) -> std::io::Result<String> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root)?;
        restrict(&self.root, 0o700)?;
        for dir in [
            self.secrets(),
            self.function_secrets(),
            self.logs(),
            self.repos(),
            self.root.join("queue"),
            self.root.join("registry"),
        ] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
            restrict(&dir, 0o700)?;
        }
        let random = || Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
        for (name, value) in [
            ("github-webhook-secret", random()),
            ("payload-secret", random()),
            ("basic-auth-user", "admin".to_owned()),
            ("basic-auth-password", random()),
            ("of-client-secret", random()),
        ] {
            let path = self.secrets().join(name);
            if !path.exists() {
                write_secret(&path, value.as_bytes())?;
            }
        }
        let public = self.root.join("app-public-key.pem");
        if !self.secrets().join("private-key").exists() || !public.exists() {
            let key = shared::app_key::AppKey::generate();
            write_secret(&self.secrets().join("private-key"), key.private_pem.as_bytes())?;
            std::fs::write(&public, &key.public_pem)?;
        }
        // The session keys: edge-auth signs with the private one, the dashboard and the others verify.
        let jwt_public = self.secrets().join(shared::session::PUBLIC_KEY_SECRET);
        if !self.secrets().join(shared::session::PRIVATE_KEY_SECRET).exists() || !jwt_public.exists() {
            let key = shared::app_key::AppKey::generate();
            write_secret(&self.secrets().join(shared::session::PRIVATE_KEY_SECRET), key.private_pem.as_bytes())?;
            write_secret(&jwt_public, key.public_pem.as_bytes())?;
        }
        for dir in [self.secrets(), self.function_secrets()] {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    restrict(&entry.path(), 0o600)?;
                }
            }
        }
        std::fs::read_to_string(public)
    }
}

/// Sets `path`'s permission bits to `mode` unless they are already.
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    if std::fs::metadata(path)?.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Writes a new secret's file, readable by its owner only from the start.
fn write_secret(path: &Path, value: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?.write_all(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_state_folder_is_made_absolute_for_the_processes_that_use_it() {
        let state = StateDir::new(Path::new(".ofc"));
        assert!(state.root.is_absolute(), "{}", state.root.display());
        assert_eq!(state.root, std::env::current_dir().unwrap().join(".ofc"));
        assert!(state.repos().is_absolute());
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_state_folders_are_private_and_the_secrets_readable_by_their_owner_only() {
        let parent = tempfile::tempdir().unwrap();
        let state = StateDir::new(&parent.path().join("state"));
        state.prepare().unwrap();
        for dir in [&state.root, &state.secrets(), &state.function_secrets(), &state.logs(), &state.repos()] {
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
        }
        let secrets: Vec<_> = std::fs::read_dir(state.secrets()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(secrets.len(), 8, "{secrets:?}");
        for secret in &secrets {
            assert_eq!(mode(secret), 0o600, "{}", secret.display());
        }
    }

    #[test]
    fn an_earlier_runs_readable_state_is_made_private_on_the_next_start() {
        let parent = tempfile::tempdir().unwrap();
        let state = StateDir::new(&parent.path().join("state"));
        state.prepare().unwrap();
        let user_secret = state.function_secrets().join("api-key");
        std::fs::write(&user_secret, "s3cret").unwrap();
        for (path, loose) in [(&user_secret, 0o644), (&state.secrets().join("payload-secret"), 0o644)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(loose)).unwrap();
        }
        std::fs::set_permissions(&state.root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(state.secrets(), std::fs::Permissions::from_mode(0o755)).unwrap();
        state.prepare().unwrap();
        assert_eq!(mode(&user_secret), 0o600);
        assert_eq!(mode(&state.secrets().join("payload-secret")), 0o600);
        assert_eq!(mode(&state.root), 0o700);
        assert_eq!(mode(&state.secrets()), 0o700);
    }
}
