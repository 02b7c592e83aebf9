//! The deploy files agree with the code: stack.yml names real workspace members, every file and secret it refers to
//! exists and is one the functions read, and faas-cli's shrinkwrap of it (git-tar's code) gives each build context
//! what template/rust/Dockerfile needs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use shared::stack::Stack;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The secrets DESIGN section 4 names (and the seed's older name for the App key).
const SECRETS: &[&str] = &[
    "github-webhook-secret",
    "payload-secret",
    "private-key",
    "derek-private-key",
    "basic-auth-user",
    "basic-auth-password",
    "s3-access-key",
    "s3-secret-key",
    "jwt-private-key",
    "jwt-public-key",
    "of-client-secret",
    "registry-collector-auth",
];

/// The environment settings the functions read.
const SETTINGS: &[&str] = &[
    "client_id",
    "auth_url",
    "dashboard_url",
    "cookie_root_domain",
    "session_lifetime",
    "oauth_provider_base_url",
    "gateway_pretty_url",
    "github_url",
    "gateway_url",
    "gateway_public_url",
    "audit_url",
    "repository_url",
    "registry_push_url",
    "registry_api_url",
    "registry_insecure",
    "builder_url",
    "validate_hmac",
    "validate_customers",
    "customers_url",
    "build_branch",
    "report_status",
    "github_app_id",
    "github_api_url",
    "default_memory_limit",
    "read_timeout",
    "write_timeout",
    "exec_timeout",
    "max_body_bytes",
    "slack_url",
    "clone_timeout",
    "max_parallel_builds",
    "max_repo_bytes",
    "max_functions",
    "build_timeout",
    "customers_cache_ttl",
    "delivery_ttl",
    "status_max_retries",
    "status_max_retry_wait",
    "max_retries",
    "retry_wait",
    "port",
    "log_store_path",
    "log_retention",
    "log_sweep_interval",
    "s3_url",
    "s3_bucket",
    "s3_region",
    "s3_tls",
    "enable_dockerfile_lang",
    "custom_templates",
    "templates_refresh",
    "templates_cache_path",
    "readonly_root_filesystem",
    "allow_writable_root_filesystem",
    "scaling_min_limit",
    "scaling_max_limit",
    "allowed_openfaas_labels",
    "allowed_annotations",
    "allowed_build_args",
    "reserved_secrets",
    "allowed_constraints",
    "allowed_skip_build_images",
    "max_memory_limit",
    "max_cpu_limit",
    "previews",
    "max_previews_per_owner",
    "preview_ttl",
    "preview_ttl_days",
    "preview_sweep_every",
];

fn stack() -> Stack {
    Stack::read(Path::new(ROOT)).expect("the repository's stack.yml parses")
}

#[test]
fn every_function_is_a_workspace_member_built_by_the_rust_template() {
    for (name, function) in &stack().functions {
        assert!(Path::new(ROOT).join("functions").join(name).join("Cargo.toml").is_file(), "functions/{name} exists");
        assert_eq!(function.lang, "rust", "{name}");
        assert_eq!(function.handler, "./", "{name}: the handler is the workspace");
        assert_eq!(
            function.build_args.get("FUNCTION").map(String::as_str),
            Some(name.as_str()),
            "{name}: FUNCTION build arg"
        );
    }
    let members: BTreeSet<String> = std::fs::read_dir(Path::new(ROOT).join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let deployed: BTreeSet<String> = stack().functions.keys().cloned().collect();
    assert_eq!(members, deployed, "every function crate is deployed, and only those");
}

#[test]
fn every_environment_file_and_setting_and_secret_is_known() {
    let stack = stack();
    for (name, function) in &stack.functions {
        let environment = function.resolved_environment(name, Path::new(ROOT)).unwrap_or_else(|e| panic!("{e}"));
        for key in environment.keys() {
            assert!(SETTINGS.contains(&key.as_str()), "{name}: `{key}` is not a setting any function reads");
        }
        for secret in &function.secrets {
            assert!(SECRETS.contains(&secret.as_str()), "{name}: secret `{secret}` is not one DESIGN names");
        }
    }
    for file in ["github.yml", "gateway_config.yml", "buildshiprun_limits_swarm.yml", "buildshiprun_limits_k8s.yml"] {
        assert!(Path::new(ROOT).join(file).is_file(), "{file} exists");
    }
    let swarm = std::fs::read_to_string(Path::new(ROOT).join("buildshiprun_limits_swarm.yml")).unwrap();
    let k8s = std::fs::read_to_string(Path::new(ROOT).join("buildshiprun_limits_k8s.yml")).unwrap();
    assert!(swarm.contains("\"30m\"") && k8s.contains("\"30Mi\""));
}

#[test]
fn the_seeds_timeouts_are_kept() {
    let stack = stack();
    let timeout =
        |function: &str, key: &str| stack.functions[function].environment.get(key).cloned().unwrap_or_default();
    assert_eq!(timeout("buildshiprun", "write_timeout"), "300s");
    assert_eq!(timeout("buildshiprun", "read_timeout"), "300s");
    assert_eq!(timeout("git-tar", "write_timeout"), "15m", "the last release's (ofc/tests/deadlines.rs)");
    assert_eq!(timeout("gh-push", "write_timeout"), "10s");
}

/// The repository's tracked and new files (not `target/`), copied to a temporary folder.
fn clean_copy() -> tempfile::TempDir {
    let output =
        Command::new("git").args(["ls-files", "-co", "--exclude-standard", "-z"]).current_dir(ROOT).output().unwrap();
    assert!(output.status.success());
    let copy = tempfile::tempdir().unwrap();
    for path in output.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let relative = PathBuf::from(String::from_utf8_lossy(path).into_owned());
        let source = Path::new(ROOT).join(&relative);
        if !source.is_file() {
            continue;
        }
        let target = copy.path().join(&relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&source, &target).unwrap();
    }
    copy
}

#[test]
fn shrinkwrapping_the_stack_gives_each_context_what_its_dockerfile_needs() {
    let repo = clean_copy();
    let out = tempfile::tempdir().unwrap();
    let stack = Stack::read(repo.path()).unwrap();
    let dockerfile = std::fs::read_to_string(repo.path().join("template/rust/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY function/ ./"), "the template builds from the handler folder");
    for (name, function) in &stack.functions {
        let wrapped = git_tar::shrinkwrap::shrinkwrap(repo.path(), name, function, &[], out.path())
            .unwrap_or_else(|e| panic!("{e}"));
        let context = wrapped.context;
        for needed in
            ["Dockerfile", "template.yml", "function/Cargo.toml", "function/Cargo.lock", "function/shared/Cargo.toml"]
        {
            assert!(context.join(needed).is_file(), "{name}: {needed} in the build context");
        }
        assert!(context.join("function/functions").join(name).join("src/main.rs").is_file(), "{name}: its own crate");
        assert!(
            !context.join("function/template").exists(),
            "{name}: the handler's template/ is skipped, as faas-cli does"
        );
        assert_eq!(wrapped.build_args["FUNCTION"], *name);
        for source in copy_sources(&dockerfile) {
            assert!(
                context.join(&source).exists(),
                "{name}: the Dockerfile copies `{source}`, which is not in the context"
            );
        }
    }
}

/// The context paths a Dockerfile's `COPY`/`ADD` instructions read (not those copying from another stage).
fn copy_sources(dockerfile: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else { continue };
        if !instruction.eq_ignore_ascii_case("COPY") && !instruction.eq_ignore_ascii_case("ADD") {
            continue;
        }
        let arguments: Vec<&str> = words.collect();
        if arguments.iter().any(|a| a.starts_with("--from")) {
            continue;
        }
        let paths: Vec<&str> = arguments.into_iter().filter(|a| !a.starts_with("--")).collect();
        if let Some((_, sources_only)) = paths.split_last() {
            sources.extend(sources_only.iter().map(|s| (*s).to_owned()));
        }
    }
    assert!(!sources.is_empty(), "the template copies something from its context");
    sources
}
