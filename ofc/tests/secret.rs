//! `ofc secret set`: a user function's secret lands where the local runtime mounts it from, under the name
//! buildshiprun binds (`<owner's account id>--<name>`), and its value is never printed.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

fn secret_set(state: &std::path::Path, args: &[&str], value: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ofc"))
        .args(["secret", "set", "--state"])
        .arg(state)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn stores_the_owner_s_secret_without_echoing_it() {
    let state = tempfile::tempdir().unwrap();
    let output = secret_set(state.path(), &["--owner", "Alex", "db"], b"hunter2\n");
    assert!(output.status.success(), "{output:?}");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!printed.contains("hunter2"), "{printed}");
    let path = state.path().join(format!("function-secrets/{}--db", ofc::push::account_id("alex")));
    assert_eq!(std::fs::read(&path).unwrap(), b"hunter2");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn refuses_a_name_that_is_not_a_secret_name() {
    let state = tempfile::tempdir().unwrap();
    let output = secret_set(state.path(), &["--owner", "alex", "../payload-secret"], b"x");
    assert!(!output.status.success());
    assert!(
        !state.path().join("function-secrets").exists()
            || std::fs::read_dir(state.path().join("function-secrets")).unwrap().next().is_none()
    );
}
