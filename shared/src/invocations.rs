//! A function's invocations over a window, by class of status: what the `metrics` function answers and the
//! dashboard shows, typed once for both sides.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where an answer's counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Prometheus,
    Gateway,
}

/// The answer: `function`'s calls answered within the last `window_seconds`, by status class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocations {
    pub function: String,
    pub window_seconds: u64,
    /// 2xx.
    pub success: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx.
    pub server_error: u64,
    /// Every call, whatever its status (1xx and 3xx only count here).
    pub total: u64,
    pub source: Source,
}

impl Invocations {
    /// Groups counts by status code (`"200"`, `"404"`…) into their classes.
    pub fn from_codes(function: &str, window: Duration, codes: &BTreeMap<String, u64>, source: Source) -> Self {
        let mut answer = Self {
            function: function.to_owned(),
            window_seconds: window.as_secs(),
            success: 0,
            client_error: 0,
            server_error: 0,
            total: 0,
            source,
        };
        for (code, &count) in codes {
            match code.parse::<u16>().map(|c| c / 100) {
                Ok(2) => answer.success += count,
                Ok(4) => answer.client_error += count,
                Ok(5) => answer.server_error += count,
                _ => {}
            }
            answer.total += count;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_by_class() {
        let codes = BTreeMap::from([("200".into(), 3), ("201".into(), 1), ("404".into(), 2), ("502".into(), 1)]);
        let answer = Invocations::from_codes("octo-fn", Duration::from_secs(3600), &codes, Source::Gateway);
        assert_eq!((answer.success, answer.client_error, answer.server_error, answer.total), (4, 2, 1, 7));
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["source"], "gateway");
        assert_eq!(json["window_seconds"], 3600);
    }
}
