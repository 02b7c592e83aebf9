//! Latency summaries printed the same way by every scenario, so two runs compare side by side.

use std::time::Duration;

/// Sorted samples and what is printed of them.
pub struct Summary {
    sorted: Vec<Duration>,
}

impl Summary {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The `q` quantile (0.0..=1.0), nearest-rank.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.sorted.len() as f64).ceil() as usize).clamp(1, self.sorted.len());
        self.sorted[rank - 1]
    }

    /// `min / p50 / p99 / max` in milliseconds.
    pub fn line(&self) -> String {
        format!(
            "min {:.3} ms  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (n={})",
            ms(self.quantile(0.0)),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            self.len()
        )
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let summary = Summary::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(summary.quantile(0.5), Duration::from_millis(50));
        assert_eq!(summary.quantile(0.99), Duration::from_millis(99));
        assert_eq!(summary.quantile(0.0), Duration::from_millis(1));
        assert_eq!(summary.quantile(1.0), Duration::from_millis(100));
    }
}
