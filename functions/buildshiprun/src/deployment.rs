//! The `FunctionDeployment` a build becomes: the stack's settings with what the operator's policy allowed, plus the
//! labels that tie it to its owner and repository.

use std::collections::BTreeMap;

use shared::event::{BuildEvent, FunctionResources, PreviewOf};
use shared::openfaas::{annotations, labels, FunctionDeployment, FunctionStatus};

use crate::policy::Allowed;

/// The deployment of `event`'s function as `service`, running `image`, with what the operator's policy allowed it
/// (`policy::Policy::decide`, decided once before the build).
pub fn deployment_for(
    event: &BuildEvent,
    service: &str,
    image: &str,
    default_memory_limit: Option<&str>,
    allowed: Allowed,
) -> FunctionDeployment {
    let Allowed { secrets, labels: mut function_labels, read_only_root_filesystem } = allowed;
    function_labels.extend(platform_labels(event));
    if let Some(tag) = event.preview_tag() {
        // A preview idles most of its life: scaled to zero where the provider does that, unless the stack says.
        function_labels.entry(labels::SCALE_ZERO.into()).or_insert_with(|| "true".into());
        function_labels.insert(labels::PREVIEW.into(), tag);
    }
    let limits = match (&event.limits, default_memory_limit) {
        (Some(limits), _) if !limits.is_empty() => Some(limits.clone()),
        (_, Some(memory)) => Some(FunctionResources { memory: Some(memory.to_owned()), cpu: None }),
        _ => None,
    };
    let mut deployment = FunctionDeployment {
        service: service.to_owned(),
        image: image.to_owned(),
        env_process: event.fprocess.clone(),
        env_vars: event.environment.clone(),
        constraints: event.constraints.clone(),
        secrets,
        labels: function_labels,
        annotations: preview_annotations(event),
        limits,
        requests: event.requests.clone().filter(|r| !r.is_empty()),
        read_only_root_filesystem,
        ..FunctionDeployment::default()
    };
    let digest = deployment.digest(&PER_PUSH_LABELS);
    deployment.annotations.insert(annotations::DEPLOYMENT_DIGEST.into(), digest);
    deployment
}

/// The stack's annotations, and for a preview what it is of, for people (`pull request #12`, `branch feature/x`):
/// an annotation, as a branch's name is often no valid label value.
fn preview_annotations(event: &BuildEvent) -> BTreeMap<String, String> {
    let mut all = event.annotations.clone();
    match &event.preview {
        Some(PreviewOf::PullRequest(number)) => {
            all.insert(labels::PREVIEW_OF.into(), format!("pull request #{number}"));
        }
        Some(PreviewOf::Branch(branch)) => {
            all.insert(labels::PREVIEW_OF.into(), format!("branch {branch}"));
        }
        None => {}
    }
    all
}

/// The seed's `Git-*` labels and the last release's `com.openfaas.cloud.git-*` ones: ours alone (the policy refuses
/// a stack.yml that sets them), so a push cannot claim another owner's or repository's functions through them.
fn platform_labels(event: &BuildEvent) -> BTreeMap<String, String> {
    let now = chrono::Utc::now().timestamp().to_string();
    let private = if event.private { "1" } else { "0" };
    [
        (labels::GIT_CLOUD, "1"),
        (labels::GIT_OWNER, event.owner.as_str()),
        (labels::GIT_REPO, event.repo.as_str()),
        (labels::GIT_SHA, event.sha.as_str()),
        (labels::GIT_DEPLOY_TIME, now.as_str()),
        (labels::CLOUD, "1"),
        (labels::OWNER, event.owner.as_str()),
        (labels::OWNER_ID, &event.owner_id.to_string()),
        (labels::REPO, event.repo.as_str()),
        (labels::SHA, event.sha.as_str()),
        (labels::BRANCH, event.branch.as_str()),
        (labels::DEPLOY_TIME, now.as_str()),
        (labels::PRIVATE, private),
    ]
    .into_iter()
    .chain(event.template_commit.as_deref().map(|commit| (labels::TEMPLATE_SHA, commit)))
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// The labels that change on every push without changing what runs: the commit and the time of the deployment.
const PER_PUSH_LABELS: [&str; 4] = [labels::GIT_SHA, labels::GIT_DEPLOY_TIME, labels::SHA, labels::DEPLOY_TIME];

/// Whether deploying `deployment` would leave the running `existing` as it is. Decided by the digest of what was
/// sent ([`annotations::DEPLOYMENT_DIGEST`]), not by what the provider echoes back: faasd's echo adds the image's own
/// `ENV`, so comparing it redeployed every push. A deployment made before the digest existed is compared field by
/// field: the same image (by digest), env, secrets, limits, requests, annotations, constraints, `envProcess`, root
/// filesystem, and labels but the per-push ones; anything reported differently (even in form) counts as a change.
/// A function that should run and has no replica available is always redeployed (it may have failed to start for
/// a reason since fixed, such as a missing secret): `existing` comes from `GET /system/function/NAME`, which
/// counts replicas on every provider.
pub fn unchanged(existing: &FunctionStatus, deployment: &FunctionDeployment) -> bool {
    if existing.replicas > 0 && existing.available_replicas == 0 {
        return false;
    }
    if let Some(recorded) = existing.annotation(annotations::DEPLOYMENT_DIGEST) {
        return recorded == deployment.digest(&PER_PUSH_LABELS);
    }
    let empty = BTreeMap::new();
    let lasting = |labels: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        labels
            .iter()
            .filter(|(name, _)| !PER_PUSH_LABELS.contains(&name.as_str()))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    let resources = |r: Option<&FunctionResources>| r.filter(|r| !r.is_empty()).cloned();
    existing.image == deployment.image
        && existing.env_process == deployment.env_process
        && existing.env_vars.as_ref().unwrap_or(&empty) == &deployment.env_vars
        && existing.annotations.as_ref().unwrap_or(&empty) == &deployment.annotations
        && lasting(existing.labels.as_ref().unwrap_or(&empty)) == lasting(&deployment.labels)
        && existing.secrets.as_deref().unwrap_or_default() == deployment.secrets.as_slice()
        && existing.constraints.as_deref().unwrap_or_default() == deployment.constraints.as_slice()
        && resources(existing.limits.as_ref()) == resources(deployment.limits.as_ref())
        && resources(existing.requests.as_ref()) == resources(deployment.requests.as_ref())
        && existing.read_only_root_filesystem == deployment.read_only_root_filesystem
}

/// Whether the push `event` may replace the deployed function `existing`: only its owner's own cloud function from
/// the same repository. The message says who has the name, so the user knows to pick another.
pub fn may_replace(existing: &FunctionStatus, event: &BuildEvent) -> Result<(), String> {
    let name = &existing.name;
    if !existing.is_cloud_function() {
        return Err(format!(
            "`{name}` exists and was not deployed by OpenFaaS Cloud (a platform function or one deployed by hand): rename the function"
        ));
    }
    if !existing.is_cloud_function_of(&event.owner, Some(event.owner_id)) {
        return Err(format!("`{name}` belongs to another owner: rename the function"));
    }
    match existing.repo() {
        Some(repo) if !repo.eq_ignore_ascii_case(&event.repo) => Err(format!(
            "`{name}` is deployed from repository {}/{repo}: remove it there or rename the function",
            event.owner
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Asked, Policy};

    /// The deployment as buildshiprun makes it: the default policy decided, then the deployment built.
    fn deployed(
        event: &BuildEvent,
        service: &str,
        image: &str,
        memory: Option<&str>,
    ) -> Result<FunctionDeployment, String> {
        let allowed = Policy::default().decide(&Asked::of(event, service)).map_err(|refusal| refusal.to_string())?;
        Ok(deployment_for(event, service, image, memory, allowed))
    }

    fn event() -> BuildEvent {
        BuildEvent {
            owner: "octo".into(),
            owner_id: 42,
            repo: "fns".into(),
            sha: format!("{:0>40}", "abc").parse().unwrap(),
            branch: "main".into(),
            labels: BTreeMap::from([("team".into(), "a".into())]),
            ..BuildEvent::default()
        }
    }

    #[test]
    fn platform_labels_are_set_beside_the_user_s() {
        let deployment = deployed(&event(), "octo-fn", "img@sha256:1", Some("30Mi")).unwrap();
        assert_eq!(deployment.labels["Git-Owner"], "octo");
        assert_eq!(deployment.labels["team"], "a");
        assert_eq!(deployment.labels["Git-Cloud"], "1");
        assert_eq!(deployment.labels[labels::OWNER_ID], "42");
        assert_eq!(deployment.labels[labels::BRANCH], "main");
        assert_eq!(deployment.labels[labels::PRIVATE], "0");
        assert_eq!(deployment.labels[labels::SCALE_MAX], "4");
        assert_eq!(deployment.limits.unwrap().memory.as_deref(), Some("30Mi"));
        assert!(deployment.read_only_root_filesystem, "read-only by default");
        assert!(!deployment.labels.contains_key(labels::TEMPLATE_SHA), "no template: no label");
        let built = BuildEvent { template_commit: Some("c0ffee".into()), ..event() };
        let deployment = deployed(&built, "octo-fn", "img@sha256:1", None).unwrap();
        assert_eq!(deployment.labels[labels::TEMPLATE_SHA], "c0ffee", "the template's commit is recorded");
    }

    #[test]
    fn a_stack_cannot_set_the_platform_s_labels() {
        for label in ["Git-Owner", "git-repo", "com.openfaas.cloud.git-owner-id", "com.openfaas.health.http.path"] {
            let mut event = event();
            event.labels.insert(label.into(), "someone-else".into());
            let refusal = deployed(&event, "octo-fn", "i", None).unwrap_err();
            assert!(refusal.contains(label), "{refusal}");
        }
    }

    #[test]
    fn only_the_per_push_labels_may_differ_for_a_deployment_to_be_unchanged() {
        type Change = fn(&mut FunctionDeployment);
        let deployment = deployed(&event(), "octo-fn", "img@sha256:1", Some("30Mi")).unwrap();
        let running = FunctionStatus::from_deployment(&deployment, 1);
        let mut next = event();
        next.sha = format!("{:0>40}", "def").parse().unwrap();
        let again = deployed(&next, "octo-fn", "img@sha256:1", Some("30Mi")).unwrap();
        assert!(unchanged(&running, &again), "a new commit with the same image is the same deployment");
        let not_running = FunctionStatus::from_deployment(&deployment, 0);
        assert!(!unchanged(&not_running, &again), "a function with no replica available is redeployed");
        let changes: [(&str, Change); 10] = [
            ("image", |d| d.image = "img@sha256:2".into()),
            ("env", |d| drop(d.env_vars.insert("A".into(), "1".into()))),
            ("label", |d| drop(d.labels.insert("team".into(), "b".into()))),
            ("annotation", |d| drop(d.annotations.insert("topic".into(), "t".into()))),
            ("secret", |d| d.secrets.push("octo-db".into())),
            ("limits", |d| d.limits = Some(FunctionResources { memory: Some("64Mi".into()), cpu: None })),
            ("requests", |d| d.requests = Some(FunctionResources { memory: None, cpu: Some("100m".into()) })),
            ("constraints", |d| d.constraints.push("node.role == worker".into())),
            ("envProcess", |d| d.env_process = Some("cat".into())),
            ("root filesystem", |d| d.read_only_root_filesystem = false),
        ];
        for (what, change) in changes {
            let mut changed = again.clone();
            change(&mut changed);
            assert!(!unchanged(&running, &changed), "a changed {what} redeploys");
            let mut before_digests = running.clone();
            before_digests.annotations.as_mut().unwrap().remove(annotations::DEPLOYMENT_DIGEST);
            changed.annotations.remove(annotations::DEPLOYMENT_DIGEST);
            assert!(!unchanged(&before_digests, &changed), "a changed {what} redeploys one deployed without a digest");
        }
    }

    #[test]
    fn a_provider_s_own_echo_of_the_deployment_does_not_make_it_changed() {
        let deployment = deployed(&event(), "octo-fn", "img@sha256:1", Some("30Mi")).unwrap();
        // faasd answers with the image's own ENV merged into envVars, and its own form of the rest.
        let mut echoed = FunctionStatus::from_deployment(&deployment, 1);
        let env = echoed.env_vars.get_or_insert_with(BTreeMap::new);
        env.insert("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        env.insert("fprocess".into(), "./handler".into());
        echoed.limits = None;
        echoed.constraints = None;
        let mut next = event();
        next.sha = format!("{:0>40}", "def").parse().unwrap();
        let again = deployed(&next, "octo-fn", "img@sha256:1", Some("30Mi")).unwrap();
        assert!(unchanged(&echoed, &again), "the digest of what was sent decides");
        let mut not_ready = echoed.clone();
        not_ready.available_replicas = 0;
        assert!(!unchanged(&not_ready, &again), "no replica available: redeployed");
        let mut without_digest = echoed;
        without_digest.annotations.as_mut().unwrap().remove(annotations::DEPLOYMENT_DIGEST);
        assert!(!unchanged(&without_digest, &again), "without a digest the echo is compared, and differs");
    }

    #[test]
    fn a_function_of_another_owner_id_or_repository_is_not_replaced() {
        let existing = |id: &str, repo: &str| FunctionStatus {
            name: "octo-fn".into(),
            labels: Some(BTreeMap::from([
                (labels::CLOUD.into(), "1".into()),
                (labels::OWNER.into(), "octo".into()),
                (labels::OWNER_ID.into(), id.into()),
                (labels::REPO.into(), repo.into()),
            ])),
            ..FunctionStatus::default()
        };
        assert!(may_replace(&existing("42", "fns"), &event()).is_ok());
        assert!(may_replace(&existing("7", "fns"), &event()).unwrap_err().contains("another owner"));
        assert!(may_replace(&existing("42", "other"), &event()).unwrap_err().contains("octo/other"));
        let by_hand = FunctionStatus { name: "octo-fn".into(), ..FunctionStatus::default() };
        assert!(may_replace(&by_hand, &event()).unwrap_err().contains("not deployed by OpenFaaS Cloud"));
    }
}
