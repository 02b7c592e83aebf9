//! Which gateway path a request's host and path stand for. Pure, so every rule is tested without a server.

use shared::naming::{parse_preview_host_label, preview_service_name, service_name};

use crate::error::RouteError;

/// The host label of the platform's own pages.
pub const SYSTEM: &str = "system";
/// The host label (under `system.`) of the login.
pub const AUTH: &str = "auth";

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Proxied to `{upstream_url}{path}` (path without its leading slash, query not included).
    Upstream { path: String, user_function: bool },
    /// Answered with a redirect to this path on the same host.
    Redirect(String),
}

/// The host without its port, lower-cased (`Alice.Localhost:8081` → `alice.localhost`).
pub fn host_name(host: &str) -> String {
    let host = host.trim();
    let without_port = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// The route of `host` (already [`host_name`]d) and `path` (the URI's path) under `domain`.
pub fn resolve(domain: &str, host: &str, path: &str) -> Result<Route, RouteError> {
    let label = match host.strip_suffix(domain).and_then(|rest| rest.strip_suffix('.')) {
        Some(label) if !label.is_empty() => label,
        _ => return Err(RouteError::UnknownHost(host.to_owned())),
    };
    let rest = path.strip_prefix('/').unwrap_or(path);
    if has_dot_segment(rest) {
        return Err(RouteError::DotSegment);
    }
    if label == format!("{AUTH}.{SYSTEM}") {
        return Ok(Route::Upstream {
            path: format!("function/{}/{rest}", shared::functions::EDGE_AUTH),
            user_function: false,
        });
    }
    if label == SYSTEM {
        return system(rest);
    }
    if label.contains('.') {
        return Err(RouteError::UnknownHost(host.to_owned()));
    }
    let (function, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if function.is_empty() {
        return Err(RouteError::NoFunction { owner: label.to_owned() });
    }
    let no_such = || RouteError::NoSuchFunction { owner: label.to_owned(), function: function.to_owned() };
    // `<owner>--<tag>` is a preview's host: no login holds `--`, so it is never an owner's own.
    let service = match parse_preview_host_label(label) {
        Some((owner, tag)) => preview_service_name(owner, function, tag),
        None => service_name(label, function),
    }
    .map_err(|_| no_such())?;
    // `list.<domain>/functions` would otherwise be the platform's list-functions, open to anyone.
    if shared::naming::is_reserved_service(&service) {
        return Err(no_such());
    }
    Ok(Route::Upstream { path: format!("function/{service}/{tail}"), user_function: true })
}

/// Whether `path` has a `.` or `..` segment, also percent-encoded or behind a backslash: joined to the gateway's
/// URL, it would climb out of the function's path to any of the gateway's (`/system/functions`).
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// `system.<domain>`: the dashboard under `/dashboard/`.
fn system(rest: &str) -> Result<Route, RouteError> {
    match rest {
        "" | "dashboard" => Ok(Route::Redirect("/dashboard/".to_owned())),
        _ => match rest.strip_prefix("dashboard/") {
            Some(tail) => Ok(Route::Upstream {
                path: format!("function/{}/{tail}", shared::functions::DASHBOARD),
                user_function: false,
            }),
            None => Err(RouteError::NotOnSystem(format!("/{rest}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // compared with `resolve`'s answer as it is
    fn upstream(path: &str, user_function: bool) -> Result<Route, RouteError> {
        Ok(Route::Upstream { path: path.to_owned(), user_function })
    }

    #[test]
    fn an_owners_host_reaches_the_owners_functions() {
        assert_eq!(resolve("o6s.io", "alice.o6s.io", "/hello"), upstream("function/alice-hello-5/", true));
        assert_eq!(resolve("o6s.io", "alice.o6s.io", "/hello/a/b"), upstream("function/alice-hello-5/a/b", true));
        assert_eq!(
            resolve("localhost", &host_name("Alice.LocalHost:8081"), "/Hello"),
            upstream("function/alice-hello-5/", true)
        );
    }

    #[test]
    fn owners_whose_logins_are_hyphen_prefixes_reach_only_their_own_functions() {
        assert_eq!(resolve("o6s.io", "acme.o6s.io", "/corp-db"), upstream("function/acme-corp-db-4/", true));
        assert_eq!(resolve("o6s.io", "acme-corp.o6s.io", "/db"), upstream("function/acme-corp-db-9/", true));
        assert!(resolve("o6s.io", "acme--corp.o6s.io", "/db").is_err());
        assert!(resolve("o6s.io", "acme-.o6s.io", "/db").is_err());
    }

    #[test]
    fn a_preview_s_host_reaches_only_that_preview_s_functions() {
        let tag = shared::naming::preview_tag("fns", &shared::naming::PreviewOf::PullRequest(12));
        let host = format!("alice--{tag}.o6s.io");
        assert_eq!(resolve("o6s.io", &host, "/hello/x"), upstream(&format!("function/alice-hello-5-{tag}/x"), true));
        assert_eq!(resolve("o6s.io", "alice.o6s.io", "/hello"), upstream("function/alice-hello-5/", true));
        assert!(resolve("o6s.io", "alice--main.o6s.io", "/hello").is_err(), "only a preview's tag follows `--`");
        assert!(resolve("o6s.io", &format!("-alice--{tag}.o6s.io"), "/hello").is_err());
        assert!(resolve("o6s.io", &host, "/").is_err());
    }

    #[test]
    fn the_system_host_serves_the_dashboard_and_the_login() {
        assert_eq!(resolve("o6s.io", "system.o6s.io", "/"), Ok(Route::Redirect("/dashboard/".into())));
        assert_eq!(resolve("o6s.io", "system.o6s.io", "/dashboard"), Ok(Route::Redirect("/dashboard/".into())));
        assert_eq!(resolve("o6s.io", "system.o6s.io", "/dashboard/"), upstream("function/dashboard/", false));
        assert_eq!(
            resolve("o6s.io", "system.o6s.io", "/dashboard/functions/alice-hello"),
            upstream("function/dashboard/functions/alice-hello", false)
        );
        assert_eq!(resolve("o6s.io", "auth.system.o6s.io", "/login/"), upstream("function/edge-auth/login/", false));
        assert!(matches!(resolve("o6s.io", "system.o6s.io", "/function/gh-push"), Err(RouteError::NotOnSystem(_))));
    }

    #[test]
    fn anything_else_is_not_found() {
        for (host, path) in [
            ("o6s.io", "/hello"),
            ("evil.com", "/hello"),
            ("alice.evil.com", "/hello"),
            ("xo6s.io", "/hello"),
            ("a.b.o6s.io", "/hello"),
            ("alice.o6s.io", "/"),
            ("alice.o6s.io", "/bad_name!"),
            ("-x.o6s.io", "/hello"),
        ] {
            assert!(resolve("o6s.io", host, path).is_err(), "{host}{path}");
        }
    }

    #[test]
    fn dot_segments_and_platform_functions_are_refused() {
        for (host, path) in [
            ("alice.o6s.io", "/hello/../../system/functions"),
            ("alice.o6s.io", "/hello/%2e%2e/%2E%2e/system/functions"),
            ("alice.o6s.io", "/hello/.%2e/x"),
            ("alice.o6s.io", "/hello/..\\..\\system"),
            ("alice.o6s.io", "/hello/./x"),
            ("system.o6s.io", "/dashboard/../../function/list-functions"),
            ("auth.system.o6s.io", "/../async-function/git-tar"),
        ] {
            assert_eq!(resolve("o6s.io", host, path), Err(RouteError::DotSegment), "{host}{path}");
        }
        // An owner's host never reaches a platform function: an owner's names end in the login's length.
        for (host, path, service) in [
            ("list.o6s.io", "/functions", "list-functions-4"),
            ("gh.o6s.io", "/push", "gh-push-2"),
            ("edge.o6s.io", "/router", "edge-router-4"),
        ] {
            assert_eq!(resolve("o6s.io", host, path), upstream(&format!("function/{service}/"), true), "{host}{path}");
        }
        assert_eq!(
            resolve("o6s.io", "alice.o6s.io", "/hello/a..b/.x"),
            upstream("function/alice-hello-5/a..b/.x", true)
        );
    }

    #[test]
    fn the_port_and_case_of_the_host_do_not_matter() {
        assert_eq!(host_name("System.O6s.io:443"), "system.o6s.io");
        assert_eq!(host_name("alice.localhost."), "alice.localhost");
        assert_eq!(host_name("[::1]:8081"), "[::1]");
    }
}
