//! The newest known commit of each branch, which every replica of git-tar and buildshiprun shares, so that a
//! deployment never replaces one made from a newer commit of the same branch (see `docs/ordering.md`).
//!
//! It lives in the store the platform already has (the build-log folder or bucket), under `_branches/` (no log key
//! can take it: an owner id never starts with `_`). A branch's record is an append-only series of entries
//! `_branches/<owner id>/<repo>/<hex of the branch>/<sequence>`, each written with create-if-absent
//! (`PutMode::Create`, which both the folder and S3 offer, unlike compare-and-swap on an etag, which the folder
//! lacks): the entry with the highest sequence is the head, and of two writers that read the same head only one
//! creates the next entry; the other reads again and decides again. Old entries are pruned after each write.
//!
//! A function's deployment is made under a short claim, `_deploying/<service>`, so that the re-read of the branch's
//! head and the gateway call are one step that no deployment of another commit can come between.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::log_store::{open_objects, LogStoreConfig, LogStoreError};

/// The prefix of every branch record.
const PREFIX: &str = "_branches";
/// The prefix of the deploy claims.
const DEPLOY_PREFIX: &str = "_deploying";
/// Entries kept behind the head, so a reader that listed just before a write still finds the one it listed.
const KEEP: u64 = 4;
/// The longest branch name kept (git allows longer; GitHub refuses refs over 255 bytes).
pub const MAX_BRANCH: usize = 255;
/// The longest repository name (GitHub's limit is 100).
const MAX_REPO: usize = 100;
/// How often a reader whose listed entry was pruned in between lists again.
const MAX_READS: usize = 3;
/// How long a deploy claim holds: far longer than one deployment takes (a few gateway calls with their retries),
/// so only a claim whose holder stopped is taken over.
pub const DEPLOY_CLAIM_LEASE: Duration = Duration::from_secs(180);
/// How often a waiting deployment looks at the claim again.
const CLAIM_POLL: Duration = Duration::from_millis(200);

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BranchHeadError {
    #[error("invalid branch record key: {0}")]
    InvalidKey(String),
    #[error("the branch record store failed: {0}")]
    Backend(#[from] object_store::Error),
    #[error("the branch record store cannot be opened: {0}")]
    Open(#[from] LogStoreError),
    #[error("another deployment of {service} held its claim for longer than {seconds} s")]
    ClaimBusy { service: String, seconds: u64 },
}

/// Which branch a record is for: the owner's account id (not the login, which can be renamed), the repository and
/// the branch (without `refs/heads/`), so that every branch, the default one or a preview's, has its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BranchKey {
    owner_id: u64,
    repo: String,
    branch: String,
}

impl BranchKey {
    /// Checks and builds a key: a known owner id, a repository name that is one path segment, a branch of at most
    /// [`MAX_BRANCH`] bytes (any characters: it is stored hex-encoded).
    pub fn new(owner_id: u64, repo: &str, branch: &str) -> Result<Self, BranchHeadError> {
        let refuse = |why: &str| Err(BranchHeadError::InvalidKey(why.to_owned()));
        if owner_id == 0 {
            return refuse("`owner_id` is 0: the push named no owner account");
        }
        let plain = repo.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if repo.is_empty() || repo.len() > MAX_REPO || repo == "." || repo.contains("..") || !plain {
            return refuse("`repo` is not a repository name");
        }
        if branch.is_empty() || branch.len() > MAX_BRANCH {
            return refuse("`branch` is empty or longer than 255 bytes");
        }
        Ok(Self { owner_id, repo: repo.to_owned(), branch: branch.to_owned() })
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    fn prefix(&self) -> ObjectPath {
        ObjectPath::from(format!("{PREFIX}/{}/{}/{}", self.owner_id, self.repo, hex::encode(&self.branch)))
    }

    fn entry(&self, sequence: u64) -> ObjectPath {
        self.prefix().child(format!("{sequence:020}"))
    }
}

impl fmt::Display for BranchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.owner_id, self.repo, self.branch)
    }
}

/// A branch's newest known commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The commit's SHA (40 hex digits).
    pub sha: String,
    /// When GitHub says the push that made it the head happened (`repository.pushed_at`, Unix seconds; gh-push's
    /// receipt time when the payload has none): what orders a force-push against its own redelivery.
    #[serde(default)]
    pub pushed_at: u64,
}

/// The head as read, with the place the next entry must take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub head: Head,
    sequence: u64,
}

/// A superseded push's status description (state `success`: the user's code did not fail), naming the newer
/// commit of the branch and how far the push got (`not built`, `built, not deployed`…).
pub fn superseded_description(by: &str, branch: &str, what: &str) -> String {
    crate::status::cut_description(&format!("superseded by {}, a newer commit of {branch}: {what}", short_sha(by)))
}

/// The first 7 digits of a SHA, as statuses name a commit.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The branch records and deploy claims, on the store `log_store_path` or `s3_bucket` names.
#[derive(Clone)]
pub struct BranchHeads {
    objects: Arc<dyn ObjectStore>,
    location: String,
}

impl fmt::Debug for BranchHeads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BranchHeads").field("location", &self.location).finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl BranchHeads {
    /// The records kept in the store `config` names; a folder is created if missing.
    pub fn open(config: &LogStoreConfig) -> Result<Self, BranchHeadError> {
        let (objects, location) = open_objects(config)?;
        Ok(Self { objects, location })
    }

    /// The store the environment names, as the build logs': one that cannot be opened stops the start, naming the
    /// setting that chose it.
    pub fn from_env(config: &LogStoreConfig) -> Result<Self, ConfigError> {
        let (objects, location) = open_objects(config).map_err(|error| config.invalid(&error))?;
        Ok(Self { objects, location })
    }

    /// Where the records are, for the start-up log.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The branch's head, or `None` when no push of it was recorded yet.
    pub async fn read(&self, key: &BranchKey) -> Result<Option<Recorded>, BranchHeadError> {
        for _ in 0..MAX_READS {
            let listed: Vec<_> = self.objects.list(Some(&key.prefix())).try_collect().await?;
            let Some(sequence) =
                listed.iter().filter_map(|object| object.location.filename()?.parse::<u64>().ok()).max()
            else {
                return Ok(None);
            };
            let bytes = match self.objects.get(&key.entry(sequence)).await {
                Ok(found) => found.bytes().await?,
                // Pruned between the listing and the read: a newer entry exists.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            // An entry that does not parse (written by hand, damaged) is a head no push can be compared with: it
            // reads as an unknown commit, which the next push replaces.
            let head = serde_json::from_slice(&bytes).unwrap_or(Head { sha: String::new(), pushed_at: 0 });
            return Ok(Some(Recorded { head, sequence }));
        }
        Err(BranchHeadError::Backend(object_store::Error::Generic {
            store: "branch records",
            source: format!("the head of {key} kept moving while it was read").into(),
        }))
    }

    /// Makes `head` the branch's head if the head is still `after` (`None`: no head yet). Answers `false` when
    /// another writer moved it first: the caller reads again and decides again.
    pub async fn advance(
        &self,
        key: &BranchKey,
        after: Option<&Recorded>,
        head: &Head,
    ) -> Result<bool, BranchHeadError> {
        let sequence = after.map_or(0, |recorded| recorded.sequence + 1);
        let body = PutPayload::from(serde_json::to_vec(head).expect("a head serialises"));
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.objects.put_opts(&key.entry(sequence), body, create).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(error) => return Err(error.into()),
        }
        if let Some(pruned) = sequence.checked_sub(KEEP) {
            self.prune(key, pruned).await;
        }
        Ok(true)
    }

    /// Removes the entries at or below `upto` (best effort: a failure leaves more entries, never a wrong head).
    async fn prune(&self, key: &BranchKey, upto: u64) {
        let listed: Vec<_> = match self.objects.list(Some(&key.prefix())).try_collect().await {
            Ok(listed) => listed,
            Err(error) => return tracing::warn!(%key, %error, "listing old branch entries failed"),
        };
        for object in listed {
            if object.location.filename().and_then(|name| name.parse::<u64>().ok()).is_some_and(|s| s <= upto) {
                if let Err(error) = self.objects.delete(&object.location).await {
                    if !matches!(error, object_store::Error::NotFound { .. }) {
                        tracing::warn!(%key, %error, "removing an old branch entry failed");
                    }
                }
            }
        }
    }

    /// The newer commit that superseded `sha` on the branch, or `None` when `sha` is still its head (or no head
    /// is recorded). The head only ever moves to a newer push, and a push's own check made `sha` the head or found
    /// it there, so any other head is newer.
    pub async fn superseded(&self, key: &BranchKey, sha: &str) -> Result<Option<String>, BranchHeadError> {
        Ok(self.read(key).await?.map(|recorded| recorded.head.sha).filter(|head| !head.eq_ignore_ascii_case(sha)))
    }

    /// Claims the deployment of `service` (waiting at most [`DEPLOY_CLAIM_LEASE`] for another holder), so the
    /// holder's check of the branch's head and its gateway call are not interleaved with another commit's. The
    /// claim is released with [`DeployClaim::release`]; one whose holder stopped is taken over after the lease.
    pub async fn claim_deploy(&self, service: &str) -> Result<DeployClaim, BranchHeadError> {
        let plain = service.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if service.is_empty() || service.len() > 253 || service.starts_with('.') || !plain {
            return Err(BranchHeadError::InvalidKey("the service is not a deployed function's name".into()));
        }
        let path = ObjectPath::from(format!("{DEPLOY_PREFIX}/{service}"));
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let started = Instant::now();
        // Bounded by time: one lease and a margin, polled every `CLAIM_POLL`.
        while started.elapsed() < DEPLOY_CLAIM_LEASE + Duration::from_secs(10) {
            let stamp = now_ms().to_string();
            match self.objects.put_opts(&path, PutPayload::from(stamp.clone().into_bytes()), create.clone()).await {
                Ok(_) => return Ok(DeployClaim { objects: self.objects.clone(), path, stamp }),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(error) => return Err(error.into()),
            }
            let held_since = match self.objects.get(&path).await {
                Ok(found) => std::str::from_utf8(&found.bytes().await?).ok().and_then(|t| t.trim().parse::<u64>().ok()),
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            let age = held_since.map_or(Duration::MAX, |at| Duration::from_millis(now_ms().saturating_sub(at)));
            if age > DEPLOY_CLAIM_LEASE {
                // Its holder stopped (or the claim is unreadable): taken over.
                match self.objects.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => continue,
                    Err(error) => return Err(error.into()),
                }
            }
            tokio::time::sleep(CLAIM_POLL).await;
        }
        Err(BranchHeadError::ClaimBusy { service: service.to_owned(), seconds: DEPLOY_CLAIM_LEASE.as_secs() })
    }
}

/// A held deploy claim.
#[derive(Debug)]
#[must_use = "a claim is released after the deployment"]
pub struct DeployClaim {
    objects: Arc<dyn ObjectStore>,
    path: ObjectPath,
    /// What this holder wrote, so that it does not remove a claim another holder took over.
    stamp: String,
}

impl DeployClaim {
    /// Ends the claim, unless another holder took it over (this one outlived its lease).
    pub async fn release(self) {
        let ours = match self.objects.get(&self.path).await {
            Ok(found) => found.bytes().await.is_ok_and(|bytes| bytes.as_ref() == self.stamp.as_bytes()),
            Err(_) => false,
        };
        if ours {
            if let Err(error) = self.objects.delete(&self.path).await {
                tracing::warn!(claim = %self.path, %error, "releasing a deploy claim failed; it ends with its lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads() -> (tempfile::TempDir, BranchHeads) {
        let dir = tempfile::tempdir().unwrap();
        let heads = BranchHeads::open(&LogStoreConfig::folder(dir.path())).unwrap();
        (dir, heads)
    }

    fn head(sha: char, pushed_at: u64) -> Head {
        Head { sha: sha.to_string().repeat(40), pushed_at }
    }

    #[tokio::test]
    async fn a_head_advances_only_from_the_one_it_was_read_as() {
        let (_dir, heads) = heads();
        let key = BranchKey::new(7, "fns", "main").unwrap();
        assert_eq!(heads.read(&key).await.unwrap(), None);
        assert!(heads.advance(&key, None, &head('a', 1)).await.unwrap());
        assert!(!heads.advance(&key, None, &head('b', 2)).await.unwrap(), "someone else wrote first");
        let first = heads.read(&key).await.unwrap().unwrap();
        assert_eq!(first.head, head('a', 1));
        assert!(heads.advance(&key, Some(&first), &head('b', 2)).await.unwrap());
        assert!(!heads.advance(&key, Some(&first), &head('c', 3)).await.unwrap(), "read before b was written");
        assert_eq!(heads.superseded(&key, &"a".repeat(40)).await.unwrap(), Some("b".repeat(40)));
        assert_eq!(heads.superseded(&key, &"b".repeat(40)).await.unwrap(), None);
        let other = BranchKey::new(7, "fns", "feature/x").unwrap();
        assert_eq!(heads.read(&other).await.unwrap(), None, "each branch has its own record");
    }

    #[tokio::test]
    async fn concurrent_advances_from_one_head_have_one_winner_and_old_entries_are_pruned() {
        let (dir, heads) = heads();
        let key = BranchKey::new(7, "fns", "main").unwrap();
        for n in 0..10 {
            let now = heads.read(&key).await.unwrap();
            let writers = (0..8).map(|w| {
                let (heads, key, now) = (heads.clone(), key.clone(), now.clone());
                tokio::spawn(async move { heads.advance(&key, now.as_ref(), &head('a', n * 10 + w)).await.unwrap() })
            });
            let mut won = 0;
            for writer in writers {
                won += usize::from(writer.await.unwrap());
            }
            assert_eq!(won, 1);
        }
        let folder = dir.path().join(format!("_branches/7/fns/{}", hex::encode("main")));
        let left = std::fs::read_dir(folder).unwrap().count();
        assert!(left <= usize::try_from(KEEP).unwrap() + 1, "{left} entries left");
    }

    #[tokio::test]
    async fn a_deploy_claim_is_held_by_one_at_a_time() {
        let (_dir, heads) = heads();
        let claim = heads.claim_deploy("octo-fn-4").await.unwrap();
        let waiting = {
            let heads = heads.clone();
            tokio::spawn(async move { heads.claim_deploy("octo-fn-4").await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "the second waits for the first");
        claim.release().await;
        let second = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        second.release().await;
        assert!(heads.claim_deploy("../x").await.is_err());
    }

    #[test]
    fn keys_refuse_what_is_not_a_branch_of_a_known_owner() {
        assert!(BranchKey::new(0, "fns", "main").is_err());
        assert!(BranchKey::new(1, "../x", "main").is_err());
        assert!(BranchKey::new(1, "fns", "").is_err());
        assert!(BranchKey::new(1, "fns", &"b".repeat(MAX_BRANCH + 1)).is_err());
        let key = BranchKey::new(1, "fns", "feature/../../x").unwrap();
        assert!(!key.prefix().as_ref().contains(".."), "the branch is one hex segment");
    }
}
