//! The real `ofc-watchdog` stopping: SIGTERM drains what is in flight and exits 0, also as PID 1 of a PID namespace
//! (where a signal without a handler is ignored and the runtime would wait its kill timeout).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testkit::ports::free_port;
use testkit::process::ProcessGuard;

fn watchdog_command(port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ofc-watchdog"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("port", port.to_string())
        .env("bind_address", "127.0.0.1")
        .envs(env.iter().copied())
        .stderr(Stdio::null());
    command
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the watchdog did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Waits (bounded) for the guarded process to exit and answers how, and after how long.
fn wait_exit(process: &mut ProcessGuard, within: Duration) -> Option<(ExitStatus, Duration)> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(status) = process.try_wait().unwrap() {
            return Some((status, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A handler that says it started (a file), then takes `seconds` before answering.
fn slow_handler(dir: &Path, seconds: &str) -> String {
    let script = dir.join("handler.sh");
    let started = dir.join("started");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\nsleep {seconds}\necho finished\n", started.display()))
        .unwrap();
    Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    script.display().to_string()
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "the handler did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw POST whose answer is read whole (the connection closes after it).
fn post(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn sigterm_lets_the_slow_request_in_flight_finish_refuses_new_ones_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let handler = slow_handler(dir.path(), "1");
    let mut watchdog = ProcessGuard::spawn(&mut watchdog_command(port, &[("fprocess", &handler)])).unwrap();
    wait_listening(port);
    let in_flight = std::thread::spawn(move || post(port));
    wait_for_file(&dir.path().join("started"));
    let signalled = Instant::now();
    signal(watchdog.id(), "TERM");
    // New connections are refused once the listener is closed, while the slow answer is still being made.
    let deadline = Instant::now() + Duration::from_millis(800);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    let answer = in_flight.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("finished\n"), "{answer}");
    let (status, _) = wait_exit(&mut watchdog, Duration::from_secs(5)).expect("the watchdog exits after draining");
    assert!(status.success(), "{status}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?} for a 1 s request");
}

#[test]
fn sigint_or_sigterm_with_nothing_in_flight_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    for name in ["TERM", "INT"] {
        let port = free_port();
        let mut watchdog = ProcessGuard::spawn(&mut watchdog_command(
            port,
            &[("mode", "static"), ("static_path", dir.path().to_str().unwrap())],
        ))
        .unwrap();
        wait_listening(port);
        signal(watchdog.id(), name);
        let (status, took) = wait_exit(&mut watchdog, Duration::from_secs(5)).expect("the watchdog exits");
        assert!(status.success(), "SIG{name}: {status}");
        assert!(took < Duration::from_secs(1), "SIG{name}: took {took:?}");
    }
}

/// The host PID of `parent`'s only child, from `/proc` (the namespace's PID 1 seen from outside).
fn only_child(parent: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[test]
fn as_pid_1_of_a_pid_namespace_sigterm_from_outside_ends_it_within_a_second() {
    if !running_as_root() {
        eprintln!("skipped: unshare --pid needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    let port = free_port();
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_ofc-watchdog"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("port", port.to_string())
        .env("bind_address", "127.0.0.1")
        .env("mode", "static")
        .env("static_path", dir.path())
        .stderr(Stdio::piped());
    let mut unshare = ProcessGuard::spawn(&mut command).unwrap().grace(Duration::from_secs(2));
    wait_listening(port);
    let pid_1 = only_child(unshare.id()).expect("unshare's child, the namespace's PID 1");
    let status = std::fs::read_to_string(format!("/proc/{pid_1}/status")).unwrap();
    let ns_pids = status.lines().find(|l| l.starts_with("NSpid:")).unwrap().to_owned();
    assert!(ns_pids.trim_end().ends_with("\t1"), "not PID 1 in its namespace: {ns_pids}");
    signal(pid_1, "TERM");
    let (exit, took) = wait_exit(&mut unshare, Duration::from_secs(5)).expect("PID 1 ignored SIGTERM");
    assert!(exit.success(), "{exit}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let stderr = BufReader::new(unshare.child_mut().stderr.take().unwrap());
    let lines: Vec<String> = stderr.lines().map_while(Result::ok).collect();
    assert!(lines.iter().any(|l| l.contains("drained")), "{lines:?}");
}

/// As faasd stops a container: its network is removed first, so nothing reaches the listener (the namespace's
/// loopback is down here, as in a container whose interface is gone); SIGTERM must still end the watchdog at once
/// rather than after the drain bound.
#[test]
fn sigterm_ends_it_at_once_when_its_own_address_cannot_be_reached() {
    if !running_as_root() {
        eprintln!("skipped: unshare --net needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    let mut command = Command::new("unshare");
    command
        .arg("--net")
        .arg(env!("CARGO_BIN_EXE_ofc-watchdog"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("port", "8080")
        .env("mode", "static")
        .env("static_path", dir.path())
        .stderr(Stdio::piped());
    let mut watchdog = ProcessGuard::spawn(&mut command).unwrap().grace(Duration::from_secs(2));
    let mut stderr = BufReader::new(watchdog.child_mut().stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("listening on port 8080"), "{line}");
    signal(watchdog.id(), "TERM");
    let (exit, took) = wait_exit(&mut watchdog, Duration::from_secs(20)).expect("the watchdog exits");
    assert!(exit.success(), "{exit}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let lines: Vec<String> = stderr.lines().map_while(Result::ok).collect();
    assert!(lines.iter().any(|l| l.contains("drained")), "{lines:?}");
}
