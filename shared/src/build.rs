//! The build tar (`config` + `context/`) and of-builder's answer: what git-tar, buildshiprun and of-builder share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{bool_or, ConfigError};

/// The JSON file at the root of the build tar.
pub const CONFIG_ENTRY: &str = "config";
/// The folder in the build tar holding the shrinkwrapped build context, with its `Dockerfile`.
pub const CONTEXT_DIR: &str = "context";

/// The `config` entry: which image to build and with which arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildConfig {
    /// The image reference to push, e.g. `registry:5000/octo/fn:latest-<sha>`.
    #[serde(rename = "ref")]
    pub image_ref: String,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// The header naming a build request to of-builder (8 to 64 letters, digits, `-` or `_`, chosen by the caller), so
/// that the caller can ask `GET /queue/{ticket}` where its build waits while the request is open.
pub const BUILD_TICKET_HEADER: &str = "X-Build-Ticket";

/// of-builder's answer to `GET /queue/{ticket}`: where the build named by that ticket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum QueuePlace {
    /// Waiting for a build slot; `ahead` builds (of any owner) are to take one first, as the queues stand now.
    Queued { ahead: usize },
    /// Holding a slot: the build runs (its `build_timeout` counts from here).
    Building,
}

/// Whether a ticket is one of-builder takes: short, and safe in a URL path.
pub fn is_build_ticket(ticket: &str) -> bool {
    (8..=64).contains(&ticket.len()) && ticket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether the user's build worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    Success,
    Failure,
}

/// of-builder's answer to `POST /build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    pub image: String,
    /// `sha256:<hex>` of the pushed manifest; empty on failure.
    #[serde(default)]
    pub digest: String,
    pub status: BuildStatus,
    /// The build's output lines; on failure, what the user needs to see.
    #[serde(default)]
    pub log: Vec<String>,
}

/// `enable_dockerfile_lang`, read here once for the two functions it governs: whether a user's own build
/// definitions are built. buildshiprun's policy refuses `lang: dockerfile` without it; git-tar uses a repository's
/// own `template/`, and template sources that are not the operator's, only with it.
pub fn user_build_definitions_enabled() -> Result<bool, ConfigError> {
    bool_or("enable_dockerfile_lang", false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_image_ref() {
        let config: BuildConfig =
            serde_json::from_str(r#"{"ref":"r:5000/o/f:latest-abc","build_args":{"A":"1"}}"#).unwrap();
        assert_eq!(config.image_ref, "r:5000/o/f:latest-abc");
        assert_eq!(config.build_args["A"], "1");
        assert!(config.platforms.is_empty());
    }

    #[test]
    fn result_status_is_lowercase() {
        let result =
            BuildResult { image: "i".into(), digest: String::new(), status: BuildStatus::Failure, log: vec![] };
        assert_eq!(serde_json::to_value(result).unwrap()["status"], "failure");
    }
}
