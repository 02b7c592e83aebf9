//! The platform's own functions, by the names they are deployed under, so that every invoke names its target from
//! one list and a rename is one edit.

/// Receives the GitHub App's webhook and queues git-tar.
pub const GH_PUSH: &str = "gh-push";
/// Turns GitHub App uninstall events into garbage-collect calls.
pub const GIT_EVENT: &str = "git-event";
/// Clones a push and hands one build tar per function to buildshiprun.
pub const GIT_TAR: &str = "git-tar";
/// Builds one function's tar and deploys it.
pub const BUILDSHIPRUN: &str = "buildshiprun";
/// Writes commit statuses to GitHub.
pub const GITHUB_STATUS: &str = "github-status";
/// Removes the functions a repository no longer has.
pub const GARBAGE_COLLECT: &str = "garbage-collect";
/// Lists an owner's functions for the dashboard.
pub const LIST_FUNCTIONS: &str = "list-functions";
/// Receives the audit events every function sends.
pub const AUDIT_EVENT: &str = "audit-event";

/// Serves stored build logs behind signed, expiring links.
pub const PIPELINE_LOG: &str = "pipeline-log";
/// Signs users in with GitHub OAuth and issues their session.
pub const EDGE_AUTH: &str = "edge-auth";
/// The signed-in user's functions, builds, logs and traffic.
pub const DASHBOARD: &str = "dashboard";
/// A function's runtime log, for its owner.
pub const FUNCTION_LOGS: &str = "function-logs";
/// A function's invocations by status class, for its owner.
pub const METRICS: &str = "metrics";

/// Every function above: the deployed names no user function may take.
pub const ALL: &[&str] = &[
    GH_PUSH,
    GIT_EVENT,
    GIT_TAR,
    BUILDSHIPRUN,
    GITHUB_STATUS,
    GARBAGE_COLLECT,
    LIST_FUNCTIONS,
    AUDIT_EVENT,
    PIPELINE_LOG,
    EDGE_AUTH,
    DASHBOARD,
    FUNCTION_LOGS,
    METRICS,
];
