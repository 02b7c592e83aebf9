//! Which template each function of a push is built with. A `lang` is looked up, in order, in:
//! 1. the repository's own `template/<lang>/` (faas-cli's build uses what is in `./template`), only where the
//!    operator allows user build definitions (`enable_dockerfile_lang`);
//! 2. the stack's `configuration.templates` entry of that name: from the store when its source is one of the
//!    operator's repositories, fetched for this push when it is not and user build definitions are allowed;
//! 3. the operator's store (`custom_templates`), the first repository offering it.
//!
//! Every function whose template cannot be used gets its own reason; the push is then refused as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shared::stack::{resolve_inside, Stack, TemplateSource};

use crate::shrinkwrap::Template;
use crate::templates::{fetch_for_push, Catalogue, Snapshot, TemplateRepo};

/// The template chosen for one function.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub template: Template,
    /// The template repository's commit, for the deployment's label (`None` for the repository's own).
    pub commit: Option<String>,
    /// Keeps a store copy on disk until the function is shrinkwrapped.
    pub snapshot: Option<Arc<Snapshot>>,
}

/// What choosing needs from git-tar's configuration.
pub struct Choosing<'a> {
    pub catalogue: &'a Catalogue,
    pub allow_user_templates: bool,
    pub repo: &'a Path,
    /// Where a push's own template sources are fetched.
    pub work: &'a Path,
    pub timeout: Duration,
    /// `max_repo_bytes`, which bounds a push's own template sources as it bounds the push.
    pub max_bytes: u64,
}

const NOT_ALLOWED: &str =
    "this platform builds only from its operator's templates (user build definitions are off: enable_dockerfile_lang=false)";

/// The template of every built function of `stack` that needs one, or each refused function with its reason.
pub async fn choose_templates(
    choosing: &Choosing<'_>,
    stack: &Stack,
) -> Result<BTreeMap<String, Chosen>, Vec<(String, String)>> {
    let sources = stack.configuration.as_ref().map(|c| c.templates.clone()).unwrap_or_default();
    let mut fetched = BTreeMap::new();
    let mut chosen = BTreeMap::new();
    let mut refused = Vec::new();
    for (name, function) in &stack.functions {
        if function.skip_build || function.lang == "dockerfile" {
            continue;
        }
        match choose(choosing, &function.lang, &sources, &mut fetched).await {
            Ok(template) => {
                chosen.insert(name.clone(), template);
            }
            Err(reason) => refused.push((name.clone(), format!("function `{name}`: {reason}"))),
        }
    }
    if refused.is_empty() {
        Ok(chosen)
    } else {
        Err(refused)
    }
}

async fn choose(
    choosing: &Choosing<'_>,
    lang: &str,
    sources: &[TemplateSource],
    fetched: &mut BTreeMap<String, Result<(PathBuf, String), String>>,
) -> Result<Chosen, String> {
    let missing = || format!("language template: {lang} not supported{}", offered(choosing.catalogue));
    if lang.is_empty() || lang.contains(['/', '\\']) || lang == "." || lang == ".." {
        return Err(missing());
    }
    if let Some(own) = own_template(choosing.repo, lang)? {
        if !choosing.allow_user_templates {
            return Err(format!(
                "the repository's own template/{lang} is not used: {NOT_ALLOWED}; remove template/ from the repository to build with the platform's templates{}",
                offered(choosing.catalogue)
            ));
        }
        return Ok(Chosen {
            template: Template { root: choosing.repo.to_owned(), dir: own },
            commit: None,
            snapshot: None,
        });
    }
    if let Some(source) = stack_source(sources, lang) {
        return from_source(choosing, lang, &source, fetched).await;
    }
    let (snapshot, dir) = choosing.catalogue.find(lang).ok_or_else(missing)?;
    Ok(Chosen {
        template: Template { root: snapshot.root.clone(), dir },
        commit: Some(snapshot.commit.clone()),
        snapshot: Some(snapshot),
    })
}

/// The repository's own `template/<lang>/`, when it has one.
fn own_template(repo: &Path, lang: &str) -> Result<Option<PathBuf>, String> {
    match resolve_inside(repo, &format!("template/{lang}")) {
        Ok(Some(real)) if real.is_dir() => Ok(Some(real)),
        Ok(None) => Err(format!(
            "`template/{lang}` leaves the repository (through `..`, an absolute path or a symbolic link) or points into .git"
        )),
        _ => Ok(None),
    }
}

/// The source a stack's `configuration.templates` gives for `lang` (`name#ref` adds the ref to a source without
/// one, as faas-cli does); entries without a source leave `lang` to the store.
fn stack_source(sources: &[TemplateSource], lang: &str) -> Option<String> {
    sources.iter().find_map(|entry| {
        let (name, reference) = entry.name.split_once('#').map_or((entry.name.as_str(), None), |(n, r)| (n, Some(r)));
        let source = entry.source.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
        (name == lang).then(|| match reference {
            Some(r) if !source.contains('#') => format!("{source}#{r}"),
            _ => source.to_owned(),
        })
    })
}

/// `lang` from a stack's own template source: the store's copy when the operator has that repository, otherwise a
/// fetch for this push where user build definitions are allowed.
async fn from_source(
    choosing: &Choosing<'_>,
    lang: &str,
    source: &str,
    fetched: &mut BTreeMap<String, Result<(PathBuf, String), String>>,
) -> Result<Chosen, String> {
    if let Some(entry) = choosing.catalogue.entries.iter().find(|e| e.repo.is_source(source)) {
        let snapshot = entry.snapshot.clone().ok_or_else(|| {
            format!(
                "the template repository {source} could not be fetched: {}",
                entry.error.as_deref().unwrap_or("not yet")
            )
        })?;
        let dir = snapshot.template(lang).ok_or_else(|| {
            format!("language template: {lang} is not in {source} (it offers {})", snapshot.languages.join(", "))
        })?;
        let commit = Some(snapshot.commit.clone());
        return Ok(Chosen {
            template: Template { root: snapshot.root.clone(), dir },
            commit,
            snapshot: Some(snapshot),
        });
    }
    if !choosing.allow_user_templates {
        return Err(format!(
            "configuration.templates names {source}, which is not one of the platform's template repositories: {NOT_ALLOWED}"
        ));
    }
    let index = fetched.len();
    let result = if let Some(result) = fetched.get(source) {
        result.clone()
    } else {
        let dest = choosing.work.join("stack-templates").join(index.to_string());
        let result = fetch_source(source, &dest, choosing).await.map(|commit| (dest, commit));
        fetched.insert(source.to_owned(), result.clone());
        result
    };
    let (root, commit) = result?;
    // The source is the user's: its template folder must stay inside its checkout, as the repository's own must.
    let dir = match resolve_inside(&root, &format!("template/{lang}")) {
        Ok(Some(dir)) if dir.join("template.yml").is_file() => dir,
        Ok(None) => return Err(format!("`template/{lang}` of {source} leaves its repository or points into .git")),
        _ => return Err(format!("language template: {lang} is not in {source}")),
    };
    Ok(Chosen { template: Template { root, dir }, commit: Some(commit), snapshot: None })
}

async fn fetch_source(source: &str, dest: &Path, choosing: &Choosing<'_>) -> Result<String, String> {
    let repo = TemplateRepo::parse(source).map_err(|e| format!("configuration.templates: {e}"))?;
    let commit = fetch_for_push(&repo, dest, choosing.timeout)
        .await
        .map_err(|e| format!("{source} could not be fetched: {e}"))?;
    let checkout = dest.to_owned();
    let size = tokio::task::spawn_blocking(move || crate::tree_size(&checkout))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{source}: {e}"))?;
    if size > choosing.max_bytes {
        return Err(format!("{source} is {size} bytes, over the limit of {} (max_repo_bytes)", choosing.max_bytes));
    }
    Ok(commit)
}

/// `: the platform's templates are a, b, c` (and the repositories it could not fetch), for a missing language.
fn offered(catalogue: &Catalogue) -> String {
    let languages = catalogue.languages();
    let mut text = if languages.is_empty() {
        String::from(" (the platform has no templates)")
    } else {
        format!(" (the platform's templates are: {})", languages.join(", "))
    };
    let unavailable = catalogue.unavailable();
    if !unavailable.is_empty() {
        text.pop();
        text = format!("{text}; not fetched yet: {})", unavailable.join(", "));
    }
    text
}
