//! Sends audit events to `audit_url` without making the caller wait for the audit service.

use std::time::Duration;

use reqwest::Url;

use crate::config::Secret;
use crate::event::AuditEvent;
use crate::signature::{sign_sha256, CLOUD_SIGNATURE};

/// How long one audit POST may take before it is given up.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Posts signed audit events; with no `audit_url` it does nothing.
#[derive(Debug, Clone)]
pub struct AuditClient {
    url: Option<Url>,
    payload_secret: Secret,
    http: reqwest::Client,
}

impl AuditClient {
    pub fn new(url: Option<Url>, payload_secret: Secret) -> Self {
        Self { url, payload_secret, http: crate::resolver::client_builder().build().expect("static client settings") }
    }

    /// Whether events are sent at all, so callers need not build one for nothing.
    pub fn is_enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Sends `event` in the background; a failure is logged, never returned, as auditing must not block a delivery.
    pub fn record(&self, event: AuditEvent) {
        let Some(url) = self.url.clone() else { return };
        let http = self.http.clone();
        let body = serde_json::to_vec(&event).expect("audit events serialise");
        let signature = sign_sha256(self.payload_secret.expose().as_bytes(), &body);
        tokio::spawn(async move {
            let result = http
                .post(url)
                .header(CLOUD_SIGNATURE, signature)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(AUDIT_TIMEOUT)
                .body(body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            if let Err(error) = result {
                tracing::warn!(source = %event.source, error = %crate::error::error_chain(&error), "audit event not delivered");
            }
        });
    }
}
