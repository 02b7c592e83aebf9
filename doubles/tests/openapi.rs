//! The GitHub double against GitHub's own OpenAPI description (`@octokit/openapi`, installed from npm by `.ci/run`
//! into `target/octokit-openapi/`): every route the platform calls exists in it with that method, the double
//! answers a good request with a success code the description lists and every field it marks required, and refuses
//! a request without a required field. Outside CI, a machine without the package says the test was skipped.

use std::path::PathBuf;

use doubles::github_double::{AppKey, GitHubDouble, RunningDouble};
use reqwest::Method;
use serde_json::{json, Value};
use shared::config::Secret;
use shared::github_app::AppCredentials;

const INSTALLATION: u64 = 77;
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

/// Where the description is: `OFC_OCTOKIT_OPENAPI`, else where `.ci/run` installs it.
fn description_path() -> PathBuf {
    std::env::var_os("OFC_OCTOKIT_OPENAPI").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/octokit-openapi/node_modules/@octokit/openapi/generated/api.github.com.json")
        },
        PathBuf::from,
    )
}

fn load() -> Option<Value> {
    let path = description_path();
    match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).expect("the OpenAPI description is JSON")),
        Err(error) => {
            let in_ci = std::env::var_os("CI").is_some() || std::env::var_os("OFC_OCTOKIT_OPENAPI").is_some();
            assert!(!in_ci, "GitHub's OpenAPI description is missing at {} in CI: {error}", path.display());
            println!(
                "skipped: GitHub's OpenAPI description is not at {} (npm install @octokit/openapi)",
                path.display()
            );
            None
        }
    }
}

/// `value` with its `$ref` (one of the description's own `#/…` pointers) followed, as often as it takes.
fn resolve<'a>(spec: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                value = spec.pointer(pointer.trim_start_matches('#')).expect("a $ref inside the description");
            }
            None => break,
        }
    }
    value
}

/// The fields a schema requires (an array's items' for an array).
fn required(spec: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(spec, schema);
    let schema = if schema["type"] == "array" { resolve(spec, &schema["items"]) } else { schema };
    schema["required"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(str::to_owned)).collect()
}

struct Route {
    method: Method,
    template: &'static str,
    path: String,
    /// A body GitHub takes; `None` for a GET.
    body: Option<Value>,
}

struct Checked<'a> {
    spec: &'a Value,
    github: &'a RunningDouble,
    http: reqwest::Client,
    token: String,
}

impl Checked<'_> {
    fn operation(&self, route: &Route) -> &Value {
        let method = route.method.as_str().to_ascii_lowercase();
        let operation = &self.spec["paths"][route.template][&method];
        assert!(operation.is_object(), "{} {} is not in GitHub's description", route.method, route.template);
        operation
    }

    async fn send(&self, route: &Route, body: Option<&Value>, token: &str) -> (u16, Value) {
        let mut request = self
            .http
            .request(route.method.clone(), format!("{}{}", self.github.url(), route.path.trim_start_matches('/')))
            .header("user-agent", "openapi-check")
            .header("authorization", format!("Bearer {token}"));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The route answers a good request as the description says, and refuses one without each required field.
    async fn check(&self, route: &Route) -> Value {
        let operation = self.operation(route).clone();
        let token = if route.template.starts_with("/app/") { Self::jwt() } else { self.token.clone() };
        let (status, answer) = self.send(route, route.body.as_ref(), &token).await;
        let listed = &operation["responses"][status.to_string()];
        assert!(
            (200..300).contains(&status) && listed.is_object(),
            "{} {}: answered {status}, the description lists {:?}: {answer}",
            route.method,
            route.template,
            operation["responses"].as_object().map(|r| r.keys().cloned().collect::<Vec<_>>())
        );
        let schema = &resolve(self.spec, listed)["content"]["application/json"]["schema"];
        let items: Vec<&Value> = match &answer {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for field in required(self.spec, schema) {
            for item in &items {
                assert!(
                    item.get(&field).is_some(),
                    "{} {}: `{field}` is required: {item}",
                    route.method,
                    route.template
                );
            }
        }
        let body_schema = &resolve(self.spec, &operation["requestBody"])["content"]["application/json"]["schema"];
        for field in required(self.spec, body_schema) {
            let mut without = route.body.clone().expect("a route with required fields has a body");
            without.as_object_mut().unwrap().remove(&field);
            let (status, _) = self.send(route, Some(&without), &token).await;
            assert!(
                (400..500).contains(&status),
                "{} {} without `{field}`: answered {status}",
                route.method,
                route.template
            );
        }
        answer
    }

    fn jwt() -> String {
        let credentials = AppCredentials::from_pem("9", &Secret::new(&key().private_pem)).unwrap();
        credentials.jwt(chrono::Utc::now()).unwrap().expose().to_owned()
    }
}

fn key() -> &'static AppKey {
    static KEY: std::sync::OnceLock<AppKey> = std::sync::OnceLock::new();
    KEY.get_or_init(AppKey::generate)
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one route after the other, in the order the platform calls them
async fn the_double_s_routes_answer_as_github_s_openapi_description_says() {
    let Some(spec) = load() else { return };
    let double = GitHubDouble::new("9", &key().public_pem);
    double.add_installation(INSTALLATION, "octo");
    let github = double.start().await.unwrap();
    let mut checked = Checked { spec: &spec, github: &github, http: reqwest::Client::new(), token: String::new() };
    let token = checked
        .check(&Route {
            method: Method::POST,
            template: "/app/installations/{installation_id}/access_tokens",
            path: format!("/app/installations/{INSTALLATION}/access_tokens"),
            body: Some(json!({})),
        })
        .await;
    checked.token = token["token"].as_str().unwrap().to_owned();
    let post = |template: &'static str, path: String, body: Value| Route {
        method: Method::POST,
        template,
        path,
        body: Some(body),
    };
    let get = |template: &'static str, path: String| Route { method: Method::GET, template, path, body: None };
    checked
        .check(&post(
            "/repos/{owner}/{repo}/statuses/{sha}",
            format!("/repos/octo/fns/statuses/{SHA}"),
            json!({"state": "success", "context": "hello", "description": "deployed", "target_url": "http://x/"}),
        ))
        .await;
    checked
        .check(&get("/repos/{owner}/{repo}/commits/{ref}/statuses", format!("/repos/octo/fns/commits/{SHA}/statuses")))
        .await;
    checked
        .check(&get("/repos/{owner}/{repo}/commits/{ref}/status", format!("/repos/octo/fns/commits/{SHA}/status")))
        .await;
    let run = checked
        .check(&post(
            "/repos/{owner}/{repo}/check-runs",
            "/repos/octo/fns/check-runs".into(),
            json!({"name": "hello", "head_sha": SHA, "status": "in_progress"}),
        ))
        .await;
    checked
        .check(&Route {
            method: Method::PATCH,
            template: "/repos/{owner}/{repo}/check-runs/{check_run_id}",
            path: format!("/repos/octo/fns/check-runs/{}", run["id"]),
            body: Some(json!({"status": "completed", "conclusion": "success"})),
        })
        .await;
    checked
        .check(&get(
            "/repos/{owner}/{repo}/commits/{ref}/check-runs",
            format!("/repos/octo/fns/commits/{SHA}/check-runs"),
        ))
        .await;
    let comment = checked
        .check(&post(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            "/repos/octo/fns/issues/12/comments".into(),
            json!({"body": "preview"}),
        ))
        .await;
    let edit = Route {
        method: Method::PATCH,
        template: "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        path: format!("/repos/octo/fns/issues/comments/{}", comment["id"]),
        body: Some(json!({"body": "preview, edited"})),
    };
    assert_eq!(checked.check(&edit).await["body"], "preview, edited");
    let listed = checked
        .check(&get(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            "/repos/octo/fns/issues/12/comments".into(),
        ))
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let too_long = json!({"body": "x".repeat(65_537)});
    assert_eq!(checked.send(&edit, Some(&too_long), &checked.token).await.0, 422);
    let missing = Route { path: "/repos/octo/fns/issues/comments/999999".into(), ..edit };
    assert_eq!(checked.send(&missing, missing.body.as_ref(), &checked.token).await.0, 404, "an unknown comment");
    let other = post(
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        "/repos/mallory/fns/issues/1/comments".into(),
        json!({"body": "x"}),
    );
    assert_eq!(checked.send(&other, other.body.as_ref(), &checked.token).await.0, 404, "another account's repository");
}
