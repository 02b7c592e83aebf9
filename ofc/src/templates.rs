//! The local stack's template repository: the templates in `ofc/templates/` (compiled into `ofc`, so it does not
//! matter where it runs from), published at `ofc up` as `ofc/templates.git` on the git server, where git-tar's
//! `custom_templates` points. A pushed repository then needs no `template/` folder, and nothing is pulled from the
//! internet.
//!
//! The commit is made with a fixed author and date, so the same templates give the same commit at every start and
//! git-tar's copy of them (cached by commit) stays valid.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// The repository's path on the git server (under its URL) and in its folder.
pub const REPOSITORY: &str = "ofc/templates.git";

/// Every file of `ofc/templates/` (a test checks that none is missing).
pub const FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("../templates/README.md")),
    ("template/static-site/Dockerfile", include_str!("../templates/template/static-site/Dockerfile")),
    ("template/static-site/template.yml", include_str!("../templates/template/static-site/template.yml")),
    ("template/static-site/function/README", include_str!("../templates/template/static-site/function/README")),
    ("template/exec/Dockerfile", include_str!("../templates/template/exec/Dockerfile")),
    ("template/exec/template.yml", include_str!("../templates/template/exec/template.yml")),
    ("template/exec/function/README", include_str!("../templates/template/exec/function/README")),
];

/// Where the `exec` template's own program goes: what a handler without a `handler` of its own runs.
const ECHO_PATH: &str = "template/exec/function/handler";

/// A static x86-64 Linux program that copies its stdin to its stdout and exits 0: the `exec` template's default
/// handler. Nothing else can run in an image FROM scratch without a compiler in the build, and a program of this
/// size is easier to read here (each instruction below) than a binary file in the repository.
pub fn echo_program() -> Vec<u8> {
    #[rustfmt::skip]
    const CODE: &[u8] = &[
        0x48, 0x81, 0xEC, 0x00, 0x10, 0x00, 0x00, // sub rsp, 4096: a buffer on the stack
        0x31, 0xC0,                               // loop: xor eax, eax (read)
        0x31, 0xFF,                               // xor edi, edi (stdin)
        0x48, 0x89, 0xE6,                         // mov rsi, rsp
        0xBA, 0x00, 0x10, 0x00, 0x00,             // mov edx, 4096
        0x0F, 0x05,                               // syscall
        0x48, 0x85, 0xC0,                         // test rax, rax
        0x7E, 0x14,                               // jle exit (end of input or an error)
        0x48, 0x89, 0xC2,                         // mov rdx, rax (the bytes read)
        0xB8, 0x01, 0x00, 0x00, 0x00,             // mov eax, 1 (write)
        0xBF, 0x01, 0x00, 0x00, 0x00,             // mov edi, 1 (stdout)
        0x48, 0x89, 0xE6,                         // mov rsi, rsp
        0x0F, 0x05,                               // syscall
        0xEB, 0xD9,                               // jmp loop
        0xB8, 0x3C, 0x00, 0x00, 0x00,             // exit: mov eax, 60 (exit)
        0x31, 0xFF,                               // xor edi, edi (status 0)
        0x0F, 0x05,                               // syscall
    ];
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let total = HEADERS + CODE.len() as u64;
    let mut elf = Vec::with_capacity(usize::try_from(total).unwrap_or_default());
    // ELF header: 64-bit, little-endian, version 1, an executable for x86-64 entered right after the headers.
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes());
    elf.extend_from_slice(&0x3Eu16.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes());
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers right after this header
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes()); // sizes, one program header, no sections
    }
    // One loadable, readable and executable segment: the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    for word in [0, BASE, BASE, total, total, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(CODE);
    elf
}

/// Writes the templates into a fresh repository and publishes it as `<repos>/ofc/templates.git` (replacing what an
/// earlier run published); answers the commit.
pub fn publish(repos: &Path) -> anyhow::Result<String> {
    let work = tempfile_dir()?;
    let result = publish_from(&work, repos);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn publish_from(work: &Path, repos: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    for (path, content) in FILES {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().unwrap_or(work))?;
        std::fs::write(&file, content)?;
    }
    let echo = work.join(ECHO_PATH);
    std::fs::write(&echo, echo_program())?;
    std::fs::set_permissions(&echo, std::fs::Permissions::from_mode(0o755))?;
    git(work, &["init", "-q", "-b", "main"])?;
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-q", "-m", "The local stack's templates"])?;
    let bare = repos.join(REPOSITORY);
    if !bare.join("HEAD").is_file() {
        std::fs::create_dir_all(&bare)?;
        git(&bare, &["init", "-q", "--bare", "-b", "main"])?;
    }
    let target = bare.to_str().context("the state folder's path is not UTF-8")?;
    git(work, &["push", "-q", "--force", target, "HEAD:refs/heads/main"])?;
    git(work, &["rev-parse", "HEAD"])
}

/// A private scratch folder under the system's temporary folder.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ofc-templates-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir(&dir).with_context(|| format!("{} cannot be made", dir.display()))?;
    Ok(dir)
}

/// `git ARGS` in `dir`, with a fixed identity and date (the same templates make the same commit) and no user or
/// system configuration; answers its stdout.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    const WHEN: &str = "2026-01-01T00:00:00Z";
    let output = Command::new("git")
        .args(["-c", "user.name=ofc", "-c", "user.email=ofc@localhost", "-c", "core.hooksPath=/dev/null"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", WHEN)
        .env("GIT_COMMITTER_DATE", WHEN)
        .output()
        .context("`git` cannot run")?;
    if !output.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_templates_folder_is_compiled_in() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut pending = vec![root.clone()];
        let mut found = Vec::new();
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        let mut listed: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }

    #[test]
    fn publishing_twice_gives_the_same_commit() {
        let repos = tempfile::tempdir().unwrap();
        let first = publish(repos.path()).unwrap();
        assert_eq!(publish(repos.path()).unwrap(), first);
        assert_eq!(first.len(), 40);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_echo_program_answers_its_input() {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("echo");
        std::fs::write(&program, echo_program()).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = Command::new(&program)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut stdin = child.stdin.take().unwrap();
        let sent = input.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&sent).unwrap());
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, input);
    }
}
