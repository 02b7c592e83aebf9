//! The `FunctionDeployment` a build becomes: the stack's settings plus the labels that tie it to its repository.

use shared::event::{BuildEvent, FunctionResources};
use shared::openfaas::{labels, FunctionDeployment};

/// The deployment of `event`'s function as `service`, running `image`.
pub fn deployment_for(
    event: &BuildEvent,
    service: &str,
    image: &str,
    default_memory_limit: Option<&str>,
) -> FunctionDeployment {
    let mut function_labels = event.labels.clone();
    // The Git-* labels are ours: a stack.yml cannot claim another owner's or repository's functions through them.
    function_labels.insert(labels::GIT_CLOUD.into(), "1".into());
    function_labels.insert(labels::GIT_OWNER.into(), event.owner.clone());
    function_labels.insert(labels::GIT_REPO.into(), event.repo.clone());
    function_labels.insert(labels::GIT_SHA.into(), event.sha.clone());
    function_labels.insert(labels::GIT_DEPLOY_TIME.into(), chrono::Utc::now().timestamp().to_string());
    let limits = match (&event.limits, default_memory_limit) {
        (Some(limits), _) if !limits.is_empty() => Some(limits.clone()),
        (_, Some(memory)) => Some(FunctionResources { memory: Some(memory.to_owned()), cpu: None }),
        _ => None,
    };
    FunctionDeployment {
        service: service.to_owned(),
        image: image.to_owned(),
        env_vars: event.environment.clone(),
        secrets: event.secrets.clone(),
        labels: function_labels,
        annotations: event.annotations.clone(),
        limits,
        requests: event.requests.clone().filter(|r| !r.is_empty()),
        ..FunctionDeployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn git_labels_cannot_be_overridden_by_the_stack() {
        let event = BuildEvent {
            owner: "octo".into(),
            repo: "fns".into(),
            sha: "abc".into(),
            labels: BTreeMap::from([("Git-Owner".into(), "someone-else".into()), ("team".into(), "a".into())]),
            ..BuildEvent::default()
        };
        let deployment = deployment_for(&event, "octo-fn", "img@sha256:1", Some("30Mi"));
        assert_eq!(deployment.labels["Git-Owner"], "octo");
        assert_eq!(deployment.labels["team"], "a");
        assert_eq!(deployment.labels["Git-Cloud"], "1");
        assert_eq!(deployment.limits.unwrap().memory.as_deref(), Some("30Mi"));
    }
}
