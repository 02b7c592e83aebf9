//! git-tar with real git: repositories made on disk, served over HTTP by `git http-backend`, cloned by git-tar on a
//! random port, with a recording gateway double standing in for buildshiprun, github-status and garbage-collect.

mod common;

use common::*;
use shared::build::BuildConfig;
use shared::event::{BuildEvent, GarbageCollectRequest, StatusState};
use shared::signature::verify_cloud;
use testkit::Reply;

const TEMPLATE_DOCKERFILE: &str = "FROM scratch\nARG ADDITIONAL_PACKAGE\nCOPY function/ /home/app/\n";

fn two_function_repo(harness: &Harness, name: &str) -> (Repo, String) {
    let repo = harness.repo(name);
    repo.write(
        "stack.yml",
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  hello:\n    lang: demo\n    handler: ./hello\n    image: octo/hello:0.1\n    \
         environment:\n      greeting: hi\n    environment_file:\n      - env.yml\n    secrets: [api-key]\n    labels:\n      team: a\n  \
         web:\n    lang: dockerfile\n    handler: ./web\n    image: octo/web\n",
    )
    .write("env.yml", "environment:\n  from_file: yes\n  greeting: overridden\n")
    .write("template/demo/Dockerfile", TEMPLATE_DOCKERFILE)
    .write("template/demo/template.yml", "language: demo\nfprocess: ./handler\n")
    .write("template/demo/function/placeholder.txt", "template's own\n")
    .write("hello/handler.txt", "hello\n")
    .write("hello/build/ignored.txt", "skipped\n")
    .write("web/Dockerfile", "FROM scratch\nCOPY index.html /\n")
    .write("web/index.html", "<h1>web</h1>\n");
    let sha = repo.commit("two functions");
    (repo, sha)
}

#[tokio::test]
async fn hands_each_function_to_buildshiprun_as_a_shrinkwrapped_tar() {
    let harness = start().await;
    let (_repo, sha) = two_function_repo(&harness, "fns");
    let (status, answer) = harness.send(&harness.push_event("fns", &sha)).await;
    assert_eq!(status, 200, "{answer}");

    let tars = harness.tars();
    assert_eq!(tars.len(), 2);
    let (hello_event, hello) = &tars["hello"];
    assert_eq!(hello_event.service, "octo-hello-4");
    assert_eq!(hello_event.image, format!("127.0.0.1:5000/1/fns/hello:{sha}"));
    assert_eq!(hello_event.environment["greeting"], "overridden", "environment_file wins over environment (faas-cli)");
    assert_eq!(hello_event.environment["from_file"], "yes");
    assert_eq!(hello_event.secrets, vec!["api-key".to_owned()]);
    assert_eq!(hello_event.installation_id, Some(7));
    let config: BuildConfig = serde_json::from_slice(&hello["config"]).unwrap();
    assert_eq!(config.image_ref, hello_event.image);
    let paths: Vec<&str> = hello.keys().map(String::as_str).collect();
    for expected in [
        "config",
        "context/Dockerfile",
        "context/template.yml",
        "context/function/handler.txt",
        "context/function/placeholder.txt",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("ignored.txt")), "the handler's build/ folder is skipped: {paths:?}");
    assert_eq!(hello["context/Dockerfile"], TEMPLATE_DOCKERFILE.as_bytes());

    let (web_event, web) = &tars["web"];
    assert_eq!(web_event.image, format!("127.0.0.1:5000/1/fns/web:{sha}"));
    assert_eq!(web["context/Dockerfile"], b"FROM scratch\nCOPY index.html /\n");
    assert!(web.contains_key("context/index.html"));

    let statuses = harness.statuses();
    let pending: Vec<_> = statuses[0].statuses.iter().map(|s| (s.context.as_str(), s.state)).collect();
    assert_eq!(pending, vec![("hello", StatusState::Pending), ("web", StatusState::Pending)]);
    let last = harness.stack_deploy();
    assert_eq!(last.state, StatusState::Success);
    assert!(last.description.contains("hello") && last.description.contains("web"), "{}", last.description);

    let gc = harness.gateway.requests_to("/function/garbage-collect");
    assert_eq!(gc.len(), 1);
    verify_cloud(&gc[0].headers, &gc[0].body, PAYLOAD_SECRET.as_bytes()).unwrap();
    let request: GarbageCollectRequest = gc[0].json();
    assert_eq!((request.owner.as_str(), request.repo.as_str()), ("octo", "fns"));
    assert_eq!(request.functions, vec!["octo-hello-4".to_owned(), "octo-web-4".to_owned()]);
    // A green commit means the removed functions are already gone: collection comes before the last status.
    let paths: Vec<String> = harness.gateway.requests().into_iter().map(|r| r.path).collect();
    let collected = paths.iter().position(|p| p == "/function/garbage-collect").unwrap();
    let reported = paths.iter().rposition(|p| p == "/async-function/github-status").unwrap();
    assert!(collected < reported, "{paths:?}");
}

#[tokio::test]
async fn builds_the_pushed_sha_even_when_it_is_not_the_branch_head() {
    let harness = start().await;
    let (repo, first) = two_function_repo(&harness, "fns");
    repo.write("hello/handler.txt", "second version\n");
    let second = repo.commit("second");
    assert_ne!(first, second);
    let (status, answer) = harness.send(&harness.push_event("fns", &first)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(harness.tars()["hello"].1["context/function/handler.txt"], b"hello\n");
}

#[tokio::test]
async fn places_the_handler_in_the_templates_own_folder_with_build_options() {
    let harness = start().await;
    let repo = harness.repo("custom");
    repo.write(
        "stack.yml",
        "provider: {name: openfaas}\nfunctions:\n  api:\n    lang: node-ish\n    handler: ./api\n    image: octo/api\n    build_options: [dev]\n    \
         build_args:\n      ADDITIONAL_PACKAGE: curl\n      NODE_ENV: production\n",
    )
    .write("template/node-ish/Dockerfile", "FROM scratch\n")
    .write("template/node-ish/template.yml", "language: node-ish\nhandler_folder: src\nbuild_options:\n  - name: dev\n    packages: [make, gcc]\n")
    .write("api/index.js", "module.exports = 1\n");
    let sha = repo.commit("custom template");
    let (status, answer) = harness.send(&harness.push_event("custom", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let (_, entries) = &harness.tars()["api"];
    assert!(entries.contains_key("context/src/index.js"), "{:?}", entries.keys());
    assert!(!entries.contains_key("context/function/index.js"));
    let config: BuildConfig = serde_json::from_slice(&entries["config"]).unwrap();
    assert_eq!(config.build_args["ADDITIONAL_PACKAGE"], "curl gcc make", "de-duplicated and sorted, as faas-cli");
    assert_eq!(config.build_args["NODE_ENV"], "production");
}

#[tokio::test]
async fn deploys_skip_build_functions_from_their_image_without_a_tar() {
    let harness = start().await;
    let repo = harness.repo("connector");
    repo.write(
        "stack.yml",
        "provider: {name: openfaas}\nfunctions:\n  nats:\n    image: ghcr.io/openfaas/nats-connector:0.3.2\n    skip_build: true\n",
    );
    let sha = repo.commit("skip build");
    let (status, answer) = harness.send(&harness.push_event("connector", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let requests = harness.gateway.requests_to("/function/buildshiprun");
    assert_eq!(requests.len(), 1);
    assert!(requests[0].body.is_empty());
    let event = BuildEvent::from_header_value(requests[0].header("x-ofc-event").unwrap().as_bytes()).unwrap();
    assert!(event.skip_build);
    assert_eq!(event.image, "ghcr.io/openfaas/nats-connector:0.3.2");
}

#[tokio::test]
async fn fails_without_a_stack_file() {
    assert_push_fails(
        |r| {
            r.write("README.md", "no stack\n");
        },
        "no stack.yml",
    )
    .await;
}

#[tokio::test]
async fn fails_on_yaml_errors_with_line_and_column() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", "provider: {name: openfaas}\nfunctions:\n  hello:\n    lang: [oops\n");
        },
        "line",
    )
    .await;
}

#[tokio::test]
async fn fails_on_an_unknown_template_naming_it() {
    assert_push_fails(
        |r| {
            r.write(
                "stack.yml",
                "provider: {name: openfaas}\nfunctions:\n  f:\n    lang: cobol\n    handler: ./f\n    image: f\n",
            )
            .write("f/x", "x");
        },
        "cobol",
    )
    .await;
}

#[tokio::test]
async fn fails_on_a_missing_handler_folder() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", "provider: {name: openfaas}\nfunctions:\n  f:\n    lang: dockerfile\n    handler: ./nowhere\n    image: f\n");
        },
        "nowhere",
    )
    .await;
}

#[tokio::test]
async fn fails_on_a_handler_path_escaping_the_repository() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", "provider: {name: openfaas}\nfunctions:\n  f:\n    lang: dockerfile\n    handler: ../../etc\n    image: f\n");
        },
        "leaves the repository",
    )
    .await;
}

#[tokio::test]
async fn fails_on_an_environment_file_escaping_the_repository() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", "provider: {name: openfaas}\nfunctions:\n  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\n    environment_file: [../../../etc/passwd]\n")
                .write("f/Dockerfile", "FROM scratch\n");
        },
        "leaves the repository",
    )
    .await;
}

#[tokio::test]
async fn fails_on_a_symlink_pointing_outside_the_repository() {
    assert_push_fails(
        |r| {
            r.write(
                "stack.yml",
                "provider: {name: openfaas}\nfunctions:\n  f:\n    lang: dockerfile\n    handler: ./f\n    image: f\n",
            )
            .write("f/Dockerfile", "FROM scratch\n")
            .symlink("f/passwd", "/etc/passwd");
        },
        "f/passwd",
    )
    .await;
}

#[tokio::test]
async fn fails_on_a_function_name_that_cannot_be_deployed() {
    assert_push_fails(
        |r| {
            r.write("stack.yml", "provider: {name: openfaas}\nfunctions:\n  Bad_Name:\n    lang: dockerfile\n    handler: ./f\n    image: f\n")
                .write("f/Dockerfile", "FROM scratch\n");
        },
        "Bad_Name",
    )
    .await;
}

#[tokio::test]
async fn fails_when_the_sha_does_not_exist() {
    let harness = start().await;
    let (_repo, _) = two_function_repo(&harness, "fns");
    let (status, _) = harness.send(&harness.push_event("fns", &"ab".repeat(20))).await;
    assert_eq!(status, 422);
    assert!(harness.stack_deploy().description.contains("was not found"), "{}", harness.stack_deploy().description);
}

#[tokio::test]
async fn fails_when_the_repository_cannot_be_cloned() {
    let harness = start().await;
    let (status, _) = harness.send(&harness.push_event("missing", &"ab".repeat(20))).await;
    assert_eq!(status, 422);
    assert!(
        harness.stack_deploy().description.contains("could not be cloned"),
        "{}",
        harness.stack_deploy().description
    );
}

#[tokio::test]
async fn enforces_the_function_and_size_limits() {
    let harness = start_with(|c| c.max_functions = 1).await;
    let (_repo, sha) = two_function_repo(&harness, "fns");
    assert_eq!(harness.send(&harness.push_event("fns", &sha)).await.0, 422);
    assert!(harness.stack_deploy().description.contains("over the limit of 1"));

    let harness = start_with(|c| c.max_repo_bytes = 100).await;
    let (_repo, sha) = two_function_repo(&harness, "fns");
    assert_eq!(harness.send(&harness.push_event("fns", &sha)).await.0, 422);
    assert!(harness.stack_deploy().description.contains("max_repo_bytes"));
}

#[tokio::test]
async fn reports_failure_naming_the_functions_buildshiprun_could_not_deploy() {
    let harness = start().await;
    harness.gateway.reply(
        "POST",
        "/function/buildshiprun",
        vec![Reply::status(422).json(&serde_json::json!({"function": "x", "error": "COPY failed: no such file"}))],
    );
    let (_repo, sha) = two_function_repo(&harness, "fns");
    let (status, _) = harness.send(&harness.push_event("fns", &sha)).await;
    assert_eq!(status, 422);
    let failure = harness.stack_deploy();
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.contains("hello (COPY failed"), "{}", failure.description);
    assert_eq!(
        harness.statuses().iter().flat_map(|r| &r.statuses).filter(|s| s.context == "stack-deploy").count(),
        1,
        "written once"
    );
}

#[tokio::test]
async fn refuses_an_unsigned_push_and_clones_nothing() {
    let harness = start().await;
    let event = harness.push_event("fns", &"ab".repeat(20));
    let response = harness.http.post(format!("http://{}/", harness.address)).json(&event).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(harness.gateway.requests().is_empty());
}

/// The log store keys by the lower-case SHA: an upper-case one is refused at the door, not built with its log lost.
#[tokio::test]
async fn refuses_an_upper_case_sha_and_clones_nothing() {
    let harness = start().await;
    let mut event = serde_json::to_value(harness.push_event("fns", &"ab".repeat(20))).unwrap();
    event["after"] = "AB".repeat(20).into();
    let body = serde_json::to_vec(&event).unwrap();
    let response = harness
        .http
        .post(format!("http://{}/", harness.address))
        .header("X-Cloud-Signature", shared::signature::sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("not a commit SHA"), "{answer}");
    assert!(harness.gateway.requests().is_empty());
}

#[tokio::test]
async fn a_private_repository_needs_the_github_app() {
    let harness = start().await;
    let (_repo, sha) = two_function_repo(&harness, "fns");
    let mut event = harness.push_event("fns", &sha);
    event.repository.private = true;
    assert_eq!(harness.send(&event).await.0, 422);
    assert!(harness.stack_deploy().description.contains("private"), "{}", harness.stack_deploy().description);
}

/// `registry_push_url`: of-builder pushes through its own address for the registry (the tar's `image_ref`), while
/// the event keeps the name the node pulls (`repository_url`), which becomes the deployment's `image`.
#[tokio::test]
async fn the_tar_names_the_push_address_and_the_event_the_pull_address() {
    let harness = start_with(|config| {
        config.repository_url = "localhost:5000".into();
        config.registry_push_url = Some("registry.faasd:5000".into());
    })
    .await;
    let (_repo, sha) = two_function_repo(&harness, "fns");
    let (status, answer) = harness.send(&harness.push_event("fns", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let tars = harness.tars();
    let (event, tar) = &tars["hello"];
    let path = shared::naming::build_image_name("", event.owner_id, "fns", "hello", &sha).unwrap();
    assert_eq!(event.image, format!("localhost:5000/{path}"));
    let config: BuildConfig = serde_json::from_slice(&tar["config"]).unwrap();
    assert_eq!(config.image_ref, format!("registry.faasd:5000/{path}"));
}
