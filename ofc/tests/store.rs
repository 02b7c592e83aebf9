//! The local template store through the real `ofc up` and `ofc push`: a repository with no `template/` folder is
//! built from the templates `ofc up` serves (ofc/templates/), and its `exec` function runs a program offline.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shared::openfaas::{labels, FunctionStatus};
use testkit::git::{commit, init_repo};
use testkit::local_stack::{LocalStack, Up};

use testkit::process::ProcessGuard;

const OFC: &str = env!("CARGO_BIN_EXE_ofc");

struct Stack {
    _child: ProcessGuard,
    state: tempfile::TempDir,
    gateway: String,
}

fn up() -> Stack {
    let LocalStack { child, state, gateway, .. } = Up::new(OFC).runtime("buildah").start();
    Stack { _child: child, state, gateway }
}

impl Stack {
    fn push(&self, repo: &Path) -> (bool, String) {
        let output = Command::new(OFC)
            .args(["push", repo.to_str().unwrap(), "--owner", "octo", "--state", self.state.path().to_str().unwrap()])
            .args(["--timeout", "120"])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    async fn functions(&self) -> Vec<FunctionStatus> {
        testkit::local_stack::deployed_functions(self.state.path(), &self.gateway).await
    }

    /// POSTs `body` to `function` (GET when it is empty) until it answers 200 (a replica starts after the
    /// deployment); the answer.
    async fn invoke_when_live(&self, function: &str, body: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            let url = format!("{}function/{function}", self.gateway);
            let request = if body.is_empty() { http.get(url) } else { http.post(url).body(body.to_owned()) };
            let answer = request.send().await;
            if let Ok(answer) = answer {
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap_or_default();
                if status == 200 {
                    return text;
                }
                assert!(Instant::now() < deadline, "{function} did not answer: {status} {text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[tokio::test]
async fn a_repository_without_templates_builds_from_the_local_store_and_runs_a_program() {
    let stack = up();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("tools");
    init_repo(&repo);
    std::fs::write(
        repo.join("stack.yml"),
        "provider: {name: openfaas}\nfunctions:\n  echo:\n    lang: exec\n    handler: ./echo\n    image: echo\n  \
         site:\n    lang: static-site\n    handler: ./site\n    image: site\n",
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("echo")).unwrap();
    std::fs::write(repo.join("echo/README"), "the template's own handler answers the body\n").unwrap();
    std::fs::create_dir_all(repo.join("site")).unwrap();
    std::fs::write(repo.join("site/index.html"), "<h1>from the store</h1>\n").unwrap();
    commit(&repo, "no template folder");
    let (ok, output) = stack.push(&repo);
    assert!(ok, "{output}");

    assert_eq!(stack.invoke_when_live("octo-echo-4", "ping from a program").await, "ping from a program");
    assert!(stack.invoke_when_live("octo-site-4", "").await.contains("from the store"));
    let published = ofc::templates::publish(tempfile::tempdir().unwrap().path()).unwrap();
    let functions = stack.functions().await;
    for function in &functions {
        assert_eq!(function.label(labels::TEMPLATE_SHA), Some(published.as_str()), "{}", function.name);
    }

    std::fs::write(
        repo.join("stack.yml"),
        "provider: {name: openfaas}\nfunctions:\n  echo:\n    lang: cobol\n    handler: ./echo\n    image: echo\n",
    )
    .unwrap();
    commit(&repo, "a language the store does not have");
    let (ok, output) = stack.push(&repo);
    assert!(!ok, "{output}");
    assert!(output.contains("cobol not supported") && output.contains("exec, static-site"), "{output}");
}
