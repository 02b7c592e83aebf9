//! The registry and the builds through the real pipeline (`ofc up`, `ofc push --owner`), with two owners whose
//! logins are hyphen-prefixes of each other: only of-builder writes the registry, and a build reads no image of
//! another owner, whatever the builder's shared layer storage holds. The victim's images and deployment stay as
//! they were.

use std::path::{Path, PathBuf};
use std::process::Command;

use shared::openfaas::FunctionStatus;
use testkit::git::{commit, git, init_repo};
use testkit::local_stack::{LocalStack, Up};

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

/// A repository `fns` of `owner` with one function `name` built from `dockerfile`; answers it and its commit.
fn repo(parent: &Path, name: &str, dockerfile: &str) -> (PathBuf, String) {
    let repo = parent.join("fns");
    std::fs::create_dir_all(repo.join(name)).unwrap();
    std::fs::write(repo.join(name).join("Dockerfile"), dockerfile).unwrap();
    let stack = format!(
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  {name}:\n    lang: dockerfile\n    handler: ./{name}\n    image: {name}\n"
    );
    std::fs::write(repo.join("stack.yml"), stack).unwrap();
    init_repo(&repo);
    commit(&repo, "first");
    let sha = git(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    (repo, sha)
}

fn push(stack: &LocalStack, repo: &Path, owner: &str) -> (bool, String) {
    let output = Command::new(OFC)
        .args(["push", repo.to_str().unwrap(), "--owner", owner, "--timeout", "180", "--state"])
        .arg(stack.state_path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

async fn functions(stack: &LocalStack) -> Vec<FunctionStatus> {
    testkit::local_stack::deployed_functions(stack.state_path(), &stack.gateway).await
}

/// The status line of `context` in `ofc push`'s output, failed.
fn failure_of<'a>(output: &'a str, context: &str) -> &'a str {
    output
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some(context) && line.contains("failure"))
        .unwrap_or_else(|| panic!("a failure status for {context} in:\n{output}"))
}

#[tokio::test]
async fn only_the_builder_writes_the_registry_and_a_build_reads_only_its_owners_images() {
    let stack = Up::new(OFC).start();
    let registry = stack.endpoints()["registry"].as_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    // The victim: acme-corp's function, built and deployed.
    let secret = "FROM localhost/ofc/watchdog:latest\nENV greeting=\"acme-corp's secret\"\n";
    let (victim, sha) = repo(&work.path().join("acme-corp"), "db", secret);
    let (ok, output) = push(&stack, &victim, "acme-corp");
    assert!(ok, "{output}");
    let before = functions(&stack).await;
    // The victim's image, as deployed (pinned by digest): its repository, whatever the image path's layout.
    let deployed = &before.iter().find(|f| f.name.starts_with("acme-corp")).expect("acme-corp's function").image;
    let name = deployed.split('@').next().unwrap();
    let repository = name.strip_prefix(&format!("{registry}/")).expect("an image of the local registry").to_owned();
    let victims = format!("{name}:{sha}");
    let manifest_url = format!("http://{registry}/v2/{repository}/manifests/{sha}");
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let read = http.get(&manifest_url).header("accept", accept).send().await.unwrap();
    assert_eq!(read.status(), 200, "anyone reads");
    let digest = read.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    let manifest = read.bytes().await.unwrap();

    // Nobody but of-builder writes, and nobody but the operator deletes: not without credentials, not with the
    // platform's secrets (the gateway's admin account).
    let delete = http.delete(format!("http://{registry}/v2/{repository}/manifests/{digest}")).send().await.unwrap();
    assert_eq!(delete.status(), 401);
    let overwrite = http
        .put(&manifest_url)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(overwrite.status(), 401);
    let secrets = stack.state_path().join("secrets");
    let admin = std::fs::read_to_string(secrets.join("basic-auth-user")).unwrap();
    let password = std::fs::read_to_string(secrets.join("basic-auth-password")).unwrap();
    let as_admin = http
        .put(format!("http://{registry}/v2/acme/fns-thief/manifests/planted"))
        .basic_auth(admin.trim(), Some(password.trim()))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), 401, "the gateway's admin account does not push");
    let delete_as_admin = http
        .delete(format!("http://{registry}/v2/{repository}/manifests/{digest}"))
        .basic_auth(admin.trim(), Some(password.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(delete_as_admin.status(), 401, "nor delete");
    let operator = std::fs::read_to_string(stack.state_path().join("registry-operator-password")).unwrap();
    let operator_push = http
        .put(&manifest_url)
        .basic_auth("operator", Some(operator.trim()))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(operator_push.status(), 403, "the operator deletes, it does not push");
    assert!(!secrets.join("registry-auth").exists(), "the functions' secrets hold no registry account");
    assert!(stack.state_path().join("builder-secrets/registry-auth").is_file(), "of-builder's do");

    // The attacker: acme, starting FROM acme-corp's image (present in the builder's storage), or copying from it.
    for (name, dockerfile) in [
        ("thief", format!("FROM {victims}\n")),
        ("copier", format!("FROM localhost/ofc/watchdog:latest\nCOPY --from={victims} / /stolen/\n")),
    ] {
        let (attacker, _) = repo(&work.path().join(format!("acme-{name}")), name, &dockerfile);
        let (ok, output) = push(&stack, &attacker, "acme");
        assert!(!ok, "{output}");
        let line = failure_of(&output, name);
        assert!(line.contains("allowed_base_images"), "the failure names the rule: {output}");
    }

    // The victim is unchanged: its deployment and its image.
    let after = functions(&stack).await;
    let seen = |f: &FunctionStatus| (f.name.clone(), f.image.clone(), f.labels.clone());
    let victim_only =
        |list: &[FunctionStatus]| list.iter().filter(|f| f.name.starts_with("acme-corp")).map(seen).collect::<Vec<_>>();
    assert_eq!(victim_only(&after), victim_only(&before));
    let again = http.get(&manifest_url).header("accept", accept).send().await.unwrap();
    assert_eq!(again.headers()["docker-content-digest"].to_str().unwrap(), digest);
}
