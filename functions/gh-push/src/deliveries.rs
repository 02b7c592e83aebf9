//! Remembers GitHub delivery ids, so that a redelivered webhook is answered without building twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many ids are kept; past it, expired ones are dropped, then the oldest.
const MAX_REMEMBERED: usize = 100_000;

/// Delivery ids and when they were queued, or `None` while being queued right now.
#[derive(Debug)]
pub struct DeliveryLog {
    ttl: Duration,
    seen: Mutex<HashMap<String, Option<Instant>>>,
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
        Self { ttl, seen: Mutex::new(HashMap::new()) }
    }

    /// Claims `id` for queueing; a concurrent duplicate sees `Seen`.
    pub fn claim(&self, id: &str) -> Claim {
        let mut seen = self.seen.lock().expect("delivery log lock");
        let now = Instant::now();
        match seen.get(id) {
            Some(None) => return Claim::Seen,
            Some(Some(at)) if now.duration_since(*at) < self.ttl => return Claim::Seen,
            _ => {}
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, at| at.is_none_or(|at| now.duration_since(at) < self.ttl));
            if seen.len() >= MAX_REMEMBERED {
                if let Some(oldest) =
                    seen.iter().filter_map(|(k, at)| at.map(|at| (k.clone(), at))).min_by_key(|(_, at)| *at)
                {
                    seen.remove(&oldest.0);
                }
            }
        }
        seen.insert(id.to_owned(), None);
        Claim::New
    }

    /// The delivery was queued: remember it for `ttl`.
    pub fn confirm(&self, id: &str) {
        self.seen.lock().expect("delivery log lock").insert(id.to_owned(), Some(Instant::now()));
    }

    /// Queueing failed: forget the claim so a redelivery can try again.
    pub fn release(&self, id: &str) {
        self.seen.lock().expect("delivery log lock").remove(id);
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
}
