//! The operator's deploy policy: what a user's stack.yml may ask of the platform. Anything outside it is refused
//! with a message naming the field, the value and the bound, never silently clamped or dropped, so the user learns
//! what to change from the commit status alone.

use std::collections::BTreeMap;

use shared::config::{bool_or, env_string, parse_bytes, u64_or, ConfigError};
use shared::event::{BuildEvent, FunctionResources};
use shared::naming::{
    is_reserved_owner, is_reserved_service, is_valid_secret_name, owner_image_prefix, owner_secret_name,
    split_image_tag, PLATFORM_SECRETS,
};
use shared::openfaas::labels;

/// The scaling labels a user may set by default (OpenFaaS' autoscaler reads them).
const DEFAULT_ALLOWED_OPENFAAS_LABELS: &str =
    "com.openfaas.scale.min,com.openfaas.scale.max,com.openfaas.scale.factor,com.openfaas.scale.zero";

/// The operator's bounds, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `reserved_secrets`: secret names beyond [`PLATFORM_SECRETS`] no user function may mount (the operator's own).
    pub reserved_secrets: Vec<String>,
    /// `allowed_openfaas_labels`: the `com.openfaas.*` labels a user may set (the scaling ones by default).
    pub allowed_openfaas_labels: Vec<String>,
    /// `allowed_annotations`: the annotations a user may set (`topic`, `schedule` by default, for the connectors).
    pub allowed_annotations: Vec<String>,
    /// `allowed_build_args`: the stack.yml `build_args` a user may pass to the build (none by default).
    pub allowed_build_args: Vec<String>,
    /// `enable_dockerfile_lang`: whether `lang: dockerfile` (the user's own build definition) is built.
    pub enable_dockerfile_lang: bool,
    /// `readonly_root_filesystem`: the default for functions whose stack.yml says nothing.
    pub readonly_root_filesystem: bool,
    /// `allow_writable_root_filesystem`: whether a user may turn the read-only root filesystem off.
    pub allow_writable_root_filesystem: bool,
    /// `scaling_min_limit`: the `com.openfaas.scale.min` a function gets when it sets none.
    pub scaling_min_limit: u64,
    /// `scaling_max_limit`: the most replicas a function may ask for, and its `com.openfaas.scale.max` by default.
    pub scaling_max_limit: u64,
    /// `max_memory_limit`: the largest memory limit or request, as written (for messages) and in bytes.
    pub max_memory_limit: Option<(String, u64)>,
    /// `max_cpu_limit`: the largest CPU limit or request, as written and in millicores.
    pub max_cpu_limit: Option<(String, u64)>,
    /// `allowed_constraints`: the placement constraints a stack may ask for, as written (spaces aside); none by
    /// default, as a constraint could place a tenant's function on the platform's own nodes.
    pub allowed_constraints: Vec<String>,
    /// `repository_url`: the registry (and prefix) the platform pushes to; an owner's own images lie under
    /// `<repository_url>/<owner id>/`, the only ones `skip_build` deploys besides `allowed_skip_build_images`.
    pub repository_url: String,
    /// `allowed_skip_build_images`: images (without tag) or prefixes (ending in `/`) any owner may deploy with
    /// `skip_build`; none by default.
    pub allowed_skip_build_images: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            reserved_secrets: Vec::new(),
            allowed_openfaas_labels: list(DEFAULT_ALLOWED_OPENFAAS_LABELS),
            allowed_annotations: list("topic,schedule"),
            allowed_build_args: Vec::new(),
            enable_dockerfile_lang: false,
            readonly_root_filesystem: true,
            allow_writable_root_filesystem: false,
            scaling_min_limit: 1,
            scaling_max_limit: 4,
            max_memory_limit: Some(("256Mi".into(), 256 << 20)),
            max_cpu_limit: Some(("1000m".into(), 1000)),
            allowed_constraints: Vec::new(),
            repository_url: String::new(),
            allowed_skip_build_images: Vec::new(),
        }
    }
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

fn list_or(name: &str, default: &str) -> Vec<String> {
    match std::env::var(name) {
        Ok(value) => list(&value),
        Err(_) => list(default),
    }
}

impl Policy {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let policy = Self {
            reserved_secrets: list_or("reserved_secrets", ""),
            allowed_openfaas_labels: list_or("allowed_openfaas_labels", DEFAULT_ALLOWED_OPENFAAS_LABELS),
            allowed_annotations: list_or("allowed_annotations", "topic,schedule"),
            allowed_build_args: list_or("allowed_build_args", ""),
            enable_dockerfile_lang: bool_or("enable_dockerfile_lang", false)?,
            readonly_root_filesystem: bool_or("readonly_root_filesystem", true)?,
            allow_writable_root_filesystem: bool_or("allow_writable_root_filesystem", false)?,
            scaling_min_limit: u64_or("scaling_min_limit", defaults.scaling_min_limit)?,
            scaling_max_limit: u64_or("scaling_max_limit", defaults.scaling_max_limit)?,
            max_memory_limit: bound_setting("max_memory_limit", defaults.max_memory_limit, memory_bytes)?,
            max_cpu_limit: bound_setting("max_cpu_limit", defaults.max_cpu_limit, cpu_millis)?,
            allowed_constraints: list_or("allowed_constraints", ""),
            repository_url: env_string("repository_url").unwrap_or_default(),
            allowed_skip_build_images: list_or("allowed_skip_build_images", ""),
        };
        if policy.scaling_min_limit > policy.scaling_max_limit {
            return Err(ConfigError::Invalid {
                name: "scaling_min_limit".into(),
                reason: format!("{} is over scaling_max_limit {}", policy.scaling_min_limit, policy.scaling_max_limit),
            });
        }
        Ok(policy)
    }

    /// Checks everything the event asks for and returns the secret names the deployment binds.
    pub fn check(&self, event: &BuildEvent) -> Result<Vec<String>, String> {
        self.check_lang(event)?;
        self.check_skip_build(event)?;
        self.check_constraints(&event.constraints)?;
        self.check_build_args(event)?;
        self.check_labels(&event.labels)?;
        self.check_annotations(&event.annotations)?;
        self.check_scaling(&event.labels)?;
        self.check_resources("limits", event.limits.as_ref())?;
        self.check_resources("requests", event.requests.as_ref())?;
        self.read_only_root(event)?;
        self.bind_secrets(event.owner_id, &event.secrets)
    }

    /// The owner's login must be able to own a pretty URL host, and the deployed name must not be the platform's.
    pub fn check_names(owner: &str, service: &str) -> Result<(), String> {
        if is_reserved_owner(owner) {
            return Err(format!(
                "the owner `{owner}` has the name of one of the platform's hosts, so its functions cannot be deployed"
            ));
        }
        if is_reserved_service(service) {
            return Err(format!(
                "`{service}` is the name of one of the platform's functions or services: rename the function"
            ));
        }
        Ok(())
    }

    /// `lang: dockerfile` is refused unless enabled, with or without `skip_build`: skipping the build does not
    /// make the user's own build definition allowed.
    fn check_lang(&self, event: &BuildEvent) -> Result<(), String> {
        if event.lang.eq_ignore_ascii_case("dockerfile") && !self.enable_dockerfile_lang {
            return Err(
                "lang `dockerfile` is not allowed: the operator has not enabled it (enable_dockerfile_lang=false)"
                    .into(),
            );
        }
        Ok(())
    }

    /// `skip_build` deploys an image the platform did not build in this push: only the owner's own (the platform
    /// built them, from the operator's templates unless `enable_dockerfile_lang`) or one the operator lists.
    pub fn check_skip_build(&self, event: &BuildEvent) -> Result<(), String> {
        if !event.skip_build {
            return Ok(());
        }
        let (name, _) = split_image_tag(event.image.trim());
        let name = name.to_ascii_lowercase();
        let own = (event.owner_id != 0 && !self.repository_url.trim().is_empty())
            .then(|| owner_image_prefix(&self.repository_url, event.owner_id));
        if own.as_ref().is_some_and(|prefix| name.starts_with(prefix.as_str())) {
            return Ok(());
        }
        let listed = self.allowed_skip_build_images.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            if allowed.ends_with('/') {
                name.starts_with(&allowed)
            } else {
                name == allowed
            }
        });
        if listed {
            return Ok(());
        }
        let own = own.map_or_else(|| "none: the operator set no repository_url".to_owned(), |p| format!("{p}…"));
        Err(format!(
            "skip_build: image `{}` is not one this owner may deploy (its own images: {own}; allowed_skip_build_images: {})",
            event.image,
            shown(&self.allowed_skip_build_images)
        ))
    }

    /// Constraints decide where a function runs; only those the operator lists are allowed.
    fn check_constraints(&self, constraints: &[String]) -> Result<(), String> {
        let squeezed = |c: &str| c.split_whitespace().collect::<String>();
        match constraints
            .iter()
            .find(|c| !self.allowed_constraints.iter().any(|allowed| squeezed(allowed) == squeezed(c)))
        {
            Some(constraint) => Err(format!(
                "constraint `{constraint}` is not allowed (allowed_constraints: {})",
                shown(&self.allowed_constraints)
            )),
            None => Ok(()),
        }
    }

    fn check_build_args(&self, event: &BuildEvent) -> Result<(), String> {
        match event.build_args.keys().find(|arg| !self.allowed_build_args.contains(arg)) {
            Some(arg) => Err(format!(
                "build_args `{arg}` is not allowed (allowed_build_args: {})",
                shown(&self.allowed_build_args)
            )),
            None => Ok(()),
        }
    }

    /// The platform's label namespaces are its own: a user label there could claim another owner's function.
    fn check_labels(&self, user_labels: &BTreeMap<String, String>) -> Result<(), String> {
        for name in user_labels.keys() {
            let lower = name.to_ascii_lowercase();
            let platform = lower.starts_with(&labels::GIT_PREFIX.to_ascii_lowercase())
                || lower.starts_with(labels::CLOUD_PREFIX)
                || (lower.starts_with(labels::OPENFAAS_PREFIX) && !self.allowed_openfaas_labels.contains(name));
            if platform {
                return Err(format!(
                    "label `{name}` is in a namespace reserved for the platform (Git-*, com.openfaas.*; allowed_openfaas_labels: {})",
                    shown(&self.allowed_openfaas_labels)
                ));
            }
        }
        Ok(())
    }

    fn check_annotations(&self, annotations: &BTreeMap<String, String>) -> Result<(), String> {
        match annotations.keys().find(|name| !self.allowed_annotations.contains(name)) {
            Some(name) => Err(format!(
                "annotation `{name}` is not allowed (allowed_annotations: {})",
                shown(&self.allowed_annotations)
            )),
            None => Ok(()),
        }
    }

    fn check_scaling(&self, user_labels: &BTreeMap<String, String>) -> Result<(), String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            user_labels
                .get(name)
                .map(|v| v.trim().parse::<u64>().map_err(|_| format!("label `{name}`: `{v}` is not a whole number")))
                .transpose()
        };
        let max_limit = self.scaling_max_limit;
        for name in [labels::SCALE_MIN, labels::SCALE_MAX] {
            if let Some(value) = number(name)?.filter(|v| *v > max_limit) {
                return Err(format!("label `{name}`: {value} is over the operator's scaling_max_limit {max_limit}"));
            }
        }
        if let (Some(min), Some(max)) = (number(labels::SCALE_MIN)?, number(labels::SCALE_MAX)?) {
            if min > max {
                return Err(format!("label `{}`: {min} is over `{}` {max}", labels::SCALE_MIN, labels::SCALE_MAX));
            }
        }
        if let Some(factor) = number(labels::SCALE_FACTOR)?.filter(|f| *f > 100) {
            return Err(format!("label `{}`: {factor} is over 100", labels::SCALE_FACTOR));
        }
        if let Some(zero) = user_labels.get(labels::SCALE_ZERO) {
            if shared::config::parse_bool(zero).is_none() {
                return Err(format!("label `{}`: `{zero}` is not true or false", labels::SCALE_ZERO));
            }
        }
        Ok(())
    }

    fn check_resources(&self, field: &str, resources: Option<&FunctionResources>) -> Result<(), String> {
        let Some(resources) = resources else { return Ok(()) };
        if let Some(memory) = &resources.memory {
            let bytes = memory_bytes(memory).map_err(|e| format!("{field}.memory: {e}"))?;
            if let Some((bound, _)) = self.max_memory_limit.as_ref().filter(|(_, max)| bytes > *max) {
                return Err(format!("{field}.memory: {memory} is over the operator's max_memory_limit {bound}"));
            }
        }
        if let Some(cpu) = &resources.cpu {
            let millis = cpu_millis(cpu).map_err(|e| format!("{field}.cpu: {e}"))?;
            if let Some((bound, _)) = self.max_cpu_limit.as_ref().filter(|(_, max)| millis > *max) {
                return Err(format!("{field}.cpu: {cpu} is over the operator's max_cpu_limit {bound}"));
            }
        }
        Ok(())
    }

    /// Whether the function's root filesystem is read-only: the user's choice when they may make it, else the
    /// operator's default; turning it off without the operator's leave is refused.
    pub fn read_only_root(&self, event: &BuildEvent) -> Result<bool, String> {
        match event.readonly_root_filesystem {
            Some(false) if self.readonly_root_filesystem && !self.allow_writable_root_filesystem => {
                Err("readonly_root_filesystem: false is not allowed (allow_writable_root_filesystem=false)".into())
            }
            Some(choice) => Ok(choice),
            None => Ok(self.readonly_root_filesystem),
        }
    }

    /// `secrets: [db]` binds `<owner id>--db`; a platform secret, by the name written or the name bound, is refused.
    fn bind_secrets(&self, owner_id: u64, secrets: &[String]) -> Result<Vec<String>, String> {
        let reserved = |name: &str| {
            PLATFORM_SECRETS.contains(&name) || self.reserved_secrets.iter().any(|r| r.eq_ignore_ascii_case(name))
        };
        secrets
            .iter()
            .map(|secret| {
                let bound = owner_secret_name(owner_id, secret).map_err(|e| format!("secret `{secret}`: {e}"))?;
                if reserved(secret) || reserved(&bound) {
                    Err(format!("secret `{secret}` (bound as `{bound}`) is one of the platform's own secrets"))
                } else if !is_valid_secret_name(&bound) {
                    Err(format!("secret `{secret}` (bound as `{bound}`) is not a valid secret name: use lower-case letters, digits, '-' and '.'"))
                } else {
                    Ok(bound)
                }
            })
            .collect()
    }
}

fn shown(values: &[String]) -> String {
    if values.is_empty() {
        "none".into()
    } else {
        values.join(", ")
    }
}

fn bound_setting(
    name: &str,
    default: Option<(String, u64)>,
    parse: fn(&str) -> Result<u64, String>,
) -> Result<Option<(String, u64)>, ConfigError> {
    match env_string(name) {
        None => Ok(default),
        Some(value) => match parse(&value) {
            Ok(parsed) => Ok(Some((value, parsed))),
            Err(reason) => Err(ConfigError::Invalid { name: name.into(), reason }),
        },
    }
}

/// A memory quantity in bytes: Kubernetes' `Ki`/`Mi`/`Gi`, or Swarm's `k`/`m`/`g` (read as KB/MB/GB).
pub fn memory_bytes(value: &str) -> Result<u64, String> {
    parse_bytes(value).ok_or_else(|| format!("`{value}` is not a memory size (e.g. 128Mi, 128m)"))
}

/// A CPU quantity in millicores: `500m`, or cores (`1`, `0.5`).
pub fn cpu_millis(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let invalid = || format!("`{value}` is not a CPU quantity (e.g. 500m, 0.5, 1)");
    if let Some(millis) = value.strip_suffix('m') {
        return millis.parse().map_err(|_| invalid());
    }
    let cores: f64 = value.parse().map_err(|_| invalid())?;
    if !cores.is_finite() || cores < 0.0 {
        return Err(invalid());
    }
    // Truncation is fine: a thousandth of a core is the finest OpenFaaS resolves.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((cores * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> BuildEvent {
        BuildEvent {
            service: "acme-api-4".into(),
            function: "api".into(),
            owner: "acme".into(),
            owner_id: 1001,
            repo: "fns".into(),
            sha: "a".repeat(40).parse().unwrap(),
            image: "127.0.0.1:5000/1001/fns/api:aaaa".into(),
            lang: "node".into(),
            ..BuildEvent::default()
        }
    }

    fn with_registry() -> Policy {
        Policy { repository_url: "127.0.0.1:5000".into(), ..Policy::default() }
    }

    #[test]
    fn secrets_are_bound_under_the_owner_s_account_id() {
        let policy = Policy::default();
        let acme = BuildEvent { secrets: vec!["corp-db".into()], ..event() };
        let acme_corp = BuildEvent { owner: "acme-corp".into(), owner_id: 2002, secrets: vec!["db".into()], ..event() };
        assert_eq!(policy.check(&acme).unwrap(), ["1001--corp-db"]);
        assert_eq!(policy.check(&acme_corp).unwrap(), ["2002--db"]);
        // A recycled login is another account: it reaches none of the old account's secrets.
        let recycled = BuildEvent { owner_id: 3003, ..acme_corp };
        assert_eq!(policy.check(&recycled).unwrap(), ["3003--db"]);
        let unknown = BuildEvent { owner_id: 0, secrets: vec!["db".into()], ..event() };
        assert!(policy.check(&unknown).unwrap_err().contains("no owner account id"));
        let platform = BuildEvent { secrets: vec!["payload-secret".into()], ..event() };
        assert!(policy.check(&platform).unwrap_err().contains("platform's own secrets"));
    }

    #[test]
    fn constraints_are_refused_unless_the_operator_lists_them() {
        let asked = BuildEvent { constraints: vec!["node.role == manager".into()], ..event() };
        assert_eq!(
            Policy::default().check(&asked).unwrap_err(),
            "constraint `node.role == manager` is not allowed (allowed_constraints: none)"
        );
        let policy = Policy { allowed_constraints: vec!["node.role==worker".into()], ..Policy::default() };
        let worker = BuildEvent { constraints: vec!["node.role == worker".into()], ..event() };
        assert!(policy.check(&worker).is_ok());
        assert!(policy.check(&asked).unwrap_err().contains("allowed_constraints: node.role==worker"));
    }

    #[test]
    fn skip_build_deploys_only_the_owner_s_own_images_or_the_operator_s() {
        let policy = with_registry();
        let own = BuildEvent { skip_build: true, image: "127.0.0.1:5000/1001/fns/api:abc".into(), ..event() };
        assert!(policy.check(&own).is_ok());
        for image in [
            "127.0.0.1:5000/2002/fns/api:abc",
            "127.0.0.1:5000/10012/fns/api:abc",
            "127.0.0.1:5000/100/fns/api:abc",
            "127.0.0.1:5000/acme/fns-api:abc",
            "docker.io/library/nginx:latest",
            "127.0.0.1:5001/1001/fns/api:abc",
        ] {
            let other = BuildEvent { skip_build: true, image: image.into(), ..event() };
            let refused = policy.check(&other).unwrap_err();
            assert!(
                refused.starts_with(&format!("skip_build: image `{image}` is not one this owner may deploy")),
                "{refused}"
            );
            assert!(refused.contains("127.0.0.1:5000/1001/"), "{refused}");
        }
        let listed = Policy {
            allowed_skip_build_images: vec!["docker.io/library/nginx".into(), "ghcr.io/openfaas/".into()],
            ..with_registry()
        };
        for image in ["docker.io/library/nginx:1.27", "ghcr.io/openfaas/figlet:latest"] {
            assert!(listed.check(&BuildEvent { skip_build: true, image: image.into(), ..event() }).is_ok(), "{image}");
        }
        let near = BuildEvent { skip_build: true, image: "docker.io/library/nginx-evil:1".into(), ..event() };
        assert!(listed.check(&near).is_err());
        let no_registry = BuildEvent { skip_build: true, ..event() };
        assert!(Policy::default().check(&no_registry).unwrap_err().contains("the operator set no repository_url"));
    }

    #[test]
    fn skip_build_is_no_way_past_enable_dockerfile_lang() {
        let own = BuildEvent {
            skip_build: true,
            lang: "dockerfile".into(),
            image: "127.0.0.1:5000/1001/fns/api:abc".into(),
            ..event()
        };
        assert!(with_registry().check(&own).unwrap_err().contains("enable_dockerfile_lang=false"));
        let enabled = Policy { enable_dockerfile_lang: true, ..with_registry() };
        assert!(enabled.check(&own).is_ok());
    }

    #[test]
    fn platform_names_and_hosts_are_refused() {
        assert!(Policy::check_names("octo", "octo-api-4").is_ok());
        assert!(Policy::check_names("octo", "edge-router").unwrap_err().contains("platform's functions or services"));
        assert!(Policy::check_names("System", "system-api-6").unwrap_err().contains("platform's hosts"));
    }
}
