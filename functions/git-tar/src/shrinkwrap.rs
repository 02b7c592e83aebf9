//! Lays out each function's build context as `faas-cli build --shrinkwrap` does, from the cloned repository:
//! - `lang: dockerfile` (exactly; `Dockerfile` is another language, as in faas-cli's build): the handler folder is
//!   the context;
//! - any other `lang`: the template's folder is copied (the one [`crate::resolve`] chose: from the operator's
//!   store, or the repository's own `template/<lang>/` where allowed), and the handler goes into the template's
//!   handler folder (`function/` unless its `template.yml` names another);
//! - then each `configuration.copy` path (and our per-function `copy`) into the handler's destination, at the path
//!   as written;
//! - `build_options` become `ADDITIONAL_PACKAGE` as faas-cli's build makes it (de-duplicated, sorted, always set).
//!
//! The repository is hostile. Every path is resolved inside it with every link followed: a handler, a copy path or a
//! link in a copied folder that ends outside the repository (or in its `.git`) is refused; a link that stays inside is
//! copied as its target's content, as faas-cli's copy does. Entries named `build` and `template` at the top of a
//! handler are skipped (faas-cli), and so is the repository's own `.git` (ours: a handler of `./` would ship the
//! history). Links are followed, so a budget bounds what one context may hold and a loop is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared::stack::{inside, is_within, normalise, parse_yaml, resolve_inside, StackFunction};

/// The most files and folders one build context may hold: links to folders can multiply a small repository.
pub const MAX_CONTEXT_ENTRIES: usize = 100_000;
/// The most bytes one build context may hold, for the same reason.
pub const MAX_CONTEXT_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ShrinkwrapError {
    #[error("function `{function}`: the handler `{handler}` is not a folder in the repository")]
    HandlerMissing { function: String, handler: String },
    #[error("function `{function}`: `{path}` leaves the repository (through `..`, an absolute path or a symbolic link) or points into .git")]
    Escapes { function: String, path: String },
    #[error("function `{function}`: forbidden path appears to equal the entire project: {path}")]
    WholeProject { function: String, path: String },
    #[error("function `{function}`: language template: {lang} not supported (the repository has no template/{lang}/)")]
    TemplateMissing { function: String, lang: String },
    #[error("function `{function}`: the handler has no Dockerfile (lang: dockerfile)")]
    NoDockerfile { function: String },
    #[error("function `{function}`: {reason}")]
    TemplateYaml { function: String, reason: String },
    #[error("function `{function}`: you're using a build option unavailable for {lang} (`{option}`); please check template/{lang}/template.yml for supported build options")]
    UnknownBuildOption { function: String, lang: String, option: String },
    #[error("function `{function}`: `{path}` is neither a file, a folder nor a link and cannot be copied")]
    SpecialFile { function: String, path: String },
    #[error("function `{function}`: `{path}` is a symbolic link to nothing")]
    BrokenLink { function: String, path: String },
    #[error("function `{function}`: `{path}` links back to a folder that contains it")]
    LinkLoop { function: String, path: String },
    #[error("function `{function}`: the build context would hold more than {MAX_CONTEXT_ENTRIES} entries or {MAX_CONTEXT_BYTES} bytes")]
    TooLarge { function: String },
    #[error("function `{function}`: {source}")]
    Io { function: String, source: std::io::Error },
}

/// A template's `template.yml` (the fields shrinkwrap needs).
#[derive(Debug, Default, Deserialize)]
pub struct TemplateManifest {
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub handler_folder: Option<String>,
    #[serde(default)]
    pub build_options: Vec<BuildOption>,
}

#[derive(Debug, Default, Deserialize)]
pub struct BuildOption {
    pub name: String,
    #[serde(default)]
    pub packages: Vec<String>,
}

/// A shrinkwrapped function: its context folder and the build args to build it with.
#[derive(Debug)]
pub struct Shrinkwrapped {
    pub context: PathBuf,
    pub build_args: BTreeMap<String, String>,
}

/// One function's copying: the repository's real path, the function (for errors) and what is left of the budget.
struct Copier<'a> {
    root: PathBuf,
    function: &'a str,
    entries: usize,
    bytes: u64,
}

impl Copier<'_> {
    fn io(&self, source: std::io::Error) -> ShrinkwrapError {
        ShrinkwrapError::Io { function: self.function.to_owned(), source }
    }

    fn escapes(&self, path: impl Into<String>) -> ShrinkwrapError {
        ShrinkwrapError::Escapes { function: self.function.to_owned(), path: path.into() }
    }

    /// `path` relative to the repository, for messages.
    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    /// Copies the entries of the real folder `source` into `target`; `handler` skips top-level `build` and
    /// `template`. `ancestors` are the real folders being copied above this one (a link back to one is a loop).
    fn copy_tree(
        &mut self,
        source: &Path,
        target: &Path,
        handler: bool,
        ancestors: &mut Vec<PathBuf>,
    ) -> Result<(), ShrinkwrapError> {
        let entries = std::fs::read_dir(source).map_err(|e| self.io(e))?;
        let mut names: Vec<_> =
            entries.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>().map_err(|e| self.io(e))?;
        names.sort();
        ancestors.push(source.to_owned());
        for name in names {
            let path = source.join(&name);
            if (handler && (name == "build" || name == "template")) || path == self.root.join(".git") {
                continue;
            }
            self.copy_entry(&path, &target.join(&name), ancestors)?;
        }
        ancestors.pop();
        Ok(())
    }

    /// Copies `source` (a path inside a real folder of the repository) to `target`, following a link to its real
    /// target, which must lie inside the repository.
    fn copy_entry(
        &mut self,
        source: &Path,
        target: &Path,
        ancestors: &mut Vec<PathBuf>,
    ) -> Result<(), ShrinkwrapError> {
        let real = match source.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ShrinkwrapError::BrokenLink {
                    function: self.function.to_owned(),
                    path: self.shown(source),
                })
            }
            Err(e) => return Err(self.io(e)),
        };
        if !is_within(&self.root, &real) {
            let link = std::fs::read_link(source).map(|l| format!(" -> {}", l.display())).unwrap_or_default();
            return Err(self.escapes(format!("{}{link}", self.shown(source))));
        }
        let metadata = std::fs::metadata(&real).map_err(|e| self.io(e))?;
        self.entries += 1;
        self.bytes += metadata.len();
        if self.entries > MAX_CONTEXT_ENTRIES || self.bytes > MAX_CONTEXT_BYTES {
            return Err(ShrinkwrapError::TooLarge { function: self.function.to_owned() });
        }
        if metadata.is_dir() {
            if ancestors.contains(&real) {
                return Err(ShrinkwrapError::LinkLoop { function: self.function.to_owned(), path: self.shown(source) });
            }
            std::fs::create_dir_all(target).map_err(|e| self.io(e))?;
            self.copy_tree(&real, target, false, ancestors)
        } else if metadata.is_file() {
            std::fs::copy(&real, target).map(drop).map_err(|e| self.io(e))
        } else {
            Err(ShrinkwrapError::SpecialFile { function: self.function.to_owned(), path: self.shown(source) })
        }
    }

    /// Copies one `copy` path to `destination/<path as written>` (faas-cli's place for it).
    fn copy_extra(&mut self, repo: &Path, path: &str, destination: &Path) -> Result<(), ShrinkwrapError> {
        let normal = normalise(Path::new(path)).ok_or_else(|| self.escapes(path))?;
        let whole = || ShrinkwrapError::WholeProject { function: self.function.to_owned(), path: path.to_owned() };
        if normal.as_os_str().is_empty() {
            return Err(whole());
        }
        let real = match resolve_inside(repo, path) {
            Ok(Some(real)) => real,
            Ok(None) => return Err(self.escapes(path)),
            Err(e) => return Err(self.io(std::io::Error::new(e.kind(), format!("copy path `{path}`: {e}")))),
        };
        if real == self.root {
            return Err(whole());
        }
        let target = destination.join(&normal);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(e))?;
        }
        self.copy_entry(&real, &target, &mut Vec::new())
    }
}

/// Where a function's template comes from: `dir` (its `template/<lang>/`) inside `root`, the tree every link in
/// it must stay in (the repository for its own `template/`, a store copy for the operator's).
#[derive(Debug, Clone)]
pub struct Template {
    pub root: PathBuf,
    pub dir: PathBuf,
}

/// Shrinkwraps function `name` of the repository at `repo` into `out/<name>/`, with the repository's own
/// `template/<lang>/`. `extra_copy` is the stack's `configuration.copy`.
pub fn shrinkwrap(
    repo: &Path,
    name: &str,
    function: &StackFunction,
    extra_copy: &[String],
    out: &Path,
) -> Result<Shrinkwrapped, ShrinkwrapError> {
    let template = if function.lang == "dockerfile" {
        None
    } else {
        Some(Template { root: repo.to_owned(), dir: resolve_template(repo, name, &function.lang)? })
    };
    shrinkwrap_with(repo, name, function, extra_copy, template.as_ref(), out)
}

/// Shrinkwraps function `name` with `template` (chosen by the caller; unused for `lang: dockerfile`).
pub fn shrinkwrap_with(
    repo: &Path,
    name: &str,
    function: &StackFunction,
    extra_copy: &[String],
    template: Option<&Template>,
    out: &Path,
) -> Result<Shrinkwrapped, ShrinkwrapError> {
    let io = |source: std::io::Error| ShrinkwrapError::Io { function: name.to_owned(), source };
    let root = repo.canonicalize().map_err(io)?;
    let mut copier = Copier { root, function: name, entries: 0, bytes: 0 };
    let handler = resolve_handler(repo, name, function)?;
    let context = out.join(name);
    if context.exists() {
        std::fs::remove_dir_all(&context).map_err(io)?;
    }
    std::fs::create_dir_all(&context).map_err(io)?;
    let (manifest, destination) = match template.filter(|_| function.lang != "dockerfile") {
        None if function.lang != "dockerfile" => {
            return Err(ShrinkwrapError::TemplateMissing { function: name.to_owned(), lang: function.lang.clone() })
        }
        None => {
            copier.copy_tree(&handler, &context, true, &mut Vec::new())?;
            if !context.join("Dockerfile").is_file() {
                return Err(ShrinkwrapError::NoDockerfile { function: name.to_owned() });
            }
            (dockerfile_manifest(repo, name)?, context.clone())
        }
        Some(template) => {
            // The template's links are checked against its own tree, within the same budget.
            let template_root = template.root.canonicalize().map_err(io)?;
            let mut template_copier = Copier { root: template_root, function: name, entries: 0, bytes: 0 };
            template_copier.copy_tree(&template.dir, &context, false, &mut Vec::new())?;
            copier.entries = template_copier.entries;
            copier.bytes = template_copier.bytes;
            let shown = format!("template/{}/template.yml", function.lang);
            let manifest = read_manifest(&context.join("template.yml"), &shown, name)?;
            let folder = manifest.handler_folder.as_deref().filter(|f| !f.trim().is_empty()).unwrap_or("function");
            let destination = inside(&context, folder).ok_or_else(|| copier.escapes(folder))?;
            std::fs::create_dir_all(&destination).map_err(io)?;
            copier.copy_tree(&handler, &destination, true, &mut Vec::new())?;
            (manifest, destination)
        }
    };
    for path in extra_copy.iter().chain(&function.copy) {
        copier.copy_extra(repo, path, &destination)?;
    }
    let packages = packages_for(&manifest, &function.build_options, name, &function.lang)?;
    let build_args = with_additional_packages(function.build_args.clone(), packages);
    Ok(Shrinkwrapped { context, build_args })
}

/// The handler's real folder: inside the repository through every link, and a folder.
fn resolve_handler(repo: &Path, name: &str, function: &StackFunction) -> Result<PathBuf, ShrinkwrapError> {
    let missing = || ShrinkwrapError::HandlerMissing { function: name.to_owned(), handler: function.handler.clone() };
    if function.handler.trim().is_empty() {
        return Err(missing());
    }
    match resolve_inside(repo, &function.handler) {
        Ok(Some(real)) if real.is_dir() => Ok(real),
        Ok(Some(_)) | Err(_) => Err(missing()),
        Ok(None) => Err(ShrinkwrapError::Escapes { function: name.to_owned(), path: function.handler.clone() }),
    }
}

/// `template/<lang>/` of the repository: the name exactly as written (faas-cli compares it case-sensitively).
pub fn resolve_template(repo: &Path, name: &str, lang: &str) -> Result<PathBuf, ShrinkwrapError> {
    let missing = || ShrinkwrapError::TemplateMissing { function: name.to_owned(), lang: lang.to_owned() };
    if lang.is_empty() || lang.contains(['/', '\\']) || lang == "." || lang == ".." {
        return Err(missing());
    }
    match resolve_inside(repo, &format!("template/{lang}")) {
        Ok(Some(real)) if real.is_dir() => Ok(real),
        Ok(None) => Err(ShrinkwrapError::Escapes { function: name.to_owned(), path: format!("template/{lang}") }),
        _ => Err(missing()),
    }
}

/// For `lang: dockerfile`, the build options come from `template/dockerfile/template.yml` when the repository has
/// one (faas-cli reads it); without it there are none.
fn dockerfile_manifest(repo: &Path, name: &str) -> Result<TemplateManifest, ShrinkwrapError> {
    match resolve_inside(repo, "template/dockerfile/template.yml") {
        Ok(Some(real)) => read_manifest(&real, "template/dockerfile/template.yml", name),
        Ok(None) => {
            Err(ShrinkwrapError::Escapes { function: name.to_owned(), path: "template/dockerfile/template.yml".into() })
        }
        Err(_) => Ok(TemplateManifest::default()),
    }
}

/// Reads a `template.yml` already resolved to a real path (its errors, like stack.yml's, never quote it).
fn read_manifest(path: &Path, shown: &str, function: &str) -> Result<TemplateManifest, ShrinkwrapError> {
    let failed = |reason: String| ShrinkwrapError::TemplateYaml { function: function.to_owned(), reason };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > shared::stack::MAX_FILE_BYTES => {
            Err(failed(format!("{shown} is larger than {} bytes", shared::stack::MAX_FILE_BYTES)))
        }
        Ok(_) => {
            let bytes =
                std::fs::read(path).map_err(|source| ShrinkwrapError::Io { function: function.to_owned(), source })?;
            let text = String::from_utf8(bytes).map_err(|_| failed(format!("{shown} is not UTF-8 text")))?;
            parse_yaml(&text, shown).map_err(|e| failed(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TemplateManifest::default()),
        Err(source) => Err(ShrinkwrapError::Io { function: function.to_owned(), source }),
    }
}

/// The packages of the requested build options, in order, each option's first entry by exact name (faas-cli's
/// `getBuildOptionPackages`).
fn packages_for(
    manifest: &TemplateManifest,
    options: &[String],
    function: &str,
    lang: &str,
) -> Result<Vec<String>, ShrinkwrapError> {
    let mut packages = Vec::new();
    for option in options {
        let offered = manifest.build_options.iter().find(|o| &o.name == option).ok_or_else(|| {
            ShrinkwrapError::UnknownBuildOption {
                function: function.to_owned(),
                lang: lang.to_owned(),
                option: option.clone(),
            }
        })?;
        packages.extend(offered.packages.iter().cloned());
    }
    Ok(packages)
}

/// `ADDITIONAL_PACKAGE` as faas-cli's build sets it: the options' packages and the stack's own
/// `ADDITIONAL_PACKAGE` (split on spaces), without duplicates, sorted, joined by one space, and always present.
pub fn with_additional_packages(
    mut build_args: BTreeMap<String, String>,
    packages: Vec<String>,
) -> BTreeMap<String, String> {
    let existing = build_args.remove("ADDITIONAL_PACKAGE").unwrap_or_default();
    let all: BTreeSet<String> = packages
        .into_iter()
        .chain(existing.split(' ').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned))
        .collect();
    build_args.insert("ADDITIONAL_PACKAGE".into(), all.into_iter().collect::<Vec<_>>().join(" "));
    build_args
}
