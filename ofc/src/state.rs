//! The state folder (`.ofc/` by default): the local stack's whole memory, so scripts and tests can find things.
//! What a first run lacks (secrets, the App's key pair, gateway credentials) is generated and reused later.

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

    /// User functions' secrets, one file each (what `faas-cli secret create` makes on OpenFaaS).
    pub fn function_secrets(&self) -> PathBuf {
        self.root.join("function-secrets")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
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

    /// Creates the folders, and every secret that is not there yet. Returns the App's public key.
    pub fn prepare(&self) -> std::io::Result<String> {
        for dir in [
            self.secrets(),
            self.function_secrets(),
            self.logs(),
            self.repos(),
            self.root.join("queue"),
            self.root.join("registry"),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        let random = || Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
        for (name, value) in [
            ("github-webhook-secret", random()),
            ("payload-secret", random()),
            ("basic-auth-user", "admin".to_owned()),
            ("basic-auth-password", random()),
        ] {
            let path = self.secrets().join(name);
            if !path.exists() {
                std::fs::write(path, value)?;
            }
        }
        let public = self.root.join("app-public-key.pem");
        if !self.secrets().join("private-key").exists() || !public.exists() {
            let key = shared::app_key::AppKey::generate();
            std::fs::write(self.secrets().join("private-key"), key.private_pem)?;
            std::fs::write(&public, &key.public_pem)?;
        }
        std::fs::read_to_string(public)
    }
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
}
