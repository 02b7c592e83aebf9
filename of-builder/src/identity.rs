//! A build's identity: one SHA-256 over everything that decides the image of-builder would make, so that a push
//! whose build context did not change reuses the image built before instead of building it again.
//!
//! of-builder computes it from the tar it is about to build, so no caller can claim one. It covers the image's
//! repository (the owner's namespace: one owner's identity is never another's), the build context's entries (path,
//! kind, mode, link target, content; the template's files are among them), the build arguments and platforms of the
//! tar's `config`, and [`BUILDER_VERSION`]. It leaves out what changes on every push without reaching the image:
//! the image's tag (it names the commit), tar metadata such as times and owners, and the order of the entries.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::build::{BuildConfig, CONFIG_ENTRY};

/// Bump whenever of-builder or its base images change how the same context builds (a new Buildah invocation, a
/// new default platform): every build identity changes with it, so no image of the old builder is reused. Caching
/// layers only for Dockerfiles with a `RUN` step did not need it: the images have the same files, config and history.
pub const BUILDER_VERSION: u32 = 1;

/// The registry tag that records an image's build identity: `build-<first 32 hex digits>`.
pub const TAG_PREFIX: &str = "build-";

/// The SHA-256 of a build's inputs, hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildIdentity(pub String);

impl BuildIdentity {
    /// The tag pushed beside every image built from this identity, and looked up before the next build.
    pub fn tag(&self) -> String {
        format!("{TAG_PREFIX}{}", &self.0[..32])
    }
}

/// One entry of the build context, as far as it reaches the image.
#[derive(Debug, Serialize)]
struct Entry {
    /// `f` file, `d` folder, `l` symbolic link, `h` hard link, `o` anything else (by its tar type byte).
    kind: String,
    /// Permission bits, set-id and sticky bits.
    mode: u32,
    /// A link's target, exactly.
    target: Option<String>,
    /// SHA-256 of a file's bytes, hex.
    content: Option<String>,
}

/// What is hashed, serialised as JSON (maps sorted, so the order of the tar's entries does not matter).
#[derive(Debug, Serialize)]
struct Inputs {
    builder_version: u32,
    repository: String,
    platforms: Vec<String>,
    build_args: BTreeMap<String, String>,
    entries: BTreeMap<String, Entry>,
}

/// The identity of the build tar at `tar` (already checked: see `context`).
pub fn identity(tar: &Path) -> Result<BuildIdentity, String> {
    let file = std::fs::File::open(tar).map_err(|e| format!("the tar could not be opened: {e}"))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut config = BuildConfig::default();
    let mut entries = BTreeMap::new();
    let unreadable = |e: std::io::Error| format!("the tar could not be read: {e}");
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = entry_path(&entry.path_bytes());
        if path == format!("u:{CONFIG_ENTRY}") {
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(unreadable)?;
            config = serde_json::from_slice(&text).map_err(|e| format!("the tar's config is not JSON: {e}"))?;
            continue;
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "f".to_owned(),
            tar::EntryType::Directory => "d".to_owned(),
            tar::EntryType::Symlink => "l".to_owned(),
            tar::EntryType::Link => "h".to_owned(),
            other => format!("o{}", other.as_byte()),
        };
        let mode = header.mode().map_err(unreadable)? & 0o7777;
        let target = entry.link_name_bytes().map(|t| link_target(&t));
        let content = if kind == "f" { Some(content_digest(&mut entry).map_err(unreadable)?) } else { None };
        // A later entry of the same path replaces the earlier one when the tar is unpacked: so here too.
        entries.insert(path, Entry { kind, mode, target, content });
    }
    let (repository, _) = shared::naming::split_image_tag(&config.image_ref);
    let inputs = Inputs {
        builder_version: BUILDER_VERSION,
        repository: repository.to_owned(),
        platforms: config.platforms,
        build_args: config.build_args,
        entries,
    };
    let json = serde_json::to_vec(&inputs).expect("the inputs always serialise");
    Ok(BuildIdentity(hex::encode(Sha256::digest(&json))))
}

/// A path as written in the tar, without `./` and a trailing `/`; bytes that are not UTF-8 are kept exactly (as
/// hex), so two different names never hash the same.
fn entry_path(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("u:{}", text.strip_prefix("./").unwrap_or(text).trim_end_matches('/')),
        Err(_) => format!("x:{}", hex::encode(bytes)),
    }
}

/// A link's target, exactly as written.
fn link_target(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("u:{text}"),
        Err(_) => format!("x:{}", hex::encode(bytes)),
    }
}

fn content_digest(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        path: &'static str,
        data: &'static [u8],
        mode: u32,
        mtime: u64,
    }

    fn item(path: &'static str, data: &'static [u8]) -> Item {
        Item { path, data, mode: 0o644, mtime: 1 }
    }

    /// Identity of a tar holding `config` and `items`, in that order.
    fn identity_of(config: &BuildConfig, items: &[Item]) -> BuildIdentity {
        let mut builder = tar::Builder::new(Vec::new());
        let config = serde_json::to_vec(config).unwrap();
        let mut all = vec![Item { path: "config", data: &[], mode: 0o644, mtime: 9 }];
        all.extend(items.iter().map(|i| Item { ..*i }));
        for item in all {
            let data = if item.path == "config" { config.as_slice() } else { item.data };
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(item.mode);
            header.set_mtime(item.mtime);
            builder.append_data(&mut header, item.path, data).unwrap();
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), builder.into_inner().unwrap()).unwrap();
        identity(file.path()).unwrap()
    }

    fn config() -> BuildConfig {
        BuildConfig { image_ref: "r:5000/o/f:latest-a".into(), ..BuildConfig::default() }
    }

    #[test]
    fn order_times_and_the_tag_do_not_change_the_identity() {
        let base = identity_of(&config(), &[item("context/Dockerfile", b"FROM scratch"), item("context/a", b"a")]);
        let reordered = [Item { mtime: 5, ..item("context/a", b"a") }, item("./context/Dockerfile", b"FROM scratch")];
        let other_tag = BuildConfig { image_ref: "r:5000/o/f:latest-b".into(), ..config() };
        assert_eq!(identity_of(&other_tag, &reordered), base);
        assert_eq!(base.tag().len(), TAG_PREFIX.len() + 32);
    }

    #[test]
    fn a_changed_file_mode_argument_platform_or_repository_changes_the_identity() {
        let files = [item("context/Dockerfile", b"FROM scratch"), item("context/a", b"a")];
        let base = identity_of(&config(), &files);
        let changed_file = [item("context/Dockerfile", b"FROM scratch"), item("context/a", b"b")];
        let changed_mode =
            [item("context/Dockerfile", b"FROM scratch"), Item { mode: 0o755, ..item("context/a", b"a") }];
        let added = [item("context/Dockerfile", b"FROM scratch"), item("context/a", b"a"), item("context/b", b"")];
        let with_arg = BuildConfig { build_args: BTreeMap::from([("A".into(), "1".into())]), ..config() };
        let with_platform = BuildConfig { platforms: vec!["linux/arm64".into()], ..config() };
        let other_owner = BuildConfig { image_ref: "r:5000/o-x/f:latest-a".into(), ..config() };
        for (what, other) in [
            ("file", identity_of(&config(), &changed_file)),
            ("mode", identity_of(&config(), &changed_mode)),
            ("added file", identity_of(&config(), &added)),
            ("build arg", identity_of(&with_arg, &files)),
            ("platform", identity_of(&with_platform, &files)),
            ("owner's repository", identity_of(&other_owner, &files)),
        ] {
            assert_ne!(other, base, "a changed {what}");
        }
    }
}
