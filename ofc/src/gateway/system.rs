//! `/system/*` of the embedded gateway: the shared [`FunctionsApi`] behind one basic-auth layer, with the local
//! stack's additions through its hooks: deployments kept in the state folder's `functions/`, one file each, and
//! replicas started and stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use functions_api::{require_basic_auth, Credentials, FunctionHooks, FunctionsApi};
use shared::openfaas::{FunctionDeployment, FunctionStatus};

use super::replicas::Replicas;

/// The folder of the deployments, under the state folder.
const DEPLOYMENTS_DIR: &str = "functions";
/// The single file earlier versions kept every deployment in; read once, then replaced by `functions/`.
const LEGACY_FILE: &str = "functions.json";

/// The local stack's additions to the bookkeeping of deployments.
struct StackHooks {
    /// `functions/`: one file per deployment, written on its change, so a change costs the same whatever the
    /// number of deployments and a restart starts the same functions.
    saved: PathBuf,
    replicas: Arc<Replicas>,
    /// The user functions' secrets: a deployment naming one that is not here is refused, as OpenFaaS refuses it.
    secrets_dir: PathBuf,
}

/// The file of deployment `name` in `dir`: the name itself when it is a DNS label (every name the platform
/// deploys), else `_` and its hex (a name any client sent must not climb out of the folder).
fn deployment_file(dir: &Path, name: &str) -> PathBuf {
    if shared::naming::is_dns1123_label(name) {
        dir.join(format!("{name}.json"))
    } else {
        dir.join(format!("_{}.json", hex::encode(name)))
    }
}

/// Writes `status` to its file whole or not at all (a temporary file renamed over it); `None` removes the file.
fn save(dir: &Path, name: &str, status: Option<&FunctionStatus>) -> std::io::Result<()> {
    let path = deployment_file(dir, name);
    let Some(status) = status else {
        return match std::fs::remove_file(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    };
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A leading dot: never read back as a deployment, should the rename not happen.
    let temporary = dir.join(format!(".{file_name}.tmp"));
    let bytes = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, &path)
}

/// Every deployment in `dir`; a file that is not one is skipped and named in the log.
fn load(dir: &Path) -> BTreeMap<String, FunctionStatus> {
    let mut deployments = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return deployments };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|bytes| {
            serde_json::from_slice::<FunctionStatus>(&bytes).map_err(|e| format!("not a deployment: {e}"))
        }) {
            Ok(status) => {
                deployments.insert(status.name.clone(), status);
            }
            Err(error) => tracing::warn!(file = %path.display(), %error, "a saved deployment was skipped"),
        }
    }
    deployments
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

    fn changed(&self, name: &str, now: Option<&FunctionStatus>) {
        if let Err(error) = save(&self.saved, name, now) {
            tracing::error!(function = %name, %error, "could not save the deployment");
        }
    }

    fn deployed(&self, status: &FunctionStatus) {
        self.replicas.schedule_start(status.clone());
    }

    fn removed(&self, name: &str) {
        self.replicas.remove(name);
    }
}

/// The deployments recorded under `state_dir` by an earlier run (none when there are none readable); those of
/// an earlier version's `functions.json` are moved to `functions/` first.
pub(super) fn open(state_dir: &Path, secrets_dir: &Path, replicas: Arc<Replicas>) -> FunctionsApi {
    let saved = state_dir.join(DEPLOYMENTS_DIR);
    let legacy = state_dir.join(LEGACY_FILE);
    if let Ok(bytes) = std::fs::read(&legacy) {
        let old: BTreeMap<String, FunctionStatus> = serde_json::from_slice(&bytes).unwrap_or_default();
        let moved = old.iter().try_for_each(|(name, status)| save(&saved, name, Some(status)));
        match moved.and_then(|()| std::fs::remove_file(&legacy)) {
            Ok(()) => tracing::info!(deployments = old.len(), "functions.json moved to functions/"),
            Err(error) => tracing::error!(%error, "could not move functions.json to functions/"),
        }
    }
    FunctionsApi::new(load(&saved), Arc::new(StackHooks { saved, replicas, secrets_dir: secrets_dir.to_owned() }))
}

/// `/system`'s routes (`/functions`, `/function/{name}`, `/logs`, `/info`), all behind the admin's credentials.
pub(super) fn require_auth(system: Router, user: &str, password: &str) -> Router {
    require_basic_auth(system, Credentials { user: user.to_owned(), password: password.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::openfaas::FunctionDeployment;

    fn deployment(name: &str) -> FunctionDeployment {
        FunctionDeployment { service: name.into(), image: format!("r/{name}:1"), ..FunctionDeployment::default() }
    }

    fn names(api: &FunctionsApi) -> Vec<String> {
        api.list().into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn deployments_outlive_a_restart_one_file_each() {
        let state = tempfile::tempdir().unwrap();
        let api = open(state.path(), state.path(), Arc::new(Replicas::new(None)));
        for name in ["a", "b", "c", "../Odd_name"] {
            api.deploy(&deployment(name), false).unwrap();
        }
        api.deploy(&FunctionDeployment { image: "r/b:2".into(), ..deployment("b") }, true).unwrap();
        api.delete("c").unwrap();
        let files = std::fs::read_dir(state.path().join(DEPLOYMENTS_DIR)).unwrap().count();
        assert_eq!(files, 3, "one file per deployment, none left behind");

        let again = open(state.path(), state.path(), Arc::new(Replicas::new(None)));
        assert_eq!(names(&again), ["../Odd_name", "a", "b"]);
        assert_eq!(again.get("b").unwrap().image, "r/b:2", "the update is what was kept");
        assert!(!state.path().join("Odd_name.json").exists(), "a name never leaves the folder");
    }

    #[test]
    fn an_earlier_functions_json_is_moved_and_a_broken_file_skipped() {
        let state = tempfile::tempdir().unwrap();
        let old: BTreeMap<String, FunctionStatus> = ["x", "y"]
            .into_iter()
            .map(|n| (n.to_owned(), FunctionStatus { name: n.into(), image: "r/x:1".into(), ..Default::default() }))
            .collect();
        std::fs::write(state.path().join(LEGACY_FILE), serde_json::to_vec(&old).unwrap()).unwrap();
        let api = open(state.path(), state.path(), Arc::new(Replicas::new(None)));
        assert_eq!(names(&api), ["x", "y"]);
        assert!(!state.path().join(LEGACY_FILE).exists());

        std::fs::write(state.path().join(DEPLOYMENTS_DIR).join("z.json"), b"{not json").unwrap();
        let again = open(state.path(), state.path(), Arc::new(Replicas::new(None)));
        assert_eq!(names(&again), ["x", "y"]);
    }
}
