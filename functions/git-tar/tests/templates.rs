//! The operator's template store: template repositories served by the same real git server as the pushed ones,
//! named in `custom_templates`, fetched by git-tar, refreshed at most every `templates_refresh`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use doubles::git_server::GitServer;
use git_tar::templates::TemplateRepo;
use shared::event::StatusState;
use testkit::git::git;

const STORE_DOCKERFILE: &str = "FROM scratch\nCOPY function/ /home/app/\n";

/// A template repository `octo/<name>.git` offering `langs`, each with a Dockerfile naming `marker`.
fn template_repo(root: &Path, name: &str, langs: &[&str], marker: &str) -> (Repo, String) {
    let repo = Repo::new(root, name);
    for lang in langs {
        repo.write(&format!("template/{lang}/Dockerfile"), &format!("{STORE_DOCKERFILE}# {marker}\n"))
            .write(&format!("template/{lang}/template.yml"), &format!("language: {lang}\n"))
            .write(&format!("template/{lang}/function/placeholder.txt"), "template's own\n");
    }
    repo.write("template/not-a-template/README", "no template.yml: not a language\n");
    let sha = repo.commit(marker);
    (repo, sha)
}

fn store(git: &GitServer, names: &[&str]) -> Vec<TemplateRepo> {
    names.iter().map(|n| TemplateRepo::parse(&git.clone_url("octo", n)).unwrap()).collect()
}

/// An application repository without `template/`, one function `api` of `lang`.
fn app_repo(harness: &Harness, lang: &str) -> String {
    let repo = harness.repo("app");
    repo.write(
        "stack.yml",
        &format!("provider: {{name: openfaas}}\nfunctions:\n  api:\n    lang: {lang}\n    handler: ./api\n    image: octo/api\n"),
    )
    .write("api/handler.txt", "mine\n");
    repo.commit("app")
}

async fn push_app(harness: &Harness, lang: &str) -> (u16, serde_json::Value) {
    let sha = app_repo(harness, lang);
    harness.send(&harness.push_event("app", &sha)).await
}

fn function_status(harness: &Harness, function: &str) -> shared::event::CommitStatus {
    harness.statuses().iter().flat_map(|r| r.statuses.clone()).rfind(|s| s.context == function).unwrap()
}

#[tokio::test]
async fn a_repository_without_a_template_folder_is_built_from_the_store() {
    let mut store_sha = String::new();
    let harness = start_with_git(|config, git, root| {
        store_sha = template_repo(root, "templates", &["demo", "other"], "store").1;
        config.custom_templates = store(git, &["templates"]);
        config.allow_user_templates = false;
    })
    .await;
    let (status, answer) = push_app(&harness, "demo").await;
    assert_eq!(status, 200, "{answer}");
    let (event, entries) = &harness.tars()["api"];
    assert_eq!(entries["context/Dockerfile"], format!("{STORE_DOCKERFILE}# store\n").as_bytes());
    assert_eq!(entries["context/function/handler.txt"], b"mine\n");
    assert!(entries.contains_key("context/function/placeholder.txt"));
    assert_eq!(event.template_commit.as_deref(), Some(store_sha.as_str()), "the deployment records the template");
}

#[tokio::test]
async fn a_missing_language_fails_the_function_listing_the_store_s_languages() {
    let harness = start_with_git(|config, git, root| {
        template_repo(root, "templates", &["demo", "other"], "store");
        config.custom_templates = store(git, &["templates"]);
    })
    .await;
    let (status, answer) = push_app(&harness, "cobol").await;
    assert_eq!(status, 422, "{answer}");
    let failure = function_status(&harness, "api");
    assert_eq!(failure.state, StatusState::Failure);
    assert!(failure.description.contains("cobol not supported"), "{}", failure.description);
    assert!(failure.description.contains("demo, other"), "{}", failure.description);
    assert!(!failure.description.contains("not-a-template"), "{}", failure.description);
    assert!(harness.gateway.requests_to("/function/buildshiprun").is_empty());
}

#[tokio::test]
async fn the_first_repository_offering_a_language_wins() {
    let mut first = String::new();
    let harness = start_with_git(|config, git, root| {
        first = template_repo(root, "first", &["demo"], "first").1;
        template_repo(root, "second", &["demo", "extra"], "second");
        config.custom_templates = store(git, &["first", "second"]);
    })
    .await;
    assert_eq!(push_app(&harness, "demo").await.0, 200);
    let (event, entries) = &harness.tars()["api"];
    assert_eq!(entries["context/Dockerfile"], format!("{STORE_DOCKERFILE}# first\n").as_bytes());
    assert_eq!(event.template_commit.as_deref(), Some(first.as_str()));
}

fn own_template_repo(harness: &Harness) -> String {
    let repo = harness.repo("app");
    repo.write(
        "stack.yml",
        "provider: {name: openfaas}\nfunctions:\n  api:\n    lang: demo\n    handler: ./api\n    image: octo/api\n",
    )
    .write("api/handler.txt", "mine\n")
    .write("template/demo/Dockerfile", "FROM scratch\n# own\n")
    .write("template/demo/template.yml", "language: demo\n");
    repo.commit("own template")
}

#[tokio::test]
async fn the_repository_s_own_template_is_refused_unless_user_build_definitions_are_allowed() {
    let harness = start_with_git(|config, git, root| {
        template_repo(root, "templates", &["demo"], "store");
        config.custom_templates = store(git, &["templates"]);
        config.allow_user_templates = false;
    })
    .await;
    let sha = own_template_repo(&harness);
    let (status, answer) = harness.send(&harness.push_event("app", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    let failure = function_status(&harness, "api");
    assert!(failure.description.contains("template/demo"), "{}", failure.description);
    assert!(failure.description.contains("enable_dockerfile_lang=false"), "{}", failure.description);

    let allowed = start_with_git(|config, git, root| {
        template_repo(root, "templates", &["demo"], "store");
        config.custom_templates = store(git, &["templates"]);
        config.allow_user_templates = true;
    })
    .await;
    let sha = own_template_repo(&allowed);
    let (status, answer) = allowed.send(&allowed.push_event("app", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let (event, entries) = &allowed.tars()["api"];
    assert_eq!(entries["context/Dockerfile"], b"FROM scratch\n# own\n", "the repository's own template is used");
    assert_eq!(event.template_commit, None);
}

#[tokio::test]
async fn the_store_is_refreshed_no_more_often_than_templates_refresh() {
    let harness = start_with_git(|config, git, root| {
        template_repo(root, "templates", &["demo"], "v1");
        config.custom_templates = store(git, &["templates"]);
        config.templates_refresh = Duration::from_secs(3600);
    })
    .await;
    assert_eq!(push_app(&harness, "demo").await.0, 200);
    let first = harness.tars()["api"].0.template_commit.clone().unwrap();
    template_repo(harness.root.path(), "templates", &["demo"], "v2");
    assert_eq!(push_app(&harness, "demo").await.0, 200);
    let commits: Vec<_> = harness
        .gateway
        .requests_to("/function/buildshiprun")
        .iter()
        .map(|r| {
            shared::event::BuildEvent::from_header_value(r.header("x-ofc-event").unwrap().as_bytes())
                .unwrap()
                .template_commit
                .unwrap()
        })
        .collect();
    assert_eq!(commits, vec![first.clone(), first], "within templates_refresh the copy is not looked at again");
}

#[tokio::test]
async fn a_due_refresh_takes_the_new_commit_and_a_failed_one_keeps_the_copy() {
    let harness = start_with_git(|config, git, root| {
        template_repo(root, "templates", &["demo"], "v1");
        config.custom_templates = store(git, &["templates"]);
        config.templates_refresh = Duration::ZERO;
    })
    .await;
    let commit_of_last_build = |harness: &Harness| {
        let requests = harness.gateway.requests_to("/function/buildshiprun");
        let header = requests.last().unwrap().header("x-ofc-event").unwrap().to_owned();
        shared::event::BuildEvent::from_header_value(header.as_bytes()).unwrap().template_commit.unwrap()
    };
    assert_eq!(push_app(&harness, "demo").await.0, 200);
    let (_, second) = template_repo(harness.root.path(), "templates", &["demo"], "v2");
    assert_eq!(push_app(&harness, "demo").await.0, 200);
    assert_eq!(commit_of_last_build(&harness), second, "a due refresh takes the new commit");

    let bare = harness.git.repository_path("octo", "templates");
    std::fs::rename(&bare, bare.with_extension("gone")).unwrap();
    let (status, answer) = push_app(&harness, "demo").await;
    assert_eq!(status, 200, "a failed fetch keeps serving the copy: {answer}");
    assert_eq!(commit_of_last_build(&harness), second);
    assert!(harness.stack_deploy().state == StatusState::Success);
}

#[tokio::test]
async fn a_ref_pins_the_template_repository() {
    let mut pinned = String::new();
    let mut by_sha = String::new();
    let harness = start_with_git(|config, server, root| {
        let (repo, v1) = template_repo(root, "templates", &["demo"], "v1");
        git(repo.work.path(), &["push", "-q", repo.bare.to_str().unwrap(), "HEAD:refs/heads/stable"]);
        git(repo.work.path(), &["tag", "one"]);
        git(repo.work.path(), &["push", "-q", repo.bare.to_str().unwrap(), "refs/tags/one"]);
        template_repo(root, "templates", &["demo", "other"], "v2");
        let (_, sha_of_first) = template_repo(root, "bysha", &["shaped"], "bysha");
        let (_, later) = template_repo(root, "bysha", &["shaped"], "bysha-later");
        assert_ne!(later, sha_of_first);
        pinned = v1;
        by_sha = sha_of_first.clone();
        let url = server.clone_url("octo", "templates");
        let bysha = server.clone_url("octo", "bysha");
        config.custom_templates =
            TemplateRepo::parse_list(&format!("{url}#stable {url}#one,{bysha}#sha-{sha_of_first}")).unwrap();
    })
    .await;
    assert_eq!(push_app(&harness, "demo").await.0, 200);
    let (event, entries) = &harness.tars()["api"];
    assert_eq!(event.template_commit.as_deref(), Some(pinned.as_str()), "the branch named by #ref, not main");
    assert_eq!(entries["context/Dockerfile"], format!("{STORE_DOCKERFILE}# v1\n").as_bytes());
    let (status, answer) = push_app(&harness, "other").await;
    assert_eq!(status, 422, "`other` is only on main: {answer}");
    assert_eq!(push_app(&harness, "demo@one").await.0, 200, "faas-cli's name for a template pulled from url#one");
    let (status, answer) = push_app(&harness, "demo@two").await;
    assert_eq!(status, 422, "no repository is pinned at `two`: {answer}");
    let (status, answer) = push_app(&harness, "shaped").await;
    assert_eq!(status, 200, "{answer}");
    let requests = harness.gateway.requests_to("/function/buildshiprun");
    let header = requests.last().unwrap().header("x-ofc-event").unwrap().to_owned();
    let event = shared::event::BuildEvent::from_header_value(header.as_bytes()).unwrap();
    assert_eq!(event.template_commit.as_deref(), Some(by_sha.as_str()), "#sha-<commit> pins a commit");
}

#[tokio::test]
async fn configuration_templates_are_fine_from_the_operator_s_repositories_only_unless_allowed() {
    let harness = start_with_git(|config, git, root| {
        template_repo(root, "templates", &["demo"], "store");
        template_repo(root, "elsewhere", &["theirs"], "elsewhere");
        config.custom_templates = store(git, &["templates"]);
        config.allow_user_templates = false;
    })
    .await;
    let repo = harness.repo("app");
    let stack = |source: &str, lang: &str| {
        format!(
            "provider: {{name: openfaas}}\nfunctions:\n  api:\n    lang: {lang}\n    handler: ./api\n    image: octo/api\n\
             configuration:\n  templates:\n    - name: {lang}\n      source: {source}\n"
        )
    };
    let operator = harness.git.clone_url("octo", "templates");
    repo.write("stack.yml", &stack(operator.trim_end_matches(".git"), "demo")).write("api/handler.txt", "mine\n");
    let sha = repo.commit("operator's source");
    let (status, answer) = harness.send(&harness.push_event("app", &sha)).await;
    assert_eq!(status, 200, "a source that is the operator's repository is always fine: {answer}");

    repo.write("stack.yml", &stack(&harness.git.clone_url("octo", "elsewhere"), "theirs"));
    let sha = repo.commit("someone else's source");
    let (status, answer) = harness.send(&harness.push_event("app", &sha)).await;
    assert_eq!(status, 422, "{answer}");
    let failure = function_status(&harness, "api");
    assert!(failure.description.contains("not one of the platform's template repositories"), "{}", failure.description);
}

#[tokio::test]
async fn configuration_templates_from_elsewhere_are_fetched_where_allowed() {
    let mut theirs = String::new();
    let harness = start_with_git(|config, git, root| {
        template_repo(root, "templates", &["demo"], "store");
        theirs = template_repo(root, "elsewhere", &["theirs"], "elsewhere").1;
        config.custom_templates = store(git, &["templates"]);
        config.allow_user_templates = true;
    })
    .await;
    let repo = harness.repo("app");
    repo.write(
        "stack.yml",
        &format!(
            "provider: {{name: openfaas}}\nfunctions:\n  api:\n    lang: theirs\n    handler: ./api\n    image: octo/api\n\
             configuration:\n  templates:\n    - name: theirs\n      source: {}\n",
            harness.git.clone_url("octo", "elsewhere")
        ),
    )
    .write("api/handler.txt", "mine\n");
    let sha = repo.commit("their template");
    let (status, answer) = harness.send(&harness.push_event("app", &sha)).await;
    assert_eq!(status, 200, "{answer}");
    let (event, entries) = &harness.tars()["api"];
    assert_eq!(entries["context/Dockerfile"], format!("{STORE_DOCKERFILE}# elsewhere\n").as_bytes());
    assert_eq!(event.template_commit.as_deref(), Some(theirs.as_str()));
}
