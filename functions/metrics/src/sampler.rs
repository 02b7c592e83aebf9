//! Invocation counts without Prometheus: the gateway's own counters (`/metrics`), sampled in the background and
//! kept for the longest window, so "the last hour" is the counters now minus the counters an hour ago.
//!
//! The first sample is taken as the function starts, so a fresh start answers the calls counted since then (until
//! a whole window has been sampled, the window's start is the function's start). Memory is bounded: at most one
//! snapshot per interval for [`MAX_WINDOW`], and never more than [`MAX_SNAPSHOTS`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use tokio::time::Instant;

use crate::exposition::{invocation_counters, Counters};
use crate::{service_label, MAX_WINDOW};

/// The snapshots kept at most, whatever the interval (one a second for an hour).
pub const MAX_SNAPSHOTS: usize = 3601;
/// How long one read of the gateway's `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the gateway's counters could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the gateway's metrics at {url} could not be read: {reason}")]
pub struct ScrapeError {
    pub url: String,
    pub reason: String,
}

/// The counters at one moment.
struct Snapshot {
    taken: Instant,
    counters: Counters,
}

/// Samples `gateway_metrics_url` every `interval` and answers increases over a window.
pub struct Sampler {
    url: Url,
    http: reqwest::Client,
    interval: Duration,
    /// Oldest first; only what a [`MAX_WINDOW`] answer can still use.
    snapshots: Mutex<VecDeque<Snapshot>>,
}

impl Sampler {
    pub fn new(url: Url, http: reqwest::Client, interval: Duration) -> Self {
        Self { url, http, interval, snapshots: Mutex::default() }
    }

    /// Samples now, then every interval, for ever (the task ends with the function). A failed read is logged and
    /// the next one is tried on time: the window then starts at the snapshot before it.
    pub async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.scrape().await {
                Ok(counters) => self.record(counters, Instant::now()),
                Err(error) => tracing::warn!(%error, "sampling the gateway's counters failed"),
            }
        }
    }

    /// Reads the gateway's counters now.
    pub async fn scrape(&self) -> Result<Counters, ScrapeError> {
        let failed = |reason: String| ScrapeError { url: self.url.to_string(), reason };
        let response = self
            .http
            .get(self.url.clone())
            .timeout(SCRAPE_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(shared::gateway::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("it answered {}", response.status())));
        }
        let text = response.text().await.map_err(|e| failed(shared::gateway::error_chain(&e)))?;
        Ok(invocation_counters(&text))
    }

    fn record(&self, counters: Counters, taken: Instant) {
        let mut snapshots = self.snapshots.lock().expect("snapshots lock");
        snapshots.push_back(Snapshot { taken, counters });
        let capacity = usize::try_from(MAX_WINDOW.as_millis().div_ceil(self.interval.as_millis().max(1)))
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .min(MAX_SNAPSHOTS);
        let horizon = taken.checked_sub(MAX_WINDOW);
        while snapshots.len() > capacity
            || (snapshots.len() > 1 && horizon.is_some_and(|h| snapshots.front().is_some_and(|s| s.taken < h)))
        {
            snapshots.pop_front();
        }
    }

    /// The calls to `service` answered within `window`, by status code: the counters read now minus the oldest
    /// snapshot within the window (the newest one when none is that recent), step by step through the
    /// snapshots between, so a counter that went down (the gateway restarted) counts from zero and never
    /// gives a negative number.
    pub async fn increase(&self, service: &str, window: Duration) -> Result<BTreeMap<String, u64>, ScrapeError> {
        let now = self.scrape().await?;
        let since = Instant::now().checked_sub(window);
        let label = service_label(service);
        let of_service = |counters: &Counters| -> BTreeMap<String, f64> {
            counters.iter().filter(|(k, _)| k.function_name == label).map(|(k, v)| (k.code.clone(), *v)).collect()
        };
        let mut steps: Vec<BTreeMap<String, f64>> = {
            let snapshots = self.snapshots.lock().expect("snapshots lock");
            let first_in_window = snapshots.iter().position(|s| since.is_none_or(|since| s.taken >= since)).unwrap_or(
                // None within the window: the newest, so the answer still covers the window.
                snapshots.len().saturating_sub(1),
            );
            snapshots.iter().skip(first_in_window).map(|s| of_service(&s.counters)).collect()
        };
        steps.push(of_service(&now));
        Ok(increase_through(&steps))
    }
}

/// Each code's increase through `steps` (oldest first): a value lower than the one before counts from zero.
fn increase_through(steps: &[BTreeMap<String, f64>]) -> BTreeMap<String, u64> {
    let mut increase: BTreeMap<String, f64> = BTreeMap::new();
    for pair in steps.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        for (code, &value) in after {
            let previous = before.get(code).copied().unwrap_or(0.0);
            let added = if value >= previous { value - previous } else { value };
            *increase.entry(code.clone()).or_default() += added;
        }
    }
    increase.into_iter().map(|(code, n)| (code, n.round() as u64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(values: &[(&str, f64)]) -> BTreeMap<String, f64> {
        values.iter().map(|(c, v)| ((*c).to_owned(), *v)).collect()
    }

    #[test]
    fn an_increase_is_the_difference_and_a_reset_counts_from_zero() {
        let steps = [step(&[("200", 10.0)]), step(&[("200", 15.0), ("500", 1.0)]), step(&[("200", 2.0)])];
        let increase = increase_through(&steps);
        assert_eq!(increase["200"], 5 + 2, "10 → 15, then a restart and 2 more");
        assert_eq!(increase["500"], 1, "a new series counts from zero");
    }

    #[test]
    fn memory_is_bounded_by_the_window_and_the_interval() {
        let sampler = Sampler::new("http://127.0.0.1:9/metrics".parse().unwrap(), reqwest::Client::new(), MAX_WINDOW);
        let start = Instant::now();
        for n in 0..10u64 {
            sampler.record(Counters::new(), start + MAX_WINDOW * u32::try_from(n).unwrap());
        }
        assert_eq!(sampler.snapshots.lock().unwrap().len(), 2, "an hour apart: the newest and the one an hour ago");
        let fast = Sampler::new("http://127.0.0.1:9/metrics".parse().unwrap(), reqwest::Client::new(), Duration::ZERO);
        for n in 0..(MAX_SNAPSHOTS as u64 + 10) {
            fast.record(Counters::new(), start + Duration::from_millis(n));
        }
        assert_eq!(fast.snapshots.lock().unwrap().len(), MAX_SNAPSHOTS);
    }
}
