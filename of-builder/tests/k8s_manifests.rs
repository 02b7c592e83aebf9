//! The deployed stack's manifests for the builder, the registry and the edge router: valid Kubernetes objects
//! (`kubernetes-validate`, installed by `.ci/run`), and NetworkPolicies that select what they should, checked by
//! evaluating their selectors for the pods that matter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn manifests() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in ["of-builder/k8s", "edge-router/k8s"] {
        for entry in std::fs::read_dir(Path::new(ROOT).join(folder)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn documents() -> Vec<Value> {
    let mut all = Vec::new();
    for file in manifests() {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document).unwrap();
            if !value.is_null() {
                all.push(value);
            }
        }
    }
    all
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object() {
    let output = std::process::Command::new("kubernetes-validate")
        .args(["--strict"])
        .args(manifests())
        .output()
        .expect("kubernetes-validate is installed (`pip install kubernetes-validate`, as .ci/run does)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
}

/// A pod as the policies see it.
#[derive(Debug, Clone)]
struct Pod {
    namespace: &'static str,
    labels: BTreeMap<String, String>,
}

fn pod(namespace: &'static str, labels: &[(&str, &str)]) -> Pod {
    Pod { namespace, labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
}

fn function(name: &str) -> Pod {
    pod("openfaas-fn", &[("faas_function", name)])
}

/// A label selector (`matchLabels`, `matchExpressions`) against `labels`; an empty selector selects everything.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let string = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    if let Some(map) = selector["matchLabels"].as_mapping() {
        if !map.iter().all(|(k, v)| labels.get(&string(k)) == Some(&string(v))) {
            return false;
        }
    }
    for expression in selector["matchExpressions"].as_sequence().into_iter().flatten() {
        let value = labels.get(&string(&expression["key"]));
        let values: Vec<String> = expression["values"].as_sequence().into_iter().flatten().map(string).collect();
        let holds = match expression["operator"].as_str().unwrap() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown operator {other}"),
        };
        if !holds {
            return false;
        }
    }
    true
}

fn namespace_labels(pod: &Pod) -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), pod.namespace.to_owned())])
}

/// Whether `peer` (a `from`/`to` entry of a policy in `policy_namespace`) matches `pod`; ipBlocks match no pod.
fn peer_matches(peer: &Value, policy_namespace: &str, pod: &Pod) -> bool {
    if !peer["ipBlock"].is_null() {
        return false;
    }
    let namespace_ok = if peer["namespaceSelector"].is_null() {
        pod.namespace == policy_namespace
    } else {
        selects(&peer["namespaceSelector"], &namespace_labels(pod))
    };
    let pod_ok = peer["podSelector"].is_null() || selects(&peer["podSelector"], &pod.labels);
    namespace_ok && pod_ok
}

/// Whether the policies let `from` open a connection to `to` on `port`, both directions' policies considered.
fn allowed(policies: &[Value], from: &Pod, to: &Pod, port: u64) -> bool {
    let direction = |kind: &str, subject: &Pod, other: &Pod, peers: &str| {
        let selecting: Vec<&Value> = policies
            .iter()
            .filter(|p| p["metadata"]["namespace"].as_str() == Some(subject.namespace))
            .filter(|p| selects(&p["spec"]["podSelector"], &subject.labels))
            .filter(|p| p["spec"]["policyTypes"].as_sequence().unwrap().iter().any(|t| t.as_str() == Some(kind)))
            .collect();
        if selecting.is_empty() {
            return true;
        }
        let key = kind.to_ascii_lowercase();
        selecting.iter().any(|policy| {
            let namespace = policy["metadata"]["namespace"].as_str().unwrap();
            policy["spec"][key.as_str()].as_sequence().into_iter().flatten().any(|rule| {
                let peers_ok = rule[peers]
                    .as_sequence()
                    .is_none_or(|list| list.iter().any(|peer| peer_matches(peer, namespace, other)));
                let ports_ok = rule["ports"]
                    .as_sequence()
                    .is_none_or(|list| list.iter().any(|p| p["port"].as_u64() == Some(port)));
                peers_ok && ports_ok
            })
        })
    };
    direction("Egress", from, to, "to") && direction("Ingress", to, from, "from")
}

fn policies() -> Vec<Value> {
    documents().into_iter().filter(|d| d["kind"].as_str() == Some("NetworkPolicy")).collect()
}

#[test]
fn user_functions_reach_neither_the_builder_the_registry_nor_the_gateway() {
    let policies = policies();
    let of_builder = pod("openfaas", &[("app", "of-builder")]);
    let registry = pod("openfaas", &[("app", "registry")]);
    let gateway = pod("openfaas", &[("app", "gateway")]);
    let edge_router = pod("openfaas", &[("app", "edge-router")]);
    // Names a push can form, among them hyphen-prefixes of the platform's own.
    for user in ["acme-api", "git-tar-x", "buildshiprun-x", "acme-corp-db", "x"] {
        let user = function(user);
        for (what, target, port) in [
            ("of-builder", &of_builder, 8080),
            ("buildkitd", &of_builder, 1234),
            ("the registry", &registry, 5000),
            ("the gateway", &gateway, 8080),
            ("another user function", &function("victim-api"), 8080),
        ] {
            assert!(!allowed(&policies, &user, target, port), "{user:?} reaches {what}");
        }
        assert!(allowed(&policies, &user, &edge_router, 8080), "{user:?} calls functions through the edge router");
    }
    let buildshiprun = function("buildshiprun");
    assert!(allowed(&policies, &buildshiprun, &of_builder, 8080), "buildshiprun builds");
    assert!(allowed(&policies, &buildshiprun, &gateway, 8080), "buildshiprun deploys");
    assert!(!allowed(&policies, &function("git-tar"), &of_builder, 8080), "only buildshiprun builds");
    assert!(allowed(&policies, &of_builder, &registry, 5000), "of-builder pushes");
    assert!(allowed(&policies, &edge_router, &gateway, 8080), "the edge router forwards to the gateway");
    assert!(allowed(&policies, &gateway, &function("acme-api"), 8080), "the gateway routes to user functions");
}

/// The policies name the platform's functions; a new one added to the platform but not here would be cut off from
/// the gateway (or, worse, be left out of the user functions' limits were the list inverted), so they must agree.
#[test]
fn the_policies_name_exactly_the_platforms_functions_and_those_names_are_reserved() {
    let mut platform: Vec<String> = shared::functions::ALL.iter().map(|s| (*s).to_owned()).collect();
    platform.sort();
    let mut lists = 0;
    for policy in policies() {
        let text = serde_yaml_ng::to_string(&policy).unwrap();
        let mut found = Vec::new();
        collect_faas_function_lists(&policy, &mut found);
        for mut names in found {
            names.sort();
            assert_eq!(names, platform, "{text}");
            lists += 1;
        }
    }
    assert!(lists >= 4, "the gateway's and the user functions' policies list the platform's functions");
    for name in shared::functions::ALL {
        assert!(shared::naming::is_reserved_service(name), "{name} is reserved: no push can take its label");
    }
}

/// Every `values` list of a `faas_function` expression with more than one name.
fn collect_faas_function_lists(value: &Value, found: &mut Vec<Vec<String>>) {
    match value {
        Value::Mapping(map) => {
            if map.get("key").and_then(Value::as_str) == Some("faas_function") {
                if let Some(values) = map.get("values").and_then(Value::as_sequence) {
                    found.push(values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
                }
            }
            for item in map.values() {
                collect_faas_function_lists(item, found);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|item| collect_faas_function_lists(item, found)),
        _ => {}
    }
}

/// The registry listens on the pod's loopback only, deletes on, behind the gate on the Service's port, which reads
/// its three accounts from mounted Secrets; of-builder holds the builder's account.
#[test]
fn the_registry_is_reached_only_through_its_gate() {
    let documents = documents();
    let find = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
            .unwrap()
            .clone()
    };
    let registry = find("Deployment", "registry");
    let containers = registry["spec"]["template"]["spec"]["containers"].as_sequence().unwrap().clone();
    let container = |name: &str| containers.iter().find(|c| c["name"].as_str() == Some(name)).unwrap().clone();
    let env = |container: &Value| -> BTreeMap<String, String> {
        container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let (gate, backend) = (container("registry-gate"), container("registry"));
    let (gate_env, backend_env) = (env(&gate), env(&backend));
    assert!(backend_env["REGISTRY_HTTP_ADDR"].starts_with("127.0.0.1:"), "the registry listens on loopback only");
    assert_eq!(backend_env["REGISTRY_STORAGE_DELETE_ENABLED"], "true");
    assert!(!backend_env.contains_key("REGISTRY_AUTH"), "the gate decides who may do what");
    assert!(backend["ports"].is_null(), "the registry exposes no port");
    assert_eq!(gate_env["registry_upstream"], backend_env["REGISTRY_HTTP_ADDR"]);
    let service = find("Service", "registry");
    let gate_port = gate_env["port"].parse::<u64>().unwrap();
    assert_eq!(service["spec"]["ports"][0]["targetPort"].as_u64(), Some(gate_port), "the Service reaches the gate");
    assert_eq!(gate["ports"][0]["containerPort"].as_u64(), Some(gate_port));
    let text = serde_yaml_ng::to_string(&registry).unwrap();
    for (setting, secret) in [
        ("builder_auth_file", "registry-auth"),
        ("operator_auth_file", "registry-operator-auth"),
        ("collector_auth_file", "registry-collector-auth"),
    ] {
        assert_eq!(gate_env[setting], format!("/var/openfaas/secrets/{secret}"));
        assert!(text.contains(&format!("name: {secret}")), "the pod mounts {secret}: {text}");
    }
    let builder = serde_yaml_ng::to_string(&find("Deployment", "of-builder")).unwrap();
    assert!(builder.contains("name: registry-auth"), "of-builder mounts its registry account: {builder}");
}

/// garbage-collect reaches the registry to delete a removed preview's images; no other function does.
#[test]
fn only_garbage_collect_of_the_functions_reaches_the_registry() {
    let policies = policies();
    let registry = pod("openfaas", &[("app", "registry")]);
    assert!(allowed(&policies, &function("garbage-collect"), &registry, 5000));
    for name in shared::functions::ALL.iter().filter(|n| **n != "garbage-collect").chain(&["garbage-collect-x"]) {
        assert!(!allowed(&policies, &function(name), &registry, 5000), "{name} reaches the registry");
    }
}
