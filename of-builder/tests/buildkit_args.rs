//! of-builder's BuildKit backend over real HTTP, with a `buildctl` on `PATH` that records how it was called (no
//! buildkitd runs here): a build asks the Dockerfile frontend for `RUN` steps without network and grants no
//! entitlement, and the registry's credentials reach `buildctl` only through `DOCKER_CONFIG`. Its own test binary:
//! `PATH` is changed before anything else runs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use of_builder::storage::StorageDriver;
use of_builder::{BackendKind, Config, Setup};
use shared::build::{BuildConfig, BuildResult, BuildStatus};
use shared::config::{CommonConfig, Secret};
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::ServedFunction;

const PAYLOAD_SECRET: &str = "payload-secret-for-tests";

/// Writes its arguments, one a line, and whether `$DOCKER_CONFIG/config.json` holds the registry account, into
/// files beside itself; for `build`, the metadata file with a digest, as buildctl writes one.
const FAKE_BUILDCTL: &str = r##"#!/bin/sh
here=$(dirname "$0")
if [ "$3" = "debug" ]; then exit 0; fi
printf '%s\n' "$@" > "$here/args"
if [ -n "$DOCKER_CONFIG" ] && grep -q registry-account "$DOCKER_CONFIG/config.json"; then
  echo yes > "$here/docker-config"
fi
metadata=""
previous=""
for arg in "$@"; do
  if [ "$previous" = "--metadata-file" ]; then metadata="$arg"; fi
  previous="$arg"
done
printf '{"containerimage.digest":"sha256:%064d"}' 1 > "$metadata"
echo "#1 [1/1] RUN echo built"
"##;

fn config(buildah_root: &std::path::Path) -> Config {
    Config {
        common: CommonConfig {
            gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
            audit_url: None,
            payload_secret: Secret::new(PAYLOAD_SECRET),
        },
        backend: BackendKind::Buildkit { host: "tcp://127.0.0.1:9".into() },
        max_context_bytes: 1 << 20,
        max_concurrent_builds: 1,
        max_concurrent_builds_per_owner: 1,
        max_queued_builds_per_owner: 10,
        registry_insecure: true,
        buildah_root: Some(buildah_root.to_owned()),
        build_timeout: Duration::from_secs(30),
        build_user: None,
        registry_auth: Some(Secret::new(r#"{"auths":{"127.0.0.1:9":{"auth":"registry-account"}}}"#)),
        allowed_base_images: of_builder::base_images::Allowlist::parse(None).unwrap(),
        server: ServerConfig::for_tests(32 << 20),
    }
}

fn build_tar(config: &BuildConfig, dockerfile: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in [("config", serde_json::to_string(config).unwrap()), ("context/Dockerfile", dockerfile.into())]
    {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, data.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn buildkit_run_steps_get_no_network_and_no_entitlement() {
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("buildctl");
    std::fs::write(&fake, FAKE_BUILDCTL).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    // Before the runtime's threads exist: nothing else reads the environment yet.
    std::env::set_var("PATH", path);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let buildah = tempfile::tempdir().unwrap();
        let config = config(buildah.path());
        let server = config.server.clone();
        let served =
            ServedFunction::start_with(of_builder::serve(Setup { config, storage: StorageDriver::Vfs }), &server).await;
        let build = BuildConfig {
            image_ref: "127.0.0.1:9/11/fns/hello:latest-abc123".into(),
            build_args: BTreeMap::new(),
            platforms: vec![],
        };
        let body = build_tar(&build, "FROM scratch\nRUN echo built\n");
        let answer = reqwest::Client::new()
            .post(format!("http://{}/build", served.address()))
            .header("X-Cloud-Signature", sign_sha256(PAYLOAD_SECRET.as_bytes(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let result: BuildResult = answer.json().await.unwrap();
        assert_eq!(result.status, BuildStatus::Success, "{:?}", result.log);
        assert_eq!(result.digest, format!("sha256:{:064}", 1));
    });

    let args = std::fs::read_to_string(bin.path().join("args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let forced = args.windows(2).any(|pair| pair == ["--opt", "force-network-mode=none"]);
    assert!(forced, "RUN steps get no network: {args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--allow")), "no entitlement (network.host) is granted: {args:?}");
    assert!(!args.iter().any(|a| a.contains("registry-account")), "credentials are not on the command line: {args:?}");
    assert_eq!(std::fs::read_to_string(bin.path().join("docker-config")).unwrap().trim(), "yes");
}
