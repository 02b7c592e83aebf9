//! Invocation counts without Prometheus: the gateway's own counters (`/metrics`), sampled in the background and
//! kept for the longest window, so "the last hour" is the counters now minus the counters an hour ago.
//!
//! The first sample is taken as the function starts, so a fresh start answers the calls counted since then (until
//! a whole window has been sampled, the window's start is the function's start). Memory is bounded: at most one
//! snapshot per interval for [`MAX_WINDOW`], and never more than [`MAX_SNAPSHOTS`]; a snapshot is one number per
//! series (5,000 series: 40 KB, an hour at 30 s under 5 MB).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use tokio::time::Instant;

use crate::exposition::{invocation_counters, Counters, SeriesKey};
use crate::{service_label, MAX_WINDOW};

/// The snapshots kept at most, whatever the interval (one a second for an hour).
pub const MAX_SNAPSHOTS: usize = 3601;
/// The series table is rebuilt without the series no kept snapshot counts once it holds this many (or twice what
/// the last rebuild kept), so deleted functions do not accumulate.
const COMPACT_AT: usize = 1024;
/// How long one read of the gateway's `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a 404 from `gateway_metrics_url` means, said in the error: the default suits the local stack's gateway, and
/// an OpenFaaS gateway serves its metrics on another port.
pub const NOT_FOUND_HINT: &str = "an OpenFaaS gateway serves its metrics on port 8082, not on its functions' port: \
    set gateway_metrics_url (on faasd http://gateway:8082/metrics, on Kubernetes \
    http://gateway.openfaas:8082/metrics) or prometheus_url";

/// Why the gateway's counters could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the gateway's metrics at {url} could not be read: {reason}")]
pub struct ScrapeError {
    pub url: String,
    pub reason: String,
}

/// The counters at one moment: one value per series of [`History::series`] (shorter when series appeared since:
/// those were zero).
struct Snapshot {
    taken: Instant,
    values: Vec<f64>,
}

/// The snapshots kept, oldest first, and the one table of series their values follow.
#[derive(Default)]
struct History {
    series: Vec<SeriesKey>,
    index: HashMap<SeriesKey, usize>,
    snapshots: VecDeque<Snapshot>,
    /// When the table is next rebuilt (see [`COMPACT_AT`]).
    compact_at: usize,
}

impl History {
    fn push(&mut self, counters: Counters, taken: Instant) {
        let mut values = vec![0.0; self.series.len()];
        for (key, value) in counters {
            let at = if let Some(&at) = self.index.get(&key) {
                at
            } else {
                self.series.push(key.clone());
                self.index.insert(key, self.series.len() - 1);
                values.push(0.0);
                self.series.len() - 1
            };
            values[at] = value;
        }
        self.snapshots.push_back(Snapshot { taken, values });
    }

    /// Drops the snapshots past `capacity` and those older than `horizon` (keeping the newest), then the series
    /// no snapshot counts any more.
    fn prune(&mut self, capacity: usize, horizon: Option<Instant>) {
        while self.snapshots.len() > capacity
            || (self.snapshots.len() > 1
                && horizon.is_some_and(|h| self.snapshots.front().is_some_and(|s| s.taken < h)))
        {
            self.snapshots.pop_front();
        }
        if self.series.len() >= self.compact_at.max(COMPACT_AT) {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let value = |snapshot: &Snapshot, at: usize| snapshot.values.get(at).copied().unwrap_or(0.0);
        let used: Vec<usize> =
            (0..self.series.len()).filter(|&at| self.snapshots.iter().any(|s| value(s, at) != 0.0)).collect();
        for snapshot in &mut self.snapshots {
            snapshot.values = used.iter().map(|&at| value(snapshot, at)).collect();
        }
        self.series = used.iter().map(|&at| self.series[at].clone()).collect();
        self.index = self.series.iter().enumerate().map(|(at, key)| (key.clone(), at)).collect();
        self.compact_at = self.series.len() * 2;
    }

    /// The values of the series labelled `function_name`, by code, in each snapshot from the oldest taken at or
    /// after `since` (the newest when none is that recent, so an answer still covers its window).
    fn steps_since(&self, function_name: &str, since: Option<Instant>) -> Vec<BTreeMap<String, f64>> {
        let of_function: Vec<(usize, &str)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, key)| key.function_name == function_name)
            .map(|(at, key)| (at, key.code.as_str()))
            .collect();
        let first = self
            .snapshots
            .iter()
            .position(|s| since.is_none_or(|since| s.taken >= since))
            .unwrap_or(self.snapshots.len().saturating_sub(1));
        self.snapshots
            .iter()
            .skip(first)
            .map(|s| {
                of_function
                    .iter()
                    .map(|&(at, code)| (code.to_owned(), s.values.get(at).copied().unwrap_or(0.0)))
                    .collect()
            })
            .collect()
    }
}

/// Samples `gateway_metrics_url` every `interval` and answers increases over a window.
pub struct Sampler {
    url: Url,
    http: reqwest::Client,
    interval: Duration,
    /// Only what a [`MAX_WINDOW`] answer can still use.
    history: Mutex<History>,
}

impl Sampler {
    pub fn new(url: Url, http: reqwest::Client, interval: Duration) -> Self {
        Self { url, http, interval, history: Mutex::default() }
    }

    /// Samples now, then every interval, for ever (the task ends with the function). A failed read is logged and
    /// the next one is tried on time: the window then starts at the snapshot before it. A first read that fails
    /// is logged as an error, so a wrong `gateway_metrics_url` shows at the start, not only at the first question.
    pub async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            ticks.tick().await;
            match self.scrape().await {
                Ok(counters) => self.record(counters, Instant::now()),
                Err(error) if first => tracing::error!(
                    %error,
                    "the gateway's counters cannot be read: invocation counts are refused until they can"
                ),
                Err(error) => tracing::warn!(%error, "sampling the gateway's counters failed"),
            }
            first = false;
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
            .map_err(|e| failed(shared::error::error_chain(&e)))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(failed(format!("it answered {}: {NOT_FOUND_HINT}", response.status())));
        }
        if !response.status().is_success() {
            return Err(failed(format!("it answered {}", response.status())));
        }
        let text = response.text().await.map_err(|e| failed(shared::error::error_chain(&e)))?;
        Ok(invocation_counters(&text))
    }

    fn record(&self, counters: Counters, taken: Instant) {
        let capacity = usize::try_from(MAX_WINDOW.as_millis().div_ceil(self.interval.as_millis().max(1)))
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .min(MAX_SNAPSHOTS);
        let mut history = self.history.lock().expect("history lock");
        history.push(counters, taken);
        history.prune(capacity, taken.checked_sub(MAX_WINDOW));
    }

    /// The calls to `service` answered within `window`, by status code: the counters read now minus the oldest
    /// snapshot within the window (the newest one when none is that recent), step by step through the
    /// snapshots between, so a counter that went down (the gateway restarted) counts from zero and never
    /// gives a negative number.
    pub async fn increase(&self, service: &str, window: Duration) -> Result<BTreeMap<String, u64>, ScrapeError> {
        let now = self.scrape().await?;
        let since = Instant::now().checked_sub(window);
        let label = service_label(service);
        let mut steps = self.history.lock().expect("history lock").steps_since(&label, since);
        let of_service = now.into_iter().filter(|(key, _)| key.function_name == label);
        steps.push(of_service.map(|(key, value)| (key.code, value)).collect());
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

    fn counters(series: &[(&str, &str, f64)]) -> Counters {
        series
            .iter()
            .map(|(f, c, v)| (SeriesKey { function_name: (*f).to_owned(), code: (*c).to_owned() }, *v))
            .collect()
    }

    #[test]
    fn the_series_of_deleted_functions_go_once_no_snapshot_counts_them() {
        let mut history = History::default();
        let start = Instant::now();
        let many: Vec<(String, f64)> = (0..COMPACT_AT).map(|n| (format!("gone-{n}.openfaas-fn"), 1.0)).collect();
        let old: Counters = many
            .iter()
            .map(|(f, v)| (SeriesKey { function_name: f.clone(), code: "200".into() }, *v))
            .chain(counters(&[("kept.openfaas-fn", "200", 1.0)]))
            .collect();
        history.push(old, start);
        history
            .push(counters(&[("kept.openfaas-fn", "200", 4.0), ("kept.openfaas-fn", "500", 1.0)]), start + MAX_WINDOW);
        history.prune(10, Some(start + Duration::from_secs(1)));
        assert_eq!(history.snapshots.len(), 1);
        assert_eq!(history.series.len(), 2, "only kept's series are left");
        history.push(counters(&[("kept.openfaas-fn", "200", 6.0)]), start + MAX_WINDOW * 2);
        let steps = history.steps_since("kept.openfaas-fn", None);
        assert_eq!(steps, vec![step(&[("200", 4.0), ("500", 1.0)]), step(&[("200", 6.0), ("500", 0.0)])]);
    }

    #[test]
    fn memory_is_bounded_by_the_window_and_the_interval() {
        let sampler = Sampler::new("http://127.0.0.1:9/metrics".parse().unwrap(), reqwest::Client::new(), MAX_WINDOW);
        let start = Instant::now();
        for n in 0..10u64 {
            sampler.record(Counters::new(), start + MAX_WINDOW * u32::try_from(n).unwrap());
        }
        assert_eq!(
            sampler.history.lock().unwrap().snapshots.len(),
            2,
            "an hour apart: the newest and the one an hour ago"
        );
        let fast = Sampler::new("http://127.0.0.1:9/metrics".parse().unwrap(), reqwest::Client::new(), Duration::ZERO);
        for n in 0..(MAX_SNAPSHOTS as u64 + 10) {
            fast.record(Counters::new(), start + Duration::from_millis(n));
        }
        assert_eq!(fast.history.lock().unwrap().snapshots.len(), MAX_SNAPSHOTS);
    }
}
