//! The operator's template store: the repositories of `custom_templates`, fetched by git-tar itself, so that a
//! repository needs no `template/` folder of its own (faas-cli users run `faas-cli template pull` and do not commit
//! the result).
//!
//! - Each repository is fetched shallowly at its `#ref` (or its default branch) with the hardened `git` of
//!   [`crate::clone`], and only its `template/` folder is kept, under `<cache>/<repository key>/<commit>/`.
//! - A push asks for the store; a repository is looked at again only when its copy is older than
//!   `templates_refresh`, and then with `git ls-remote` first, so an unchanged repository costs one round trip. A
//!   failed fetch keeps the copy already there (and is logged); a repository never fetched is tried at each push.
//! - A language is a `template/<lang>/` folder holding a `template.yml`; when two repositories offer one, the first
//!   in `custom_templates` wins, as `faas-cli template pull` without `--overwrite` keeps the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clone::{fetch_ref, remote_commit, CloneError};

/// One repository of `custom_templates`: `https://host/repo.git` or `https://host/repo.git#ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRepo {
    pub url: String,
    /// A branch, a tag or a full commit SHA (faas-cli's `sha-<sha>` is accepted for the last); `None`: the default
    /// branch.
    pub reference: Option<String>,
}

impl TemplateRepo {
    /// `url[#ref]`: an http(s) URL, and a ref of git's safe characters (it reaches `git fetch` as a refspec).
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (url, reference) = match entry.split_once('#') {
            Some((url, reference)) => (url, Some(reference)),
            None => (entry, None),
        };
        let lower = url.to_ascii_lowercase();
        let host = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).unwrap_or_default();
        if host.is_empty() || host.starts_with('/') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{entry}` is not an http(s) git URL"));
        }
        let reference = match reference {
            None => None,
            Some(r) => {
                Some(parse_reference(r).ok_or_else(|| format!("`{entry}`: `#{r}` is not a branch, tag or SHA"))?)
            }
        };
        Ok(Self { url: url.to_owned(), reference })
    }

    /// The list of `custom_templates`: entries separated by commas or white space.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()).map(Self::parse).collect()
    }

    /// As written in `custom_templates`, for messages.
    pub fn shown(&self) -> String {
        match &self.reference {
            Some(reference) => format!("{}#{reference}", self.url),
            None => self.url.clone(),
        }
    }

    /// Whether a stack's `configuration.templates` source names this repository: the same URL (compared without a
    /// trailing `/` or `.git`, the host without case), and the same ref when the source gives one.
    pub fn is_source(&self, source: &str) -> bool {
        let Ok(other) = Self::parse(source.trim()) else { return false };
        same_url(&self.url, &other.url) && (other.reference.is_none() || other.reference == self.reference)
    }

    /// The folder name of this repository's copies in the cache: stable across restarts, so a copy is reused.
    fn key(&self) -> String {
        let readable: String = self
            .url
            .rsplit('/')
            .find(|part| !part.is_empty())
            .unwrap_or("templates")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
        // FNV-1a: the same on every build and run, unlike std's hasher.
        let hash = self
            .shown()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("{readable}-{hash:016x}")
    }

    /// A full SHA never moves: once fetched, it is not looked at again.
    fn is_pinned_commit(&self) -> bool {
        self.reference.as_deref().is_some_and(is_full_sha)
    }
}

fn is_full_sha(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A ref from `#ref`: `sha-<40 hex>` becomes the SHA; otherwise git's safe characters, no `..`, not starting with
/// `-` or `/` (faas-cli accepts `[-/\w._]+`).
pub fn parse_reference(text: &str) -> Option<String> {
    if let Some(sha) = text.strip_prefix("sha-") {
        return is_full_sha(sha).then(|| sha.to_ascii_lowercase());
    }
    let safe = text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '.'));
    let shaped = !text.starts_with(['-', '/', '.']) && !text.ends_with(['/', '.']) && !text.contains("..");
    (safe && shaped && !text.is_empty() && text.len() <= 200).then(|| text.to_owned())
}

fn same_url(a: &str, b: &str) -> bool {
    let normal = |url: &str| {
        let url = url.trim_end_matches('/');
        let url = url.strip_suffix(".git").unwrap_or(url).to_owned();
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                format!("{}://{}/{path}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
            }
            None => url,
        }
    };
    normal(a) == normal(b)
}

/// A fetched repository's `template/` folder at one commit. Removed when the last push using it is done with it
/// and the store has moved on to a newer commit.
#[derive(Debug)]
pub struct Snapshot {
    pub commit: String,
    /// The folder holding `template/`: links in a template must stay inside it.
    pub root: PathBuf,
    /// The languages it offers, sorted.
    pub languages: Vec<String>,
}

impl Snapshot {
    fn open(root: PathBuf, commit: String) -> std::io::Result<Self> {
        let languages = languages_in(&root.join("template"))?;
        Ok(Self { commit, root, languages })
    }

    /// `template/<lang>/` when this copy offers `lang`.
    pub fn template(&self, lang: &str) -> Option<PathBuf> {
        self.languages.binary_search_by(|l| l.as_str().cmp(lang)).ok().map(|_| self.root.join("template").join(lang))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            tracing::debug!(folder = %self.root.display(), %error, "an old template copy could not be removed");
        }
    }
}

/// The folder names under `template/` that hold a `template.yml` (what `faas-cli build` can use), sorted.
pub fn languages_in(template: &Path) -> std::io::Result<Vec<String>> {
    let mut languages = Vec::new();
    for entry in std::fs::read_dir(template)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && entry.path().join("template.yml").is_file() {
            languages.push(name);
        }
    }
    languages.sort();
    Ok(languages)
}

/// One repository as the store knows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub repo: TemplateRepo,
    /// The copy being served, if one was ever fetched.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Why the last fetch failed, when it did.
    pub error: Option<String>,
}

/// The store as one push sees it: the repositories in `custom_templates` order.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub entries: Vec<Entry>,
}

impl Catalogue {
    /// The first repository offering `lang`, and its `template/<lang>/`. `name@ref` (what current faas-cli calls
    /// a template pulled from `url#ref`) asks for `name` from a repository pinned at `ref`.
    pub fn find(&self, lang: &str) -> Option<(Arc<Snapshot>, PathBuf)> {
        let exact =
            self.entries.iter().filter_map(|e| e.snapshot.clone()).find_map(|s| s.template(lang).map(|t| (s, t)));
        exact.or_else(|| {
            let (name, reference) = lang.split_once('@')?;
            let reference = parse_reference(reference)?;
            self.entries
                .iter()
                .filter(|e| e.repo.reference.as_deref() == Some(reference.as_str()))
                .filter_map(|e| e.snapshot.clone())
                .find_map(|s| s.template(name).map(|t| (s, t)))
        })
    }

    /// Every language the store offers, sorted, once.
    pub fn languages(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.entries.iter().filter_map(|e| e.snapshot.as_ref()).flat_map(|s| s.languages.clone()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// The repositories that could not be fetched and have no copy, for messages.
    pub fn unavailable(&self) -> Vec<String> {
        self.entries.iter().filter(|e| e.snapshot.is_none()).map(|e| e.repo.shown()).collect()
    }
}

struct RepoState {
    entry: Entry,
    /// Copies replaced by a newer commit that pushes may still be using: if the ref moves back to one of them, it
    /// is served again rather than opened twice (the second copy's removal would take the first's folder).
    retired: Vec<std::sync::Weak<Snapshot>>,
    /// When it was last looked at (fetched or not): the next look is `refresh` later.
    checked: Option<Instant>,
}

/// The store: its repositories' copies, refreshed at most every `refresh`.
pub struct TemplateStore {
    cache: PathBuf,
    refresh: Duration,
    timeout: Duration,
    /// Held while refreshing, so concurrent pushes fetch once and then share the result.
    state: tokio::sync::Mutex<Vec<RepoState>>,
}

impl TemplateStore {
    /// A store of `repos`, kept in `cache`, refreshed at most every `refresh`; each fetch may take `timeout`.
    pub fn new(repos: Vec<TemplateRepo>, cache: PathBuf, refresh: Duration, timeout: Duration) -> Self {
        let mut unique: Vec<TemplateRepo> = Vec::new();
        // A repository named twice would share its copies' folders; the second offers nothing the first does not.
        for repo in repos {
            if !unique.contains(&repo) {
                unique.push(repo);
            }
        }
        let state = unique
            .into_iter()
            .map(|repo| RepoState {
                entry: Entry { repo, snapshot: None, error: None },
                retired: Vec::new(),
                checked: None,
            })
            .collect();
        Self { cache, refresh, timeout, state: tokio::sync::Mutex::new(state) }
    }

    /// The store for one push: every repository whose copy is older than `refresh` (or missing) is looked at first.
    pub async fn catalogue(&self) -> Catalogue {
        let mut state = self.state.lock().await;
        for repo in state.iter_mut() {
            let due = match (&repo.entry.snapshot, repo.checked) {
                (Some(_), _) if repo.entry.repo.is_pinned_commit() => false,
                (Some(_), Some(checked)) => checked.elapsed() >= self.refresh,
                _ => true,
            };
            if due {
                repo.checked = Some(Instant::now());
                match self.refreshed(&repo.entry, &repo.retired).await {
                    Ok(snapshot) => {
                        if repo.entry.snapshot.as_ref().is_none_or(|old| old.commit != snapshot.commit) {
                            tracing::info!(repository = %repo.entry.repo.shown(), commit = %snapshot.commit, languages = snapshot.languages.len(), "template repository fetched");
                        }
                        repo.retired.retain(|old| old.strong_count() > 0);
                        if let Some(old) = repo.entry.snapshot.replace(snapshot.clone()) {
                            if !Arc::ptr_eq(&old, &snapshot) {
                                repo.retired.push(Arc::downgrade(&old));
                            }
                        }
                        repo.entry.error = None;
                    }
                    Err(error) => {
                        tracing::warn!(repository = %repo.entry.repo.shown(), %error, serving = ?repo.entry.snapshot.as_ref().map(|s| s.commit.clone()), "template repository could not be fetched");
                        repo.entry.error = Some(error.to_string());
                    }
                }
            }
        }
        Catalogue { entries: state.iter().map(|r| r.entry.clone()).collect() }
    }

    /// The copy of `entry`'s repository at the commit its ref names now: the one served when unchanged, one left in
    /// the cache by an earlier run, or a new fetch.
    async fn refreshed(
        &self,
        entry: &Entry,
        retired: &[std::sync::Weak<Snapshot>],
    ) -> Result<Arc<Snapshot>, StoreError> {
        let repo = &entry.repo;
        let folder = self.cache.join(repo.key());
        tokio::fs::create_dir_all(&folder).await?;
        let commit = match repo.reference.as_deref().filter(|r| is_full_sha(r)) {
            Some(sha) => sha.to_owned(),
            None => remote_commit(&repo.url, repo.reference.as_deref(), &folder, self.timeout).await?,
        };
        let same = |s: &Arc<Snapshot>| s.commit.eq_ignore_ascii_case(&commit);
        if let Some(current) = entry.snapshot.clone().filter(same) {
            return Ok(current);
        }
        if let Some(again) = retired.iter().filter_map(std::sync::Weak::upgrade).find(same) {
            return Ok(again);
        }
        let target = folder.join(&commit);
        if target.join("template").is_dir() {
            return Ok(Arc::new(open_blocking(target, commit).await?));
        }
        let fetched = fetch_into(repo, &folder, self.timeout).await?;
        let target = folder.join(&fetched);
        Ok(Arc::new(open_blocking(target, fetched).await?))
    }
}

/// Fetches `repo` into a scratch folder under `folder` and moves its `template/` to `folder/<commit>/template`
/// (renamed into place whole, so a copy is never seen half-written); returns the commit.
async fn fetch_into(repo: &TemplateRepo, folder: &Path, timeout: Duration) -> Result<String, StoreError> {
    let scratch = tempfile::Builder::new().prefix(".fetch-").tempdir_in(folder)?;
    let checkout = scratch.path().join("checkout");
    tokio::fs::create_dir(&checkout).await?;
    let commit = fetch_ref(&repo.url, repo.reference.as_deref(), &checkout, timeout).await?;
    let template = checkout.join("template");
    if !tokio::fs::symlink_metadata(&template).await.is_ok_and(|m| m.is_dir()) {
        return Err(StoreError::NoTemplates(repo.shown()));
    }
    let staged = scratch.path().join("staged");
    tokio::fs::create_dir(&staged).await?;
    tokio::fs::rename(&template, staged.join("template")).await?;
    let target = folder.join(&commit);
    if tokio::fs::rename(&staged, &target).await.is_err() && !target.join("template").is_dir() {
        return Err(StoreError::Io(std::io::Error::other(format!("{} could not be written", target.display()))));
    }
    let removed = tokio::task::spawn_blocking(move || drop(scratch)).await;
    if let Err(error) = removed {
        tracing::debug!(%error, "a template fetch's scratch folder was not removed");
    }
    Ok(commit)
}

async fn open_blocking(root: PathBuf, commit: String) -> Result<Snapshot, StoreError> {
    tokio::task::spawn_blocking(move || Snapshot::open(root, commit))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .map_err(StoreError::Io)
}

/// Why a template repository could not be fetched (logged; the copy already there is kept).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Git(#[from] CloneError),
    #[error("{0} has no template/ folder")]
    NoTemplates(String),
    #[error("the template cache: {0}")]
    Io(#[from] std::io::Error),
}

/// Fetches a template repository a stack's `configuration.templates` names (allowed only where the operator allows
/// user build definitions) into `dest` for one push; returns the commit.
pub async fn fetch_for_push(repo: &TemplateRepo, dest: &Path, timeout: Duration) -> Result<String, StoreError> {
    tokio::fs::create_dir_all(dest).await?;
    let commit = fetch_ref(&repo.url, repo.reference.as_deref(), dest, timeout).await?;
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_custom_templates_separated_by_commas_or_spaces_with_refs() {
        let repos = TemplateRepo::parse_list(
            "https://github.com/openfaas/templates.git, https://github.com/openfaas/golang-http-template#0.7.0\n http://127.0.0.1:9/ofc/templates.git#sha-0123456789abcdef0123456789abcdef01234567",
        )
        .unwrap();
        assert_eq!(repos.len(), 3);
        assert_eq!(repos[0].reference, None);
        assert_eq!(repos[1].reference.as_deref(), Some("0.7.0"));
        assert_eq!(repos[2].reference.as_deref(), Some("0123456789abcdef0123456789abcdef01234567"));
        assert!(repos[2].is_pinned_commit());
        for bad in [
            "git@github.com:openfaas/templates.git",
            "file:///etc",
            "https://x/y#-upload-pack=sh",
            "https://x/y#a..b",
            "https://x/y#+refs/*:x",
            "https:///x",
        ] {
            assert!(TemplateRepo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_source_names_an_operator_repository_by_url_and_ref() {
        let repo = TemplateRepo::parse("https://github.com/openfaas/templates.git#1.0").unwrap();
        assert!(repo.is_source("https://GitHub.com/openfaas/templates"));
        assert!(repo.is_source("https://github.com/openfaas/templates.git#1.0"));
        assert!(!repo.is_source("https://github.com/openfaas/templates.git#2.0"));
        assert!(!repo.is_source("https://github.com/someone/templates.git"));
        assert_ne!(repo.key(), TemplateRepo::parse("https://github.com/openfaas/templates.git").unwrap().key());
    }
}
