//! What stands in for the outside world when the pipeline runs on one machine: the local stack (`ofc up`) runs
//! these as its GitHub, its git host and its registry, and the tests run them to check the functions against.
//!
//! # Layout
//! - [`github_double`]: GitHub's REST API as the App uses it (JWT-checked installation tokens, commit statuses).
//! - [`git_server`]: serves local git repositories over smart HTTP (`git http-backend`).
//! - [`registry`]: starts Debian's `docker-registry` on a loopback port (or behind the `registry-gate` crate's
//!   gate), and reads its API.

pub mod git_server;
pub mod github_double;
pub mod registry;
