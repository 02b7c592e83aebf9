//! The image reference a build tar names (`ref`): only a registry reference, `host[:port]/path[:tag|@digest]`.
//!
//! Buildah and `buildctl` read `<transport>:<rest>` as an instruction (`dir:/x` writes the image to a host folder,
//! `docker-archive:`, `oci:`, `containers-storage:`… likewise), so a signed caller could otherwise make of-builder
//! write where it chooses. Requiring a registry host (with a `.` or a port, or `localhost`) also rules out
//! short names that Buildah would resolve through its search registries.

/// Transports of containers/image: a host with one of these names followed by `:` would read as a transport.
const TRANSPORTS: &[&str] = &[
    "atomic",
    "containers-storage",
    "dir",
    "docker",
    "docker-archive",
    "docker-daemon",
    "oci",
    "oci-archive",
    "ostree",
    "sif",
    "tarball",
];

/// Checks `reference`; the reason says what is wrong with it.
pub fn check(reference: &str) -> Result<(), String> {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    let (host, path) = name.split_once('/').ok_or("it has no registry host (`host[:port]/path[:tag]`)")?;
    check_host(host)?;
    let (path, tag) = match path.rsplit_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (path, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(format!("`{tag}` is not a valid tag"));
        }
    }
    if path.is_empty() || !path.split('/').all(path_component) {
        return Err(format!("`{path}` is not a repository path (lowercase letters, digits, `.`, `_`, `-`, `/`)"));
    }
    if reference.len() > 255 + 128 + 72 {
        return Err("it is too long".into());
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if TRANSPORTS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("`{name}:` is a transport, not a registry"));
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{host}` is not `host[:port]`"));
        }
    }
    let labels_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !labels_ok {
        return Err(format!("`{host}` is not a registry host"));
    }
    if port.is_none() && !name.contains('.') && name != "localhost" {
        return Err(format!("`{host}` is not a registry host (name one with a `.` or a port)"));
    }
    Ok(())
}

/// A repository path component: lowercase alphanumerics joined by `.`, `_`, `__` or dashes.
fn path_component(component: &str) -> bool {
    let starts_and_ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    starts_and_ends(component.chars().next())
        && starts_and_ends(component.chars().last())
        && !component.contains("..")
        && !component.contains("___")
        && component.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn check_digest(digest: &str) -> Result<(), String> {
    let valid = digest.split_once(':').is_some_and(|(algorithm, hex)| {
        !algorithm.is_empty()
            && algorithm.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
            && hex.len() >= 32
            && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    });
    if valid {
        Ok(())
    } else {
        Err(format!("`{digest}` is not a digest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_registry_references() {
        for good in [
            "127.0.0.1:5000/octo/fn:latest-abc123",
            "registry.example.com/octo/fn",
            "localhost/a/b_c__d-e.f:v1.2",
            "docker.io/ofcommunity/octo-fn:latest-0123abc",
            "reg.local:443/o/f@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn refuses_transports_and_anything_but_host_path_tag() {
        for bad in [
            "dir:/tmp/owned",
            "dir:5000/x",
            "oci:/tmp/layout:tag",
            "oci-archive:/tmp/a.tar",
            "docker-archive:/tmp/a.tar",
            "containers-storage:octo/fn",
            "docker://reg.local/o/f",
            "docker-daemon:o/f:latest",
            "octo/fn:latest",
            "fn",
            "/abs/path",
            "reg.local//fn",
            "reg.local/../etc",
            "reg.local/Octo/fn",
            "reg.local:port/o/f",
            "reg.local/o/f:",
            "reg.local/o/f:-x",
            "reg.local/o/f@sha256:xyz",
            "reg.local/o/f g",
            "-reg.local/o/f",
        ] {
            assert!(check(bad).is_err(), "{bad} is refused");
        }
    }
}
