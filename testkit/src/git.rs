//! Real git for tests: run it, and make repositories with commits.
//!
//! Why here: the tests and benchmarks that push real repositories each had a `git()` helper with its own identity
//! and its own way of failing. These run git with a fixed identity and `main` as the first branch, whatever the
//! machine's git configuration says, and panic with git's stderr when git fails, so a test says why.

use std::path::Path;
use std::process::Command;

/// The identity and first branch every command here runs with.
const CONFIG: [&str; 6] =
    ["-c", "user.name=Octo", "-c", "user.email=octo@example.com", "-c", "init.defaultBranch=main"];

/// Runs `git ARGS` in `dir` and answers its stdout, trimmed; panics with git's stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(CONFIG)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("`git` cannot run: {e}"));
    assert!(output.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Makes `dir` (and its parents) a new repository whose branch is `main`.
pub fn init_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    git(dir, &["init", "-q", "-b", "main"]);
}

/// Commits everything in the repository at `dir` (`git add -A`) and answers the new commit's SHA.
pub fn commit(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

#[cfg(test)]
mod tests {
    use super::{commit, git, init_repo};

    #[test]
    fn a_repository_on_main_with_the_fixed_identity() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("a/repo");
        init_repo(&repo);
        std::fs::write(repo.join("file.txt"), "hi\n").unwrap();
        let sha = commit(&repo, "first");
        assert_eq!(sha.len(), 40);
        assert_eq!(git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
        assert_eq!(git(&repo, &["log", "-1", "--format=%an <%ae> %s"]), "Octo <octo@example.com> first");
    }

    #[test]
    #[should_panic(expected = "not a git command")]
    fn a_failure_shows_the_stderr() {
        git(&std::env::temp_dir(), &["no-such-command"]);
    }
}
