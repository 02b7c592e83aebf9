//! Invocation counts from Prometheus: one instant query (`GET {prometheus_url}api/v1/query?query=…`) of
//! `sum by (code) (increase(gateway_function_invocation_total{function_name="NAME.openfaas-fn"}[WINDOW]))`.
//!
//! The answer, as Prometheus's HTTP API documents it:
//! `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"code":"200"},"value":[t,"3"]}]}}`;
//! a refusal is `{"status":"error","errorType":"…","error":"…"}` with 400, 422 or 503.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::exposition::INVOCATIONS;
use crate::service_label;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why Prometheus gave no counts.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("Prometheus at {url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus refused the query ({status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error("Prometheus's answer could not be read: {0}")]
    BadAnswer(String),
}

/// The query API's envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    /// A list of [`VectorSample`] for a vector; other result types are shaped otherwise.
    result: serde_json::Value,
}

/// One element of an instant vector: its labels and `[unix time, "value"]`.
#[derive(Debug, Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// A Prometheus server's query API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    /// `api/v1/query` under `prometheus_url`.
    query_url: Url,
    http: reqwest::Client,
}

/// The query for `service`'s calls answered within `window`, summed by status code.
pub fn invocations_query(service: &str, window: Duration) -> String {
    format!(
        "sum by (code) (increase({INVOCATIONS}{{function_name=\"{}\"}}[{}s]))",
        service_label(service),
        window.as_secs()
    )
}

impl Prometheus {
    /// The query API under `base_url` (a Prometheus served under a path prefix too).
    pub fn new(base_url: &Url, http: reqwest::Client) -> Self {
        let mut base = base_url.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Self { query_url: base.join("api/v1/query").expect("a relative path joins"), http }
    }

    /// `service`'s calls answered within `window`, by status code (Prometheus extrapolates an increase, so
    /// values are rounded to whole calls).
    pub async fn increase(&self, service: &str, window: Duration) -> Result<BTreeMap<String, u64>, PrometheusError> {
        let response = self
            .http
            .get(self.query_url.clone())
            .query(&[("query", invocations_query(service, window))])
            .timeout(QUERY_TIMEOUT)
            .send()
            .await
            .map_err(|e| PrometheusError::Unreachable {
                url: self.query_url.to_string(),
                reason: shared::error::error_chain(&e),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| PrometheusError::BadAnswer(e.to_string()))?;
        let envelope: Envelope = match serde_json::from_slice(&body) {
            Ok(envelope) => envelope,
            Err(_) if !status.is_success() => {
                let text: String = String::from_utf8_lossy(&body).trim().chars().take(300).collect();
                let reason = if text.is_empty() { "no answer".to_owned() } else { text };
                return Err(PrometheusError::Refused { status: status.as_u16(), reason });
            }
            Err(e) => return Err(PrometheusError::BadAnswer(e.to_string())),
        };
        if envelope.status != "success" || !status.is_success() {
            let reason = match (envelope.error_type, envelope.error) {
                (Some(kind), Some(error)) => format!("{kind}: {error}"),
                (_, Some(error)) => error,
                _ => format!("status {:?}", envelope.status),
            };
            return Err(PrometheusError::Refused { status: status.as_u16(), reason });
        }
        let data = envelope.data.ok_or_else(|| PrometheusError::BadAnswer("no `data`".into()))?;
        if data.result_type != "vector" {
            return Err(PrometheusError::BadAnswer(format!("a {} where a vector was expected", data.result_type)));
        }
        let samples: Vec<VectorSample> =
            serde_json::from_value(data.result).map_err(|e| PrometheusError::BadAnswer(e.to_string()))?;
        let mut counts = BTreeMap::new();
        for sample in samples {
            let value: f64 = sample.value.1.parse().unwrap_or(0.0);
            let code = sample.metric.get("code").cloned().unwrap_or_default();
            if value.is_finite() && value > 0.0 {
                *counts.entry(code).or_default() += value.round() as u64;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_function_with_its_namespace_and_the_window_in_seconds() {
        assert_eq!(
            invocations_query("octo-fn", Duration::from_secs(3600)),
            "sum by (code) (increase(gateway_function_invocation_total{function_name=\"octo-fn.openfaas-fn\"}[3600s]))"
        );
    }
}
