//! Cost: what each part holds in memory while the stack idles (measured in the running `ofc up`), and the size of
//! each function's image, built by `.ci/build-images` (the script that builds the images operators deploy) from
//! this benchmark's release binaries, so nothing is compiled again.
//! The peak memory of git-tar and of-builder on a 100 MiB context is part of the git-tar and builder scenarios.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{rss_kib, stack_processes};

pub fn run(binaries: &Path) -> anyhow::Result<()> {
    println!("cost: idle RSS of each process of `ofc up` (release binaries, 2 s after start)");
    {
        let _up = crate::pipeline::start_stack(binaries)?;
        std::thread::sleep(Duration::from_secs(2));
        for (name, pid) in stack_processes(binaries) {
            let rss = rss_kib(pid).map_or_else(|e| format!("? ({e})"), |kib| format!("{:.1} MiB", kib as f64 / 1024.0));
            let target = if name == "ofc" || name == "of-builder" { "" } else { "   target < 10 MB" };
            println!("   {name:<16} {rss:>10}{target}");
        }
    }
    println!(
        "cost: image sizes (.ci/build-images FROM scratch with these release binaries and the libraries they link; \
         targets < 15 MB, git-tar < 40 MB)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/build-images");
    let port = testkit::ports::free_port();
    let output = Command::new(&script)
        .env("REGISTRY_PORT", port.to_string())
        .env("BINARIES", binaries)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    // The size table: from its header to the first blank line.
    for line in text.lines().skip_while(|l| !l.starts_with("image ")).take_while(|l| !l.trim().is_empty()) {
        println!("   {line}");
    }
    Ok(())
}
