//! The one series this function reads from the Prometheus text exposition the gateway serves at `/metrics`:
//! `gateway_function_invocation_total{code="200",function_name="octo-fn.openfaas-fn"} 3`, labels in any order.

use std::collections::HashMap;

/// The counter of calls answered, by function and status code.
pub const INVOCATIONS: &str = "gateway_function_invocation_total";

/// One series of [`INVOCATIONS`]: the `function_name` label (`NAME.NAMESPACE`) and the `code` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub function_name: String,
    pub code: String,
}

/// Every [`INVOCATIONS`] series of one exposition, with its value.
pub type Counters = HashMap<SeriesKey, f64>;

/// The [`INVOCATIONS`] samples of `text`; other metrics, comments and lines that do not parse are skipped (one
/// odd line must not hide the rest).
pub fn invocation_counters(text: &str) -> Counters {
    let mut counters = Counters::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix(INVOCATIONS) else { continue };
        let Some((labels, value)) = labels_and_value(rest) else { continue };
        let Some(value) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        if !value.is_finite() || value < 0.0 {
            continue;
        }
        let label = |name: &str| labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        if let (Some(function_name), Some(code)) = (label("function_name"), label("code")) {
            *counters.entry(SeriesKey { function_name, code }).or_default() += value;
        }
    }
    counters
}

/// What follows the metric's name: `{labels} value` or ` value`. `None` when the name only began there
/// (`gateway_function_invocation_total_extra`) or the labels do not parse.
fn labels_and_value(rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    if let Some(labels) = rest.strip_prefix('{') {
        parse_labels(labels)
    } else if rest.starts_with([' ', '\t']) {
        Some((Vec::new(), rest))
    } else {
        None
    }
}

/// `name="value",…}` (a trailing comma allowed, `\\`, `\"` and `\n` escaped in values), and what follows `}`.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once('=')?;
        let mut chars = after.trim_start().strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim().to_owned(), value));
        rest = &after.trim_start()[1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(function_name: &str, code: &str) -> SeriesKey {
        SeriesKey { function_name: function_name.into(), code: code.into() }
    }

    #[test]
    fn reads_the_invocation_counters_whatever_the_label_order() {
        let text = "# HELP gateway_function_invocation_total Function metrics\n\
            # TYPE gateway_function_invocation_total counter\n\
            gateway_function_invocation_total{code=\"200\",function_name=\"octo-fn.openfaas-fn\"} 3\n\
            gateway_function_invocation_total{function_name=\"octo-fn.openfaas-fn\",code=\"500\",} 1e+00\n\
            gateway_function_invocation_total{code=\"404\", function_name=\"we\\\"ird\\\\.openfaas-fn\"} 2 1700000000000\n\
            gateway_function_invocation_started{function_name=\"octo-fn.openfaas-fn\"} 9\n\
            gateway_function_invocation_total_other{code=\"200\",function_name=\"octo-fn.openfaas-fn\"} 7\n\
            gateway_function_invocation_total{code=\"200\",function_name=\"broken.openfaas-fn} 5\n\
            gateway_function_invocation_total{code=\"200\",function_name=\"nan.openfaas-fn\"} NaN\n";
        let counters = invocation_counters(text);
        assert_eq!(counters.len(), 3, "{counters:?}");
        let value = |function: &str, code: &str| counters[&key(function, code)] as u64;
        assert_eq!(value("octo-fn.openfaas-fn", "200"), 3);
        assert_eq!(value("octo-fn.openfaas-fn", "500"), 1);
        assert_eq!(value("we\"ird\\.openfaas-fn", "404"), 2);
    }
}
