//! The OpenFaaS gateway's function-management JSON (`reference/openfaas-gateway-api.md`), camelCase as written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::FunctionResources;

/// The labels every deployment carries, so garbage-collect and list-functions can find a user's functions.
pub mod labels {
    pub const GIT_CLOUD: &str = "Git-Cloud";
    pub const GIT_OWNER: &str = "Git-Owner";
    pub const GIT_REPO: &str = "Git-Repo";
    pub const GIT_SHA: &str = "Git-SHA";
    pub const GIT_DEPLOY_TIME: &str = "Git-DeployTime";

    /// The last release's namespace for the platform's labels (`sdk.FunctionLabelPrefix`): a user label under it,
    /// or under `Git-`, could claim another owner's function, so buildshiprun refuses them.
    pub const CLOUD_PREFIX: &str = "com.openfaas.cloud.";
    /// OpenFaaS' own namespace: only the labels the operator allows (the scaling ones by default) may be set.
    pub const OPENFAAS_PREFIX: &str = "com.openfaas.";
    /// The seed's namespace (`Git-Owner`…).
    pub const GIT_PREFIX: &str = "Git-";
    pub const CLOUD: &str = "com.openfaas.cloud.git-cloud";
    pub const OWNER: &str = "com.openfaas.cloud.git-owner";
    /// The owner's numeric GitHub id: what decides ownership, as a login can be renamed and taken by someone else.
    pub const OWNER_ID: &str = "com.openfaas.cloud.git-owner-id";
    pub const REPO: &str = "com.openfaas.cloud.git-repo";
    pub const SHA: &str = "com.openfaas.cloud.git-sha";
    pub const BRANCH: &str = "com.openfaas.cloud.git-branch";
    pub const DEPLOY_TIME: &str = "com.openfaas.cloud.git-deploytime";
    pub const PRIVATE: &str = "com.openfaas.cloud.git-private";
    /// The commit of the operator's template repository a function was built from (see `BuildEvent::template_commit`).
    pub const TEMPLATE_SHA: &str = "com.openfaas.cloud.template-sha";
    /// A preview's tag (`shared::naming::preview_tag`): absent on the default branch's functions.
    pub const PREVIEW: &str = "com.openfaas.cloud.preview";
    /// What a preview is of, for people: `pr-<number>` or the branch's name.
    pub const PREVIEW_OF: &str = "com.openfaas.cloud.preview-of";
    /// The scaling labels OpenFaaS reads; a user may set them within the operator's bounds.
    pub const SCALE_MIN: &str = "com.openfaas.scale.min";
    pub const SCALE_MAX: &str = "com.openfaas.scale.max";
    pub const SCALE_FACTOR: &str = "com.openfaas.scale.factor";
    pub const SCALE_ZERO: &str = "com.openfaas.scale.zero";
}

/// The annotations the platform sets on every deployment.
pub mod annotations {
    /// `sha256:<hex>` of the deployment buildshiprun sent (see [`super::FunctionDeployment::digest`]): what
    /// decides that a push changes nothing, as providers echo a deployment back in their own form (faasd adds the
    /// image's `ENV`).
    pub const DEPLOYMENT_DIGEST: &str = "com.openfaas.cloud.deployment-digest";
}

/// `POST`/`PUT /system/functions` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    pub service: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl FunctionDeployment {
    /// `sha256:<hex>` over this deployment's canonical form: its JSON as sent (fields in a fixed order, maps
    /// sorted, empty resources as none), without the labels named in `ignored_labels` (those that change on every
    /// push without changing what runs) and without the digest annotation itself.
    pub fn digest(&self, ignored_labels: &[&str]) -> String {
        let mut canonical = self.clone();
        canonical.labels.retain(|name, _| !ignored_labels.contains(&name.as_str()));
        canonical.annotations.remove(annotations::DEPLOYMENT_DIGEST);
        canonical.limits = canonical.limits.filter(|r| !r.is_empty());
        canonical.requests = canonical.requests.filter(|r| !r.is_empty());
        let bytes = serde_json::to_vec(&canonical).expect("a deployment serialises");
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }
}

/// An element of `GET /system/functions`, and the body of `GET /system/function/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    #[serde(default)]
    pub invocation_count: f64,
    #[serde(default)]
    pub replicas: u64,
    #[serde(default)]
    pub available_replicas: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<FunctionUsage>,
}

impl FunctionStatus {
    /// What a gateway lists for `deployment` once it has `available` of its one replica running.
    pub fn from_deployment(deployment: &FunctionDeployment, available_replicas: u64) -> Self {
        Self {
            name: deployment.service.clone(),
            image: deployment.image.clone(),
            namespace: deployment.namespace.clone(),
            env_process: deployment.env_process.clone(),
            env_vars: Some(deployment.env_vars.clone()),
            constraints: Some(deployment.constraints.clone()),
            secrets: Some(deployment.secrets.clone()),
            labels: Some(deployment.labels.clone()),
            annotations: Some(deployment.annotations.clone()),
            limits: deployment.limits.clone(),
            requests: deployment.requests.clone(),
            read_only_root_filesystem: deployment.read_only_root_filesystem,
            replicas: 1,
            available_replicas,
            ..Self::default()
        }
    }

    /// Whether the cloud deployed this function (`Git-Cloud: 1` or `com.openfaas.cloud.git-cloud: 1`); the
    /// platform's own functions and those deployed by hand are not, and a push may never replace them.
    pub fn is_cloud_function(&self) -> bool {
        self.label(labels::GIT_CLOUD) == Some("1") || self.label(labels::CLOUD) == Some("1")
    }

    /// The owner's numeric id the deployment carries, when it carries one (deployments before the id label have none).
    pub fn owner_id(&self) -> Option<u64> {
        self.label(labels::OWNER_ID).and_then(|id| id.parse().ok()).filter(|id| *id != 0)
    }

    /// The repository the deployment came from.
    pub fn repo(&self) -> Option<&str> {
        self.label(labels::REPO).or_else(|| self.label(labels::GIT_REPO))
    }

    /// The preview's tag when this function is a preview's; `None` for the default branch's.
    pub fn preview(&self) -> Option<&str> {
        self.label(labels::PREVIEW)
    }

    /// Whether this is a cloud function of `owner`: by the owner id when both sides have one (a renamed login
    /// keeps its functions, and whoever takes the old login gets none of them), else by the login compared
    /// case-insensitively as GitHub names are. The one rule by which garbage-collect, git-event, list-functions
    /// and buildshiprun find a user's functions.
    pub fn is_cloud_function_of(&self, owner: &str, owner_id: Option<u64>) -> bool {
        if !self.is_cloud_function() {
            return false;
        }
        match (self.owner_id(), owner_id.filter(|id| *id != 0)) {
            (Some(theirs), Some(ours)) => theirs == ours,
            _ => self
                .label(labels::OWNER)
                .or_else(|| self.label(labels::GIT_OWNER))
                .is_some_and(|o| o.eq_ignore_ascii_case(owner)),
        }
    }

    /// Whether this is a function the cloud deployed from `owner/repo` (see [`is_cloud_function_of`](Self::is_cloud_function_of)).
    pub fn is_cloud_function_from(&self, owner: &str, owner_id: Option<u64>, repo: &str) -> bool {
        self.is_cloud_function_of(owner, owner_id) && self.repo().is_some_and(|r| r.eq_ignore_ascii_case(repo))
    }

    /// The value of one annotation, when the function has it.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(name).map(String::as_str)
    }

    /// Whether a replica answers. A list entry's 0 may only mean the provider does not count them there
    /// (faasd's `GET /system/functions` has no `availableReplicas`): see `GatewayClient::with_readiness`.
    pub fn is_ready(&self) -> bool {
        self.available_replicas > 0
    }

    /// The value of one label, when the function has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.as_ref()?.get(name).map(String::as_str)
    }
}

/// Resource usage the gateway may report for a function.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    #[serde(default)]
    pub cpu: f64,
    #[serde(default)]
    pub total_memory_bytes: f64,
}

/// `DELETE /system/functions` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    pub function_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_uses_openfaas_camel_case() {
        let deployment = FunctionDeployment {
            service: "octo-fn".into(),
            image: "registry:5000/octo/fn@sha256:abc".into(),
            env_vars: BTreeMap::from([("a".into(), "b".into())]),
            limits: Some(FunctionResources { memory: Some("30Mi".into()), cpu: None }),
            ..FunctionDeployment::default()
        };
        let json = serde_json::to_value(&deployment).unwrap();
        assert_eq!(json["envVars"]["a"], "b");
        assert_eq!(json["limits"]["memory"], "30Mi");
        assert!(json.get("readOnlyRootFilesystem").is_none());
    }

    #[test]
    fn the_digest_ignores_the_named_labels_and_itself_and_nothing_else() {
        let deployment = FunctionDeployment {
            service: "octo-fn".into(),
            image: "img@sha256:1".into(),
            labels: BTreeMap::from([("sha".into(), "a".into()), ("team".into(), "x".into())]),
            ..FunctionDeployment::default()
        };
        let digest = deployment.digest(&["sha"]);
        assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
        let mut next = deployment.clone();
        next.labels.insert("sha".into(), "b".into());
        next.annotations.insert(annotations::DEPLOYMENT_DIGEST.into(), digest.clone());
        next.limits = Some(FunctionResources::default());
        assert_eq!(next.digest(&["sha"]), digest);
        next.labels.insert("team".into(), "y".into());
        assert_ne!(next.digest(&["sha"]), digest);
        let mut env = deployment.clone();
        env.env_vars.insert("PATH".into(), "/bin".into());
        assert_ne!(env.digest(&["sha"]), digest);
    }

    #[test]
    fn status_reads_a_gateway_answer() {
        let json = r#"{"name":"octo-fn","image":"img","invocationCount":3,"replicas":1,"availableReplicas":1,
            "labels":{"Git-Owner":"octo"},"createdAt":"2026-01-01T00:00:00Z","usage":{"cpu":0.1,"totalMemoryBytes":1024}}"#;
        let status: FunctionStatus = serde_json::from_str(json).unwrap();
        assert_eq!(status.label(labels::GIT_OWNER), Some("octo"));
        assert!((status.invocation_count - 3.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_cloud_function_belongs_to_its_owner_and_repo_whatever_their_case() {
        let labelled = |cloud: &str| FunctionStatus {
            labels: Some(BTreeMap::from([
                (labels::GIT_CLOUD.into(), cloud.into()),
                (labels::GIT_OWNER.into(), "Octo".into()),
                (labels::GIT_REPO.into(), "Fns".into()),
            ])),
            ..FunctionStatus::default()
        };
        assert!(labelled("1").is_cloud_function_of("octo", None));
        assert!(labelled("1").is_cloud_function_from("OCTO", Some(5), "fns"));
        assert!(!labelled("1").is_cloud_function_from("octo", None, "other"));
        assert!(!labelled("0").is_cloud_function_of("octo", None));
        assert!(!FunctionStatus::default().is_cloud_function_of("octo", None));
    }

    #[test]
    fn the_owner_id_decides_over_the_login() {
        let function = FunctionStatus {
            labels: Some(BTreeMap::from([
                (labels::CLOUD.into(), "1".into()),
                (labels::OWNER.into(), "octo".into()),
                (labels::OWNER_ID.into(), "42".into()),
            ])),
            ..FunctionStatus::default()
        };
        assert!(function.is_cloud_function_of("renamed", Some(42)), "a renamed login keeps its functions");
        assert!(!function.is_cloud_function_of("octo", Some(7)), "whoever takes the old login gets none");
        assert!(function.is_cloud_function_of("octo", None));
    }
}
