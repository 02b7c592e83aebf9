//! Who may do what: the gate's rules, decided from the method, the path and the credentials alone, before anything
//! reaches the registry.

use axum::http::{HeaderValue, Method};
use base64::Engine;
use subtle::ConstantTimeEq;

/// The realm of the Basic challenge.
pub(crate) const REALM: &str = "openfaas-cloud-registry";

/// A user name and password the gate accepts for one kind of act.
#[derive(Clone)]
pub struct Account {
    pub user: String,
    pub password: String,
}

/// The password never appears in a debug print.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Account({})", self.user)
    }
}

impl Account {
    /// Whether `authorization` (the header's value) signs in as this account, compared in constant time.
    fn matches(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return false };
        let user_ok = user.as_bytes().ct_eq(self.user.as_bytes());
        let password_ok = password.as_bytes().ct_eq(self.password.as_bytes());
        (user_ok & password_ok).into()
    }
}

/// `Basic <base64(user:password)>` split into its parts.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((user, password))
}

/// Who may write and who may delete.
#[derive(Debug, Clone)]
pub struct GateAccounts {
    /// of-builder's account: pushes.
    pub builder: Account,
    /// The operator's account: deletes, and the catalog.
    pub operator: Account,
    /// garbage-collect's account: deletes a preview's manifests, nothing else; `None` when no part removes images.
    pub collector: Option<Account>,
}

/// Who may read: anyone (where only the runtime and the platform reach the gate), or only the three accounts (where
/// tenants' functions reach it too, as faasd's bridge: one owner's function must not pull another's image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    Anyone,
    SignedIn,
}

impl GateAccounts {
    /// Whether `authorization` signs in as any of the accounts.
    pub(crate) fn signs_in(&self, authorization: Option<&HeaderValue>) -> bool {
        self.builder.matches(authorization)
            || self.operator.matches(authorization)
            || self.collector.as_ref().is_some_and(|c| c.matches(authorization))
    }
}

/// What a request may do, decided before anything reaches the registry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Forward,
    /// 401 with the Basic challenge: sign in to do this.
    SignIn(&'static str),
    /// 403: signed in, but this account may not.
    Denied(&'static str),
    NotAllowed,
}

/// Decides on the path as the registry will read it: distribution decodes percent-escapes before routing, so
/// `/v2/%5Fcatalog` is the catalog and `%2F` a slash; a path that does not decode is refused.
pub(crate) fn decide(
    method: &Method,
    path: &str,
    authorization: Option<&HeaderValue>,
    accounts: &GateAccounts,
    reads: Reads,
) -> Decision {
    let Ok(decoded) = percent_encoding::percent_decode_str(path).decode_utf8() else { return Decision::NotAllowed };
    let path: &str = &decoded;
    if reads == Reads::SignedIn
        && (*method == Method::GET || *method == Method::HEAD)
        && !accounts.signs_in(authorization)
    {
        return Decision::SignIn("reading from this registry needs an account here");
    }
    let builder = accounts.builder.matches(authorization);
    let operator = accounts.operator.matches(authorization);
    let collector = accounts.collector.as_ref().is_some_and(|c| c.matches(authorization));
    if !path.starts_with("/v2/") && path != "/v2" {
        return Decision::NotAllowed;
    }
    match *method {
        Method::GET | Method::HEAD if path.trim_end_matches('/') == "/v2" => {
            if builder || operator || collector {
                Decision::Forward
            } else {
                Decision::SignIn("sign in to use this registry; reads need no account")
            }
        }
        Method::GET | Method::HEAD if path.starts_with("/v2/_catalog") => {
            if operator {
                Decision::Forward
            } else if builder || collector {
                Decision::Denied("listing every repository is for the operator")
            } else {
                Decision::SignIn("listing every repository is for the operator")
            }
        }
        Method::GET | Method::HEAD => Decision::Forward,
        Method::PUT | Method::POST | Method::PATCH => {
            if builder {
                Decision::Forward
            } else if operator || collector {
                Decision::Denied("only the builder pushes to this registry")
            } else {
                Decision::SignIn("pushing needs the builder's credentials")
            }
        }
        Method::DELETE => {
            if operator || (collector && is_preview_manifest(path)) {
                Decision::Forward
            } else if collector {
                Decision::Denied("the collector deletes only a preview's manifests")
            } else if builder {
                Decision::Denied("deleting from this registry is the operator's act")
            } else {
                Decision::SignIn("deleting needs the operator's credentials")
            }
        }
        _ => Decision::NotAllowed,
    }
}

/// Whether `path` is `/v2/<name>/manifests/<reference>` of a preview's repository (the distribution API's manifest
/// delete). The reference is a digest or a tag, one path component either way.
fn is_preview_manifest(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v2/") else { return false };
    let Some((name, reference)) = rest.rsplit_once("/manifests/") else { return false };
    let reference_ok = !reference.is_empty()
        && reference.len() <= 200
        && reference.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
    reference_ok && shared::naming::is_preview_image_repository(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> GateAccounts {
        GateAccounts {
            builder: Account { user: "builder".into(), password: "push-pass".into() },
            operator: Account { user: "admin".into(), password: "admin-pass".into() },
            collector: Some(Account { user: "collector".into(), password: "gc-pass".into() }),
        }
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn reads_are_open_writes_are_the_builders_and_deletes_the_operators() {
        let a = accounts();
        let builder = basic("builder", "push-pass");
        let operator = basic("admin", "admin-pass");
        let wrong = basic("builder", "push-pasS");
        let manifest = "/v2/octo/fn/manifests/latest";
        assert_eq!(decide(&Method::GET, manifest, None, &a, Reads::Anyone), Decision::Forward);
        assert_eq!(decide(&Method::HEAD, manifest, Some(&wrong), &a, Reads::Anyone), Decision::Forward);
        assert!(matches!(decide(&Method::GET, "/v2/", None, &a, Reads::Anyone), Decision::SignIn(_)));
        assert!(matches!(decide(&Method::GET, "/v2/_catalog", None, &a, Reads::Anyone), Decision::SignIn(_)));
        assert!(matches!(decide(&Method::GET, "/v2/_catalog", Some(&builder), &a, Reads::Anyone), Decision::Denied(_)));
        assert_eq!(decide(&Method::GET, "/v2/_catalog", Some(&operator), &a, Reads::Anyone), Decision::Forward);
        assert!(matches!(decide(&Method::PUT, manifest, None, &a, Reads::Anyone), Decision::SignIn(_)));
        assert!(matches!(decide(&Method::PUT, manifest, Some(&wrong), &a, Reads::Anyone), Decision::SignIn(_)));
        assert!(matches!(decide(&Method::PUT, manifest, Some(&operator), &a, Reads::Anyone), Decision::Denied(_)));
        assert_eq!(decide(&Method::PUT, manifest, Some(&builder), &a, Reads::Anyone), Decision::Forward);
        assert_eq!(
            decide(&Method::POST, "/v2/octo/fn/blobs/uploads/", Some(&builder), &a, Reads::Anyone),
            Decision::Forward
        );
        assert!(matches!(decide(&Method::DELETE, manifest, Some(&builder), &a, Reads::Anyone), Decision::Denied(_)));
        assert!(matches!(decide(&Method::DELETE, manifest, None, &a, Reads::Anyone), Decision::SignIn(_)));
        assert_eq!(decide(&Method::DELETE, manifest, Some(&operator), &a, Reads::Anyone), Decision::Forward);
        assert_eq!(decide(&Method::OPTIONS, manifest, Some(&operator), &a, Reads::Anyone), Decision::NotAllowed);
        assert_eq!(decide(&Method::GET, "/debug/vars", Some(&operator), &a, Reads::Anyone), Decision::NotAllowed);
    }

    #[test]
    fn signed_in_reads_need_one_of_the_accounts() {
        let a = accounts();
        let manifest = "/v2/42/fns/hello/manifests/latest";
        for (method, path) in [(Method::GET, manifest), (Method::HEAD, manifest), (Method::GET, "/v2/")] {
            let refused = decide(&method, path, None, &a, Reads::SignedIn);
            assert!(matches!(refused, Decision::SignIn(_)), "{method} {path}");
            let wrong = basic("collector", "gc-pasS");
            assert!(matches!(decide(&method, path, Some(&wrong), &a, Reads::SignedIn), Decision::SignIn(_)));
            for (user, password) in [("builder", "push-pass"), ("admin", "admin-pass"), ("collector", "gc-pass")] {
                let signed_in = basic(user, password);
                assert_eq!(decide(&method, path, Some(&signed_in), &a, Reads::SignedIn), Decision::Forward, "{user}");
            }
        }
        let collector = basic("collector", "gc-pass");
        let default = format!("/v2/42/fns/hello/manifests/sha256:{}", "a".repeat(64));
        assert!(matches!(
            decide(&Method::DELETE, &default, Some(&collector), &a, Reads::SignedIn),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn a_path_is_judged_as_the_registry_decodes_it() {
        let a = accounts();
        let collector = basic("collector", "gc-pass");
        for catalog in ["/v2/%5Fcatalog", "/v2/%5fcatalog", "/v2/_catalo%67"] {
            assert!(matches!(decide(&Method::GET, catalog, None, &a, Reads::Anyone), Decision::SignIn(_)), "{catalog}");
        }
        let digest = format!("sha256%3A{}", "a".repeat(64));
        let preview = format!("/v2/42/fns/hello__p0123456789ab/manifests/{digest}");
        assert_eq!(decide(&Method::DELETE, &preview, Some(&collector), &a, Reads::Anyone), Decision::Forward);
        let escaped_default = format!("/v2/42/fns/hello%2F..%2Fother__p0123456789ab/manifests/{digest}");
        assert_ne!(decide(&Method::DELETE, &escaped_default, Some(&collector), &a, Reads::Anyone), Decision::Forward);
        assert_eq!(decide(&Method::GET, "/v2/42/fns/%FF/manifests/x", None, &a, Reads::Anyone), Decision::NotAllowed);
    }

    #[test]
    fn the_collector_deletes_only_a_preview_s_manifests() {
        let a = accounts();
        let collector = basic("collector", "gc-pass");
        let digest = format!("sha256:{}", "a".repeat(64));
        let preview = format!("/v2/42/fns/hello__p0123456789ab/manifests/{digest}");
        assert_eq!(decide(&Method::DELETE, &preview, Some(&collector), &a, Reads::Anyone), Decision::Forward);
        assert_eq!(decide(&Method::GET, "/v2/", Some(&collector), &a, Reads::Anyone), Decision::Forward);
        for refused in [
            format!("/v2/42/fns/hello/manifests/{digest}"),
            format!("/v2/42/fns/hello__p0123456789ab/blobs/{digest}"),
            format!("/v2/42/fns/../hello__p0123456789ab/manifests/{digest}"),
            format!("/v2/42/fns/hello__main/manifests/{digest}"),
            "/v2/42/fns/hello__p0123456789ab/manifests/".to_owned(),
            "/v2/42/fns/hello__p0123456789ab/manifests/a/b".to_owned(),
        ] {
            assert!(
                matches!(decide(&Method::DELETE, &refused, Some(&collector), &a, Reads::Anyone), Decision::Denied(_)),
                "{refused}"
            );
        }
        assert!(matches!(decide(&Method::PUT, &preview, Some(&collector), &a, Reads::Anyone), Decision::Denied(_)));
        assert!(matches!(
            decide(&Method::GET, "/v2/_catalog", Some(&collector), &a, Reads::Anyone),
            Decision::Denied(_)
        ));
        let wrong = basic("collector", "gc-pasS");
        assert!(matches!(decide(&Method::DELETE, &preview, Some(&wrong), &a, Reads::Anyone), Decision::SignIn(_)));
        let none = GateAccounts { collector: None, ..a.clone() };
        assert!(matches!(
            decide(&Method::DELETE, &preview, Some(&collector), &none, Reads::Anyone),
            Decision::SignIn(_)
        ));
    }
}
