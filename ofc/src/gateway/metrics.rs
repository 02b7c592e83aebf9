//! `GET /metrics`: the OpenFaaS gateway's own Prometheus metrics, under its names, so the dashboards and alerts
//! written for OpenFaaS read the local stack too.
//!
//! - `gateway_function_invocation_started{function_name}` (counter): calls sent on to a function.
//! - `gateway_function_invocation_total{function_name, code}` (counter): calls answered, by the status.
//! - `gateway_functions_seconds{function_name, code}` (histogram, Prometheus's default buckets, as OpenFaaS leaves
//!   them): from the call's start to the end of the function's answer.
//! - `gateway_service_count{function_name}` (gauge): the function's replicas.
//!
//! `function_name` is `NAME.openfaas-fn`: OpenFaaS appends its function namespace to a name that has none. Both
//! `/function/NAME` and the async queue's replays are counted; a call to a function the gateway does not know is
//! not, so the labels stay bounded by what is deployed. The hot path takes a read lock and bumps atomics; the write
//! lock is taken once per new (function, code).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use functions_api::DEFAULT_NAMESPACE;

/// Prometheus's default histogram buckets (seconds), which OpenFaaS's `gateway_functions_seconds` uses.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// One (function, code) series: its count, its summed duration and its cumulative buckets.
#[derive(Default)]
struct Series {
    count: AtomicU64,
    /// Nanoseconds, so the sum is kept exactly with an atomic add.
    sum_nanos: AtomicU64,
    /// Observations at or under each of [`BUCKETS`] (cumulative when written out).
    buckets: [AtomicU64; BUCKETS.len()],
}

/// The gateway's invocation metrics.
#[derive(Default)]
pub(super) struct Metrics {
    started: RwLock<HashMap<String, AtomicU64>>,
    completed: RwLock<HashMap<(String, u16), Arc<Series>>>,
}

/// One call being counted: recorded with its status when dropped (after the answer's body has gone out, or when
/// the call failed), so the time covers the whole answer as OpenFaaS's does.
pub(super) struct Invocation {
    metrics: Arc<Metrics>,
    function: String,
    started: Instant,
    code: Option<u16>,
}

impl Invocation {
    /// The status the caller gets.
    pub(super) fn answered(&mut self, code: u16) {
        self.code = Some(code);
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        if let Some(code) = self.code {
            self.metrics.completed(&self.function, code, self.started.elapsed());
        }
    }
}

/// `name` as OpenFaaS labels it: with the function namespace.
fn label(name: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("{name}.{DEFAULT_NAMESPACE}")
    }
}

impl Metrics {
    /// Counts a call to `function` as started; the returned value counts its completion.
    pub(super) fn start(self: &Arc<Self>, function: &str) -> Invocation {
        let name = label(function);
        let counted = self.started.read().expect("metrics lock").get(&name).map(|c| c.fetch_add(1, Ordering::Relaxed));
        if counted.is_none() {
            let mut started = self.started.write().expect("metrics lock");
            started.entry(name.clone()).or_default().fetch_add(1, Ordering::Relaxed);
        }
        Invocation { metrics: self.clone(), function: name, started: Instant::now(), code: None }
    }

    fn completed(&self, function: &str, code: u16, took: Duration) {
        let key = (function.to_owned(), code);
        let found = self.completed.read().expect("metrics lock").get(&key).cloned();
        let series =
            found.unwrap_or_else(|| self.completed.write().expect("metrics lock").entry(key).or_default().clone());
        series.count.fetch_add(1, Ordering::Relaxed);
        series.sum_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            series.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition, with `replicas` (function → replicas) as `gateway_service_count`.
    pub(super) fn render(&self, replicas: &BTreeMap<String, u64>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP gateway_function_invocation_started The total number of function HTTP requests started.\n",
        );
        out.push_str("# TYPE gateway_function_invocation_started counter\n");
        let started = self.started.read().expect("metrics lock");
        let mut names: Vec<_> = started.iter().map(|(n, c)| (n.clone(), c.load(Ordering::Relaxed))).collect();
        drop(started);
        names.sort();
        for (name, count) in names {
            let _ = writeln!(out, "gateway_function_invocation_started{{function_name=\"{}\"}} {count}", escape(&name));
        }
        let mut series: Vec<_> =
            self.completed.read().expect("metrics lock").iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP gateway_function_invocation_total Function metrics\n");
        out.push_str("# TYPE gateway_function_invocation_total counter\n");
        for ((name, code), s) in &series {
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "gateway_function_invocation_total{{code=\"{code}\",function_name=\"{}\"}} {count}",
                escape(name)
            );
        }
        out.push_str("# HELP gateway_functions_seconds Function time taken\n");
        out.push_str("# TYPE gateway_functions_seconds histogram\n");
        for ((name, code), s) in &series {
            write_histogram(&mut out, &escape(name), *code, s);
        }
        out.push_str("# HELP gateway_service_count Service replicas\n");
        out.push_str("# TYPE gateway_service_count gauge\n");
        for (name, count) in replicas {
            let _ = writeln!(out, "gateway_service_count{{function_name=\"{}\"}} {count}", escape(&label(name)));
        }
        out
    }
}

/// One series of `gateway_functions_seconds`: cumulative buckets, `+Inf`, sum and count.
fn write_histogram(out: &mut String, name: &str, code: u16, series: &Series) {
    let labels = format!("code=\"{code}\",function_name=\"{name}\"");
    let mut cumulative = 0;
    for (bound, bucket) in BUCKETS.iter().zip(&series.buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(out, "gateway_functions_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let count = series.count.load(Ordering::Relaxed);
    let sum = series.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(out, "gateway_functions_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "gateway_functions_seconds_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "gateway_functions_seconds_count{{{labels}}} {count}");
}

/// A label value as the text format wants it (backslash, quote and newline escaped).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
