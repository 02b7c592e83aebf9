//! The build sandbox: pushed code runs in `RUN` steps, so a build must not reach the host. With a `build_user`,
//! every Buildah call runs as that user in its own PID and mount namespaces with a minimal `/dev`, and `bud` (whose
//! `RUN` steps run pushed code) in a network namespace holding only `lo`; the construction lives in
//! `shared::sandbox`, so the local stack's running functions get the very same one.

pub use shared::sandbox::BuildUser;
