//! How everything an owner has is named: deployed functions, pretty URLs, secrets, images and log keys. The one
//! place these names are formed and parsed, so that no two (owner, name) pairs can ever meet in one.

/// Why a name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("function name `{0}` cannot become a deployed name: use lower-case letters, digits and '-', starting and ending with a letter or digit")]
    NotDns1123(String),
    #[error("`{owner}` is not a GitHub login, so its functions cannot be named")]
    NotALogin { owner: String },
    #[error("the deployed name `{service}` is {len} characters, over the 63 a DNS label may hold: shorten the function's name to at most {room}")]
    TooLong { service: String, len: usize, room: usize },
    #[error("the push names no owner account id, which secrets, images and logs are kept under")]
    NoOwnerId,
    #[error("repository name `{0}` cannot be part of an image path")]
    BadRepository(String),
    #[error("the image path `{path}` is {len} characters, over the registry's 255: shorten the repository's or the function's name")]
    ImageTooLong { path: String, len: usize },
}

/// What joins an account id to a secret's name in a bound secret: the id is digits only, so the first `--` ends it.
pub const SEPARATOR: &str = "--";

/// The deployed name of `function` pushed by `owner`: `<owner>-<function>-<length of the owner's login>`,
/// lower-cased. A login may hold hyphens, so `<owner>-<function>` alone is ambiguous (`acme` + `corp-db` and
/// `acme-corp` + `db`); the length that ends the name says where the login stops, so no two (owner, function) pairs
/// share a name. Names keep to `[a-z0-9]+(-[a-z0-9]+)*`, at most 63 characters: a DNS-1123 label (Kubernetes) that
/// containerd (faasd) also takes as an id (it refuses `--`), and they start as the login does.
pub fn service_name(owner: &str, function: &str) -> Result<String, NameError> {
    if !is_github_login(owner) {
        return Err(NameError::NotALogin { owner: owner.to_owned() });
    }
    let function_lower = function.to_ascii_lowercase();
    if !is_dns1123_label(&function_lower) || function_lower.contains("--") {
        return Err(NameError::NotDns1123(function.to_owned()));
    }
    let length = owner.len().to_string();
    let name = format!("{}-{function_lower}-{length}", owner.to_ascii_lowercase());
    if name.len() > 63 {
        let room = 63 - owner.len() - 2 - length.len();
        return Err(NameError::TooLong { len: name.len(), service: name, room });
    }
    Ok(name)
}

/// The owner's login and the function's name of a deployed name formed by [`service_name`]; `None` for any other
/// name (the platform's own, one deployed by hand, or the last release's `<owner>-<function>`).
pub fn parse_service_name(service: &str) -> Option<(&str, &str)> {
    let (rest, length) = service.rsplit_once('-')?;
    if length.is_empty() || length.starts_with('0') || !length.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let length: usize = length.parse().ok()?;
    let owner = rest.get(..length)?;
    let function = rest.get(length..)?.strip_prefix('-')?;
    let lower = |s: &str| !s.bytes().any(|b| b.is_ascii_uppercase());
    (is_github_login(owner)
        && lower(owner)
        && is_dns1123_label(function)
        && !function.contains("--")
        && is_dns1123_label(service))
    .then_some((owner, function))
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

/// The image a push builds: `<repository_url>/<owner id>/<repo>/<function>:<sha>`, lower-cased. Keyed by the owner's
/// account id, not its login, so a renamed or recycled login reaches none of the old account's images; one path
/// component per part, so no two (owner, repository, function) meet in one path. A repository name that is not a
/// registry path component as it stands (`.github`, `a..b`, `x-`) is written as `x/<hex of its name>`: one
/// component more, so it never meets a repository that is. With an empty `repository_url` the path starts at the id.
pub fn build_image_name(
    repository_url: &str,
    owner_id: u64,
    repo: &str,
    function: &str,
    sha: &str,
) -> Result<String, NameError> {
    if owner_id == 0 {
        return Err(NameError::NoOwnerId);
    }
    let prefix = repository_url.trim().trim_end_matches('/').to_ascii_lowercase();
    let function = function.to_ascii_lowercase();
    if !is_dns1123_label(&function) {
        return Err(NameError::NotDns1123(function));
    }
    let repo_path = image_repository_component(repo)?;
    let path = if prefix.is_empty() {
        format!("{owner_id}/{repo_path}/{function}")
    } else {
        format!("{prefix}/{owner_id}/{repo_path}/{function}")
    };
    if path.len() > 255 {
        return Err(NameError::ImageTooLong { len: path.len(), path });
    }
    Ok(format!("{path}:{}", sha.to_ascii_lowercase()))
}

/// The path `<repository_url>/<owner id>/` under which every image of that account lies (and nothing of another
/// account): what an owner's `skip_build` image must start with.
pub fn owner_image_prefix(repository_url: &str, owner_id: u64) -> String {
    let prefix = repository_url.trim().trim_end_matches('/').to_ascii_lowercase();
    if prefix.is_empty() {
        format!("{owner_id}/")
    } else {
        format!("{prefix}/{owner_id}/")
    }
}

/// The owner's namespace of an image [`build_image_name`] made, `<repository_url>/<owner id>`: every image below it
/// is that account's. Read from the reference's own shape (`…/<id>/<repo>/<function>`, or `…/<id>/x/<hex>/<function>`
/// for a repository written in hex), so it needs no setting; `None` for a reference of another shape.
pub fn image_owner_prefix(image: &str) -> Option<&str> {
    let (name, _) = split_image_tag(image);
    let parts: Vec<&str> = name.split('/').collect();
    let below = if parts.len() >= 4 && parts[parts.len() - 3] == "x" { 3 } else { 2 };
    let id = parts.len().checked_sub(below + 1).map(|i| parts[i])?;
    let is_id = !id.is_empty() && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit());
    if !is_id {
        return None;
    }
    let cut = parts[parts.len() - below..].iter().map(|p| p.len() + 1).sum::<usize>();
    Some(&name[..name.len() - cut])
}

/// A GitHub repository name (letters, digits, `-`, `_`, `.`, case-insensitive) as registry path component(s).
fn image_repository_component(repo: &str) -> Result<String, NameError> {
    let bad = || NameError::BadRepository(repo.to_owned());
    if repo.is_empty() || repo.len() > 100 || !repo.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(bad());
    }
    let lower = repo.to_ascii_lowercase();
    if is_registry_component(&lower) {
        Ok(lower)
    } else {
        let hex = lower.bytes().fold(String::with_capacity(2 * lower.len()), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        });
        Ok(format!("x/{hex}"))
    }
}

/// A registry path component: `[a-z0-9]+` joined by `.`, `_`, `__` or any run of `-` (the distribution grammar).
pub fn is_registry_component(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            if !(separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.bytes().all(|s| s == b'-'))
            {
                return false;
            }
            separator.clear();
        } else if b"._-".contains(&b) {
            separator.push(char::from(b));
        } else {
            return false;
        }
    }
    true
}

/// The name a function's `secrets: [name]` entry binds: `<owner id>--<name>`. Keyed by the account id, so a renamed
/// or recycled login mounts nothing of the old account; the id is digits only and the first `--` ends it, so no
/// two (owner, name) pairs bind one secret.
pub fn owner_secret_name(owner_id: u64, secret: &str) -> Result<String, NameError> {
    if owner_id == 0 {
        return Err(NameError::NoOwnerId);
    }
    Ok(format!("{owner_id}{SEPARATOR}{secret}"))
}

/// The owner id and the secret's name of a secret formed by [`owner_secret_name`].
pub fn parse_owner_secret_name(bound: &str) -> Option<(u64, &str)> {
    let (id, name) = bound.split_once(SEPARATOR)?;
    let id = id.parse::<u64>().ok().filter(|id| *id != 0 && !bound.starts_with('0'))?;
    Some((id, name))
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
    "registry-collector-auth",
    "swarm-pull-secret",
    "s3-access-key",
    "s3-secret-key",
    "s3-access-key-id",
    "s3-secret-access-key",
    "jwt-private-key",
    "jwt-public-key",
    "of-client-secret",
];

/// The services the platform runs beside its functions (stack.yml's are [`crate::functions::ALL`]), by the names
/// the deploy files give them: the edge router, the builder, the registry, and OpenFaaS' own parts.
pub const PLATFORM_SERVICES: &[&str] = &[
    "edge-router",
    "of-builder",
    "buildkitd",
    "registry",
    "registry-gate",
    "gateway",
    "queue-worker",
    "nats",
    "prometheus",
    "alertmanager",
    "basic-auth-plugin",
    "faas-idler",
];

/// The host labels under the platform's domain that are the platform's (`system.<domain>` is the dashboard and the
/// login): an owner with such a login would get no pretty URL, so its pushes are refused.
pub const RESERVED_HOST_LABELS: &[&str] = &["system"];

/// Deployed names no push may take: the platform's own functions and services. No [`service_name`] can be one of
/// them today (none ends in a number); this holds if one ever does.
pub fn is_reserved_service(name: &str) -> bool {
    crate::functions::ALL.contains(&name) || PLATFORM_SERVICES.contains(&name)
}

/// Whether `login` is an owner whose pretty URL host would be one of the platform's.
pub fn is_reserved_owner(login: &str) -> bool {
    RESERVED_HOST_LABELS.iter().any(|label| label.eq_ignore_ascii_case(login))
}

/// What a preview is of: a branch other than the default, or a pull request (by number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviewOf {
    Branch(String),
    PullRequest(u64),
}

/// How many hex digits of SHA-256 a preview's tag keeps: 48 bits, so two of one owner's previews meet only by a
/// SHA-256 collision on that many bits (about one in 10^14 for a pair), while every name stays short.
const PREVIEW_HASH_HEX: usize = 12;

/// The tag that tells one preview of a repository from every other: `b<12 hex>` for a branch, `p<12 hex>` for a
/// pull request, the hex being SHA-256 over the kind, the repository's name (lower-cased, as GitHub compares them)
/// and the branch or number. Branch names are long and arbitrary, so they are hashed, never spelled out; the
/// repository is hashed in because the same branch name or pull-request number exists in every repository.
pub fn preview_tag(repo: &str, of: &PreviewOf) -> String {
    use sha2::Digest as _;
    let (kind, value) = match of {
        PreviewOf::Branch(branch) => ('b', branch.clone()),
        PreviewOf::PullRequest(number) => ('p', number.to_string()),
    };
    let mut hasher = sha2::Sha256::new();
    hasher.update([kind as u8, 0]);
    hasher.update(repo.to_ascii_lowercase().as_bytes());
    hasher.update([0]);
    hasher.update(value.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("{kind}{}", &digest[..PREVIEW_HASH_HEX])
}

/// Whether `tag` has the shape [`preview_tag`] gives: `b` or `p` and 12 lower-case hex digits.
pub fn is_preview_tag(tag: &str) -> bool {
    tag.len() == PREVIEW_HASH_HEX + 1
        && (tag.starts_with('b') || tag.starts_with('p'))
        && tag[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The deployed name of `function` in the preview `tag` of `owner`: `<service_name>-<tag>`. A default name always
/// ends in `-<digits>` and a tag starts with a letter, so no preview's name is a default branch's; the part before
/// the last `-` is a [`service_name`], so no two (owner, function, tag) meet either.
pub fn preview_service_name(owner: &str, function: &str, tag: &str) -> Result<String, NameError> {
    if !is_preview_tag(tag) {
        return Err(NameError::NotDns1123(tag.to_owned()));
    }
    let name = format!("{}-{tag}", service_name(owner, function)?);
    if name.len() > 63 {
        let room = 63 - owner.len() - 2 - owner.len().to_string().len() - 1 - tag.len();
        return Err(NameError::TooLong { len: name.len(), service: name, room });
    }
    Ok(name)
}

/// The owner, function and tag of a name [`preview_service_name`] formed; `None` for any other name.
pub fn parse_preview_service_name(service: &str) -> Option<(&str, &str, &str)> {
    let (rest, tag) = service.rsplit_once('-')?;
    if !is_preview_tag(tag) {
        return None;
    }
    let (owner, function) = parse_service_name(rest)?;
    Some((owner, function, tag))
}

/// The deployed name of `function` of `owner`: the default branch's, or the preview's when `tag` is given.
pub fn deployed_name(owner: &str, function: &str, tag: Option<&str>) -> Result<String, NameError> {
    match tag {
        Some(tag) => preview_service_name(owner, function, tag),
        None => service_name(owner, function),
    }
}

/// The host label a preview is reached at: `<owner>--<tag>` (lower-cased). A GitHub login never holds `--`, so
/// no owner's own host is one, and the first `--` ends the login.
pub fn preview_host_label(owner: &str, tag: &str) -> String {
    format!("{}{SEPARATOR}{tag}", owner.to_ascii_lowercase())
}

/// The owner and tag of a host label [`preview_host_label`] formed; `None` for an owner's own label or another.
pub fn parse_preview_host_label(label: &str) -> Option<(&str, &str)> {
    let (owner, tag) = label.split_once(SEPARATOR)?;
    (is_github_login(owner) && is_preview_tag(tag)).then_some((owner, tag))
}

/// The image a preview builds: as [`build_image_name`], with `<function>__<tag>` as the last component. `__` is in
/// no function's name (a DNS label), so no preview's image is the default branch's or another preview's, and it stays
/// under the owner's namespace ([`image_owner_prefix`] reads it as it reads the default's).
pub fn preview_image_name(
    repository_url: &str,
    owner_id: u64,
    repo: &str,
    function: &str,
    tag: &str,
    sha: &str,
) -> Result<String, NameError> {
    if !is_preview_tag(tag) {
        return Err(NameError::NotDns1123(tag.to_owned()));
    }
    let image = build_image_name(repository_url, owner_id, repo, function, sha)?;
    let (name, sha) = split_image_tag(&image);
    let path = format!("{name}__{tag}");
    if path.len() > 255 {
        return Err(NameError::ImageTooLong { len: path.len(), path });
    }
    Ok(format!("{path}:{sha}"))
}

/// Whether `repository` (a registry repository path, without host: `<path>/<owner id>/<repo>/<function>__<tag>`)
/// is a preview's, as [`preview_image_name`] forms them: what the registry's collector account may delete. Every
/// component must be a registry path component (no `..`, no escapes), the last one a function's name and a preview
/// tag, under an owner id; a default branch's image has no `__<tag>` and is never one.
pub fn is_preview_image_repository(repository: &str) -> bool {
    let components_ok = repository.split('/').all(is_registry_component);
    let Some((_, last)) = repository.rsplit_once('/') else { return false };
    let Some((function, tag)) = last.split_once("__") else { return false };
    components_ok && is_dns1123_label(function) && is_preview_tag(tag) && image_owner_prefix(repository).is_some()
}

/// The name a preview's build log (and push record) is kept under in the log store: `<function>__<tag>`, so it
/// never overwrites the default branch's log of the same commit (`__` is in no function's or context's name).
pub fn preview_log_name(function: &str, tag: &str) -> String {
    format!("{function}__{tag}")
}

/// Where users reach a preview's function: [`function_url`] with the preview's host label in the owner's place
/// (`https://<owner>--<tag>.o6s.io/<function>` for the template `https://user.o6s.io/function`).
pub fn preview_function_url(
    gateway_public_url: &str,
    pretty: Option<&str>,
    owner: &str,
    function: &str,
    service: &str,
    tag: &str,
) -> String {
    function_url(gateway_public_url, pretty, &preview_host_label(owner, tag), function, service)
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
            function_url("https://gw/", pretty, "AlexEllis", "hello", "alexellis-hello-9"),
            "https://alexellis.o6s.io/hello"
        );
        let local = Some("http://user.localhost:8081/function");
        assert_eq!(function_url("http://gw/", local, "octo", "fn", "octo-fn-4"), "http://octo.localhost:8081/fn");
    }

    #[test]
    fn pretty_urls_do_not_replace_inside_what_was_put_in() {
        let pretty = Some("https://user.o6s.io/function");
        assert_eq!(
            function_url("https://gw/", pretty, "functionuser", "user-function", "functionuser-user-function-12"),
            "https://functionuser.o6s.io/user-function"
        );
    }

    #[test]
    fn without_a_pretty_url_the_gateway_s_public_url_is_used() {
        assert_eq!(
            function_url("https://gw.example/", None, "octo", "fn", "octo-fn-4"),
            "https://gw.example/function/octo-fn-4"
        );
        assert_eq!(
            function_url("https://gw.example", Some("  "), "octo", "fn", "octo-fn-4"),
            "https://gw.example/function/octo-fn-4"
        );
    }

    #[test]
    fn service_names_are_lower_case_dns_labels() {
        assert_eq!(service_name("AlexEllis", "Hello-Fn").unwrap(), "alexellis-hello-fn-9");
        assert!(service_name("octo", "under_score").is_err());
        assert!(service_name("octo", "").is_err());
        assert!(service_name("octo", "trailing-").is_err());
        assert!(service_name("octo-", "fn").is_err());
        assert!(service_name("a--b", "fn").is_err());
        assert!(service_name("octo", "a--b").is_err(), "containerd refuses `--` in an id");
        let long = service_name("octo", &"x".repeat(60)).unwrap_err();
        assert_eq!(long.to_string(), "the deployed name `octo-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-4` is 67 characters, over the 63 a DNS label may hold: shorten the function's name to at most 56");
        assert_eq!(service_name("octo", &"x".repeat(56)).unwrap().len(), 63);
    }

    #[test]
    fn hyphen_prefixed_owners_get_different_names() {
        assert_ne!(service_name("acme", "corp-db").unwrap(), service_name("acme-corp", "db").unwrap());
        assert_eq!(service_name("acme", "corp-db").unwrap(), "acme-corp-db-4");
        assert_eq!(service_name("acme-corp", "db").unwrap(), "acme-corp-db-9");
        assert_eq!(parse_service_name("acme-corp-db-9"), Some(("acme-corp", "db")));
        assert_eq!(parse_service_name("acme-corp-db-4"), Some(("acme", "corp-db")));
        assert_eq!(parse_service_name("acme---db"), None);
        assert_eq!(parse_service_name("edge-router"), None);
        assert_eq!(service_name("edge", "router").unwrap(), "edge-router-4");
        assert!(!is_reserved_service(&service_name("edge", "router").unwrap()));
    }

    /// Every login of up to five characters over `a`, `1` and `-`, and every function name of up to four over the
    /// same (digits, as the length that ends a name is digits): the names they form never meet, and each parses back
    /// to its pair.
    #[test]
    fn service_names_are_injective_over_a_small_alphabet() {
        let logins: Vec<String> = words(b"a1-", 5).into_iter().filter(|w| is_github_login(w)).collect();
        let functions: Vec<String> =
            words(b"a1-", 4).into_iter().filter(|w| is_dns1123_label(w) && !w.contains("--")).collect();
        let mut seen = std::collections::HashMap::new();
        for owner in &logins {
            for function in &functions {
                let service = service_name(owner, function).unwrap();
                assert_eq!(parse_service_name(&service), Some((owner.as_str(), function.as_str())));
                if let Some(earlier) = seen.insert(service.clone(), (owner.clone(), function.clone())) {
                    panic!("{earlier:?} and ({owner}, {function}) both become {service}");
                }
            }
        }
        assert!(seen.len() > 1000, "{}", seen.len());
    }

    #[test]
    fn secrets_and_images_are_injective_over_a_small_alphabet() {
        let ids = [1_u64, 2, 12, 21, 112];
        let names: Vec<String> = words(b"a-.", 4).into_iter().filter(|w| is_valid_secret_name(w)).collect();
        let mut secrets = std::collections::HashSet::new();
        for id in ids {
            for name in &names {
                let bound = owner_secret_name(id, name).unwrap();
                assert_eq!(parse_owner_secret_name(&bound), Some((id, name.as_str())));
                assert!(secrets.insert(bound));
            }
        }
        let repos: Vec<String> = words(b"aA-._", 3);
        let functions = ["a", "a-a", "aa"];
        let mut images = std::collections::HashMap::new();
        for id in ids {
            for repo in &repos {
                for function in functions {
                    let image = build_image_name("r:5000", id, repo, function, "abc").unwrap();
                    let key = (id, repo.to_ascii_lowercase(), function);
                    if let Some(earlier) = images.insert(image.clone(), key.clone()) {
                        assert_eq!(earlier, key, "{image}");
                    }
                }
            }
        }
        assert!(images.len() > 500, "{}", images.len());
    }

    fn words(alphabet: &[u8], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last.iter().flat_map(|w| alphabet.iter().map(move |c| format!("{w}{}", char::from(*c)))).collect();
            all.extend(last.iter().cloned());
        }
        all.retain(|w| !w.is_empty());
        all
    }

    #[test]
    fn images_are_namespaced_by_owner_id_repository_and_function() {
        let sha = "ABC123";
        assert_eq!(
            build_image_name("registry:5000", 42, "Fns", "hello", sha).unwrap(),
            "registry:5000/42/fns/hello:abc123"
        );
        assert_eq!(
            build_image_name("Registry:5000/", 42, "my_repo.js", "fn", sha).unwrap(),
            "registry:5000/42/my_repo.js/fn:abc123"
        );
        assert_eq!(build_image_name("", 7, ".github", "fn", sha).unwrap(), "7/x/2e676974687562/fn:abc123");
        assert_ne!(
            build_image_name("r", 1, "alex", "ellis-x", sha).unwrap(),
            build_image_name("r", 1, "alex-ellis", "x", sha).unwrap()
        );
        assert_eq!(build_image_name("r", 0, "fns", "x", sha), Err(NameError::NoOwnerId));
        assert!(build_image_name("r", 1, "a/b", "x", sha).is_err());
        assert!(build_image_name(&"r".repeat(200), 1, &"a".repeat(60), "x", sha).is_err());
        assert!(build_image_name("r", 1, "fns", "Under_score", sha).is_err());
        assert!(is_registry_component("a__b") && is_registry_component("a---b") && !is_registry_component("a._b"));
    }

    #[test]
    fn an_image_s_owner_prefix_is_its_account_s_namespace_in_the_registry() {
        for (owner_id, repo) in [(99_u64, "fns"), (100, "x"), (7, ".github"), (583_231, "a..b")] {
            let image = build_image_name("127.0.0.1:5000/ofc", owner_id, repo, "fn", "abc").unwrap();
            let other = build_image_name("127.0.0.1:5000/ofc", owner_id, "other", "y", "def").unwrap();
            let prefix = image_owner_prefix(&image).unwrap();
            assert_eq!(Some(prefix), image_owner_prefix(&other), "{image}");
            assert_eq!(format!("{prefix}/"), owner_image_prefix("127.0.0.1:5000/ofc", owner_id), "{image}");
        }
        assert_ne!(
            image_owner_prefix(&build_image_name("r:1", 1, "corp", "x", "s").unwrap()),
            image_owner_prefix(&build_image_name("r:1", 12, "x", "x", "s").unwrap())
        );
        assert_eq!(image_owner_prefix("fn"), None);
        assert_eq!(image_owner_prefix("registry/acme/fns-fn:abc"), None, "the last release's layout has no account id");
    }

    #[test]
    fn secrets_are_bound_to_the_owner_s_account_id() {
        assert_eq!(owner_secret_name(583_231, "db").unwrap(), "583231--db");
        assert_eq!(owner_secret_name(0, "db"), Err(NameError::NoOwnerId));
        assert!(is_valid_secret_name("583231--db"));
        assert!(!is_valid_secret_name("alexellis-DB"));
        assert!(!is_valid_secret_name("alex/../db"));
        assert!(!is_valid_secret_name("alex-"));
        assert_eq!(parse_owner_secret_name("payload-secret"), None);
        assert_eq!(parse_owner_secret_name("0--db"), None);
        assert_eq!(parse_owner_secret_name("01--db"), None);
    }

    #[test]
    fn the_platform_s_functions_and_services_are_reserved() {
        assert!(is_reserved_service("buildshiprun"));
        assert!(is_reserved_service("edge-router"));
        assert!(is_reserved_service("of-builder"));
        assert!(!is_reserved_service("gh-pushy"));
        assert!(is_reserved_owner("System"));
        assert!(!is_reserved_owner("octo"));
    }

    #[test]
    fn preview_names_never_meet_the_default_branch_s_or_each_other() {
        let tag = preview_tag("fns", &PreviewOf::PullRequest(12));
        assert!(is_preview_tag(&tag), "{tag}");
        assert_ne!(tag, preview_tag("other", &PreviewOf::PullRequest(12)), "the repository is part of the tag");
        assert_ne!(tag, preview_tag("fns", &PreviewOf::Branch("12".into())), "the kind is part of the tag");
        assert_eq!(tag, preview_tag("FNS", &PreviewOf::PullRequest(12)), "GitHub compares repositories case-blind");
        let service = preview_service_name("octo", "hello", &tag).unwrap();
        assert_eq!(service, format!("octo-hello-4-{tag}"));
        assert_eq!(parse_preview_service_name(&service), Some(("octo", "hello", tag.as_str())));
        assert_eq!(parse_service_name(&service), None, "a preview's name is no default branch's");
        assert_eq!(parse_preview_service_name("octo-hello-4"), None);
        assert!(is_dns1123_label(&service));
        let long = preview_service_name("octo", &"x".repeat(50), &tag).unwrap_err();
        assert!(long.to_string().contains("at most 42"), "{long}");
        assert_eq!(preview_service_name("octo", &"x".repeat(42), &tag).unwrap().len(), 63);
        assert!(preview_service_name("octo", "hello", "main").is_err());
        let branch = preview_tag("fns", &PreviewOf::Branch("feature/a very long name ".repeat(20)));
        assert!(is_preview_tag(&branch) && branch.starts_with('b'));
    }

    /// Every owner and function over a small alphabet, in three previews of two repositories and the default
    /// branch: no two (owner, function, preview) share a deployed name, and each parses back.
    #[test]
    fn preview_names_are_injective_over_a_small_alphabet() {
        let logins: Vec<String> = words(b"a1-", 4).into_iter().filter(|w| is_github_login(w)).collect();
        let functions: Vec<String> =
            words(b"a1-", 3).into_iter().filter(|w| is_dns1123_label(w) && !w.contains("--")).collect();
        let previews = [
            None,
            Some(preview_tag("fns", &PreviewOf::Branch("feature".into()))),
            Some(preview_tag("fns", &PreviewOf::PullRequest(1))),
            Some(preview_tag("web", &PreviewOf::Branch("feature".into()))),
        ];
        let mut seen = std::collections::HashMap::new();
        for owner in &logins {
            for function in &functions {
                for tag in &previews {
                    let service = deployed_name(owner, function, tag.as_deref()).unwrap();
                    match tag {
                        Some(tag) => assert_eq!(
                            parse_preview_service_name(&service),
                            Some((owner.as_str(), function.as_str(), tag.as_str()))
                        ),
                        None => assert_eq!(parse_service_name(&service), Some((owner.as_str(), function.as_str()))),
                    }
                    let key = (owner.clone(), function.clone(), tag.clone());
                    if let Some(earlier) = seen.insert(service.clone(), key.clone()) {
                        panic!("{earlier:?} and {key:?} both become {service}");
                    }
                }
            }
        }
        assert!(seen.len() > 1000, "{}", seen.len());
    }

    #[test]
    fn preview_hosts_and_images_are_apart_from_the_owner_s_own() {
        let tag = preview_tag("fns", &PreviewOf::PullRequest(7));
        let label = preview_host_label("Octo-Cat", &tag);
        assert_eq!(label, format!("octo-cat--{tag}"));
        assert_eq!(parse_preview_host_label(&label), Some(("octo-cat", tag.as_str())));
        assert_eq!(parse_preview_host_label("octo-cat"), None);
        assert_eq!(parse_preview_host_label("octo--x"), None);
        assert!(!is_github_login(&label), "no login is a preview's host");
        assert_eq!(
            preview_function_url("https://gw/", Some("https://user.o6s.io/function"), "Octo", "hello", "s", &tag),
            format!("https://octo--{tag}.o6s.io/hello")
        );
        let image = preview_image_name("r:5000", 42, "fns", "hello", &tag, "ABC").unwrap();
        assert_eq!(image, format!("r:5000/42/fns/hello__{tag}:abc"));
        assert_ne!(image, build_image_name("r:5000", 42, "fns", "hello", "abc").unwrap());
        assert_eq!(image_owner_prefix(&image), Some("r:5000/42"));
        let hexed = preview_image_name("r:5000", 42, ".github", "hello", &tag, "abc").unwrap();
        assert_eq!(image_owner_prefix(&hexed), Some("r:5000/42"));
        assert!(preview_image_name("r", 42, "fns", "hello", "../x", "abc").is_err());
    }

    #[test]
    fn preview_image_repositories_are_told_from_every_other() {
        let tag = preview_tag("fns", &PreviewOf::PullRequest(7));
        for image in [
            preview_image_name("r:5000", 42, "fns", "hello", &tag, "abc").unwrap(),
            preview_image_name("r:5000/ofc", 42, ".github", "hello", &tag, "abc").unwrap(),
        ] {
            let (name, _) = split_image_tag(&image);
            let repository = name.split_once('/').unwrap().1;
            assert!(is_preview_image_repository(repository), "{repository}");
        }
        let default = build_image_name("r:5000", 42, "fns", "hello", "abc").unwrap();
        let repository = split_image_tag(&default).0.split_once('/').unwrap().1;
        assert!(!is_preview_image_repository(repository), "{repository}");
        for other in [
            "_catalog".to_owned(),
            format!("hello__{tag}"),
            format!("42/fns/hello__{tag}x"),
            "42/fns/hello__main".to_owned(),
            format!("42/fns/../hello__{tag}"),
            format!("42/fns/hello__{tag}/manifests"),
            format!("042/fns/hello__{tag}"),
            format!("octo/fns/hello__{tag}"),
            format!("42/fns/Hello__{tag}"),
            format!("42/fns/%2e%2e/hello__{tag}"),
        ] {
            assert!(!is_preview_image_repository(&other), "{other}");
        }
    }

    #[test]
    fn pins_images_by_digest() {
        assert_eq!(pin_by_digest("127.0.0.1:5000/o/f:latest-abc", "sha256:00ff"), "127.0.0.1:5000/o/f@sha256:00ff");
    }
}
