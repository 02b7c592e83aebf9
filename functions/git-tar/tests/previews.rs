//! git-tar with a preview's push: real git on loopback, a recording gateway double for buildshiprun, github-status
//! and garbage-collect. The preview's names and images, its own collection, the pull request's comment, and a
//! repository that does not ask for previews.

mod common;

use common::*;
use shared::event::{GarbageCollectRequest, PreviewCommentReport, PreviewOf, PushEvent};
use shared::naming::preview_tag;
use testkit::Reply;

const STACK: &str = "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  hello:\n    lang: dockerfile\n    \
                     handler: ./hello\n    image: octo/hello\n";

fn repo(harness: &Harness, asks: bool) -> String {
    let stack = if asks { format!("{STACK}configuration:\n  previews: true\n") } else { STACK.to_owned() };
    let repo = harness.repo("fns");
    repo.write("stack.yml", &stack).write("hello/Dockerfile", "FROM scratch\n");
    repo.commit("one function")
}

fn preview_push(harness: &Harness, sha: &str, of: PreviewOf) -> PushEvent {
    let mut push = harness.push_event("fns", sha);
    push.git_ref = "refs/heads/feature/x".into();
    push.preview = Some(of);
    push
}

#[tokio::test]
async fn a_pull_request_s_preview_is_built_under_its_own_names_and_commented() {
    let harness = start().await;
    let tag = preview_tag("fns", &PreviewOf::PullRequest(12));
    let url = format!("http://octo--{tag}.localhost/hello");
    harness.gateway.reply(
        "POST",
        "/function/buildshiprun",
        vec![Reply::status(200).json(&serde_json::json!({"deployed": "created", "url": url}))],
    );
    let sha = repo(&harness, true);
    let (status, answer) = harness.send(&preview_push(&harness, &sha, PreviewOf::PullRequest(12))).await;
    assert_eq!(status, 200, "{answer}");
    let tars = harness.tars();
    let (event, _) = &tars["hello"];
    assert_eq!(event.service, format!("octo-hello-4-{tag}"));
    assert_eq!(event.image, format!("127.0.0.1:5000/1/fns/hello__{tag}:{sha}"));
    assert_eq!(event.preview, Some(PreviewOf::PullRequest(12)));
    let collected: Vec<GarbageCollectRequest> =
        harness.gateway.requests_to("/function/garbage-collect").iter().map(testkit::RecordedRequest::json).collect();
    assert_eq!(collected.len(), 1);
    assert_eq!((collected[0].preview.as_deref(), collected[0].with_previews), (Some(tag.as_str()), false));
    assert_eq!(collected[0].functions, vec![format!("octo-hello-4-{tag}")]);
    let comments: Vec<PreviewCommentReport> = harness
        .gateway
        .requests_to("/async-function/github-status/preview-comment")
        .iter()
        .map(testkit::RecordedRequest::json)
        .collect();
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].pull_request, 12);
    assert_eq!(comments[0].functions[0].url.as_deref(), Some(url.as_str()));
    assert!(comments[0].functions[0].deployed && !comments[0].removed);
}

#[tokio::test]
async fn a_branch_preview_writes_no_comment_and_a_repository_that_does_not_ask_builds_nothing() {
    let harness = start().await;
    let sha = repo(&harness, true);
    let (status, _) = harness.send(&preview_push(&harness, &sha, PreviewOf::Branch("feature/x".into()))).await;
    assert_eq!(status, 200);
    let tag = preview_tag("fns", &PreviewOf::Branch("feature/x".into()));
    assert_eq!(harness.tars()["hello"].0.service, format!("octo-hello-4-{tag}"));
    assert!(harness.gateway.requests_to("/async-function/github-status/preview-comment").is_empty());

    let harness = start().await;
    let sha = repo(&harness, false);
    let (status, answer) = harness.send(&preview_push(&harness, &sha, PreviewOf::PullRequest(3))).await;
    assert_eq!(status, 200, "{answer}");
    assert!(harness.tars().is_empty(), "nothing is built");
    assert!(harness.gateway.requests_to("/function/garbage-collect").is_empty(), "nothing is collected");
    assert!(harness.stack_deploy().description.contains("previews: true"), "{:?}", harness.stack_deploy());
    assert!(harness.gateway.requests_to("/async-function/github-status/preview-comment").is_empty());
}

#[tokio::test]
async fn a_pull_request_push_superseded_at_deploy_leaves_the_comment_to_the_newer_push() {
    let harness = start().await;
    let newer = "b".repeat(40);
    harness.gateway.reply(
        "POST",
        "/function/buildshiprun",
        vec![Reply::status(200).json(&serde_json::json!({"deployed": "superseded", "superseded_by": newer}))],
    );
    let sha = repo(&harness, true);
    let (status, answer) = harness.send(&preview_push(&harness, &sha, PreviewOf::PullRequest(12))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(harness.tars().len(), 1, "handed on, then superseded at deploy");
    assert!(
        harness.gateway.requests_to("/async-function/github-status/preview-comment").is_empty(),
        "the newer push writes the comment"
    );
    assert!(harness.stack_deploy().description.contains("superseded by bbbbbbb"), "{:?}", harness.stack_deploy());
}
