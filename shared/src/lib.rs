//! What every openfaas-cloud-rs function shares, so that a function crate is only its own logic.
//!
//! # Layout
//! - [`config`]: settings from the environment and secret files, read once at start; errors name the setting.
//! - [`signature`]: GitHub's webhook HMAC (`WebhookCheck`: verify or off) and our `X-Cloud-Signature`, verified in
//!   constant time; `SignedJson`, the extractor every handler of a signed call reads its body with.
//! - [`error`]: the one JSON error body (`{"error": …}`) every answer of refusal carries, and `error_chain`.
//! - [`retry`]: the one exponential backoff every retry uses.
//! - [`event`]: the JSON that travels between functions (`PushEvent`, `BuildEvent`, `StatusReport`…), and
//!   `CommitSha`, the one rule for a commit SHA.
//! - [`openfaas`]: the gateway's `FunctionDeployment` and `FunctionStatus`.
//! - [`build`]: the build tar's `config` and of-builder's `BuildResult`, and `enable_dockerfile_lang`'s one reading.
//! - [`naming`]: deployed function names and image names.
//! - [`functions`]: the platform functions' names, which every invoke uses.
//! - [`stack`]: `stack.yml` in faas-cli's schema.
//! - `envsubst` (private, [`stack`]'s): `${VAR}` in stack.yml as faas-cli substitutes it, from an empty environment.
//! - [`gateway`]: a client for invoking functions and managing deployments.
//! - [`invocations`]: a function's calls over a window by 2xx/4xx/5xx (metrics' answer, the dashboard's figures).
//! - `keepalive` (private, [`gateway`]'s): the lean pooled HTTP/1.1 client for a plain-HTTP gateway's hot calls.
//! - [`app_key`]: generating an App key pair, for the local stack and the tests that play GitHub.
//! - [`github_app`]: the GitHub App JWT and cached installation tokens.
//! - [`status`]: queues commit statuses to github-status.
//! - [`audit`]: sends audit events without blocking the caller.
//! - [`customers`]: the customers list (`validate_customers`) gh-push and git-event check owners against.
//! - [`garbage_collect`]: asks garbage-collect to remove a repository's functions.
//! - [`server`]: the HTTP runtime every function runs on.
//! - [`session`]: a signed-in user's session (the `openfaas_cloud_token` cookie), signed by edge-auth alone.
//! - [`upload`]: large signed bodies streamed to a file and verified.
//! - [`ownership`]: whose a deployed function is (the dashboard, function-logs and metrics show it to them only).
//! - [`resolver`]: the hosts file, then DNS bounded and IPv4 first: the one name resolver of every HTTP client.
//! - [`registry`]: the registry API calls that let a build whose image exists be skipped (HEAD, tag a manifest).
//! - [`branch_head`]: each branch's newest known commit, shared by every replica, so an older push never
//!   replaces a newer one's deployment.
//! - [`log_store`]: build logs on a folder or an S3 bucket, and the signed, expiring links that serve them.
//! - [`sandbox`]: pushed code as an unprivileged user in its own PID namespace with a minimal `/dev` (builds and
//!   the local stack's running functions).

pub mod app_key;
pub mod audit;
pub mod branch_head;
pub mod build;
pub mod callback;
pub mod config;
pub mod customers;
mod envsubst;
pub mod error;
pub mod event;
pub mod functions;
pub mod garbage_collect;
pub mod gateway;
pub mod github_app;
pub mod invocations;
mod keepalive;
pub mod log_store;
pub mod naming;
pub mod openfaas;
pub mod ownership;
pub mod registry;
pub mod resolver;
pub mod retry;
pub mod revocation;
pub mod sandbox;
pub mod server;
pub mod session;
pub mod signature;
pub mod stack;
pub mod status;
pub mod upload;
