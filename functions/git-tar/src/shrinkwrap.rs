//! Lays out each function's build context as `faas-cli build --shrinkwrap` does, from the cloned repository:
//! - `lang: dockerfile`: the handler folder is the context;
//! - any other `lang`: `template/<lang>/` is copied, and the handler goes into the template's handler folder
//!   (`function/` unless its `template.yml` names another), with `build_options` turned into `ADDITIONAL_PACKAGE`.
//!
//! Entries named `build` and `template` at the top of a handler are skipped; symbolic links must stay inside the
//! repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared::stack::{inside, StackFunction};

#[derive(Debug, thiserror::Error)]
pub enum ShrinkwrapError {
    #[error("function `{function}`: the handler `{handler}` is not a folder in the repository")]
    HandlerMissing { function: String, handler: String },
    #[error("function `{function}`: `{path}` leaves the repository")]
    Escapes { function: String, path: String },
    #[error("function `{function}`: language template: {lang} not supported (the repository has no template/{lang}/)")]
    TemplateMissing { function: String, lang: String },
    #[error("function `{function}`: the handler has no Dockerfile (lang: dockerfile)")]
    NoDockerfile { function: String },
    #[error("function `{function}`: template/{lang}/template.yml is not valid: {reason}")]
    TemplateYaml { function: String, lang: String, reason: String },
    #[error("function `{function}`: build option `{option}` is not offered by template {lang}")]
    UnknownBuildOption { function: String, lang: String, option: String },
    #[error("function `{function}`: `{path}` is neither a file, a folder nor a link and cannot be copied")]
    SpecialFile { function: String, path: String },
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

/// Shrinkwraps function `name` of the repository at `repo` into `out/<name>/`.
pub fn shrinkwrap(
    repo: &Path,
    name: &str,
    function: &StackFunction,
    extra_copy: &[String],
    out: &Path,
) -> Result<Shrinkwrapped, ShrinkwrapError> {
    let io = |source: std::io::Error| ShrinkwrapError::Io { function: name.to_owned(), source };
    let escapes = |path: &str| ShrinkwrapError::Escapes { function: name.to_owned(), path: path.to_owned() };
    let handler = inside(repo, &function.handler).ok_or_else(|| escapes(&function.handler))?;
    let handler_is_dir = std::fs::symlink_metadata(&handler).is_ok_and(|m| m.is_dir());
    if function.handler.trim().is_empty() || !handler_is_dir {
        return Err(ShrinkwrapError::HandlerMissing { function: name.to_owned(), handler: function.handler.clone() });
    }
    let context = out.join(name);
    if context.exists() {
        std::fs::remove_dir_all(&context).map_err(io)?;
    }
    std::fs::create_dir_all(&context).map_err(io)?;
    let mut build_args = function.build_args.clone();
    let destination = if function.lang == "dockerfile" {
        copy_tree(repo, &handler, &context, true, name)?;
        if !context.join("Dockerfile").is_file() {
            return Err(ShrinkwrapError::NoDockerfile { function: name.to_owned() });
        }
        context.clone()
    } else {
        let template = inside(repo, &format!("template/{}", function.lang))
            .filter(|t| !function.lang.is_empty() && !function.lang.contains('/') && t.is_dir())
            .ok_or_else(|| ShrinkwrapError::TemplateMissing {
                function: name.to_owned(),
                lang: function.lang.clone(),
            })?;
        copy_tree(repo, &template, &context, false, name)?;
        let manifest = read_manifest(&context.join("template.yml"), name, &function.lang)?;
        let packages = packages_for(&manifest, &function.build_options, name, &function.lang)?;
        if !packages.is_empty() {
            let existing = build_args.remove("ADDITIONAL_PACKAGE").unwrap_or_default();
            let joined =
                [existing, packages.join(" ")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
            build_args.insert("ADDITIONAL_PACKAGE".into(), joined);
        }
        let folder = manifest.handler_folder.as_deref().filter(|f| !f.trim().is_empty()).unwrap_or("function");
        let destination = inside(&context, folder).ok_or_else(|| escapes(folder))?;
        std::fs::create_dir_all(&destination).map_err(io)?;
        copy_tree(repo, &handler, &destination, true, name)?;
        destination
    };
    for path in extra_copy.iter().chain(&function.copy) {
        let source = inside(repo, path).filter(|s| s != repo).ok_or_else(|| escapes(path))?;
        let target = destination.join(source.file_name().unwrap_or_default());
        if source.is_dir() {
            std::fs::create_dir_all(&target).map_err(io)?;
            copy_tree(repo, &source, &target, false, name)?;
        } else {
            copy_entry(repo, &source, &target, name)?;
        }
    }
    Ok(Shrinkwrapped { context, build_args })
}

fn read_manifest(path: &Path, function: &str, lang: &str) -> Result<TemplateManifest, ShrinkwrapError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml_ng::from_str(&text).map_err(|e| ShrinkwrapError::TemplateYaml {
            function: function.to_owned(),
            lang: lang.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TemplateManifest::default()),
        Err(source) => Err(ShrinkwrapError::Io { function: function.to_owned(), source }),
    }
}

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

/// Copies the entries of `source` into `target`; `handler` skips top-level `build` and `template`.
fn copy_tree(repo: &Path, source: &Path, target: &Path, handler: bool, function: &str) -> Result<(), ShrinkwrapError> {
    let io = |source: std::io::Error| ShrinkwrapError::Io { function: function.to_owned(), source };
    let mut entries: Vec<_> = std::fs::read_dir(source).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        if handler && (name == "build" || name == "template") {
            continue;
        }
        copy_entry(repo, &entry.path(), &target.join(&name), function)?;
    }
    Ok(())
}

fn copy_entry(repo: &Path, source: &Path, target: &Path, function: &str) -> Result<(), ShrinkwrapError> {
    let io = |source: std::io::Error| ShrinkwrapError::Io { function: function.to_owned(), source };
    let shown = || source.strip_prefix(repo).unwrap_or(source).display().to_string();
    let metadata = std::fs::symlink_metadata(source).map_err(io)?;
    let kind = metadata.file_type();
    if kind.is_symlink() {
        let link = std::fs::read_link(source).map_err(io)?;
        let relative_dir = source.parent().and_then(|p| p.strip_prefix(repo).ok()).unwrap_or(Path::new(""));
        let resolved = relative_dir.join(&link);
        let stays = !link.is_absolute() && inside(repo, &resolved.to_string_lossy()).is_some();
        if !stays {
            return Err(ShrinkwrapError::Escapes {
                function: function.to_owned(),
                path: format!("{} -> {}", shown(), link.display()),
            });
        }
        std::os::unix::fs::symlink(&link, target).map_err(io)?;
    } else if kind.is_dir() {
        std::fs::create_dir_all(target).map_err(io)?;
        copy_tree(repo, source, target, false, function)?;
    } else if kind.is_file() {
        std::fs::copy(source, target).map_err(io)?;
    } else {
        return Err(ShrinkwrapError::SpecialFile { function: function.to_owned(), path: shown() });
    }
    Ok(())
}
