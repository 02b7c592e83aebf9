//! One exponential backoff for every retry in the platform (the gateway's queue, buildshiprun's builder calls,
//! github-status's GitHub calls), so their waits grow and cap the same way. The jittered waits spread the retries
//! of calls that failed together (one GitHub outage, one builder restart) so they do not come back together.
//! [`retry_after`] is the one reading of a `Retry-After` header, for every caller the other side can ask to wait.

use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDateTime, Utc};
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

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date (IMF-fixdate, or the obsolete RFC 850
/// and asctime forms a recipient must still read), a date already past being no wait. `None` when the header is
/// absent or unreadable. The ask is returned whole: each caller holds it against its own deadline (wait it out,
/// cap it, or give up and pass the ask on), since only the caller knows how long it may wait.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, Utc::now())
}

/// [`retry_after`]'s reading of one header value at `now`.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time", not an unreadable header.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = DateTime::parse_from_rfc2822(value).map(|at| at.with_timezone(&Utc)).ok().or_else(|| {
        ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
            .map(|naive| naive.and_utc())
    })?;
    Some((at - now).to_std().unwrap_or_default())
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
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("1994-11-06T08:48:37Z").unwrap().with_timezone(&Utc);
        let read = |value: &str| parse_retry_after(value, now);
        assert_eq!(read("120"), Some(Duration::from_secs(120)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        assert_eq!(read("99999999999999999999999"), Some(Duration::from_secs(u64::MAX)));
        // The three date forms of RFC 9110, each a minute after `now`.
        for date in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(read(date), Some(Duration::from_secs(60)), "{date}");
        }
        assert_eq!(read("Mon, 01 Jan 1990 00:00:00 GMT"), Some(Duration::ZERO), "a past date");
        for unreadable in ["soon", "", "-5", "1.5", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(read(unreadable), None, "{unreadable:?}");
        }
    }

    #[test]
    fn retry_after_reads_the_header_and_nothing_else() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("x-ratelimit-reset", "120".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let in_a_minute = (Utc::now() + chrono::TimeDelta::seconds(60)).to_rfc2822();
        headers.insert(RETRY_AFTER, in_a_minute.parse().unwrap());
        let asked = retry_after(&headers).unwrap();
        assert!((Duration::from_secs(58)..=Duration::from_secs(60)).contains(&asked), "{asked:?}");
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
