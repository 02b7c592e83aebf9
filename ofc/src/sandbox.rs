//! `ofc up`'s sandbox for pushed code: of-builder's builds and the deployed functions' replicas run as the build
//! user (`ofcbuild` by default, `--sandbox USER`), each in its own PID namespace with a minimal `/dev`
//! (`shared::sandbox`), so the local stack, run as root, gives pushed code no more than an unprivileged user's reach.
//! `--sandbox none` keeps running them as root, for machines without the user.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use of_builder::storage::{Choice, DriverSetting, StorageDriver};
use shared::sandbox::BuildUser;

use crate::runtime::{BuildahStorage, Sandbox};
use crate::state::StateDir;

/// The build user named by `--sandbox` (`None` for `none`), with the tools the sandbox needs; the error says how
/// to create the user, or how to do without.
pub fn build_user(name: Option<&str>) -> anyhow::Result<Option<BuildUser>> {
    let Some(name) = name else { return Ok(None) };
    for (tool, package) in [("unshare", "util-linux"), ("newuidmap", "uidmap"), ("newgidmap", "uidmap")] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        if !found {
            bail!("the sandbox needs `{tool}`: install it with `apt-get install {package}` (or pass --sandbox none)");
        }
    }
    match BuildUser::lookup(name) {
        Ok(user) => Ok(Some(user)),
        Err(reason) => bail!(
            "pushed code runs sandboxed as the build user `{name}`, which cannot be used: {reason}.\n\
             Create it as root with `./ofc-local install` in the repository, which runs:\n\n{}\n\n\
             or run everything as root with `ofc up --sandbox none`",
            build_user_commands()
        ),
    }
}

/// The repository's install script, the one definition of the build user (CI and a newcomer run it).
const INSTALL_SCRIPT: &str = include_str!("../../ofc-local");

/// The commands that create the build user, as the install script has them between its two markers, for the error
/// that says how to fix a machine without the user.
fn build_user_commands() -> String {
    let lines = INSTALL_SCRIPT.lines().skip_while(|l| l.trim() != "# build user: begin").skip(1);
    let block: Vec<&str> =
        lines.take_while(|l| l.trim() != "# build user: end").map(|l| l.strip_prefix("  ").unwrap_or(l)).collect();
    block.join("\n")
}

/// Lets the build user pass through the state folder (0711: it cannot list it, and every folder inside stays
/// 0700) to its own storage folders, checks nothing above blocks it, and readies the sandbox's `/dev` folder.
pub fn prepare(state: &StateDir, user: BuildUser) -> anyhow::Result<Sandbox> {
    std::fs::set_permissions(&state.root, std::fs::Permissions::from_mode(0o711))?;
    if let Some(folder) = user.blocked_on_the_way_to(&state.root) {
        bail!(
            "the build user `{}` cannot pass through {} to its storage in {}: `chmod o+x` it, choose another \
             --state, or pass --sandbox none",
            user.name,
            folder.display(),
            state.root.display()
        );
    }
    Sandbox::new(user, state.root.join("sandbox-dev")).context("the sandbox's /dev folder cannot be created")
}

/// of-builder's Buildah storage: the build user's when sandboxed (root's layers are unusable to rootless Buildah,
/// so the two never share a folder).
pub fn builder_root(state: &StateDir, sandbox: Option<&Sandbox>) -> PathBuf {
    state.root.join(if sandbox.is_some() { "buildah-sandbox" } else { "buildah" })
}

/// The replicas' Buildah storage, likewise.
pub fn runtime_root(state: &StateDir, sandbox: Option<&Sandbox>) -> PathBuf {
    state.root.join(if sandbox.is_some() { "runtime-sandbox" } else { "runtime" })
}

/// Chooses of-builder's storage driver the way of-builder's `auto` does (its probe, in its storage folder, as the
/// build user when sandboxed; vfs where overlay fails), once: `ofc up` builds the base image into that driver's
/// storage before of-builder starts, then gives of-builder the driver by name so both use the same one.
pub async fn choose_builder_driver(state: &StateDir, sandbox: Option<&Sandbox>) -> anyhow::Result<Choice> {
    let root = builder_root(state, sandbox);
    let user = sandbox.map(|s| s.user.clone());
    // The probe is a Buildah build awaited synchronously (bounded by of-builder's probe timeout).
    let choice = tokio::task::spawn_blocking(move || {
        of_builder::storage::choose(DriverSetting::Auto, Some(&root), user.as_ref())
    })
    .await
    .context("the storage driver probe stopped")?
    .map_err(|reason| anyhow::anyhow!("of-builder's storage driver cannot be chosen: {reason}"))?;
    tracing::info!(driver = choice.driver.name(), why = %choice.why, "of-builder's storage driver");
    Ok(choice)
}

/// of-builder's storage for `driver` (its folder of that name), the build user's when sandboxed, for building the
/// watchdog image into it.
pub fn builder_storage_on(
    state: &StateDir,
    sandbox: Option<&Sandbox>,
    driver: StorageDriver,
) -> anyhow::Result<BuildahStorage> {
    let base = builder_root(state, sandbox);
    let root = base.join(driver.name());
    let storage = match sandbox {
        Some(sandbox) => {
            // of-builder checks that its base folder is the build user's too, so it is made so first.
            sandbox
                .user
                .prepare_storage(&base)
                .with_context(|| format!("the build user's storage {} cannot be used", base.display()))?;
            BuildahStorage::sandboxed(&root, sandbox.clone())
                .with_context(|| format!("the build user's storage {} cannot be used", root.display()))?
        }
        None => BuildahStorage::new(root),
    };
    Ok(storage.on_driver(driver))
}

/// of-builder's vfs storage (see [`builder_storage_on`]), for a start that gives of-builder vfs or copies the image
/// on to the driver it picks.
pub fn builder_storage(state: &StateDir, sandbox: Option<&Sandbox>) -> anyhow::Result<BuildahStorage> {
    builder_storage_on(state, sandbox, StorageDriver::Vfs)
}

#[cfg(test)]
mod tests {
    use super::build_user_commands;

    #[test]
    fn the_build_user_commands_are_the_install_scripts_block() {
        let commands = build_user_commands();
        assert!(commands.starts_with("id -u ofcbuild"), "{commands}");
        assert!(commands.contains("useradd --system") && commands.contains("/etc/subuid"), "{commands}");
        assert!(commands.ends_with("done"), "the block ends with its loop: {commands}");
        assert!(!commands.contains("build user:"), "the markers are not shown: {commands}");
    }
}
