//! Order per branch in git-tar: a push older than its branch's newest known commit is not handed on (nothing of it
//! is built) and says so on its statuses; the newest is decided by GitHub's push times when both pushes have one,
//! then by `before`, then by git ancestry (diverged histories with no times: the last delivered), so a force-push
//! back to an older commit still wins.

mod common;

use common::*;
use shared::event::StatusState;
use testkit::git::git;

const STACK: &str =
    "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  web:\n    lang: dockerfile\n    handler: ./web\n    image: octo/web\n";

fn write(repo: &Repo, page: &str) {
    repo.write("stack.yml", STACK).write("web/Dockerfile", &format!("FROM scratch\nLABEL page={page}\n"));
}

/// Sends `after` as a push (`before`, `forced`, `pushed_at` as given) and answers how many tars were handed on in
/// all so far.
async fn push(harness: &Harness, after: &str, before: &str, forced: bool, pushed_at: u64) -> usize {
    let mut event = harness.push_event("fns", after);
    event.order.before = before.to_owned();
    event.order.forced = forced;
    event.order.pushed_at = pushed_at;
    let (status, answer) = harness.send(&event).await;
    assert_eq!(status, 200, "{answer}");
    harness.gateway.requests_to("/function/buildshiprun").len()
}

#[tokio::test]
async fn an_older_commit_delivered_after_a_newer_one_is_not_handed_on() {
    let harness = start().await;
    let repo = harness.repo("fns");
    write(&repo, "1");
    let v1 = repo.commit("v1");
    write(&repo, "2");
    let v2 = repo.commit("v2");
    // No push times: git ancestry decides.
    assert_eq!(push(&harness, &v2, &v1, false, 0).await, 1);
    let collected = harness.gateway.requests_to("/function/garbage-collect").len();
    assert_eq!(push(&harness, &v1, "", false, 0).await, 1, "v1 is not handed on");
    let superseded = format!("superseded by {}, a newer commit of main: not built", &v2[..7]);
    let stack = harness.stack_deploy();
    assert_eq!((stack.state, stack.description.as_str()), (StatusState::Success, superseded.as_str()));
    let reports = harness.statuses();
    let last = reports.last().unwrap();
    assert_eq!(last.event.sha, v1);
    let web = last.statuses.iter().find(|s| s.context == "web").expect("the function's own status");
    assert_eq!((web.state, web.description.as_str()), (StatusState::Success, superseded.as_str()));
    assert_eq!(harness.gateway.requests_to("/function/garbage-collect").len(), collected, "nothing collected");
    // The newest commit delivered again is built again (a redelivery, a re-run).
    assert_eq!(push(&harness, &v2, &v1, false, 0).await, 2);
}

#[tokio::test]
async fn a_force_push_back_to_an_older_commit_is_the_newest() {
    let harness = start().await;
    let repo = harness.repo("fns");
    write(&repo, "1");
    let v1 = repo.commit("v1");
    write(&repo, "2");
    let v2 = repo.commit("v2");
    assert_eq!(push(&harness, &v1, "", false, 0).await, 1);
    assert_eq!(push(&harness, &v2, &v1, false, 0).await, 2);
    // Moved from the head v2 back to v1: the branch's next move, though v1 is in v2's history (the head has no
    // push time to compare with).
    assert_eq!(push(&harness, &v1, &v2, true, 300).await, 3);
    assert_eq!(harness.stack_deploy().description, "deployed web");
    // v2's push delivered again (GitHub's time of it is before the force-push's) is older than the force-push,
    // though it moves the branch from v1 to a descendant of it.
    assert_eq!(push(&harness, &v2, &v1, false, 200).await, 3);
    assert!(harness.stack_deploy().description.starts_with(&format!("superseded by {}", &v1[..7])));
}

#[tokio::test]
async fn between_rewritten_histories_the_later_push_wins() {
    let harness = start().await;
    let repo = harness.repo("fns");
    write(&repo, "1");
    let v1 = repo.commit("v1");
    write(&repo, "2");
    let v2 = repo.commit("v2");
    git(repo.work.path(), &["reset", "-q", "--hard", &v1]);
    write(&repo, "rewritten");
    let w = repo.commit("w: v2 rewritten");
    assert_eq!(push(&harness, &v2, &v1, false, 1000).await, 1);
    // w is not in v2's history nor v2 in w's: GitHub's push times decide.
    assert_eq!(push(&harness, &w, &v1, false, 900).await, 1, "an earlier rewrite is superseded");
    assert_eq!(push(&harness, &w, &v2, true, 1100).await, 2, "a later one is the newest");
    // The head's own commit delivered again is not older than itself: it is built again.
    assert_eq!(push(&harness, &w, &v1, false, 900).await, 3);
    // Diverged again, and no push time to compare (a sender other than GitHub): the push delivered last wins.
    git(repo.work.path(), &["reset", "-q", "--hard", &v1]);
    write(&repo, "again");
    let x = repo.commit("x: rewritten again");
    assert_eq!(push(&harness, &x, &v1, false, 0).await, 4);
    assert_eq!(harness.stack_deploy().description, "deployed web");
}
