//! of-builder with Buildah and a real registry: a small FROM scratch image built cold and again unchanged (cache),
//! and of-builder's memory while receiving a 100 MiB context.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use doubles::registry::RegistryProcess;
use shared::build::{BuildConfig, BuildResult, BuildStatus};
use shared::signature::sign_sha256;
use testkit::ports::free_port;

use crate::process::{peak_rss_kib, rss_kib, Child};
use crate::stats::Summary;

const PAYLOAD_SECRET: &str = "bench-payload-secret";

fn build_tar(image: &str, files: &[(&str, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let config = BuildConfig { image_ref: image.into(), build_args: BTreeMap::new(), platforms: vec![] };
    let mut builder = tar::Builder::new(Vec::new());
    let mut entries = vec![("config".to_owned(), serde_json::to_vec(&config)?)];
    entries.extend(files.iter().map(|(p, d)| (format!("context/{p}"), d.clone())));
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, data.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

pub async fn run(binaries: &std::path::Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let registry = RegistryProcess::start(&dir.path().join("registry")).await?;
    std::fs::create_dir_all(dir.path().join("secrets"))?;
    std::fs::write(dir.path().join("secrets/payload-secret"), PAYLOAD_SECRET)?;
    let port = free_port();
    let child = Child::spawn(
        &binaries.join("of-builder"),
        &[
            ("port", port.to_string()),
            ("secret_mount_path", dir.path().join("secrets").display().to_string()),
            ("registry_insecure", "true".into()),
            ("buildah_root", dir.path().join("buildah").display().to_string()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("RUST_LOG", "warn".into()),
        ],
    )?;
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    child.wait_healthy(address, Duration::from_secs(10)).await?;
    println!(
        "of-builder, Buildah (buildah_storage_driver=auto) and docker-registry (idle RSS {:.1} MiB)",
        rss_kib(child.pid())? as f64 / 1024.0
    );
    let http = reqwest::Client::new();
    let build = |tar: Vec<u8>| {
        let http = http.clone();
        async move {
            let started = Instant::now();
            let response = http
                .post(format!("http://{address}/build"))
                .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &tar))
                .body(tar)
                .send()
                .await?;
            let result: BuildResult = response.json().await?;
            anyhow::ensure!(result.status == BuildStatus::Success, "the build failed: {:?}", result.log);
            anyhow::Ok(started.elapsed())
        }
    };
    let image = format!("{}/1/bench/small:latest-1", registry.host_port());
    let small = build_tar(
        &image,
        &[
            ("Dockerfile", b"FROM scratch\nENV A=1\nCOPY handler.txt /\nCMD [\"/handler\"]\n".to_vec()),
            ("handler.txt", b"hi\n".to_vec()),
        ],
    )?;
    let cold = build(small.clone()).await?;
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(build(small.clone()).await?);
    }
    println!(
        "   small FROM scratch image, build and push: cold {:.3} s; unchanged context (cache) {}",
        cold.as_secs_f64(),
        Summary::new(warm).line()
    );
    let mut data = vec![0u8; 100 << 20];
    rand::Rng::fill(&mut rand::thread_rng(), data.as_mut_slice());
    let big = build_tar(
        &format!("{}/1/bench/big:latest-1", registry.host_port()),
        &[("Dockerfile", b"FROM scratch\nCOPY big.bin /\n".to_vec()), ("big.bin", data)],
    )?;
    let before = peak_rss_kib(child.pid())?;
    let took = build(big).await?;
    println!(
        "   100 MiB context: built and pushed in {:.2} s; of-builder peak RSS {:.1} MiB (before: {:.1} MiB)",
        took.as_secs_f64(),
        peak_rss_kib(child.pid())? as f64 / 1024.0,
        before as f64 / 1024.0
    );
    Ok(())
}

/// A realistic function template of 15 steps: nothing pulled, busybox copied in, `RUN` steps writing files (a
/// 4 MiB one among them) and configuration-only steps. Each step is a layer Buildah caches (`--layers`).
const TEMPLATE: &str = r#"FROM scratch
LABEL com.openfaas.template="bench-shell" com.openfaas.scale.min="1"
ENV PATH=/bin:/usr/bin HOME=/home/app
COPY --chmod=755 busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp /home/app && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' > /etc/group
WORKDIR /home/app
COPY handler.sh function/handler.sh
RUN chmod +x function/handler.sh && sh function/handler.sh > function/smoke.txt
RUN dd if=/dev/urandom of=/home/app/data.bin bs=1M count=4 2>/dev/null
RUN chown -R 1000:1000 /home/app
ENV fprocess="sh function/handler.sh" write_timeout=10s
USER 1000
CMD ["sh", "function/handler.sh"]
"#;

/// Steps in `TEMPLATE`.
const TEMPLATE_STEPS: u32 = 15;

/// The of-builder settings of one measured setup: a storage driver, as root or sandboxed as `build_user`.
fn builder_env(dir: &std::path::Path, port: u16, driver: &str, user: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("port", port.to_string()),
        ("secret_mount_path", dir.join("secrets").display().to_string()),
        ("registry_insecure", "true".into()),
        ("buildah_root", dir.join("buildah").display().to_string()),
        ("buildah_storage_driver", driver.to_owned()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("RUST_LOG", "warn".into()),
    ];
    if let Some(user) = user {
        env.push(("build_user", user.to_owned()));
    }
    env
}

/// Builds `tar` through of-builder at `address`; answers how long the request took.
async fn timed_build(http: &reqwest::Client, address: std::net::SocketAddr, tar: Vec<u8>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = http
        .post(format!("http://{address}/build"))
        .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &tar))
        .body(tar)
        .send()
        .await?;
    let result: BuildResult = response.json().await?;
    anyhow::ensure!(result.status == BuildStatus::Success, "the build failed: {:?}", result.log);
    Ok(started.elapsed())
}

/// "as root" or "sandboxed as <user>", for the figures' lines.
fn mode_of(user: Option<&str>) -> String {
    user.map_or_else(|| "as root".to_owned(), |u| format!("sandboxed as {u}"))
}

/// of-builder on one storage driver (sandboxed as `user`, if any) with a registry of its own, in a fresh folder;
/// dropped, it stops both and removes the folder.
struct BenchBuilder {
    // Fields drop in this order: of-builder, then its registry, then the folder.
    _child: Child,
    registry: RegistryProcess,
    address: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl BenchBuilder {
    /// Starts it; `None`, after printing why, when of-builder refuses the driver here.
    async fn start(binaries: &std::path::Path, driver: &str, user: Option<&str>) -> anyhow::Result<Option<Self>> {
        let dir = tempfile::tempdir()?;
        // A build user must be able to reach its storage folder inside.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
        let registry = RegistryProcess::start(&dir.path().join("registry")).await?;
        std::fs::create_dir_all(dir.path().join("secrets"))?;
        std::fs::write(dir.path().join("secrets/payload-secret"), PAYLOAD_SECRET)?;
        let port = free_port();
        let child = Child::spawn(&binaries.join("of-builder"), &builder_env(dir.path(), port, driver, user))?;
        let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        // The start probes the driver (a small build) before it listens.
        if child.wait_healthy(address, Duration::from_secs(90)).await.is_err() {
            let mode = mode_of(user);
            println!("   {driver:<7} {mode:<22} not usable here: of-builder refused it (BENCH_CHILD_LOGS=1 shows why)");
            return Ok(None);
        }
        Ok(Some(Self { _child: child, registry, address, _dir: dir }))
    }
}

/// Cold and warm (every step a cache hit) builds of `TEMPLATE` with one driver in one mode, in a fresh storage
/// folder; prints the figures, or why the driver cannot run here.
async fn template_builds(binaries: &std::path::Path, driver: &str, user: Option<&str>) -> anyhow::Result<()> {
    let mode = mode_of(user);
    let Some(builder) = BenchBuilder::start(binaries, driver, user).await? else { return Ok(()) };
    let (registry, address) = (&builder.registry, builder.address);
    let busybox = std::fs::read("/bin/busybox").map_err(|e| anyhow::anyhow!("/bin/busybox (busybox-static): {e}"))?;
    let handler = b"#!/bin/sh\necho \"hello from $(pwd)\"\n".to_vec();
    let image = format!("{}/1/bench/template:latest-1", registry.host_port());
    let tar = build_tar(
        &image,
        &[("Dockerfile", TEMPLATE.as_bytes().to_vec()), ("busybox", busybox), ("handler.sh", handler)],
    )?;
    let http = reqwest::Client::new();
    let cold = timed_build(&http, address, tar.clone()).await?;
    let mut warm = Vec::new();
    for _ in 0..3 {
        warm.push(timed_build(&http, address, tar.clone()).await?);
    }
    let warm = Summary::new(warm).quantile(0.5);
    let step = |d: Duration| d.as_secs_f64() / f64::from(TEMPLATE_STEPS);
    println!(
        "   {driver:<7} {mode:<22} cold {:>6.2} s ({:.3} s a step)   warm p50 {:>5.2} s ({:.3} s a step)   \
         target cold < 5 s",
        cold.as_secs_f64(),
        step(cold),
        warm.as_secs_f64(),
        step(warm)
    );
    Ok(())
}

/// Rounds of the example's first push measured per driver.
const FIRST_PUSH_ROUNDS: u32 = 5;

/// The example's two functions (`examples/hello`: one with `LABEL`, `ENV` and `COPY`, one `COPY` only, no `RUN`),
/// built at once as a first push builds them: FROM a base image of-builder built and pushed first (busybox and 5 MiB
/// more, about the size of the example's watchdog image), each round a new repository (so the base layer goes to
/// it) and new content and settings (so no step is cached). Prints both builds' wall time, min/p50/max.
async fn first_push_builds(binaries: &std::path::Path, driver: &str, user: Option<&str>) -> anyhow::Result<()> {
    let mode = mode_of(user);
    let Some(builder) = BenchBuilder::start(binaries, driver, user).await? else { return Ok(()) };
    let (registry, address) = (&builder.registry, builder.address);
    let http = reqwest::Client::new();
    let busybox = std::fs::read("/bin/busybox").map_err(|e| anyhow::anyhow!("/bin/busybox (busybox-static): {e}"))?;
    let mut filler = vec![0u8; 5 << 20];
    rand::Rng::fill(&mut rand::thread_rng(), filler.as_mut_slice());
    // The owner's namespace is `<registry>/<owner id>`: builds read only images below it.
    let owner = format!("{}/1", registry.host_port());
    let base = format!("{owner}/base/base:1");
    let base_tar = build_tar(
        &base,
        &[
            ("Dockerfile", b"FROM scratch\nCOPY busybox /bin/busybox\nCOPY filler /var/filler\n".to_vec()),
            ("busybox", busybox),
            ("filler", filler),
        ],
    )?;
    timed_build(&http, address, base_tar).await?;
    let mut rounds = Vec::new();
    for round in 0..FIRST_PUSH_ROUNDS {
        let page = format!("<h1>round {round} {}</h1>\n", rand::random::<u64>()).into_bytes();
        let hello = build_tar(
            &format!("{owner}/hello-{round}/hello:1"),
            &[
                (
                    "Dockerfile",
                    format!(
                        "FROM {base}\nLABEL org.opencontainers.image.title=\"hello\"\nENV greeting=\"hello {round}\"\n\
                         COPY index.html /home/app/public/\n"
                    )
                    .into_bytes(),
                ),
                ("index.html", page.clone()),
            ],
        )?;
        let greet = build_tar(
            &format!("{owner}/hello-{round}/greet:1"),
            &[
                ("Dockerfile", format!("FROM {base}\nCOPY index.html /home/app/public/\n").into_bytes()),
                ("index.html", page),
            ],
        )?;
        let started = Instant::now();
        let (first, second) = tokio::join!(timed_build(&http, address, hello), timed_build(&http, address, greet));
        first?;
        second?;
        rounds.push(started.elapsed());
    }
    let rounds = Summary::new(rounds);
    println!(
        "   {driver:<7} {mode:<22} both built and pushed: min {:.2} s, p50 {:.2} s, max {:.2} s ({} rounds)",
        rounds.quantile(0.0).as_secs_f64(),
        rounds.quantile(0.5).as_secs_f64(),
        rounds.quantile(1.0).as_secs_f64(),
        rounds.len()
    );
    Ok(())
}

/// The 15-step template through of-builder with each storage driver, as root and (where the build user exists)
/// sandboxed: what a step costs, cold and from cache, and which driver keeps a cold build under 5 s; then
/// [`first_push`].
pub async fn storage(binaries: &std::path::Path) -> anyhow::Result<()> {
    println!("of-builder, 15-step template (FROM scratch, busybox, RUN steps), build and push: cold, then warm x3");
    let sandboxed = std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.lines().any(|l| l.starts_with("ofcbuild:")));
    for driver in ["vfs", "overlay"] {
        template_builds(binaries, driver, None).await?;
        if sandboxed {
            template_builds(binaries, driver, Some("ofcbuild")).await?;
        }
    }
    first_push(binaries).await
}

/// The example's first push (two builds without `RUN` steps at once) on each driver, sandboxed where the build user
/// exists.
pub async fn first_push(binaries: &std::path::Path) -> anyhow::Result<()> {
    println!("of-builder, the example's first push: its two functions (no RUN step) built and pushed at once, cold");
    let sandboxed = std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.lines().any(|l| l.starts_with("ofcbuild:")));
    let user = sandboxed.then_some("ofcbuild");
    for driver in ["vfs", "overlay"] {
        first_push_builds(binaries, driver, user).await?;
    }
    Ok(())
}
