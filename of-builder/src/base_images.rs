//! Which images a build may read (`FROM`, `COPY --from`, `RUN --mount=from=`): the operator's allowlist
//! (`allowed_base_images`) and the owner's own registry namespace, nothing else.
//!
//! Builds share one layer storage, so an image another owner pushed is present without a pull and without a
//! credential; reading it would hand one owner another's files. The rule is checked on the Dockerfile before the
//! build, with `ARG` defaults and the build's arguments substituted; a reference that cannot be resolved is refused.

use std::collections::BTreeMap;

/// The images the template store's templates and the platform's own builds start from, when the operator sets none.
pub const DEFAULT_ALLOWED: &str =
    "localhost/ofc/watchdog:latest,docker.io/library/rust:1-bookworm,docker.io/library/debian:bookworm-slim";

/// The longest Dockerfile read: a larger one is refused rather than parsed.
const MAX_DOCKERFILE_BYTES: usize = 1 << 20;
/// The most stages a Dockerfile may have.
const MAX_STAGES: usize = 64;

/// The operator's allowlist: exact references (`host/path:tag`), a repository (any tag), or `host/path/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<String>,
}

impl Allowlist {
    /// Reads `allowed_base_images` (comma-separated; unset: [`DEFAULT_ALLOWED`]); the error names a bad entry.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let text = value.unwrap_or(DEFAULT_ALLOWED);
        let mut entries = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, wildcard) = match entry.strip_suffix("/*") {
                Some(name) => (name, true),
                None => (entry, false),
            };
            let normal = normalise(name).ok_or_else(|| format!("`{entry}` is not an image reference"))?;
            entries.push(if wildcard { format!("{normal}/*") } else { normal });
        }
        Ok(Self { entries })
    }

    /// Whether `reference` (as written, any form) is an allowed base image.
    pub fn allows_reference(&self, reference: &str) -> bool {
        normalise(reference).is_some_and(|normal| self.allows(&with_latest(normal)))
    }

    fn allows(&self, image: &str) -> bool {
        let (name, _) = shared::naming::split_image_tag(image);
        self.entries.iter().any(|entry| match entry.strip_suffix("/*") {
            Some(prefix) => name.starts_with(&format!("{prefix}/")),
            None if entry.contains('@') || has_tag(entry) => entry == image,
            None => entry == name,
        })
    }
}

/// `reference` with `:latest` when it names neither a tag nor a digest, as a pull would read it.
fn with_latest(mut reference: String) -> String {
    if !has_tag(&reference) && !reference.contains('@') {
        reference.push_str(":latest");
    }
    reference
}

/// Whether `reference`'s last path component carries a `:tag`.
fn has_tag(reference: &str) -> bool {
    reference.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// A reference as a registry names it: `docker.io/library/` for a Docker Hub short name, `:latest` left implicit.
pub fn normalise(reference: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.is_empty() || reference.chars().any(|c| c.is_whitespace() || c == '$') {
        return None;
    }
    let first = reference.split('/').next()?;
    let has_host = reference.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_host {
        reference.to_owned()
    } else if reference.contains('/') {
        format!("docker.io/{reference}")
    } else {
        format!("docker.io/library/{reference}")
    };
    crate::reference::check(&full).ok()?;
    Some(full)
}

/// Checks every image `dockerfile` reads for a build pushing `own_image`, with `build_args`; the error is the
/// reason, naming the rule.
pub fn check(
    dockerfile: &str,
    build_args: &BTreeMap<String, String>,
    own_image: &str,
    allowlist: &Allowlist,
) -> Result<(), String> {
    if dockerfile.len() > MAX_DOCKERFILE_BYTES {
        return Err(format!("the Dockerfile is larger than {MAX_DOCKERFILE_BYTES} bytes"));
    }
    let own_prefix = shared::naming::image_owner_prefix(own_image)
        .ok_or_else(|| "the build's own image names no owner namespace".to_owned())?;
    let allowed = |image: &str| -> Result<(), String> {
        let normal = with_latest(
            normalise(image).ok_or_else(|| format!("`{image}` is not an image reference a build may start from"))?,
        );
        if normal.starts_with(&format!("{own_prefix}/")) || allowlist.allows(&normal) {
            Ok(())
        } else {
            Err(format!(
                "not this owner's image nor in allowed_base_images: `{image}` (a build reads only its owner's images \
                 and the base images the operator allows)"
            ))
        }
    };
    let instructions = instructions(dockerfile)?;
    let mut global_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut seen_from = false;
    for (keyword, rest) in &instructions {
        match keyword.as_str() {
            "ARG" if !seen_from => {
                for (name, default) in arg_declarations(rest) {
                    let value = build_args.get(&name).cloned().or(default);
                    global_args.insert(name, value);
                }
            }
            "FROM" => {
                seen_from = true;
                let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                let (image, alias) = match words.as_slice() {
                    [image] => (*image, None),
                    [image, as_, alias] if as_.eq_ignore_ascii_case("as") => (*image, Some(*alias)),
                    _ => return Err(format!("`FROM {rest}` is not `FROM image [AS name]`")),
                };
                let image = substitute(image, &global_args)
                    .map_err(|name| format!("`FROM {image}`: `{name}` has no value (declare it with a default)"))?;
                let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&image));
                if !is_stage && image != "scratch" {
                    allowed(&image)?;
                }
                if stages.len() >= MAX_STAGES {
                    return Err(format!("the Dockerfile has more than {MAX_STAGES} stages"));
                }
                stages.push(alias.unwrap_or("").to_ascii_lowercase());
            }
            "COPY" | "ADD" | "RUN" => {
                for source in sources(rest) {
                    let resolved = substitute(&source, &global_args)
                        .map_err(|name| format!("`--from={source}`: `{name}` cannot be resolved here"))?;
                    let earlier_stage = stages.iter().any(|s| !s.is_empty() && s.eq_ignore_ascii_case(&resolved))
                        || resolved.parse::<usize>().is_ok_and(|index| index < stages.len());
                    if !earlier_stage {
                        allowed(&resolved)?;
                    }
                }
            }
            "ONBUILD" => return Err("`ONBUILD` is not allowed: it would run in other builds".into()),
            _ => {}
        }
    }
    if !seen_from {
        return Err("the Dockerfile has no `FROM`".into());
    }
    Ok(())
}

/// Whether the Dockerfile has a `RUN` step (in any stage): the steps whose layers are worth caching. One that cannot
/// be read counts as having one.
pub fn runs_code(dockerfile: &str) -> bool {
    instructions(dockerfile).map_or(true, |steps| steps.iter().any(|(keyword, _)| keyword == "RUN"))
}

/// The Dockerfile's instructions, upper-cased keyword and the rest, with continuation lines joined and comments
/// left out. A `syntax` directive (a frontend image BuildKit would fetch and run) and another escape character are
/// refused.
fn instructions(dockerfile: &str) -> Result<Vec<(String, String)>, String> {
    let mut result = Vec::new();
    let mut current = String::new();
    let mut directives = true;
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if directives {
            if let Some(directive) = trimmed.strip_prefix('#') {
                let directive = directive.trim().to_ascii_lowercase();
                if directive.starts_with("syntax") && directive.contains('=') {
                    return Err("a `# syntax=` directive is not allowed: it names a frontend image to run".into());
                }
                if directive.starts_with("escape") && directive.contains('=') && !directive.ends_with('\\') {
                    return Err("an `# escape=` directive other than `\\` is not allowed".into());
                }
                continue;
            }
            directives = false;
        }
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            push_instruction(&mut result, &current);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        push_instruction(&mut result, &current);
    }
    Ok(result)
}

fn push_instruction(result: &mut Vec<(String, String)>, text: &str) {
    let text = text.trim();
    let (keyword, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    result.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
}

/// `ARG a=1 b` → `[("a", Some("1")), ("b", None)]`; quotes around a default are removed.
fn arg_declarations(rest: &str) -> Vec<(String, Option<String>)> {
    rest.split_whitespace()
        .map(|word| match word.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.trim_matches(['"', '\'']).to_owned())),
            None => (word.to_owned(), None),
        })
        .collect()
}

/// The `from=` sources of `COPY --from=…`, `ADD --from=…` and `RUN --mount=…,from=…`.
fn sources(rest: &str) -> Vec<String> {
    let mut found = Vec::new();
    for word in rest.split_whitespace() {
        let Some(flag) = word.strip_prefix("--") else { continue };
        if let Some(from) = flag.strip_prefix("from=") {
            found.push(from.trim_matches(['"', '\'']).to_owned());
        } else if let Some(mount) = flag.strip_prefix("mount=") {
            for option in mount.split(',') {
                if let Some(from) = option.strip_prefix("from=") {
                    found.push(from.trim_matches(['"', '\'']).to_owned());
                }
            }
        }
    }
    found
}

/// `word` with `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alternative}` replaced; `Err` names a variable
/// with no value.
fn substitute(word: &str, args: &BTreeMap<String, Option<String>>) -> Result<String, String> {
    let value_of = |name: &str| args.get(name).cloned().flatten();
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| word.to_owned())?;
            let expression = &braced[..end];
            let replaced = if let Some((name, default)) = expression.split_once(":-") {
                value_of(name).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
            } else if let Some((name, alternative)) = expression.split_once(":+") {
                if value_of(name).is_some_and(|v| !v.is_empty()) {
                    alternative.to_owned()
                } else {
                    String::new()
                }
            } else {
                value_of(expression).ok_or_else(|| expression.to_owned())?
            };
            out.push_str(&replaced);
            rest = &braced[end + 1..];
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if end == 0 {
                return Err("$".into());
            }
            out.push_str(&value_of(&after[..end]).ok_or_else(|| after[..end].to_owned())?);
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "127.0.0.1:5000/11/fns/hello:abc";

    fn run(dockerfile: &str, args: &[(&str, &str)]) -> Result<(), String> {
        let args = args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        check(dockerfile, &args, OWN, &Allowlist::parse(None).unwrap())
    }

    #[test]
    fn a_run_step_is_found_in_any_stage_and_any_case() {
        assert!(!runs_code("FROM scratch\nLABEL a=1\nENV b=2\nCOPY x /\n# RUN not this\n"));
        assert!(runs_code("FROM a AS build\nrun \\\n  make\nFROM scratch\nCOPY --from=build /x /\n"));
        assert!(runs_code("# syntax=docker/dockerfile:1\nFROM scratch\n"), "unreadable: counted as running code");
    }

    #[test]
    fn the_templates_and_the_owners_own_images_are_allowed() {
        assert_eq!(run("FROM localhost/ofc/watchdog:latest\nCOPY . /home/app\n", &[]), Ok(()));
        assert_eq!(run(include_str!("../../template/rust/Dockerfile"), &[]), Ok(()));
        assert_eq!(run("FROM 127.0.0.1:5000/11/web/other:abc\n", &[]), Ok(()));
        assert_eq!(run("FROM scratch AS a\nFROM localhost/ofc/watchdog:latest\nCOPY --from=a / /\n", &[]), Ok(()));
        assert_eq!(run("FROM scratch\nFROM scratch\nCOPY --from=0 / /\n", &[]), Ok(()));
    }

    #[test]
    fn another_owners_image_is_refused_however_it_is_named() {
        let other = "127.0.0.1:5000/111/fns/hello:abc";
        for dockerfile in [
            format!("FROM {other}\n"),
            format!("ARG BASE={other}\nFROM $BASE\n"),
            "ARG BASE\nFROM ${BASE}\n".to_owned(),
            format!("FROM scratch\nCOPY --from={other} / /\n"),
            format!("FROM scratch\nRUN --mount=type=bind,from={other},target=/x true\n"),
            format!("FROM scratch\nCOPY \\\n  --from={other} / /\n"),
            format!("from {other} as x\n"),
        ] {
            let error = if dockerfile.contains("ARG BASE\n") {
                run(&dockerfile, &[("BASE", other)]).unwrap_err()
            } else {
                run(&dockerfile, &[]).unwrap_err()
            };
            assert!(error.contains("allowed_base_images"), "{dockerfile}: {error}");
        }
    }

    #[test]
    fn what_cannot_be_resolved_or_runs_elsewhere_is_refused() {
        assert!(run("ARG BASE\nFROM $BASE\n", &[]).unwrap_err().contains("`BASE` has no value"));
        assert!(run("# syntax=docker/dockerfile:1\nFROM scratch\n", &[]).unwrap_err().contains("syntax"));
        assert!(run("FROM scratch\nONBUILD RUN true\n", &[]).unwrap_err().contains("ONBUILD"));
        assert!(run("RUN true\n", &[]).unwrap_err().contains("no `FROM`"));
        assert!(run("FROM docker.io/library/alpine:3\n", &[]).unwrap_err().contains("allowed_base_images"));
    }

    #[test]
    fn the_allowlist_takes_references_repositories_and_folders() {
        let list = Allowlist::parse(Some("alpine:3, ghcr.io/openfaas/*, localhost/base")).unwrap();
        let own = |image: &str| check(&format!("FROM {image}\n"), &BTreeMap::new(), OWN, &list);
        assert_eq!(own("alpine:3"), Ok(()));
        assert!(own("alpine:4").is_err());
        assert_eq!(own("ghcr.io/openfaas/of-watchdog:0.9"), Ok(()));
        assert_eq!(own("localhost/base:any"), Ok(()));
        assert!(own("ghcr.io/openfaas2/x").is_err());
        assert!(Allowlist::parse(Some("not an image")).is_err());
    }
}
