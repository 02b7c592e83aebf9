//! One exponential backoff for every retry in the platform (the gateway's queue, buildshiprun's builder calls,
//! github-status's GitHub calls), so their waits grow and cap the same way. The jittered waits spread the retries
//! of calls that failed together (one GitHub outage, one builder restart) so they do not come back together.

use std::time::Duration;

use rand::Rng;

/// The most added on top of a wait the other side asked for: enough to spread callers, little next to a rate window.
const MAX_ASKED_JITTER: Duration = Duration::from_secs(1);

/// Waits that double from `initial` on each try, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The wait after the `attempt`-th failed try (1 for the first): `initial × 2^(attempt-1)`, at most `max`.
    pub fn wait(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// [`wait`](Self::wait) with "equal jitter": half of it fixed, the other half random, so it lies in
    /// `[wait/2, wait]` and stays within `max`.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let wait = self.wait(attempt);
        let half = wait / 2;
        half + random_up_to(wait.saturating_sub(half))
    }

    /// A wait the other side asked for (`Retry-After`, a rate limit's reset), never shortened, plus up to a tenth of
    /// it (at most 1 s) at random so that callers held by one window do not all return at its first instant.
    pub fn asked_with_jitter(asked: Duration) -> Duration {
        asked + random_up_to((asked / 10).min(MAX_ASKED_JITTER))
    }
}

/// A uniformly random duration in `[0, bound]`, to the microsecond.
fn random_up_to(bound: Duration) -> Duration {
    let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
    if micros == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_initial_wait_and_stops_at_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let waits: Vec<_> = (1..=5).map(|a| backoff.wait(a)).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000].map(Duration::from_millis));
    }

    #[test]
    fn a_huge_attempt_count_does_not_overflow() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(backoff.wait(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jittered_waits_stay_between_half_and_the_whole_wait_and_differ() {
        let backoff = Backoff::new(Duration::from_millis(400), Duration::from_secs(2));
        let waits: Vec<_> = (0..50).map(|_| backoff.jittered(2)).collect();
        assert!(
            waits.iter().all(|w| (Duration::from_millis(400)..=Duration::from_millis(800)).contains(w)),
            "{waits:?}"
        );
        assert!(waits.iter().any(|w| *w != waits[0]), "no jitter: {waits:?}");
        assert!((0..50).all(|_| backoff.jittered(30) <= Duration::from_secs(2)));
        assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO).jittered(1), Duration::ZERO);
    }

    #[test]
    fn an_asked_wait_is_never_shortened_and_gains_at_most_a_tenth_or_a_second() {
        for _ in 0..50 {
            let short = Backoff::asked_with_jitter(Duration::from_secs(2));
            assert!((Duration::from_secs(2)..=Duration::from_millis(2200)).contains(&short), "{short:?}");
            let long = Backoff::asked_with_jitter(Duration::from_secs(60));
            assert!((Duration::from_secs(60)..=Duration::from_secs(61)).contains(&long), "{long:?}");
        }
    }
}
