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

/// A GitHub login: 1 to 39 letters, digits or single hyphens, not starting or ending with a hyphen.
pub fn is_github_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= 39
        && login.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !login.starts_with('-')
        && !login.ends_with('-')
        && !login.contains("--")
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

/// The image a push builds: `<repository_url>/<owner>/<repo>-<function>:<sha>`, lower-cased and valid as a registry
/// name, so that every owner has their own registry namespace and a stack.yml's `image:` cannot write over another
/// owner's (or the platform's) image. With an empty `repository_url` the name starts at the owner.
pub fn build_image_name(repository_url: &str, owner: &str, repo: &str, function: &str, sha: &str) -> String {
    let prefix = repository_url.trim().trim_end_matches('/').to_ascii_lowercase();
    let owner = registry_component(owner);
    let repo = registry_component(repo);
    let function = registry_component(function);
    let name = if repo.is_empty() { function } else { format!("{repo}-{function}") };
    let tag = sha.to_ascii_lowercase();
    if prefix.is_empty() {
        format!("{owner}/{name}:{tag}")
    } else {
        format!("{prefix}/{owner}/{name}:{tag}")
    }
}

/// The owner's namespace of an image [`build_image_name`] made (`<repository_url>/<owner>`): every image below it
/// is that owner's. `None` for a reference with no namespace.
pub fn image_owner_prefix(image: &str) -> Option<&str> {
    let (name, _) = split_image_tag(image);
    name.rsplit_once('/').map(|(prefix, _)| prefix).filter(|prefix| !prefix.is_empty())
}

/// One path component of a registry name: lower-case letters and digits, joined by `-` (a repository's `.` and `_`
/// become `-`, which is valid wherever it stands between two letters or digits).
fn registry_component(value: &str) -> String {
    let mapped: String =
        value.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    mapped.trim_matches('-').to_owned()
}

/// The name a function's `secrets: [name]` entry binds: `<owner>-<name>` with the owner lower-cased (the last
/// release's rule), so that a user can only mount the secrets created for them.
pub fn owner_secret_name(owner: &str, secret: &str) -> String {
    format!("{}-{secret}", owner.to_ascii_lowercase())
}

/// Whether `name` can be a secret's name on both orchestrators: a DNS-1123 subdomain (lower-case letters, digits,
/// `-` and `.`, starting and ending with a letter or digit, at most 253 characters).
pub fn is_valid_secret_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// The secrets the platform itself mounts (every secret the platform's stack.yml names, and the registry's): a user
/// function must never be given one of them.
pub const PLATFORM_SECRETS: &[&str] = &[
    "payload-secret",
    "github-webhook-secret",
    "private-key",
    "derek-private-key",
    "basic-auth-user",
    "basic-auth-password",
    "customers",
    "registry-secret",
    "registry-auth",
    "swarm-pull-secret",
    "s3-access-key",
    "s3-secret-key",
    "s3-access-key-id",
    "s3-secret-access-key",
    "jwt-private-key",
    "jwt-public-key",
    "of-client-secret",
];

/// Deployed names no push may take: the platform's own functions and services, whichever owner and function
/// would form them (owner `gh` with function `push` is `gh-push`).
pub fn is_reserved_service(name: &str) -> bool {
    crate::functions::ALL.contains(&name) || name == "of-builder"
}

/// The image reference pinned by digest: `<name without tag>@<digest>`, so a deployment runs exactly what was built.
pub fn pin_by_digest(image: &str, digest: &str) -> String {
    let (name, _) = split_image_tag(image);
    format!("{name}@{digest}")
}

/// Where users reach a deployed function, the link statuses and the dashboard show.
///
/// With `gateway_pretty_url` set (e.g. `https://user.o6s.io/function`), the last release's rule: every `user` in it
/// becomes the owner and every `function` the function's name (both lower-cased, as the service name is). The
/// template is read once, left to right, so an owner or function whose own name holds `user` or `function` is not
/// replaced a second time (the last release's two `strings.Replace` calls did that). Without it, the gateway's
/// `{gateway_public_url}function/<service>`.
pub fn function_url(
    gateway_public_url: &str,
    pretty: Option<&str>,
    owner: &str,
    function: &str,
    service: &str,
) -> String {
    let Some(template) = pretty.map(str::trim).filter(|p| !p.is_empty()) else {
        let base = gateway_public_url.trim();
        let slash = if base.ends_with('/') { "" } else { "/" };
        return format!("{base}{slash}function/{service}");
    };
    let (owner, function) = (owner.to_ascii_lowercase(), function.to_ascii_lowercase());
    let mut url = String::with_capacity(template.len() + owner.len() + function.len());
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("user") {
            url.push_str(&owner);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("function") {
            url.push_str(&function);
            rest = after;
        } else {
            let next = rest.chars().next().expect("not empty");
            url.push(next);
            rest = &rest[next.len_utf8()..];
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_logins_are_letters_digits_and_single_inner_hyphens() {
        for good in ["octo", "a", "Octo-Cat", "x1-2", &"a".repeat(39)] {
            assert!(is_github_login(good), "{good}");
        }
        for bad in ["", "-octo", "octo-", "oc--to", "oc_to", "oc.to", "../x", &"a".repeat(40)] {
            assert!(!is_github_login(bad), "{bad}");
        }
    }

    #[test]
    fn pretty_urls_replace_user_and_function_as_the_last_release_did() {
        let pretty = Some("https://user.o6s.io/function");
        assert_eq!(
            function_url("https://gw/", pretty, "AlexEllis", "hello", "alexellis-hello"),
            "https://alexellis.o6s.io/hello"
        );
        let local = Some("http://user.localhost:8081/function");
        assert_eq!(function_url("http://gw/", local, "octo", "fn", "octo-fn"), "http://octo.localhost:8081/fn");
    }

    #[test]
    fn pretty_urls_do_not_replace_inside_what_was_put_in() {
        let pretty = Some("https://user.o6s.io/function");
        assert_eq!(
            function_url("https://gw/", pretty, "functionuser", "user-function", "functionuser-user-function"),
            "https://functionuser.o6s.io/user-function"
        );
    }

    #[test]
    fn without_a_pretty_url_the_gateway_s_public_url_is_used() {
        assert_eq!(
            function_url("https://gw.example/", None, "octo", "fn", "octo-fn"),
            "https://gw.example/function/octo-fn"
        );
        assert_eq!(
            function_url("https://gw.example", Some("  "), "octo", "fn", "octo-fn"),
            "https://gw.example/function/octo-fn"
        );
    }

    #[test]
    fn service_names_are_lower_case_dns_labels() {
        assert_eq!(service_name("AlexEllis", "Hello-Fn").unwrap(), "alexellis-hello-fn");
        assert!(service_name("octo", "under_score").is_err());
        assert!(service_name("octo", "").is_err());
        assert!(service_name("octo", "trailing-").is_err());
        assert!(service_name("octo", &"x".repeat(60)).is_err());
    }

    #[test]
    fn images_are_namespaced_by_owner_and_repository() {
        let sha = "ABC123";
        assert_eq!(
            build_image_name("registry:5000", "AlexEllis", "Fns", "hello", sha),
            "registry:5000/alexellis/fns-hello:abc123"
        );
        assert_eq!(
            build_image_name("Registry:5000/", "octo", "my_repo.js", "fn", sha),
            "registry:5000/octo/my-repo-js-fn:abc123"
        );
        assert_eq!(build_image_name("", "octo", ".github", "fn", sha), "octo/github-fn:abc123");
        // Two owners whose names join alike still get different images.
        assert_ne!(build_image_name("r", "alex", "ellis", "x", sha), build_image_name("r", "alex-ellis", "", "x", sha));
    }

    #[test]
    fn an_images_owner_prefix_is_its_namespace_in_the_registry() {
        for (owner, repo) in [("acme", "fns"), ("acme-corp", ""), ("Octo", "a.b")] {
            let image = build_image_name("127.0.0.1:5000", owner, repo, "fn", "abc");
            let other = build_image_name("127.0.0.1:5000", owner, "other", "x", "def");
            assert_eq!(image_owner_prefix(&image), image_owner_prefix(&other), "{image}");
        }
        assert_eq!(image_owner_prefix("127.0.0.1:5000/acme/fns-fn:abc"), Some("127.0.0.1:5000/acme"));
        assert_ne!(
            image_owner_prefix(&build_image_name("r:1", "acme", "corp", "x", "s")),
            image_owner_prefix(&build_image_name("r:1", "acme-corp", "", "x", "s"))
        );
        assert_eq!(image_owner_prefix("fn"), None);
    }

    #[test]
    fn secrets_are_bound_to_their_lower_case_owner() {
        assert_eq!(owner_secret_name("AlexEllis", "db"), "alexellis-db");
        assert!(is_valid_secret_name("alexellis-db"));
        assert!(!is_valid_secret_name("alexellis-DB"));
        assert!(!is_valid_secret_name("alex/../db"));
        assert!(!is_valid_secret_name("alex-"));
    }

    #[test]
    fn the_platform_s_functions_are_reserved() {
        assert!(is_reserved_service(&service_name("gh", "push").unwrap()));
        assert!(is_reserved_service("buildshiprun"));
        assert!(!is_reserved_service("gh-pushy"));
    }

    #[test]
    fn pins_images_by_digest() {
        assert_eq!(pin_by_digest("127.0.0.1:5000/o/f:latest-abc", "sha256:00ff"), "127.0.0.1:5000/o/f@sha256:00ff");
    }
}
