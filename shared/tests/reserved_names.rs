//! Every name the platform routes or runs is reserved: each function of the repository's stack.yml and each object
//! or service its deploy files name. Read from the files themselves, so a part added there without being reserved
//! fails here, not on a tenant's push.

use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml_ng::Value;
use shared::naming::{is_reserved_service, parse_service_name, service_name, PLATFORM_SERVICES};
use shared::stack::Stack;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The Kubernetes manifests and Compose files beside stack.yml that deploy the platform's parts.
fn deploy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["of-builder/k8s", "edge-router/k8s"] {
        let entries = std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "yml")));
    }
    files.push(Path::new(ROOT).join("of-builder/docker-compose.yml"));
    files.sort();
    files
}

/// `metadata.name` of each Kubernetes object but a NetworkPolicy, the containers' names, and Compose's service names.
fn names_in(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut names = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // A NetworkPolicy's name is no service: nothing routes to it or runs as it.
        let policy = value["kind"].as_str() == Some("NetworkPolicy");
        if let Some(name) = value["metadata"]["name"].as_str().filter(|_| !policy) {
            names.push(name.to_owned());
        }
        if let Some(containers) = value["spec"]["template"]["spec"]["containers"].as_sequence() {
            names.extend(containers.iter().filter_map(|c| c["name"].as_str()).map(str::to_owned));
        }
        if let Some(services) = value["services"].as_mapping() {
            names.extend(services.keys().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    names
}

fn assert_reserved(name: &str, from: &str) {
    assert!(is_reserved_service(name), "`{name}` ({from}) is not reserved: add it to shared::naming");
    assert!(parse_service_name(name).is_none(), "`{name}` ({from}) could be formed by a push");
}

#[test]
fn every_function_of_stack_yml_is_reserved() {
    let stack = Stack::read(Path::new(ROOT)).expect("the repository's stack.yml parses");
    assert!(stack.functions.len() >= 10, "stack.yml lists the platform's functions");
    for name in stack.functions.keys() {
        assert_reserved(name, "stack.yml");
    }
}

#[test]
fn every_service_of_the_deploy_files_is_reserved() {
    let files = deploy_files();
    let mut seen = 0;
    for file in &files {
        for name in names_in(file) {
            assert_reserved(&name, &file.display().to_string());
            seen += 1;
        }
    }
    assert!(seen >= 4, "the deploy files name the builder, the registry and the edge router ({seen} names)");
}

#[test]
fn no_owner_and_function_form_a_platform_name() {
    for name in shared::functions::ALL.iter().chain(PLATFORM_SERVICES) {
        if let Some((owner, function)) = name.split_once('-') {
            let formed = service_name(owner, function).unwrap();
            assert!(!is_reserved_service(&formed), "{owner} + {function} forms {formed}");
            assert_ne!(&formed, name);
        }
    }
    assert_eq!(service_name("edge", "router").unwrap(), "edge-router-4");
}
