//! The registry's front door. distribution's own `htpasswd` auth gives every account it knows every right, so the
//! registry (`docker-registry`, deletes enabled) listens only where nothing but this gate reaches it (a unix socket,
//! or the pod's loopback), and the gate decides who may do what:
//!
//! - reads (`GET`, `HEAD`) are open: the runtime pulling, digest lookups, anyone reading a public image;
//!   listing every repository (`/v2/_catalog`) is not, it names every owner;
//! - writes (`PUT`, `POST`, `PATCH`) need the builder's account, which only of-builder holds (`registry-auth`);
//! - deletes need the operator's account: removing images is an operator's act, not a build's;
//! - the collector's account (garbage-collect's `registry-collector-auth`) may delete manifests only of a preview's
//!   repository (`…/<owner id>/<repo>/<function>__<preview tag>`, `shared::naming::is_preview_image_repository`):
//!   a closed pull request's or deleted branch's images go with it, and no default branch's image can;
//! - anything else is refused.
//!
//! Where tenants' functions can reach the gate (faasd's bridge), `anonymous_reads=false` makes reads need one of the
//! three accounts too.
//!
//! A client that signs in (Buildah, `docker login`) pings `/v2/` first and only sends credentials when challenged,
//! so `/v2/` without credentials answers the Basic challenge.
//!
//! # Layout
//! - [`rules`]: the accounts and the decision, from method, path and credentials.
//! - [`gate`]: the router that applies them and forwards; `/healthz` checks the registry behind.
//! - [`upstream`]: the registry behind, on a unix socket or a loopback port.
//! - [`config`]: the binary's settings (`registry_upstream`, the three account files), read once at start.
//! - [`error`]: the one error type and its HTTP answers.

pub mod config;
pub mod error;
pub mod gate;
pub mod rules;
pub mod upstream;

pub use config::Config;
pub use error::GateError;
pub use gate::{router, serve};
pub use rules::{Account, GateAccounts, Reads};
pub use upstream::Upstream;
