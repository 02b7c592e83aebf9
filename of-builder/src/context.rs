//! Receiving a build tar safely: the body is streamed into a fresh temporary folder while its signature is
//! computed, every entry is checked before a single one is unpacked, and then only `config` and `context/` land.

use std::io::Read;
use std::path::{Path, PathBuf};

use shared::build::{BuildConfig, CONFIG_ENTRY, CONTEXT_DIR};
use shared::stack::normalise;

use crate::error::BuilderError;

/// The `config` entry is small; anything larger is not a build config.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A received build: its config and the unpacked context, inside a temporary folder removed on drop.
pub struct BuildContext {
    pub config: BuildConfig,
    pub dir: tempfile::TempDir,
}

impl BuildContext {
    /// The folder holding the `Dockerfile`.
    pub fn context_dir(&self) -> PathBuf {
        self.dir.path().join("unpacked").join(CONTEXT_DIR)
    }
}

/// Checks every entry of the tar at `tar_path` (pass one), then unpacks it under `<dir>/unpacked` (pass two).
pub fn check_and_unpack(
    tar_path: &Path,
    dir: tempfile::TempDir,
    max_context_bytes: u64,
) -> Result<BuildContext, BuilderError> {
    let config = check(tar_path, max_context_bytes)?;
    let target = dir.path().join("unpacked");
    std::fs::create_dir(&target)?;
    let mut archive = tar::Archive::new(std::fs::File::open(tar_path)?);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.unpack_in(&target)? {
            return Err(BuilderError::BadTar(format!(
                "`{}` would land outside the build folder",
                entry.path()?.display()
            )));
        }
    }
    if !target.join(CONTEXT_DIR).join("Dockerfile").is_file() {
        return Err(BuilderError::BadTar("the tar has no `context/Dockerfile`".into()));
    }
    Ok(BuildContext { config, dir })
}

/// Pass one: nothing is written; the first offending entry is named.
fn check(tar_path: &Path, max_context_bytes: u64) -> Result<BuildConfig, BuilderError> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar_path)?);
    let mut config = None;
    let mut total = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry.map_err(|e| BuilderError::BadTar(format!("the body is not a valid tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| BuilderError::BadTar(format!("an entry has an unreadable name: {e}")))?
            .into_owned();
        let shown = path.display().to_string();
        let normal = normalise(&path)
            .ok_or_else(|| BuilderError::BadTar(format!("`{shown}`: absolute paths and `..` are not allowed")))?;
        let kind = entry.header().entry_type();
        let top = normal.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        if normal == Path::new(CONFIG_ENTRY) {
            if !kind.is_file() || entry.size() > MAX_CONFIG_BYTES {
                return Err(BuilderError::BadTar("`config` must be a small regular file".into()));
            }
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let parsed: BuildConfig = serde_json::from_str(&text)
                .map_err(|e| BuilderError::BadTar(format!("`config` is not a build config: {e}")))?;
            config = Some(parsed);
            continue;
        }
        if top != CONTEXT_DIR {
            return Err(BuilderError::BadTar(format!("`{shown}`: only `config` and `context/` belong in a build tar")));
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                total += entry.size();
                if total > max_context_bytes {
                    return Err(BuilderError::BadTar(format!(
                        "the context is larger than {max_context_bytes} bytes (at `{shown}`)"
                    )));
                }
            }
            tar::EntryType::Directory => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| BuilderError::BadTar(format!("`{shown}`: unreadable link target: {e}")))?
                    .ok_or_else(|| BuilderError::BadTar(format!("`{shown}`: a link without a target")))?;
                let resolved = if kind == tar::EntryType::Symlink && !target.is_absolute() {
                    normal.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.to_path_buf()
                };
                let inside = normalise(&resolved).is_some_and(|p| p.starts_with(CONTEXT_DIR));
                if !inside {
                    return Err(BuilderError::BadTar(format!(
                        "`{shown}`: the link points outside the context (`{}`)",
                        target.display()
                    )));
                }
            }
            other => {
                return Err(BuilderError::BadTar(format!(
                    "`{shown}`: {other:?} entries (devices, fifos…) are not allowed"
                )));
            }
        }
    }
    let config = config.ok_or_else(|| BuilderError::BadTar("the tar has no `config` entry".into()))?;
    crate::reference::check(&config.image_ref).map_err(|reason| {
        BuilderError::BadTar(format!(
            "`config` names no usable image: `ref` must be a registry reference, not `{}`: {reason}",
            config.image_ref
        ))
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_inside_paths_and_refuses_escapes() {
        assert_eq!(normalise(Path::new("./context/a/../b")), Some(PathBuf::from("context/b")));
        assert_eq!(normalise(Path::new("context/../../etc")), None);
        assert_eq!(normalise(Path::new("/etc/passwd")), None);
    }
}
