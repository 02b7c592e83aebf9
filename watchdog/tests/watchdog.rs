//! The real `ofc-watchdog` binary on a loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::ports::free_port;
use testkit::process::ProcessGuard;

struct Watchdog {
    _child: ProcessGuard,
    port: u16,
}

impl Watchdog {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn start(env: &[(&str, &str)]) -> Watchdog {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ofc-watchdog"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("port", port.to_string())
        .env("bind_address", "127.0.0.1")
        .envs(env.iter().copied())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = ProcessGuard::new(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the watchdog did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Watchdog { _child: child, port }
}

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::create_dir(dir.path().join("css")).unwrap();
    std::fs::write(dir.path().join("css/site.css"), "h1 {}").unwrap();
    dir
}

#[test]
fn serves_a_static_site_with_its_content_types_and_nothing_outside_it() {
    let site = site();
    let watchdog = start(&[("mode", "static"), ("static_path", site.path().to_str().unwrap())]);
    let http = reqwest::blocking::Client::new();
    let index = http.get(watchdog.url("/")).send().unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(index.text().unwrap(), "<h1>hi</h1>");
    let css = http.get(watchdog.url("/css/site.css?v=1")).send().unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(http.get(watchdog.url("/_/health")).send().unwrap().status(), 200);
    assert_eq!(http.get(watchdog.url("/missing.html")).send().unwrap().status(), 404);
    let head = http.head(watchdog.url("/index.html")).send().unwrap();
    assert_eq!(head.headers()["content-length"], "11");
    assert_eq!(http.post(watchdog.url("/")).body("x").send().unwrap().status(), 405);
    // Raw, so the client cannot normalise the dots away.
    for path in ["/../../etc/passwd", "/css/%2e%2e/%2e%2e/etc/passwd"] {
        let mut stream = TcpStream::connect(("127.0.0.1", watchdog.port)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
}

#[test]
fn runs_fprocess_per_request_with_the_body_on_stdin_and_the_request_in_its_environment() {
    // fprocess is split on spaces as the classic watchdog splits it (no shell quoting), so the handler is a script.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("handler.sh");
    std::fs::write(&script, "#!/bin/sh\ncat\necho\necho \"$Http_Method $Http_Path $Http_Query $Http_X_Name\"\n")
        .unwrap();
    Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let watchdog = start(&[("fprocess", script.to_str().unwrap()), ("content_type", "text/plain")]);
    let http = reqwest::blocking::Client::new();
    // A body of unknown length goes chunked, as the gateway streams it.
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(b"hello body".to_vec()));
    let answer = http.post(watchdog.url("/some/path?a=1")).header("X-Name", "ofc").body(body).send().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "text/plain");
    assert_eq!(answer.text().unwrap(), "hello body\nPOST /some/path a=1 ofc\n");
    // Keep-alive: a second request on the same client works.
    assert_eq!(http.get(watchdog.url("/")).send().unwrap().status(), 200);
}

#[test]
fn a_failing_or_slow_fprocess_is_an_error_answer() {
    let failing = start(&[("fprocess", "sh -c exit")]);
    let http = reqwest::blocking::Client::new();
    let answer = http.post(failing.url("/")).body("x").send().unwrap();
    assert_eq!(answer.status(), 200, "`sh -c exit` exits 0");
    let failing = start(&[("fprocess", "false")]);
    let answer = http.post(failing.url("/")).body("x").send().unwrap();
    assert_eq!(answer.status(), 500);
    assert!(answer.text().unwrap().contains("fprocess failed"));
    let slow = start(&[("fprocess", "sleep 5"), ("exec_timeout", "200ms")]);
    let started = Instant::now();
    let answer = http.post(slow.url("/")).body("x").send().unwrap();
    assert_eq!(answer.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    let missing = start(&[("fprocess", "/no/such/handler")]);
    let answer = http.post(missing.url("/")).send().unwrap();
    assert_eq!(answer.status(), 500);
    assert!(answer.text().unwrap().contains("could not start"));
}

#[test]
fn a_bad_setting_stops_the_start_naming_it() {
    for (name, value) in [("mode", "turbo"), ("port", "eighty"), ("exec_timeout", "soon")] {
        let output = Command::new(env!("CARGO_BIN_EXE_ofc-watchdog")).env_clear().env(name, value).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name) && stderr.contains(value), "{stderr}");
    }
    let output =
        Command::new(env!("CARGO_BIN_EXE_ofc-watchdog")).env_clear().env("mode", "serializing").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("fprocess"));
}

#[test]
fn durations_read_as_of_watchdog_writes_them() {
    use ofc_watchdog::parse_duration;
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("2.5"), Some(Duration::from_millis(2500)));
    assert_eq!(parse_duration("soon"), None);
    assert_eq!(parse_duration(""), None);
}
