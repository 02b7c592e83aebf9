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
    /// `enable_dockerfile_lang` (`shared::build::user_build_definitions_enabled`, read there for git-tar too):
    /// whether `lang: dockerfile` (the user's own build definition) is built.
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
            enable_dockerfile_lang: shared::build::user_build_definitions_enabled()?,
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

    /// The one policy check: everything `asked` wants of the platform, decided before anything is built. What is
    /// allowed comes back as the deployment's parts the policy decides; the first thing refused, as its reason.
    pub fn decide(&self, asked: &Asked<'_>) -> Result<Allowed, Refusal> {
        Self::check_names(asked.owner, asked.service)?;
        self.check_lang(asked.lang)?;
        self.check_skip_build(asked)?;
        self.check_constraints(asked.constraints)?;
        self.check_build_args(asked.build_args)?;
        self.check_labels(asked.labels)?;
        self.check_annotations(asked.annotations)?;
        self.check_scaling(asked.labels)?;
        self.check_resources("limits", asked.limits)?;
        self.check_resources("requests", asked.requests)?;
        let read_only_root_filesystem = self.read_only_root(asked.readonly_root_filesystem)?;
        let secrets = self.bind_secrets(asked.owner_id, asked.secrets)?;
        let mut labels = asked.labels.clone();
        labels.entry(labels::SCALE_MIN.into()).or_insert_with(|| self.scaling_min_limit.to_string());
        labels.entry(labels::SCALE_MAX.into()).or_insert_with(|| self.scaling_max_limit.to_string());
        Ok(Allowed { secrets, labels, read_only_root_filesystem })
    }

    /// The owner's login must be able to own a pretty URL host, and the deployed name must not be the platform's.
    fn check_names(owner: &str, service: &str) -> Result<(), Refusal> {
        if is_reserved_owner(owner) {
            return Err(Refusal::ReservedOwner(owner.to_owned()));
        }
        if is_reserved_service(service) {
            return Err(Refusal::ReservedService(service.to_owned()));
        }
        Ok(())
    }

    /// `lang: dockerfile` is refused unless enabled, with or without `skip_build`: skipping the build does not
    /// make the user's own build definition allowed.
    fn check_lang(&self, lang: &str) -> Result<(), Refusal> {
        if lang.eq_ignore_ascii_case("dockerfile") && !self.enable_dockerfile_lang {
            return Err(Refusal::DockerfileLang);
        }
        Ok(())
    }

    /// `skip_build` deploys an image the platform did not build in this push: only the owner's own (the platform
    /// built them, from the operator's templates unless `enable_dockerfile_lang`) or one the operator lists.
    fn check_skip_build(&self, asked: &Asked<'_>) -> Result<(), Refusal> {
        if !asked.skip_build {
            return Ok(());
        }
        let (name, _) = split_image_tag(asked.image.trim());
        let name = name.to_ascii_lowercase();
        let own = (asked.owner_id != 0 && !self.repository_url.trim().is_empty())
            .then(|| owner_image_prefix(&self.repository_url, asked.owner_id));
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
        Err(Refusal::SkipBuildImage {
            image: asked.image.to_owned(),
            own,
            allowed: shown(&self.allowed_skip_build_images),
        })
    }

    /// Constraints decide where a function runs; only those the operator lists are allowed.
    fn check_constraints(&self, constraints: &[String]) -> Result<(), Refusal> {
        let squeezed = |c: &str| c.split_whitespace().collect::<String>();
        match constraints
            .iter()
            .find(|c| !self.allowed_constraints.iter().any(|allowed| squeezed(allowed) == squeezed(c)))
        {
            Some(constraint) => {
                Err(Refusal::Constraint { constraint: constraint.clone(), allowed: shown(&self.allowed_constraints) })
            }
            None => Ok(()),
        }
    }

    fn check_build_args(&self, build_args: &BTreeMap<String, String>) -> Result<(), Refusal> {
        match build_args.keys().find(|arg| !self.allowed_build_args.contains(arg)) {
            Some(arg) => Err(Refusal::BuildArg { arg: arg.clone(), allowed: shown(&self.allowed_build_args) }),
            None => Ok(()),
        }
    }

    /// The platform's label namespaces are its own: a user label there could claim another owner's function.
    fn check_labels(&self, user_labels: &BTreeMap<String, String>) -> Result<(), Refusal> {
        for name in user_labels.keys() {
            let lower = name.to_ascii_lowercase();
            let platform = lower.starts_with(&labels::GIT_PREFIX.to_ascii_lowercase())
                || lower.starts_with(labels::CLOUD_PREFIX)
                || (lower.starts_with(labels::OPENFAAS_PREFIX) && !self.allowed_openfaas_labels.contains(name));
            if platform {
                return Err(Refusal::PlatformLabel {
                    label: name.clone(),
                    allowed: shown(&self.allowed_openfaas_labels),
                });
            }
        }
        Ok(())
    }

    fn check_annotations(&self, annotations: &BTreeMap<String, String>) -> Result<(), Refusal> {
        match annotations.keys().find(|name| !self.allowed_annotations.contains(name)) {
            Some(name) => {
                Err(Refusal::Annotation { annotation: name.clone(), allowed: shown(&self.allowed_annotations) })
            }
            None => Ok(()),
        }
    }

    fn check_scaling(&self, user_labels: &BTreeMap<String, String>) -> Result<(), Refusal> {
        let number = |name: &str| -> Result<Option<u64>, Refusal> {
            user_labels
                .get(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| Refusal::ScaleNotANumber { label: name.to_owned(), value: v.clone() })
                })
                .transpose()
        };
        let limit = self.scaling_max_limit;
        for name in [labels::SCALE_MIN, labels::SCALE_MAX] {
            if let Some(value) = number(name)?.filter(|v| *v > limit) {
                return Err(Refusal::ScaleOverLimit { label: name, value, limit });
            }
        }
        if let (Some(min), Some(max)) = (number(labels::SCALE_MIN)?, number(labels::SCALE_MAX)?) {
            if min > max {
                return Err(Refusal::ScaleMinOverMax { min, max });
            }
        }
        if let Some(factor) = number(labels::SCALE_FACTOR)?.filter(|f| *f > 100) {
            return Err(Refusal::ScaleFactorOver100 { factor });
        }
        if let Some(zero) = user_labels.get(labels::SCALE_ZERO) {
            if shared::config::parse_bool(zero).is_none() {
                return Err(Refusal::ScaleZeroNotABool { value: zero.clone() });
            }
        }
        Ok(())
    }

    fn check_resources(&self, field: &'static str, resources: Option<&FunctionResources>) -> Result<(), Refusal> {
        let Some(resources) = resources else { return Ok(()) };
        if let Some(memory) = &resources.memory {
            let unreadable = |reason| Refusal::ResourceUnreadable { field, resource: "memory", reason };
            let bytes = memory_bytes(memory).map_err(unreadable)?;
            if let Some((bound, _)) = self.max_memory_limit.as_ref().filter(|(_, max)| bytes > *max) {
                return Err(Refusal::ResourceOverBound {
                    field,
                    resource: "memory",
                    value: memory.clone(),
                    setting: "max_memory_limit",
                    bound: bound.clone(),
                });
            }
        }
        if let Some(cpu) = &resources.cpu {
            let unreadable = |reason| Refusal::ResourceUnreadable { field, resource: "cpu", reason };
            let millis = cpu_millis(cpu).map_err(unreadable)?;
            if let Some((bound, _)) = self.max_cpu_limit.as_ref().filter(|(_, max)| millis > *max) {
                return Err(Refusal::ResourceOverBound {
                    field,
                    resource: "cpu",
                    value: cpu.clone(),
                    setting: "max_cpu_limit",
                    bound: bound.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether the function's root filesystem is read-only: the user's choice when they may make it, else the
    /// operator's default; turning it off without the operator's leave is refused.
    fn read_only_root(&self, asked: Option<bool>) -> Result<bool, Refusal> {
        match asked {
            Some(false) if self.readonly_root_filesystem && !self.allow_writable_root_filesystem => {
                Err(Refusal::WritableRoot)
            }
            Some(choice) => Ok(choice),
            None => Ok(self.readonly_root_filesystem),
        }
    }

    /// `secrets: [db]` binds `<owner id>--db`; a platform secret, by the name written or the name bound, is refused.
    fn bind_secrets(&self, owner_id: u64, secrets: &[String]) -> Result<Vec<String>, Refusal> {
        let reserved = |name: &str| {
            PLATFORM_SECRETS.contains(&name) || self.reserved_secrets.iter().any(|r| r.eq_ignore_ascii_case(name))
        };
        secrets
            .iter()
            .map(|secret| {
                let bound = owner_secret_name(owner_id, secret)
                    .map_err(|e| Refusal::SecretUnbindable { secret: secret.clone(), reason: e.to_string() })?;
                if reserved(secret) || reserved(&bound) {
                    Err(Refusal::PlatformSecret { secret: secret.clone(), bound })
                } else if !is_valid_secret_name(&bound) {
                    Err(Refusal::InvalidSecretName { secret: secret.clone(), bound })
                } else {
                    Ok(bound)
                }
            })
            .collect()
    }
}

/// What a function asks of the platform: the parts of its build event the operator's policy decides on.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The owner's login, which must be able to own a pretty URL host.
    pub owner: &'a str,
    /// The owner's GitHub account id: its secrets and images are bound to it.
    pub owner_id: u64,
    /// The deployed name, which must not be one of the platform's.
    pub service: &'a str,
    pub lang: &'a str,
    pub skip_build: bool,
    /// The image a `skip_build` function deploys as it is.
    pub image: &'a str,
    pub constraints: &'a [String],
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub limits: Option<&'a FunctionResources>,
    pub requests: Option<&'a FunctionResources>,
    pub readonly_root_filesystem: Option<bool>,
    pub secrets: &'a [String],
}

impl<'a> Asked<'a> {
    /// What `event`'s function, deployed as `service`, asks for.
    pub fn of(event: &'a BuildEvent, service: &'a str) -> Self {
        Self {
            owner: &event.owner,
            owner_id: event.owner_id,
            service,
            lang: &event.lang,
            skip_build: event.skip_build,
            image: &event.image,
            constraints: &event.constraints,
            build_args: &event.build_args,
            labels: &event.labels,
            annotations: &event.annotations,
            limits: event.limits.as_ref(),
            requests: event.requests.as_ref(),
            readonly_root_filesystem: event.readonly_root_filesystem,
            secrets: &event.secrets,
        }
    }
}

/// The deployment's parts the policy decided, for `deployment::deployment_for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The secret names bound for the owner (`<owner id>--<name>`).
    pub secrets: Vec<String>,
    /// The stack's labels with the operator's scaling defaults where it set none.
    pub labels: BTreeMap<String, String>,
    pub read_only_root_filesystem: bool,
}

/// Why the policy refuses a function: each names the field, the value and the bound, so the commit status alone
/// tells the user what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the owner `{0}` has the name of one of the platform's hosts, so its functions cannot be deployed")]
    ReservedOwner(String),
    #[error("`{0}` is the name of one of the platform's functions or services: rename the function")]
    ReservedService(String),
    #[error("lang `dockerfile` is not allowed: the operator has not enabled it (enable_dockerfile_lang=false)")]
    DockerfileLang,
    #[error(
        "skip_build: image `{image}` is not one this owner may deploy (its own images: {own}; allowed_skip_build_images: {allowed})"
    )]
    SkipBuildImage { image: String, own: String, allowed: String },
    #[error("constraint `{constraint}` is not allowed (allowed_constraints: {allowed})")]
    Constraint { constraint: String, allowed: String },
    #[error("build_args `{arg}` is not allowed (allowed_build_args: {allowed})")]
    BuildArg { arg: String, allowed: String },
    #[error(
        "label `{label}` is in a namespace reserved for the platform (Git-*, com.openfaas.*; allowed_openfaas_labels: {allowed})"
    )]
    PlatformLabel { label: String, allowed: String },
    #[error("annotation `{annotation}` is not allowed (allowed_annotations: {allowed})")]
    Annotation { annotation: String, allowed: String },
    #[error("label `{label}`: `{value}` is not a whole number")]
    ScaleNotANumber { label: String, value: String },
    #[error("label `{label}`: {value} is over the operator's scaling_max_limit {limit}")]
    ScaleOverLimit { label: &'static str, value: u64, limit: u64 },
    #[error("label `{min_label}`: {min} is over `{max_label}` {max}", min_label = labels::SCALE_MIN, max_label = labels::SCALE_MAX)]
    ScaleMinOverMax { min: u64, max: u64 },
    #[error("label `{label}`: {factor} is over 100", label = labels::SCALE_FACTOR)]
    ScaleFactorOver100 { factor: u64 },
    #[error("label `{label}`: `{value}` is not true or false", label = labels::SCALE_ZERO)]
    ScaleZeroNotABool { value: String },
    #[error("{field}.{resource}: {reason}")]
    ResourceUnreadable { field: &'static str, resource: &'static str, reason: String },
    #[error("{field}.{resource}: {value} is over the operator's {setting} {bound}")]
    ResourceOverBound {
        field: &'static str,
        resource: &'static str,
        value: String,
        setting: &'static str,
        bound: String,
    },
    #[error("readonly_root_filesystem: false is not allowed (allow_writable_root_filesystem=false)")]
    WritableRoot,
    #[error("secret `{secret}`: {reason}")]
    SecretUnbindable { secret: String, reason: String },
    #[error("secret `{secret}` (bound as `{bound}`) is one of the platform's own secrets")]
    PlatformSecret { secret: String, bound: String },
    #[error(
        "secret `{secret}` (bound as `{bound}`) is not a valid secret name: use lower-case letters, digits, '-' and '.'"
    )]
    InvalidSecretName { secret: String, bound: String },
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

    /// The policy's answer as the tests read it: the secrets bound, or the refusal's message.
    fn check(policy: &Policy, event: &BuildEvent) -> Result<Vec<String>, String> {
        policy.decide(&Asked::of(event, &event.service)).map(|allowed| allowed.secrets).map_err(|r| r.to_string())
    }

    /// Only the names' check refuses `owner` deploying `service` here.
    fn check_names(owner: &str, service: &str) -> Result<(), String> {
        let event = event();
        let asked = Asked { owner, service, ..Asked::of(&event, "") };
        Policy::default().decide(&asked).map(drop).map_err(|r| r.to_string())
    }

    fn with_registry() -> Policy {
        Policy { repository_url: "127.0.0.1:5000".into(), ..Policy::default() }
    }

    #[test]
    fn secrets_are_bound_under_the_owner_s_account_id() {
        let policy = Policy::default();
        let acme = BuildEvent { secrets: vec!["corp-db".into()], ..event() };
        let acme_corp = BuildEvent { owner: "acme-corp".into(), owner_id: 2002, secrets: vec!["db".into()], ..event() };
        assert_eq!(check(&policy, &acme).unwrap(), ["1001--corp-db"]);
        assert_eq!(check(&policy, &acme_corp).unwrap(), ["2002--db"]);
        // A recycled login is another account: it reaches none of the old account's secrets.
        let recycled = BuildEvent { owner_id: 3003, ..acme_corp };
        assert_eq!(check(&policy, &recycled).unwrap(), ["3003--db"]);
        let unknown = BuildEvent { owner_id: 0, secrets: vec!["db".into()], ..event() };
        assert!(check(&policy, &unknown).unwrap_err().contains("no owner account id"));
        let platform = BuildEvent { secrets: vec!["payload-secret".into()], ..event() };
        assert!(check(&policy, &platform).unwrap_err().contains("platform's own secrets"));
    }

    #[test]
    fn constraints_are_refused_unless_the_operator_lists_them() {
        let asked = BuildEvent { constraints: vec!["node.role == manager".into()], ..event() };
        assert_eq!(
            check(&Policy::default(), &asked).unwrap_err(),
            "constraint `node.role == manager` is not allowed (allowed_constraints: none)"
        );
        let policy = Policy { allowed_constraints: vec!["node.role==worker".into()], ..Policy::default() };
        let worker = BuildEvent { constraints: vec!["node.role == worker".into()], ..event() };
        assert!(check(&policy, &worker).is_ok());
        assert!(check(&policy, &asked).unwrap_err().contains("allowed_constraints: node.role==worker"));
    }

    #[test]
    fn skip_build_deploys_only_the_owner_s_own_images_or_the_operator_s() {
        let policy = with_registry();
        let own = BuildEvent { skip_build: true, image: "127.0.0.1:5000/1001/fns/api:abc".into(), ..event() };
        assert!(check(&policy, &own).is_ok());
        for image in [
            "127.0.0.1:5000/2002/fns/api:abc",
            "127.0.0.1:5000/10012/fns/api:abc",
            "127.0.0.1:5000/100/fns/api:abc",
            "127.0.0.1:5000/acme/fns-api:abc",
            "docker.io/library/nginx:latest",
            "127.0.0.1:5001/1001/fns/api:abc",
        ] {
            let other = BuildEvent { skip_build: true, image: image.into(), ..event() };
            let refused = check(&policy, &other).unwrap_err();
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
            assert!(
                check(&listed, &BuildEvent { skip_build: true, image: image.into(), ..event() }).is_ok(),
                "{image}"
            );
        }
        let near = BuildEvent { skip_build: true, image: "docker.io/library/nginx-evil:1".into(), ..event() };
        assert!(check(&listed, &near).is_err());
        let no_registry = BuildEvent { skip_build: true, ..event() };
        assert!(check(&Policy::default(), &no_registry).unwrap_err().contains("the operator set no repository_url"));
    }

    #[test]
    fn skip_build_is_no_way_past_enable_dockerfile_lang() {
        let own = BuildEvent {
            skip_build: true,
            lang: "dockerfile".into(),
            image: "127.0.0.1:5000/1001/fns/api:abc".into(),
            ..event()
        };
        assert!(check(&with_registry(), &own).unwrap_err().contains("enable_dockerfile_lang=false"));
        let enabled = Policy { enable_dockerfile_lang: true, ..with_registry() };
        assert!(check(&enabled, &own).is_ok());
    }

    #[test]
    fn one_decision_gives_the_deployment_s_parts_or_a_typed_refusal() {
        let asked = BuildEvent { secrets: vec!["db".into()], readonly_root_filesystem: Some(true), ..event() };
        let allowed = Policy::default().decide(&Asked::of(&asked, "acme-api-4")).unwrap();
        assert_eq!(allowed.secrets, ["1001--db"]);
        assert!(allowed.read_only_root_filesystem);
        assert_eq!(allowed.labels[labels::SCALE_MIN], "1", "the operator's scaling defaults fill what the stack left");
        assert_eq!(allowed.labels[labels::SCALE_MAX], "4");
        let dockerfile = BuildEvent { lang: "dockerfile".into(), ..event() };
        assert_eq!(Policy::default().decide(&Asked::of(&dockerfile, "acme-api-4")), Err(Refusal::DockerfileLang));
        let writable = BuildEvent { readonly_root_filesystem: Some(false), ..event() };
        assert_eq!(Policy::default().decide(&Asked::of(&writable, "acme-api-4")), Err(Refusal::WritableRoot));
    }

    #[test]
    fn platform_names_and_hosts_are_refused() {
        assert!(check_names("octo", "octo-api-4").is_ok());
        assert!(check_names("octo", "edge-router").unwrap_err().contains("platform's functions or services"));
        assert!(check_names("System", "system-api-6").unwrap_err().contains("platform's hosts"));
    }
}
