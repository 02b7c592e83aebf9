//! The build tar (`config` + `context/`) and of-builder's answer: what git-tar, buildshiprun and of-builder share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
