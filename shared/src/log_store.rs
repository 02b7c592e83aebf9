//! Build logs a user can read: one store behind one interface, on a folder or an S3-compatible bucket, and the
//! signed, expiring links pipeline-log serves them through.
//!
//! A record is kept under `<owner>/<repo>/<sha>/<function>` as ONE object, `<function>.log`: the metadata as one
//! line of JSON, a newline, then the log text. One object means one atomic write and one read per log, on every
//! backend, and no half-written record (text without metadata) after a crash.
//!
//! Both backends are [`object_store`]'s, so the folder the local stack uses and the operator's bucket behave the
//! same way: the tests of one are the tests of the other.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::config::{bool_or, env_string, parse_duration, ConfigError, Secret, SecretStore};
use crate::signature::{sign_sha256, verify_signature};

/// How long records are kept when `log_retention` is unset: long enough to read a month-old failure.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The folder used when no bucket is configured and `log_store_path` is unset: `/tmp` is writable even with a
/// read-only root filesystem.
pub(crate) const DEFAULT_FOLDER: &str = "/tmp/ofc-build-logs";
/// What replaces each secret in a stored log.
pub const SCRUBBED: &str = "***";
/// Put before the canonical query a link signature covers, so that a link's signature can never pass as an
/// `X-Cloud-Signature` of a body (both are keyed with `payload-secret`).
const LINK_DOMAIN: &str = "ofc-log-link:v1\n";
const RECORD_SUFFIX: &str = ".log";
/// How much of a record [`LogStore::meta`] reads first: a metadata line is a few hundred bytes.
const META_PROBE_BYTES: u64 = 4096;
/// The function that serves logs.
pub use crate::functions::PIPELINE_LOG;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("invalid log key: {0}")]
    InvalidKey(String),
    #[error("no build log is stored for {0}")]
    NotFound(String),
    #[error("the stored log {key} is damaged: {reason}")]
    Damaged { key: String, reason: String },
    #[error("the log store cannot be opened: {0}")]
    Open(String),
    #[error("the log store failed: {0}")]
    Backend(#[source] object_store::Error),
}

/// Where one build's log lives: `<owner id>/<repo>/<sha>/<function>`. Keyed by the GitHub account id, not the
/// login, so a renamed or recycled login reads none of the old account's logs. Every part is checked so that a key
/// taken from a URL can never reach outside its owner's folder (no `..`, no `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogKey {
    owner_id: u64,
    repo: String,
    sha: String,
    function: String,
}

impl LogKey {
    /// Checks and builds a key; the owner id may not be 0 (unknown), the SHA must be 7 to 64 lower-case hex digits.
    pub fn new(owner_id: u64, repo: &str, sha: &str, function: &str) -> Result<Self, LogStoreError> {
        if owner_id == 0 {
            return Err(LogStoreError::InvalidKey("`owner_id` is 0: the push named no owner account".into()));
        }
        check_part("repo", repo, 100)?;
        check_sha(sha)?;
        check_part("function", function, 128)?;
        Ok(Self { owner_id, repo: repo.to_owned(), sha: sha.to_owned(), function: function.to_owned() })
    }

    /// [`new`](Self::new) with the owner id as a link's query gives it.
    pub fn parse(owner_id: &str, repo: &str, sha: &str, function: &str) -> Result<Self, LogStoreError> {
        let id = owner_id
            .parse::<u64>()
            .ok()
            .filter(|_| !owner_id.starts_with('0'))
            .ok_or_else(|| LogStoreError::InvalidKey("`owner_id` is not an account id".into()))?;
        Self::new(id, repo, sha, function)
    }

    pub fn owner_id(&self) -> u64 {
        self.owner_id
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn sha(&self) -> &str {
        &self.sha
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    fn object(&self) -> ObjectPath {
        ObjectPath::from(format!("{}/{}/{}/{}{RECORD_SUFFIX}", self.owner_id, self.repo, self.sha, self.function))
    }
}

impl fmt::Display for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.owner_id, self.repo, self.sha, self.function)
    }
}

/// One part of a key: letters, digits, `-`, `_` and `.`, never `..`, so it is one path segment on disk and in S3.
fn check_part(name: &str, value: &str, max: usize) -> Result<(), LogStoreError> {
    let refuse = |why: &str| Err(LogStoreError::InvalidKey(format!("`{name}` {why}")));
    if value.is_empty() {
        return refuse("is empty");
    }
    if value.len() > max {
        return refuse(&format!("is longer than {max} characters"));
    }
    // A leading dot is fine (GitHub's `.github` repository); `.` alone or any `..` is not.
    if value == "." || value.contains("..") {
        return refuse("may not be `.` or contain `..`");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return refuse("may hold only letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

fn check_sha(sha: &str) -> Result<(), LogStoreError> {
    let hex = sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if (7..=64).contains(&sha.len()) && hex {
        Ok(())
    } else {
        Err(LogStoreError::InvalidKey("`sha` must be 7 to 64 lower-case hex digits".into()))
    }
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Timeout,
}

/// How long one step of a build took (`build`, `push`, `deploy`…), in the order the steps ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub duration_ms: u64,
}

/// What a user wants to know about a build beside its text: how it ended, when, how long each step took, and
/// what it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMeta {
    pub outcome: Outcome,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    #[serde(default)]
    pub steps: Vec<StepTiming>,
    /// The image reference built, when the build got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The pushed image's digest (`sha256:…`), which the deployment is pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl LogMeta {
    /// The whole build's wall-clock time (zero when the clock went backwards).
    pub fn duration(&self) -> Duration {
        (self.finished - self.started).to_std().unwrap_or_default()
    }
}

/// A stored build log: its metadata and its whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub meta: LogMeta,
    pub text: String,
}

impl LogRecord {
    /// The stored form: the metadata as one JSON line (compact JSON never holds a raw newline), then the text.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&self.meta).expect("metadata always serialises");
        bytes.push(b'\n');
        bytes.extend_from_slice(self.text.as_bytes());
        bytes
    }

    fn decode(key: &LogKey, bytes: &[u8]) -> Result<Self, LogStoreError> {
        let damaged = |reason: String| LogStoreError::Damaged { key: key.to_string(), reason };
        let split = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| damaged("no metadata line".into()))?;
        let meta = serde_json::from_slice(&bytes[..split]).map_err(|e| damaged(format!("metadata: {e}")))?;
        let text = String::from_utf8_lossy(&bytes[split + 1..]).into_owned();
        Ok(Self { meta, text })
    }
}

/// One function's log of a commit, as listed (without reading it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedLog {
    pub function: String,
    /// The stored record's size, metadata included.
    pub bytes: u64,
    pub stored_at: DateTime<Utc>,
}

/// One function's build that has a log, as [`LogStore::builds`] lists it (without reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBuild {
    /// The record's key: its SHA is the build's commit.
    pub key: LogKey,
    /// The stored record's size, metadata included.
    pub bytes: u64,
    /// When the record was written: when the build finished.
    pub stored_at: DateTime<Utc>,
}

/// `text` with every occurrence of each non-empty secret replaced by [`SCRUBBED`]. Longer secrets go first, so a
/// secret that contains another is scrubbed whole rather than leaving its remainder behind.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut ordered: Vec<&str> = secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
    ordered.dedup();
    let mut out = text.to_owned();
    for secret in ordered {
        if out.contains(secret) {
            out = out.replace(secret, SCRUBBED);
        }
    }
    out
}

/// An S3-compatible bucket, named as the last OpenFaaS Cloud release named it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `s3_url`: the endpoint (`http://minio:9000`, or `minio:9000` with `s3_tls` choosing the scheme); `None`
    /// means AWS itself.
    pub endpoint: Option<String>,
    /// `s3_bucket`.
    pub bucket: String,
    /// `s3_region`, default `us-east-1` (what MinIO and most S3-compatible servers expect).
    pub region: String,
    /// Secret `s3-access-key` (the last release's name; `s3-access-key-id` is accepted too).
    pub access_key_id: Secret,
    /// Secret `s3-secret-key` (the last release's name; `s3-secret-access-key` is accepted too).
    pub secret_access_key: Secret,
}

/// Which backend holds the logs.
#[derive(Debug, Clone)]
pub enum LogBackend {
    /// `log_store_path`: a folder on disk (the local stack's `.ofc/logs/builds/`).
    Folder(PathBuf),
    /// An operator's bucket, chosen whenever `s3_bucket` is set.
    S3(S3Settings),
}

/// The store's settings, read once at start.
#[derive(Debug, Clone)]
pub struct LogStoreConfig {
    pub backend: LogBackend,
    /// `log_retention` (`30d`, `720h`…): older records are removed by [`LogStore::sweep`].
    pub retention: Duration,
}

impl LogStoreConfig {
    /// A folder with the default retention (tests, the local stack).
    pub fn folder(path: impl Into<PathBuf>) -> Self {
        Self { backend: LogBackend::Folder(path.into()), retention: DEFAULT_RETENTION }
    }

    /// `s3_bucket` set selects the bucket (`s3_url`, `s3_region`, `s3_tls`, secrets `s3-access-key` and
    /// `s3-secret-key`, as the last OpenFaaS Cloud release named them); otherwise the folder `log_store_path`.
    /// `log_retention` applies to both.
    pub fn from_env(secrets: &SecretStore) -> Result<Self, ConfigError> {
        let retention = match env_string("log_retention") {
            None => DEFAULT_RETENTION,
            Some(v) => {
                parse_retention(&v).map_err(|reason| ConfigError::Invalid { name: "log_retention".into(), reason })?
            }
        };
        let backend = match env_string("s3_bucket") {
            Some(bucket) => LogBackend::S3(S3Settings {
                endpoint: s3_endpoint()?,
                bucket,
                region: env_string("s3_region").unwrap_or_else(|| "us-east-1".into()),
                access_key_id: secrets.required_any(&["s3-access-key", "s3-access-key-id"])?,
                secret_access_key: secrets.required_any(&["s3-secret-key", "s3-secret-access-key"])?,
            }),
            None => LogBackend::Folder(env_string("log_store_path").unwrap_or_else(|| DEFAULT_FOLDER.into()).into()),
        };
        Ok(Self { backend, retention })
    }

    /// A store that could not be opened as a start-up error naming the setting that chose it.
    pub(crate) fn invalid(&self, error: &LogStoreError) -> ConfigError {
        ConfigError::Invalid {
            name: match self.backend {
                LogBackend::S3(_) => "s3_bucket".into(),
                LogBackend::Folder(_) => "log_store_path".into(),
            },
            reason: error.to_string(),
        }
    }
}

/// `s3_url` as an endpoint URL: a bare `host:port` (the original's form) gets `https://`, or `http://` when
/// `s3_tls=false`.
fn s3_endpoint() -> Result<Option<String>, ConfigError> {
    let Some(value) = env_string("s3_url") else { return Ok(None) };
    let tls = bool_or("s3_tls", true)?;
    let with_scheme =
        if value.contains("://") { value.clone() } else { format!("{}://{value}", if tls { "https" } else { "http" }) };
    let url = Url::parse(&with_scheme)
        .map_err(|e| ConfigError::Invalid { name: "s3_url".into(), reason: format!("`{value}` is not a URL: {e}") })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid { name: "s3_url".into(), reason: format!("`{value}` must be http(s)") });
    }
    Ok(Some(with_scheme.trim_end_matches('/').to_owned()))
}

/// `30d`, `12h`, `90m`, or seconds: retention is counted in days, which Go-style durations lack.
pub(crate) fn parse_retention(value: &str) -> Result<Duration, String> {
    if let Some(days) = value.trim().strip_suffix('d') {
        let days: u64 = days.trim().parse().map_err(|_| format!("`{value}` is not a number of days"))?;
        return Ok(Duration::from_secs(days * 24 * 3600));
    }
    parse_duration(value)
}

/// The build-log store: the same operations on a folder or a bucket.
#[derive(Clone)]
pub struct LogStore {
    objects: Arc<dyn ObjectStore>,
    retention: Duration,
    /// Where the logs are, for start-up logs and errors (never a credential).
    location: String,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("location", &self.location)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens the configured backend; a folder is created if missing.
    pub fn open(config: &LogStoreConfig) -> Result<Self, LogStoreError> {
        let (objects, location) = open_objects(config)?;
        Ok(Self { objects, retention: config.retention, location })
    }

    /// The store the environment names (`log_store_path`, or `s3_bucket` and its settings), opened at start: one
    /// that cannot be used stops the start, naming the setting that chose it.
    pub fn from_env(secrets: &SecretStore) -> Result<Self, ConfigError> {
        let config = LogStoreConfig::from_env(secrets)?;
        Self::open(&config).map_err(|e| config.invalid(&e))
    }

    /// Where the logs are kept, for the start-up log line.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// How long records are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// pipeline-log's link to `key` (under the gateway's public URL), valid for as long as the record is kept.
    pub fn link(&self, gateway_public_url: &Url, key: &LogKey, secret: &Secret) -> Url {
        let base = gateway_public_url.join("function/pipeline-log").expect("a relative path joins");
        let retention = chrono::Duration::from_std(self.retention)
            .or_else(|_| chrono::Duration::from_std(DEFAULT_RETENTION))
            .expect("30 days fit");
        let expires = Utc::now().checked_add_signed(retention).unwrap_or(DateTime::<Utc>::MAX_UTC);
        signed_log_url(&base, key, expires, secret)
    }

    /// Stores a record under `key`, replacing any earlier one, with every one of `secrets` scrubbed from the text
    /// first. Answers the stored size in bytes.
    pub async fn put(&self, key: &LogKey, record: &LogRecord, secrets: &[&str]) -> Result<u64, LogStoreError> {
        let scrubbed = LogRecord { meta: record.meta.clone(), text: scrub(&record.text, secrets) };
        let bytes = scrubbed.encode();
        let size = bytes.len() as u64;
        self.objects.put(&key.object(), PutPayload::from(bytes)).await.map_err(LogStoreError::Backend)?;
        Ok(size)
    }

    /// The record stored under `key`.
    pub async fn get(&self, key: &LogKey) -> Result<LogRecord, LogStoreError> {
        let result = self.objects.get(&key.object()).await.map_err(|e| not_found_or(e, key))?;
        let bytes = result.bytes().await.map_err(|e| not_found_or(e, key))?;
        LogRecord::decode(key, &bytes)
    }

    /// Only the metadata of the record under `key`: its first line, read with a range request of a few KiB, so a
    /// page listing builds does not read whole logs. A metadata line longer than that is read whole.
    pub async fn meta(&self, key: &LogKey) -> Result<LogMeta, LogStoreError> {
        let options = GetOptions { range: Some(GetRange::Bounded(0..META_PROBE_BYTES)), ..GetOptions::default() };
        let result = self.objects.get_opts(&key.object(), options).await.map_err(|e| not_found_or(e, key))?;
        let bytes = result.bytes().await.map_err(|e| not_found_or(e, key))?;
        match bytes.iter().position(|&b| b == b'\n') {
            Some(split) => serde_json::from_slice(&bytes[..split])
                .map_err(|e| LogStoreError::Damaged { key: key.to_string(), reason: format!("metadata: {e}") }),
            None => Ok(self.get(key).await?.meta),
        }
    }

    /// The functions of the owner's `repo` at `sha` that have a log, by name.
    pub async fn list(&self, owner_id: u64, repo: &str, sha: &str) -> Result<Vec<ListedLog>, LogStoreError> {
        let probe = LogKey::new(owner_id, repo, sha, "x")?;
        let prefix = ObjectPath::from(format!("{}/{}/{}", probe.owner_id, probe.repo, probe.sha));
        let objects: Vec<_> = self.objects.list(Some(&prefix)).try_collect().await.map_err(LogStoreError::Backend)?;
        let mut listed: Vec<ListedLog> = objects
            .into_iter()
            .filter_map(|object| {
                let name = object.location.filename()?.strip_suffix(RECORD_SUFFIX)?.to_owned();
                Some(ListedLog { function: name, bytes: object.size, stored_at: object.last_modified })
            })
            .collect();
        listed.sort_by(|a, b| a.function.cmp(&b.function));
        Ok(listed)
    }

    /// The SHA of the owner's `repo` whose logs were written last: the newest build pushed, as far as the store knows.
    pub async fn latest(&self, owner_id: u64, repo: &str) -> Result<Option<String>, LogStoreError> {
        let probe = LogKey::new(owner_id, repo, "0000000", "x")?;
        let prefix = ObjectPath::from(format!("{}/{}", probe.owner_id, probe.repo));
        let objects: Vec<_> = self.objects.list(Some(&prefix)).try_collect().await.map_err(LogStoreError::Backend)?;
        let newest = objects
            .into_iter()
            .filter(|object| object.location.filename().is_some_and(|name| name.ends_with(RECORD_SUFFIX)))
            .max_by(|a, b| a.last_modified.cmp(&b.last_modified).then_with(|| a.location.cmp(&b.location)));
        Ok(newest.and_then(|object| object.location.parts().nth(2).map(|sha| sha.as_ref().to_owned())))
    }

    /// The builds of `function` from `owner/repo` that have a log, newest first, at most `limit`: what the
    /// dashboard lists on a function's page. The function's name is matched case-insensitively (a service name is
    /// lower-cased, a stack.yml's function name may not be); each entry's key reads the record with [`get`](Self::get).
    pub async fn builds(
        &self,
        owner_id: u64,
        repo: &str,
        function: &str,
        limit: usize,
    ) -> Result<Vec<StoredBuild>, LogStoreError> {
        let probe = LogKey::new(owner_id, repo, "0000000", function)?;
        let prefix = ObjectPath::from(format!("{}/{}", probe.owner_id, probe.repo));
        let objects: Vec<_> = self.objects.list(Some(&prefix)).try_collect().await.map_err(LogStoreError::Backend)?;
        let mut builds: Vec<StoredBuild> = objects
            .into_iter()
            .filter_map(|object| {
                let parts: Vec<String> = object.location.parts().map(|p| p.as_ref().to_owned()).collect();
                let [_, _, sha, file] = parts.as_slice() else { return None };
                let name = file.strip_suffix(RECORD_SUFFIX)?;
                if !name.eq_ignore_ascii_case(function) {
                    return None;
                }
                let key = LogKey::new(probe.owner_id, &probe.repo, sha, name).ok()?;
                Some(StoredBuild { key, bytes: object.size, stored_at: object.last_modified })
            })
            .collect();
        builds.sort_by(|a, b| b.stored_at.cmp(&a.stored_at).then_with(|| b.key.sha.cmp(&a.key.sha)));
        builds.truncate(limit);
        Ok(builds)
    }

    /// Removes records older than the retention; answers how many. pipeline-log runs it periodically.
    pub async fn sweep(&self) -> Result<usize, LogStoreError> {
        let retention = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        self.sweep_before(Utc::now() - retention).await
    }

    /// Removes records stored before `cutoff`: [`sweep`](Self::sweep) with the clock made explicit.
    pub async fn sweep_before(&self, cutoff: DateTime<Utc>) -> Result<usize, LogStoreError> {
        let objects: Vec<_> = self.objects.list(None).try_collect().await.map_err(LogStoreError::Backend)?;
        let mut removed = 0;
        for object in objects.into_iter().filter(|object| object.last_modified < cutoff) {
            match self.objects.delete(&object.location).await {
                Ok(()) => removed += 1,
                // Another replica swept it first.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LogStoreError::Backend(e)),
            }
        }
        Ok(removed)
    }
}

/// The folder or bucket `config` names, and where it is (for logs and errors; never a credential). The session
/// revocations ([`crate::revocation`]) and gh-push's delivery records live in the same store, each under a prefix
/// no log key can take.
pub fn open_objects(config: &LogStoreConfig) -> Result<(Arc<dyn ObjectStore>, String), LogStoreError> {
    Ok(match &config.backend {
        LogBackend::Folder(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| LogStoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
            let local = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| LogStoreError::Open(format!("{}: {e}", dir.display())))?
                .with_automatic_cleanup(true);
            (Arc::new(local), dir.display().to_string())
        }
        LogBackend::S3(s3) => (Arc::new(open_s3(s3)?), format!("s3 bucket {}", s3.bucket)),
    })
}

fn open_s3(s3: &S3Settings) -> Result<object_store::aws::AmazonS3, LogStoreError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_access_key_id(s3.access_key_id.expose())
        .with_secret_access_key(s3.secret_access_key.expose());
    if let Some(endpoint) = &s3.endpoint {
        // Path-style addressing (`endpoint/bucket/key`): what MinIO and other S3-compatible servers serve.
        builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
    }
    builder.build().map_err(|e| LogStoreError::Open(format!("s3 bucket {}: {e}", s3.bucket)))
}

fn not_found_or(error: object_store::Error, key: &LogKey) -> LogStoreError {
    match error {
        object_store::Error::NotFound { .. } => LogStoreError::NotFound(key.to_string()),
        other => LogStoreError::Backend(other),
    }
}

/// Why a log link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this log link is not signed: it needs `expires` and `sig`")]
    Unsigned,
    #[error("this log link's signature does not match: it was changed or not made by this platform")]
    Mismatch,
    #[error("this log link expired at {0}: ask for a new one")]
    Expired(DateTime<Utc>),
}

/// What a link's signature covers, in a fixed order: the key and the expiry (Unix seconds).
pub(crate) fn link_canonical(key: &LogKey, expires: i64) -> String {
    format!(
        "{LINK_DOMAIN}owner_id={}&repo={}&sha={}&function={}&expires={expires}",
        key.owner_id, key.repo, key.sha, key.function
    )
}

/// The hex HMAC-SHA256 of the link's canonical query, keyed with `payload-secret`.
pub(crate) fn sign_log_link(key: &LogKey, expires: i64, secret: &Secret) -> String {
    let signed = sign_sha256(secret.expose().as_bytes(), link_canonical(key, expires).as_bytes());
    signed.trim_start_matches("sha256=").to_owned()
}

/// A link to `key`'s log on pipeline-log at `base` (its public URL), valid until `expires`: what buildshiprun and
/// github-status put in a commit status, like a pre-signed S3 URL.
pub fn signed_log_url(base: &Url, key: &LogKey, expires: DateTime<Utc>, secret: &Secret) -> Url {
    let expires = expires.timestamp();
    let mut url = base.clone();
    url.query_pairs_mut()
        .clear()
        .append_pair("owner_id", &key.owner_id.to_string())
        .append_pair("repo", &key.repo)
        .append_pair("sha", &key.sha)
        .append_pair("function", &key.function)
        .append_pair("expires", &expires.to_string())
        .append_pair("sig", &sign_log_link(key, expires, secret));
    url
}

/// Checks a link's signature in constant time, then its expiry against `now`. The signature is checked first so
/// that a changed `expires` reads as tampering, not as a lapse.
pub fn verify_log_link(
    key: &LogKey,
    expires: i64,
    sig: &str,
    secret: &Secret,
    now: DateTime<Utc>,
) -> Result<(), LinkError> {
    let header = format!("sha256={}", sig.trim());
    verify_signature(&header, link_canonical(key, expires).as_bytes(), secret.expose().as_bytes())
        .map_err(|_| LinkError::Mismatch)?;
    if now.timestamp() > expires {
        let at = DateTime::from_timestamp(expires, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
        return Err(LinkError::Expired(at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    #[test]
    fn keys_refuse_paths_that_leave_their_folder() {
        assert!(LogKey::new(1, "fns", SHA, "hello").is_ok());
        assert!(LogKey::new(1, ".github", SHA, "hello").is_ok());
        assert_eq!(LogKey::new(42, "fns", SHA, "hello").unwrap().to_string(), format!("42/fns/{SHA}/hello"));
        assert_eq!(LogKey::parse("42", "fns", SHA, "hello").unwrap().owner_id(), 42);
        for owner in ["..", "octo", "0", "042", "-1", "", "1/2"] {
            assert!(LogKey::parse(owner, "fns", SHA, "hello").is_err(), "{owner}");
        }
        for (owner, repo, sha, function) in [
            (0, "fns", SHA, "hello"),
            (1, "a/b", SHA, "hello"),
            (1, "fns", SHA, "../x"),
            (1, "fns", SHA, "."),
            (1, "fns", SHA, "a..b"),
            (1, "fns", "ZZZZZZZ", "hello"),
            (1, "fns", &SHA.to_uppercase(), "hello"),
            (1, "", SHA, "hello"),
        ] {
            assert!(LogKey::new(owner, repo, sha, function).is_err(), "{owner}/{repo}/{sha}/{function}");
        }
    }

    #[test]
    fn scrubbing_removes_every_secret_longest_first() {
        let text = "token=abc123 again abc123 and abc1234";
        assert_eq!(scrub(text, &["abc123", "abc1234", ""]), "token=*** again *** and ***");
    }

    #[test]
    fn link_signatures_cover_every_part_and_expire() {
        let secret = Secret::new("payload");
        let key = LogKey::new(1, "fns", SHA, "hello").unwrap();
        let now = Utc::now();
        let expires = now.timestamp() + 60;
        let sig = sign_log_link(&key, expires, &secret);
        verify_log_link(&key, expires, &sig, &secret, now).unwrap();
        let other = LogKey::new(1, "fns", SHA, "world").unwrap();
        assert_eq!(verify_log_link(&other, expires, &sig, &secret, now), Err(LinkError::Mismatch));
        assert_eq!(verify_log_link(&key, expires + 1, &sig, &secret, now), Err(LinkError::Mismatch));
        let late = now + chrono::Duration::seconds(61);
        assert!(matches!(verify_log_link(&key, expires, &sig, &secret, late), Err(LinkError::Expired(_))));
    }

    #[tokio::test]
    async fn builds_lists_one_function_s_logged_shas_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(&LogStoreConfig::folder(dir.path())).unwrap();
        let now = Utc::now();
        let meta = LogMeta {
            outcome: Outcome::Success,
            started: now,
            finished: now,
            steps: vec![],
            image: None,
            digest: None,
        };
        let record = LogRecord { meta, text: "ok".into() };
        for (sha, function) in [("aaaaaaa", "hello"), ("bbbbbbb", "hello"), ("bbbbbbb", "other"), ("ccccccc", "Hello")]
        {
            store.put(&LogKey::new(1, "fns", sha, function).unwrap(), &record, &[]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.put(&LogKey::new(1, "web", "ddddddd", "hello").unwrap(), &record, &[]).await.unwrap();
        let builds = store.builds(1, "fns", "hello", 10).await.unwrap();
        let shas: Vec<&str> = builds.iter().map(|b| b.key.sha()).collect();
        assert_eq!(shas, ["ccccccc", "bbbbbbb", "aaaaaaa"], "newest first, this repo and function only");
        assert_eq!(builds[0].key.function(), "Hello", "the key reads the record as it was stored");
        assert_eq!(store.meta(&builds[0].key).await.unwrap(), record.meta, "the metadata alone");
        assert_eq!(store.builds(1, "fns", "hello", 2).await.unwrap().len(), 2);
        assert!(store.builds(1, "none", "hello", 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn meta_reads_a_long_metadata_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(&LogStoreConfig::folder(dir.path())).unwrap();
        let now = Utc::now();
        let steps = (0..200).map(|i| StepTiming { step: format!("step-{i:04}"), duration_ms: i }).collect();
        let meta = LogMeta { outcome: Outcome::Timeout, started: now, finished: now, steps, image: None, digest: None };
        let key = LogKey::new(1, "fns", SHA, "hello").unwrap();
        store.put(&key, &LogRecord { meta: meta.clone(), text: "x".repeat(10_000) }, &[]).await.unwrap();
        assert!(serde_json::to_vec(&meta).unwrap().len() > 4096, "longer than the first read");
        assert_eq!(store.meta(&key).await.unwrap(), meta);
        let missing = LogKey::new(1, "fns", SHA, "gone").unwrap();
        assert!(matches!(store.meta(&missing).await, Err(LogStoreError::NotFound(_))));
    }

    #[test]
    fn retention_accepts_days() {
        assert_eq!(parse_retention("30d").unwrap(), DEFAULT_RETENTION);
        assert_eq!(parse_retention("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert!(parse_retention("soon").is_err());
    }
}
