//! Remembers GitHub delivery ids, so that a redelivered webhook is answered without building twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many confirmed ids are kept; past it, the oldest are forgotten first.
const MAX_REMEMBERED: usize = 100_000;

/// Delivery ids and when they were queued, or `None` while being queued right now.
#[derive(Debug)]
pub struct DeliveryLog {
    ttl: Duration,
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    seen: HashMap<String, Option<Instant>>,
    /// Confirmations in the order they happened, so expiry and the size bound cost O(1) per delivery, never a scan.
    /// An entry whose time no longer matches `seen` (released, or confirmed again) is skipped when it comes up.
    order: VecDeque<(String, Instant)>,
}

impl Remembered {
    /// Forgets confirmations older than `ttl`, then the oldest ones past [`MAX_REMEMBERED`].
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((id, at)) = self.order.front() {
            let current = self.seen.get(id).copied().flatten() == Some(*at);
            let expired = now.duration_since(*at) >= ttl;
            if current && !expired && self.order.len() <= MAX_REMEMBERED {
                break;
            }
            if current {
                self.seen.remove(id);
            }
            self.order.pop_front();
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
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, inner: Mutex::new(Remembered::default()) }
    }

    /// Claims `id` for queueing; a concurrent duplicate sees `Seen`.
    pub fn claim(&self, id: &str) -> Claim {
        let mut inner = self.inner.lock().expect("delivery log lock");
        let now = Instant::now();
        inner.expire(now, self.ttl);
        match inner.seen.get(id) {
            Some(None) => return Claim::Seen,
            Some(Some(at)) if now.duration_since(*at) < self.ttl => return Claim::Seen,
            _ => {}
        }
        inner.seen.insert(id.to_owned(), None);
        Claim::New
    }

    /// The delivery was queued: remember it for `ttl`.
    pub fn confirm(&self, id: &str) {
        let mut inner = self.inner.lock().expect("delivery log lock");
        let now = Instant::now();
        inner.seen.insert(id.to_owned(), Some(now));
        inner.order.push_back((id.to_owned(), now));
    }

    /// Queueing failed: forget the claim so a redelivery can try again.
    pub fn release(&self, id: &str) {
        self.inner.lock().expect("delivery log lock").seen.remove(id);
    }

    /// How many ids are remembered (confirmed or being queued).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().expect("delivery log lock").seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmed_delivery_is_seen_until_it_expires() {
        let log = DeliveryLog::new(Duration::from_millis(50));
        assert_eq!(log.claim("a"), Claim::New);
        assert_eq!(log.claim("a"), Claim::Seen, "in flight");
        log.confirm("a");
        assert_eq!(log.claim("a"), Claim::Seen);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(log.claim("a"), Claim::New);
    }

    #[test]
    fn a_released_delivery_can_be_claimed_again() {
        let log = DeliveryLog::new(Duration::from_secs(3600));
        assert_eq!(log.claim("b"), Claim::New);
        log.release("b");
        assert_eq!(log.claim("b"), Claim::New);
    }

    #[test]
    fn expired_deliveries_are_forgotten() {
        let log = DeliveryLog::new(Duration::from_millis(20));
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
        let log = DeliveryLog::new(Duration::from_secs(3600));
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
    fn a_delivery_confirmed_twice_is_kept_for_its_latest_confirmation() {
        let log = DeliveryLog::new(Duration::from_millis(40));
        assert_eq!(log.claim("a"), Claim::New);
        log.confirm("a");
        std::thread::sleep(Duration::from_millis(25));
        log.confirm("a");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(log.claim("a"), Claim::Seen, "the first confirmation's expiry does not forget the second");
    }
}
