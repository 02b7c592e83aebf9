//! One exponential backoff for every retry in the platform (the gateway's queue, buildshiprun's builder calls,
//! github-status's GitHub calls), so their waits grow and cap the same way.

use std::time::Duration;

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

    /// The wait after the `attempt`-th failure when the other side asked for one (`Retry-After`): its ask wins
    /// over the computed wait, and both stay within `max`.
    pub fn wait_or_asked(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        asked.unwrap_or_else(|| self.wait(attempt)).min(self.max)
    }
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
    fn an_asked_wait_wins_but_stays_within_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff.wait_or_asked(1, Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(backoff.wait_or_asked(1, Some(Duration::from_secs(600))), Duration::from_secs(60));
        assert_eq!(backoff.wait_or_asked(3, None), Duration::from_secs(4));
    }

    #[test]
    fn a_huge_attempt_count_does_not_overflow() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(backoff.wait(u32::MAX), Duration::from_secs(30));
    }
}
