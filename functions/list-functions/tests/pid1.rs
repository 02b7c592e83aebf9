//! The real list-functions binary as PID 1 of a PID namespace, as a container runs it: SIGTERM from outside lets
//! the request in flight finish and ends the process within a second or two (a signal without a handler is ignored
//! by PID 1, and the runtime would wait its kill timeout). What holds here holds for every function: they share
//! `shared::server::run_function`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::ports::free_port;
use testkit::process::ProcessGuard;

const BINARY: &str = env!("CARGO_BIN_EXE_list-functions");

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A gateway that answers one `GET /system/functions` with an empty list, `delay` after it arrived.
fn slow_gateway(delay: Duration) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        std::thread::sleep(delay);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]");
    });
    (port, serving)
}

#[test]
fn as_pid_1_sigterm_drains_the_request_in_flight_and_exits_promptly() {
    if !running_as_root() {
        eprintln!("skipped: unshare --pid needs root (CI runs as root)");
        return;
    }
    let secrets =
        testkit::secrets_dir(&[("payload-secret", "p"), ("basic-auth-user", "admin"), ("basic-auth-password", "pw")]);
    let (gateway_port, gateway) = slow_gateway(Duration::from_millis(800));
    let port = free_port();
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", BINARY])
        .env_clear()
        .env("secret_mount_path", secrets.path())
        .env("gateway_url", format!("http://127.0.0.1:{gateway_port}/"))
        .env("bind_address", "127.0.0.1")
        .env("port", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut unshare = ProcessGuard::spawn(&mut command).unwrap().grace(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "list-functions did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let pid_1: u32 = children.split_whitespace().next().unwrap().parse().unwrap();

    let in_flight = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET /?user=octo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    });
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid_1.to_string()]).status().unwrap().success());
    let answer = in_flight.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "the request in flight was answered: {answer}");
    let exit = loop {
        if let Some(status) = unshare.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(5), "PID 1 did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    gateway.join().unwrap();
}
