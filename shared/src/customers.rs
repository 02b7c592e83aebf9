//! The customers list (`validate_customers`, `customers_url`): which GitHub owners this installation serves, read
//! from a URL or a file and cached. gh-push (pushes) and git-event (installation events) check it the same way.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::Mutex;

use crate::config::ConfigError;

/// Where the list of allowed GitHub logins comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomersSource {
    Url(Url),
    File(std::path::PathBuf),
}

impl CustomersSource {
    /// `http(s)://…` is fetched; anything else is a file path.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        if value.starts_with("http://") || value.starts_with("https://") {
            Url::parse(value)
                .map(Self::Url)
                .map_err(|e| ConfigError::Invalid { name: "customers_url".into(), reason: format!("`{value}`: {e}") })
        } else {
            Ok(Self::File(std::path::PathBuf::from(value)))
        }
    }

    /// The source `validate_customers` asks for (`customers_url`), or `None` when the check is off.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        if crate::config::bool_or("validate_customers", false)? {
            Ok(Some(Self::parse(&crate::config::required("customers_url")?)?))
        } else {
            Ok(None)
        }
    }
}

/// A list that could not be read; the delivery fails with 502 so GitHub can redeliver it later.
#[derive(Debug, thiserror::Error)]
#[error("the customers list at {source_name} could not be read: {reason}")]
pub struct CustomersUnavailable {
    source_name: String,
    reason: String,
}

/// Caches the parsed list for `ttl`, so a burst of webhooks reads it once.
#[derive(Debug)]
pub struct Customers {
    source: CustomersSource,
    ttl: Duration,
    http: reqwest::Client,
    cached: Mutex<Option<(Instant, HashSet<String>)>>,
}

impl Customers {
    pub fn new(source: CustomersSource, ttl: Duration, http: reqwest::Client) -> Self {
        Self { source, ttl, http, cached: Mutex::new(None) }
    }

    /// Whether `login` is on the list (case-insensitive, as GitHub logins are).
    pub async fn contains(&self, login: &str) -> Result<bool, CustomersUnavailable> {
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().is_some_and(|(at, _)| at.elapsed() < self.ttl);
        if !fresh {
            *cached = Some((Instant::now(), self.load().await?));
        }
        Ok(cached.as_ref().is_some_and(|(_, list)| list.contains(&login.to_ascii_lowercase())))
    }

    async fn load(&self) -> Result<HashSet<String>, CustomersUnavailable> {
        let text = match &self.source {
            CustomersSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| CustomersUnavailable { source_name: path.display().to_string(), reason: e.to_string() })?,
            CustomersSource::Url(url) => {
                let unavailable = |reason: String| CustomersUnavailable { source_name: url.to_string(), reason };
                let response = self
                    .http
                    .get(url.clone())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| unavailable(crate::error::error_chain(&e)))?;
                if !response.status().is_success() {
                    return Err(unavailable(format!("answered {}", response.status())));
                }
                response.text().await.map_err(|e| unavailable(e.to_string()))?
            }
        };
        Ok(parse_customers(&text))
    }
}

/// One login a line; `#` starts a comment; blank lines are skipped; case is folded.
pub fn parse_customers(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|login| !login.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_logins_comments_and_blank_lines() {
        let list = parse_customers("# allowed owners\nAlexEllis\n\n  octo-org  # the org\n#nobody\n");
        assert_eq!(list, HashSet::from(["alexellis".to_owned(), "octo-org".to_owned()]));
    }
}
