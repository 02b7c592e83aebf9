//! moto's S3 server, the S3-compatible store the tests of the build-log store and its users run against.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::process::ProcessGuard;

/// moto's S3 on `127.0.0.1:<port>` with `bucket` created, and its endpoint; or a failure that says how to install
/// it. Stopped when the guard is dropped.
pub async fn start_moto(bucket: &str) -> (ProcessGuard, String) {
    let port = free_port();
    let spawned = ProcessGuard::spawn(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let guard = match spawned {
        Ok(guard) => guard,
        Err(e) => panic!(
            "this test needs moto's S3 server, and `moto_server` could not be started ({e}): \
             install it with `./ofc-local install --tests` (or `python3 -m pip install 'moto[server]'`)"
        ),
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Creating the bucket is also the readiness probe: moto answers once it serves S3.
        if let Ok(response) = client.put(format!("{endpoint}/{bucket}")).send().await {
            assert!(response.status().is_success(), "moto refused to create the bucket: {}", response.status());
            return (guard, endpoint);
        }
        assert!(Instant::now() < deadline, "moto_server did not answer on {endpoint} within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
