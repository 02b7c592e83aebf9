//! The local stack behind `ofc`: the whole OpenFaaS Cloud pipeline on one machine, with no OpenFaaS and no GitHub.
//!
//! # Layout
//! - [`gateway`]: the embedded OpenFaaS gateway (function routes, the async queue, `/system/functions`).
//! - [`runtime`]: runs deployed user functions with `buildah run` (chroot isolation), and builds the watchdog image.
//! - [`sandbox`]: `ofc up --sandbox USER` (default `ofcbuild`): builds and replicas run as that user, in their own
//!   PID namespace with a minimal `/dev`.
//! - [`process`]: child processes (stopped with SIGTERM, a bounded wait, then SIGKILL; killed with `ofc`) and free
//!   ports.
//! - [`supervisor`]: restarts a child that exits, on the same port, with backoff.
//! - [`state`]: the state folder (secrets, endpoints, queue, logs).
//! - [`templates`]: the local stack's template repository (`ofc/templates/`), served to git-tar's store.
//! - [`up`]: `ofc up`, starting and supervising every part.
//! - [`push`]: `ofc push`, the webhook GitHub would send, and following the statuses.
//! - [`logs`]: `ofc logs`, the stored build logs, and the log tail a failed push prints.
//! - [`line_stamps`]: replicas' output stamped line by line with its time, and log lines' times read back.

pub mod gateway;
pub mod line_stamps;
pub mod logs;
pub mod process;
pub mod push;
pub mod runtime;
pub mod sandbox;
pub mod state;
pub mod supervisor;
pub mod templates;
pub mod up;
