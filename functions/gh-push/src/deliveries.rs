//! Remembers the GitHub delivery ids this replica queued, so that a redelivery to it is answered without a store
//! read; whether a delivery is new is decided by the records all replicas share ([`crate::delivery_records`]).
//!
//! The log is bounded twice: by count ([`MAX_REMEMBERED`]) and by the bytes it holds (`delivery_log_max_bytes`), so
//! that a burst of webhooks cannot leave gh-push tens of MiB larger for the rest of `delivery_ttl`. Its tables are
//! shrunk when they drain ([`DeliveryLog::tidy`]), so memory a burst took comes back once its ids expire.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many confirmed ids are kept; past it, the oldest are forgotten first.
const MAX_REMEMBERED: usize = 100_000;

/// The default byte bound: 20,000 to 30,000 GitHub delivery ids (a GUID costs 130 to 200 B here, with the tables'
/// spare room), i.e. 5 to 8 webhooks a second sustained over the default hour's `delivery_ttl`, in less memory
/// than gh-push's whole idle footprint. A redelivery comes from GitHub's log, by hand or by a retry job, within
/// minutes to hours; an installation busier than this raises the bound or lowers `delivery_ttl`.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 20;

/// Tables are not shrunk below this many entries: small tables cost nothing and would only be regrown.
const MIN_TABLE: usize = 64;

/// One slot of `seen`, and hashbrown's control byte for it.
const MAP_SLOT: usize = size_of::<(Arc<str>, Option<Instant>)>() + 1;
/// One slot of `order`.
const ORDER_SLOT: usize = size_of::<(Arc<str>, Instant)>();
/// The heap block of an `Arc<str>` beyond the id's bytes: its two reference counts.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Delivery ids and when they were queued, or `None` while being queued right now.
#[derive(Debug)]
pub struct DeliveryLog {
    ttl: Duration,
    max_bytes: usize,
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    /// Keys share their allocation with `order` (`Arc<str>`), so an id is stored once.
    seen: HashMap<Arc<str>, Option<Instant>>,
    /// Confirmations in the order they happened, so expiry and the bounds cost O(1) per delivery, never a scan.
    /// An entry whose time no longer matches `seen` (released, or confirmed again) is skipped when it comes up.
    order: VecDeque<(Arc<str>, Instant)>,
    /// Heap bytes of the ids `order` holds (a re-confirmed id is counted twice: the bound errs on the safe side).
    id_bytes: usize,
    /// The bytes of `seen`'s table: the largest its `capacity()` has shown since it was last shrunk, since removals
    /// leave tombstones that lower `capacity()` without giving any bucket back.
    map_reserved: usize,
}

/// The heap block an id takes, rounded up to the allocator's 8-byte granule.
fn id_cost(id: &str) -> usize {
    (ARC_HEADER + id.len()).next_multiple_of(8)
}

/// Bytes hashbrown allocates for `capacity` entries: buckets are a power of two, at most 7/8 full.
fn map_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets =
        if capacity < 8 { (capacity + 1).next_power_of_two() } else { (capacity * 8 / 7).next_power_of_two() };
    buckets * MAP_SLOT + 16
}

impl Remembered {
    /// What the log holds on the heap: both tables at their capacity, and the ids.
    fn footprint(&self) -> usize {
        self.map_reserved.max(map_bytes(self.seen.capacity())) + self.order.capacity() * ORDER_SLOT + self.id_bytes
    }

    /// Inserts into `seen`, keeping `map_reserved` up to date.
    fn insert(&mut self, id: Arc<str>, at: Option<Instant>) {
        self.seen.insert(id, at);
        self.map_reserved = self.map_reserved.max(map_bytes(self.seen.capacity()));
    }

    /// Forgets the oldest entry of `order` (and its id, if that entry is the id's latest confirmation).
    fn forget_oldest(&mut self) -> bool {
        let Some((id, at)) = self.order.pop_front() else { return false };
        self.id_bytes -= id_cost(&id);
        if self.seen.get(&id).copied().flatten() == Some(at) {
            self.seen.remove(&id);
        }
        true
    }

    /// Forgets confirmations older than `ttl`, then the oldest ones past [`MAX_REMEMBERED`] or `max_bytes`.
    fn expire(&mut self, now: Instant, ttl: Duration, max_bytes: usize) {
        while let Some((id, at)) = self.order.front() {
            let current = self.seen.get(id).copied().flatten() == Some(*at);
            let expired = now.duration_since(*at) >= ttl;
            let within = self.order.len() <= MAX_REMEMBERED && self.footprint() <= max_bytes;
            if current && !expired && within {
                break;
            }
            self.forget_oldest();
        }
    }

    /// Makes room for one more entry in `seen` without growing it past `max_bytes`: when the table is full and
    /// doubling it would not fit, the oldest ids are forgotten instead. Ids being queued are never forgotten, so
    /// the table still grows if every entry is one (bounded by the connections, not by the webhooks).
    fn room_in_seen(&mut self, max_bytes: usize) {
        while self.seen.len() >= self.seen.capacity() && self.seen.capacity() > 0 {
            let grown = self.footprint() - self.order.capacity() * ORDER_SLOT - self.id_bytes;
            if self.footprint() + grown <= max_bytes || !self.forget_oldest() {
                break;
            }
        }
    }

    /// Like [`Self::room_in_seen`], for `order`.
    fn room_in_order(&mut self, max_bytes: usize) {
        if self.order.len() >= self.order.capacity() && self.order.capacity() > 0 {
            let grown = self.order.capacity() * ORDER_SLOT;
            if self.footprint() + grown > max_bytes {
                self.forget_oldest();
            }
        }
    }

    /// Gives back table capacity that expiry left unused: a table more than four times larger than its entries is
    /// shrunk to twice them, so that a burst's tables do not outlive its ids, and a steady load does not reallocate.
    fn shrink(&mut self) {
        let needed = self.seen.len().max(MIN_TABLE);
        if self.seen.capacity() > 4 * needed || self.map_reserved > map_bytes(4 * needed) {
            self.seen.shrink_to(2 * needed);
            self.map_reserved = map_bytes(self.seen.capacity());
        }
        let needed = self.order.len().max(MIN_TABLE);
        if self.order.capacity() > 4 * needed {
            self.order.shrink_to(2 * needed);
        }
    }
}

/// Whether a delivery may go ahead.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time: the caller queues it, then calls `confirm` or `release`.
    New,
    /// Already queued (or being queued by a concurrent request).
    Seen,
}

impl DeliveryLog {
    /// Remembers ids for `ttl`, in at most `max_bytes` of heap (see [`DEFAULT_MAX_BYTES`]).
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        Self { ttl, max_bytes, inner: Mutex::new(Remembered::default()) }
    }

    /// Claims `id` for queueing; a concurrent duplicate sees `Seen`.
    pub fn claim(&self, id: &str) -> Claim {
        let mut inner = self.inner.lock().expect("delivery log lock");
        let now = Instant::now();
        inner.expire(now, self.ttl, self.max_bytes);
        match inner.seen.get_mut(id) {
            Some(None) => return Claim::Seen,
            Some(Some(at)) if now.duration_since(*at) < self.ttl => return Claim::Seen,
            Some(slot) => {
                *slot = None;
                return Claim::New;
            }
            None => {}
        }
        inner.room_in_seen(self.max_bytes);
        inner.insert(Arc::from(id), None);
        Claim::New
    }

    /// The delivery was queued: remember it for `ttl`.
    pub fn confirm(&self, id: &str) {
        let mut inner = self.inner.lock().expect("delivery log lock");
        let now = Instant::now();
        inner.room_in_order(self.max_bytes);
        let key = inner.seen.get_key_value(id).map_or_else(|| Arc::from(id), |(key, _)| key.clone());
        inner.insert(key.clone(), Some(now));
        inner.id_bytes += id_cost(&key);
        inner.order.push_back((key, now));
        inner.expire(now, self.ttl, self.max_bytes);
    }

    /// Queueing failed: forget the claim so a redelivery can try again.
    pub fn release(&self, id: &str) {
        self.inner.lock().expect("delivery log lock").seen.remove(id);
    }

    /// Forgets what expired and gives back the tables' unused capacity. Run periodically (gh-push does every
    /// second), so that memory comes back while no webhook arrives to expire ids on its way.
    pub fn tidy(&self) {
        let mut inner = self.inner.lock().expect("delivery log lock");
        inner.expire(Instant::now(), self.ttl, self.max_bytes);
        inner.shrink();
    }

    /// How many ids are remembered (confirmed or being queued).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("delivery log lock").seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The heap bytes the log holds now (tables at their capacity, and the ids).
    pub fn footprint(&self) -> usize {
        self.inner.lock().expect("delivery log lock").footprint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ttl: Duration) -> DeliveryLog {
        DeliveryLog::new(ttl, DEFAULT_MAX_BYTES)
    }

    /// Claims and confirms `count` GUID-long ids named after `n`.
    fn deliver(log: &DeliveryLog, count: usize) {
        for n in 0..count {
            let id = format!("{n:08}-0000-4000-8000-000000000000");
            assert_eq!(log.claim(&id), Claim::New);
            log.confirm(&id);
        }
    }

    #[test]
    fn a_confirmed_delivery_is_seen_until_it_expires() {
        let log = log(Duration::from_millis(50));
        assert_eq!(log.claim("a"), Claim::New);
        assert_eq!(log.claim("a"), Claim::Seen, "in flight");
        log.confirm("a");
        assert_eq!(log.claim("a"), Claim::Seen);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(log.claim("a"), Claim::New);
    }

    #[test]
    fn a_released_delivery_can_be_claimed_again() {
        let log = log(Duration::from_secs(3600));
        assert_eq!(log.claim("b"), Claim::New);
        log.release("b");
        assert_eq!(log.claim("b"), Claim::New);
    }

    #[test]
    fn expired_deliveries_are_forgotten() {
        let log = log(Duration::from_millis(20));
        for id in ["a", "b", "c"] {
            assert_eq!(log.claim(id), Claim::New);
            log.confirm(id);
        }
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(log.claim("d"), Claim::New);
        assert_eq!(log.len(), 1, "only the claim under way is left");
    }

    #[test]
    fn past_the_bound_the_oldest_are_forgotten_first_and_the_newest_kept() {
        let log = DeliveryLog::new(Duration::from_secs(3600), u64::MAX);
        for n in 0..MAX_REMEMBERED + 10 {
            let id = format!("d{n}");
            assert_eq!(log.claim(&id), Claim::New);
            log.confirm(&id);
        }
        assert_eq!(log.claim("one more"), Claim::New);
        assert!(log.len() <= MAX_REMEMBERED + 1, "{} remembered", log.len());
        assert_eq!(log.claim("d0"), Claim::New, "the oldest was forgotten");
        let newest = format!("d{}", MAX_REMEMBERED + 9);
        assert_eq!(log.claim(&newest), Claim::Seen, "the newest is still known");
    }

    #[test]
    fn the_byte_bound_holds_and_keeps_the_newest() {
        let max_bytes = 256 << 10;
        let log = DeliveryLog::new(Duration::from_secs(3600), max_bytes);
        for n in 0..20_000 {
            let id = format!("{n:08}-0000-4000-8000-000000000000");
            assert_eq!(log.claim(&id), Claim::New);
            log.confirm(&id);
            assert!(log.footprint() <= max_bytes as usize, "{} B after {n} ids", log.footprint());
        }
        assert!(log.len() > 1000, "the bound is used, not emptied: {} ids", log.len());
        assert_eq!(log.claim("00019999-0000-4000-8000-000000000000"), Claim::Seen, "the newest is known");
        assert_eq!(log.claim("00000000-0000-4000-8000-000000000000"), Claim::New, "the oldest was forgotten");
    }

    #[test]
    fn expired_ids_give_their_capacity_back() {
        let ttl = Duration::from_millis(500);
        let log = DeliveryLog::new(ttl, u64::MAX);
        let started = Instant::now();
        deliver(&log, 20_000);
        let full = log.footprint();
        assert!(started.elapsed() < ttl, "the ids were all delivered within their ttl");
        assert!(full > 1 << 20, "20,000 ids take {full} B");
        std::thread::sleep(ttl);
        log.tidy();
        assert!(log.is_empty());
        assert!(log.footprint() < 16 << 10, "{} B left of {full} B", log.footprint());
    }

    #[test]
    fn a_steady_log_is_not_shrunk() {
        let log = DeliveryLog::new(Duration::from_secs(3600), u64::MAX);
        deliver(&log, 10_000);
        let before = log.footprint();
        log.tidy();
        assert_eq!(log.footprint(), before, "nothing expired, nothing to give back");
    }

    #[test]
    fn a_delivery_confirmed_twice_is_kept_for_its_latest_confirmation() {
        let log = log(Duration::from_millis(40));
        assert_eq!(log.claim("a"), Claim::New);
        log.confirm("a");
        std::thread::sleep(Duration::from_millis(25));
        log.confirm("a");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(log.claim("a"), Claim::Seen, "the first confirmation's expiry does not forget the second");
    }
}
