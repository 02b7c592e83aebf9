//! How functions and images are named (the original's rules), so git-tar and buildshiprun agree.

/// Why a name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("function name `{0}` cannot become a deployed name: use lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters with the owner prefix")]
    NotDns1123(String),
}

/// The deployed name of `function` pushed by `owner`: `<owner>-<function>`, lower-cased, a DNS-1123 label.
pub fn service_name(owner: &str, function: &str) -> Result<String, NameError> {
    let name = format!("{owner}-{function}").to_ascii_lowercase();
    if is_dns1123_label(&name) && !function.is_empty() {
        Ok(name)
    } else {
        Err(NameError::NotDns1123(function.to_owned()))
    }
}

/// A DNS-1123 label: 1 to 63 of `[a-z0-9-]`, starting and ending with a letter or digit.
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Splits an image reference into its name and tag (`latest` when it has none); a digest is dropped.
pub fn split_image_tag(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (&image[..colon], &image[colon + 1..])
        }
        None => (image, "latest"),
    }
}

/// The image a push builds: `<repository_url>/<image>:<tag or latest>-<sha>`.
/// With an empty `repository_url` the image keeps the name stack.yml gives it.
pub fn build_image_name(repository_url: &str, stack_image: &str, sha: &str) -> String {
    let (name, tag) = split_image_tag(stack_image.trim());
    let prefix = repository_url.trim().trim_end_matches('/');
    if prefix.is_empty() {
        format!("{name}:{tag}-{sha}")
    } else {
        format!("{prefix}/{name}:{tag}-{sha}")
    }
}

/// The image reference pinned by digest: `<name without tag>@<digest>`, so a deployment runs exactly what was built.
pub fn pin_by_digest(image: &str, digest: &str) -> String {
    let (name, _) = split_image_tag(image);
    format!("{name}@{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_lower_case_dns_labels() {
        assert_eq!(service_name("AlexEllis", "Hello-Fn").unwrap(), "alexellis-hello-fn");
        assert!(service_name("octo", "under_score").is_err());
        assert!(service_name("octo", "").is_err());
        assert!(service_name("octo", "trailing-").is_err());
        assert!(service_name("octo", &"x".repeat(60)).is_err());
    }

    #[test]
    fn image_names_follow_the_original_rule() {
        let sha = "thesha";
        assert_eq!(
            build_image_name("registry:5000", "alexellis2/func:0.1", sha),
            "registry:5000/alexellis2/func:0.1-thesha"
        );
        assert_eq!(
            build_image_name("registry:5000/", "alexellis2/func", sha),
            "registry:5000/alexellis2/func:latest-thesha"
        );
        assert_eq!(build_image_name("", "func", sha), "func:latest-thesha");
        assert_eq!(build_image_name("r:5000", "host:5001/ns/func", sha), "r:5000/host:5001/ns/func:latest-thesha");
    }

    #[test]
    fn pins_images_by_digest() {
        assert_eq!(pin_by_digest("127.0.0.1:5000/o/f:latest-abc", "sha256:00ff"), "127.0.0.1:5000/o/f@sha256:00ff");
    }
}
