//! Records the commit `ofc` is built from, for `/system/info` (OpenFaaS reports its gateway's git sha there).
//! Built outside a git checkout (a source tarball), both are empty.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn main() {
    let sha = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let message = git(&["log", "-1", "--format=%s"]).unwrap_or_default();
    println!("cargo:rustc-env=OFC_GIT_SHA={sha}");
    println!("cargo:rustc-env=OFC_GIT_COMMIT_MESSAGE={}", message.replace(['\n', '\r'], " "));
    // HEAD's reflog changes with every commit and checkout, in a worktree too.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
