//! The local stack behind `ofc`: the whole OpenFaaS Cloud pipeline on one machine, with no OpenFaaS and no GitHub.
//!
//! # Layout
//! - [`gateway`]: the embedded OpenFaaS gateway (function routes, the async queue, `/system/functions`).
//! - [`github_double`]: a GitHub API double (App tokens checked by JWT, commit statuses).
//! - [`git_server`]: serves local git repositories over HTTP (`git http-backend`).
//! - [`registry`]: starts Debian's `docker-registry` on a loopback port.

pub mod gateway;
pub mod git_server;
pub mod github_double;
pub mod registry;
