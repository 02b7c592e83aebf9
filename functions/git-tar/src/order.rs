//! Whether a push is the newest of its branch, decided once the commit is cloned and before anything is built
//! (`docs/ordering.md` says why in full). The branch's head is kept in `shared::branch_head`; a push newer than the
//! head becomes the head, an older one is superseded and nothing of it is built.
//!
//! "Newer", in order of what decides:
//! 1. the same commit as the head: not older (a redelivery, a re-run);
//! 2. GitHub's time of both pushes (`repository.pushed_at`), when both are known and differ: the later one;
//! 3. the push moved the branch from the head (`before` is the head): the branch's next move, a force-push included;
//! 4. git ancestry: newer when the head is in the pushed commit's history, older when the pushed commit is in the
//!    head's; between diverged histories with no times to tell them apart, the push delivered last.

use std::cmp::Ordering;
use std::path::Path;
use std::time::Duration;

use shared::branch_head::{BranchHeads, BranchKey, Head, Recorded};
use shared::config::Secret;
use shared::event::PushEvent;

use crate::clone;
use crate::error::GitTarError;

/// How often a push whose head another push moved meanwhile reads it again before giving up.
const MAX_TRIES: usize = 8;

/// What a push is, against its branch's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The newest known commit of its branch (now recorded as its head): it is built and deployed.
    Newest,
    /// A newer commit of the branch is known: nothing of this push is built.
    Superseded { by: String },
}

/// Where a push's commit is, for the checks that need git.
pub struct Checkout<'a> {
    pub repo: &'a Path,
    pub token: Option<&'a Secret>,
    pub timeout: Duration,
}

/// Decides `push` against its branch's head and records it as the head when it is newer. A push to no branch, or
/// of an unknown owner (id 0), is not ordered (no record could be keyed) and answers `Newest`.
pub async fn decide(heads: &BranchHeads, push: &PushEvent, checkout: &Checkout<'_>) -> Result<Verdict, GitTarError> {
    let Some(branch) = push.git_ref.strip_prefix("refs/heads/") else { return Ok(Verdict::Newest) };
    if push.repository.owner.id == 0 {
        tracing::warn!(repo = %push.repository.full_name, "the push names no owner id: it is not ordered");
        return Ok(Verdict::Newest);
    }
    let key = BranchKey::new(push.repository.owner.id, &push.repository.name, branch)
        .map_err(|e| GitTarError::Push(e.to_string()))?;
    let candidate = Head { sha: push.after.to_ascii_lowercase(), pushed_at: push.order.pushed_at };
    for _ in 0..MAX_TRIES {
        let recorded = heads.read(&key).await.map_err(|e| ordering_failed(&e))?;
        if let Some(Recorded { head, .. }) = &recorded {
            match compare(head, push, checkout).await? {
                Ordering::Equal => return Ok(Verdict::Newest),
                Ordering::Less => return Ok(Verdict::Superseded { by: head.sha.clone() }),
                Ordering::Greater => {}
            }
        }
        if heads.advance(&key, recorded.as_ref(), &candidate).await.map_err(|e| ordering_failed(&e))? {
            tracing::info!(branch = %key, sha = %candidate.sha, "the branch's newest commit");
            return Ok(Verdict::Newest);
        }
    }
    Err(GitTarError::Unavailable(format!(
        "the newest commit of {branch} kept changing while this push was compared with it; push again"
    )))
}

fn ordering_failed(error: &shared::branch_head::BranchHeadError) -> GitTarError {
    GitTarError::Unavailable(format!("the order of pushes could not be checked: {error}"))
}

/// `push` against the recorded `head`: `Greater` when the push is newer, `Equal` for the same commit.
async fn compare(head: &Head, push: &PushEvent, checkout: &Checkout<'_>) -> Result<Ordering, GitTarError> {
    // An unreadable head is replaced by any push.
    if head.sha.is_empty() {
        return Ok(Ordering::Greater);
    }
    if head.sha.eq_ignore_ascii_case(&push.after) {
        return Ok(Ordering::Equal);
    }
    let pushed_at = push.order.pushed_at;
    if pushed_at != 0 && head.pushed_at != 0 && pushed_at != head.pushed_at {
        return Ok(pushed_at.cmp(&head.pushed_at));
    }
    if push.order.before.eq_ignore_ascii_case(&head.sha) {
        return Ok(Ordering::Greater);
    }
    if is_ancestor(checkout, push, &head.sha, &push.after).await? {
        return Ok(Ordering::Greater);
    }
    if is_ancestor(checkout, push, &push.after, &head.sha).await? {
        return Ok(Ordering::Less);
    }
    // Diverged histories (a force-push) with no push times to tell them apart: the push delivered last wins.
    Ok(Ordering::Greater)
}

/// Whether `older` is in the history of `newer`, asked of the push's clone.
async fn is_ancestor(checkout: &Checkout<'_>, push: &PushEvent, older: &str, newer: &str) -> Result<bool, GitTarError> {
    clone::is_ancestor(checkout.repo, &push.repository.clone_url, checkout.token, older, newer, checkout.timeout)
        .await
        .map_err(|e| GitTarError::Push(format!("the push could not be compared with its branch's newest commit: {e}")))
}
