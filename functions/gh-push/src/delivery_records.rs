//! Delivery records every replica of gh-push shares, so that a webhook sent to two replicas, or redelivered after a
//! restart, is queued once. They live in the store the platform already has (the build-log folder or bucket), under
//! `_deliveries/` (no log key can take it: an owner never starts with `_`), and a claim is a create-if-absent write
//! (`PutMode::Create`), which only one writer can win on either backend.
//!
//! A record says `claimed <ms>` while its replica queues the build, then `queued <ms>`; a failed queueing deletes
//! it, so a redelivery can try again. A claim older than [`CLAIM_TIMEOUT`] (its replica stopped mid-way) and a
//! record older than `delivery_ttl` are taken over. Records are swept after `delivery_ttl`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use shared::config::ConfigError;
use shared::log_store::{open_objects, LogStoreConfig, LogStoreError};

/// The prefix of every record.
const PREFIX: &str = "_deliveries";
/// How long a claim holds without being confirmed: far longer than queueing takes (a status and one gateway
/// call, each within gh-push's own 10 s `exec_timeout`).
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(120);
/// A create that keeps meeting a record it may take over gives up after this many tries (another replica is
/// taking it over at the same time), and counts the delivery as claimed elsewhere.
const MAX_TRIES: usize = 3;
/// The longest delivery id kept as a record's name (GitHub's are 36-character GUIDs).
pub const MAX_DELIVERY_ID: usize = 128;

/// What the store knows of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// This replica created the claim: it queues the delivery, then confirms or releases it.
    Claimed,
    /// Another replica (or this one before a restart) queued it.
    Queued,
    /// Another replica is queueing it right now.
    InFlight,
}

/// The shared records, on the store `log_store_path` or `s3_bucket` names.
#[derive(Clone)]
pub struct DeliveryRecords {
    objects: Arc<dyn ObjectStore>,
    location: String,
}

impl fmt::Debug for DeliveryRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryRecords").field("location", &self.location).finish_non_exhaustive()
    }
}

/// Whether `id` can name a record: letters, digits, `-`, `_` and `.` (not first), at most [`MAX_DELIVERY_ID`].
pub fn is_delivery_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DELIVERY_ID
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A record's state and when it was written, or `None` for one that does not parse (it is taken over).
fn parse(bytes: &[u8]) -> Option<(bool, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (state, at) = text.trim().split_once(' ')?;
    let queued = match state {
        "queued" => true,
        "claimed" => false,
        _ => return None,
    };
    Some((queued, at.parse().ok()?))
}

impl DeliveryRecords {
    /// The records kept in the store `config` names; a folder is created if missing.
    pub fn open(config: &LogStoreConfig) -> Result<Self, LogStoreError> {
        let (objects, location) = open_objects(config)?;
        Ok(Self { objects, location })
    }

    /// The store the environment names, as the build logs' (`log_store_path`, or `s3_bucket` and its settings):
    /// one that cannot be opened stops the start, naming the setting that chose it.
    pub fn from_env(config: &LogStoreConfig) -> Result<Self, ConfigError> {
        Self::open(config).map_err(|error| ConfigError::Invalid {
            name: match config.backend {
                shared::log_store::LogBackend::S3(_) => "s3_bucket".into(),
                shared::log_store::LogBackend::Folder(_) => "log_store_path".into(),
            },
            reason: error.to_string(),
        })
    }

    /// Where the records are, for the start-up log.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn object(id: &str) -> ObjectPath {
        debug_assert!(is_delivery_id(id));
        ObjectPath::from(format!("{PREFIX}/{id}"))
    }

    /// Claims delivery `id` (checked with [`is_delivery_id`]) for this replica unless a live record of it
    /// exists; `ttl` is how long a queued delivery is remembered.
    pub async fn claim(&self, id: &str, ttl: Duration) -> Result<Recorded, object_store::Error> {
        let path = Self::object(id);
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        for _ in 0..MAX_TRIES {
            let claim = PutPayload::from(format!("claimed {}", now_ms()).into_bytes());
            match self.objects.put_opts(&path, claim, create.clone()).await {
                Ok(_) => return Ok(Recorded::Claimed),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(error) => return Err(error),
            }
            let bytes = match self.objects.get(&path).await {
                Ok(found) => found.bytes().await?,
                // Released or swept in between: create it again.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error),
            };
            let age = |at: u64| Duration::from_millis(now_ms().saturating_sub(at));
            match parse(&bytes) {
                Some((true, at)) if age(at) < ttl => return Ok(Recorded::Queued),
                Some((false, at)) if age(at) < CLAIM_TIMEOUT => return Ok(Recorded::InFlight),
                // Expired, abandoned or unreadable: taken over.
                _ => match self.objects.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(error),
                },
            }
        }
        Ok(Recorded::InFlight)
    }

    /// The claimed delivery was queued: its record now holds for `delivery_ttl`.
    pub async fn confirm(&self, id: &str) -> Result<(), object_store::Error> {
        let queued = PutPayload::from(format!("queued {}", now_ms()).into_bytes());
        self.objects.put(&Self::object(id), queued).await.map(drop)
    }

    /// Queueing the claimed delivery failed: its record goes, so a redelivery can try again.
    pub async fn release(&self, id: &str) -> Result<(), object_store::Error> {
        match self.objects.delete(&Self::object(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Removes records written more than `ttl` ago (and no sooner than [`CLAIM_TIMEOUT`]); answers how many.
    /// Every replica runs it now and then; a record another replica removed first is not an error.
    pub async fn sweep(&self, ttl: Duration) -> Result<usize, object_store::Error> {
        let keep = chrono::Duration::from_std(ttl.max(CLAIM_TIMEOUT)).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now() - keep;
        let prefix = ObjectPath::from(PREFIX);
        let listed: Vec<_> = self.objects.list(Some(&prefix)).try_collect().await?;
        let mut removed = 0;
        for record in listed.into_iter().filter(|record| record.last_modified < cutoff) {
            match self.objects.delete(&record.location).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> (tempfile::TempDir, DeliveryRecords) {
        let dir = tempfile::tempdir().unwrap();
        let records = DeliveryRecords::open(&LogStoreConfig::folder(dir.path())).unwrap();
        (dir, records)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn one_claim_wins_and_the_others_see_it_in_flight_then_queued() {
        let (_dir, records) = records();
        let other = records.clone();
        assert_eq!(records.claim("d-1", HOUR).await.unwrap(), Recorded::Claimed);
        assert_eq!(other.claim("d-1", HOUR).await.unwrap(), Recorded::InFlight);
        records.confirm("d-1").await.unwrap();
        assert_eq!(other.claim("d-1", HOUR).await.unwrap(), Recorded::Queued);
    }

    #[tokio::test]
    async fn a_released_claim_can_be_claimed_again() {
        let (_dir, records) = records();
        assert_eq!(records.claim("d-2", HOUR).await.unwrap(), Recorded::Claimed);
        records.release("d-2").await.unwrap();
        assert_eq!(records.claim("d-2", HOUR).await.unwrap(), Recorded::Claimed);
    }

    #[tokio::test]
    async fn concurrent_claims_of_one_delivery_have_one_winner() {
        let (_dir, records) = records();
        let claims = (0..16).map(|_| {
            let records = records.clone();
            tokio::spawn(async move { records.claim("d-3", HOUR).await.unwrap() })
        });
        let mut won = 0;
        for claim in claims {
            if claim.await.unwrap() == Recorded::Claimed {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn an_expired_record_is_taken_over_and_swept() {
        let (dir, records) = records();
        assert_eq!(records.claim("d-4", HOUR).await.unwrap(), Recorded::Claimed);
        records.confirm("d-4").await.unwrap();
        assert_eq!(records.claim("d-4", Duration::ZERO).await.unwrap(), Recorded::Claimed, "past its ttl");
        // An unreadable record does not block a delivery for ever.
        std::fs::write(dir.path().join("_deliveries/d-5"), "garbage").unwrap();
        assert_eq!(records.claim("d-5", HOUR).await.unwrap(), Recorded::Claimed);
        assert_eq!(records.sweep(HOUR).await.unwrap(), 0, "nothing is old enough");
        assert_eq!(records.claim("d-5", HOUR).await.unwrap(), Recorded::InFlight);
    }

    #[test]
    fn only_plain_ids_name_records() {
        assert!(is_delivery_id("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        for bad in ["", ".", "..", "../x", "a/b", "a b", "ü", &"x".repeat(MAX_DELIVERY_ID + 1)] {
            assert!(!is_delivery_id(bad), "{bad}");
        }
    }
}
