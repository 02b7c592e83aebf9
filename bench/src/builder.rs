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
        "of-builder, Buildah (vfs) and docker-registry (idle RSS {:.1} MiB)",
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
    let image = format!("{}/bench/small:latest-1", registry.host_port());
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
        &format!("{}/bench/big:latest-1", registry.host_port()),
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
