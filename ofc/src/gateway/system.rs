//! `/system/*` of the embedded gateway: the shared [`FunctionsApi`] behind one basic-auth layer, with the local
//! stack's additions through its hooks: deployments kept in `functions.json`, and replicas started and stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use doubles::functions_api::{require_basic_auth, Credentials, FunctionHooks, FunctionsApi};
use shared::openfaas::{FunctionDeployment, FunctionStatus};

use super::replicas::Replicas;

/// The local stack's additions to the bookkeeping of deployments.
struct StackHooks {
    /// `functions.json`, rewritten on every change so a restart starts the same functions.
    saved: PathBuf,
    replicas: Arc<Replicas>,
    /// The user functions' secrets: a deployment naming one that is not here is refused, as OpenFaaS refuses it.
    secrets_dir: PathBuf,
}

impl FunctionHooks for StackHooks {
    fn refusal(&self, deployment: &FunctionDeployment) -> Option<String> {
        let missing: Vec<&str> = deployment
            .secrets
            .iter()
            .map(String::as_str)
            .filter(|name| !shared::naming::is_valid_secret_name(name) || !self.secrets_dir.join(name).is_file())
            .collect();
        (!missing.is_empty()).then(|| format!("required secrets not found: {}", missing.join(", ")))
    }

    fn available_replicas(&self, name: &str) -> Option<u64> {
        Some(self.replicas.available(name))
    }

    fn wanted_replicas(&self, name: &str) -> Option<u64> {
        Some(self.replicas.wanted(name))
    }

    fn changed(&self, all: &BTreeMap<String, FunctionStatus>) {
        let temporary = self.saved.with_extension("tmp");
        let written = serde_json::to_vec_pretty(all)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&temporary, b))
            .and_then(|()| std::fs::rename(&temporary, &self.saved));
        if let Err(error) = written {
            tracing::error!(%error, "could not save the deployments");
        }
    }

    fn deployed(&self, status: &FunctionStatus) {
        self.replicas.schedule_start(status.clone());
    }

    fn removed(&self, name: &str) {
        self.replicas.remove(name);
    }
}

/// The deployments recorded under `state_dir` by an earlier run (none when there is no readable file).
pub(super) fn open(state_dir: &Path, secrets_dir: &Path, replicas: Arc<Replicas>) -> FunctionsApi {
    let saved = state_dir.join("functions.json");
    let deployments = match std::fs::read(&saved) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => BTreeMap::new(),
    };
    FunctionsApi::new(deployments, Arc::new(StackHooks { saved, replicas, secrets_dir: secrets_dir.to_owned() }))
}

/// `/system`'s routes (`/functions`, `/function/{name}`, `/logs`, `/info`), all behind the admin's credentials.
pub(super) fn require_auth(system: Router, user: &str, password: &str) -> Router {
    require_basic_auth(system, Credentials { user: user.to_owned(), password: password.to_owned() })
}
