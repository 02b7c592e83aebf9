//! The GitHub double's OAuth web flow, over real HTTP: the sign-in page, the code, its exchange, and the user routes.

use doubles::github_double::{account_id, AppKey, GitHubDouble, RunningDouble};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::Value;

const CALLBACK: &str = "http://auth.example.test/oauth2/authorized";

async fn start() -> RunningDouble {
    let key = AppKey::generate();
    let double = GitHubDouble::new("1", &key.public_pem);
    double.add_oauth_app("client-1", "s3cret");
    double.start().await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Signs in as `login` with `orgs` through the form, and returns the redirect's `code` and `state`.
async fn sign_in(github: &RunningDouble, login: &str, orgs: &str) -> (String, Option<String>) {
    let response = client()
        .post(format!("{}login/oauth/authorize", github.url()))
        .form(&[
            ("client_id", "client-1"),
            ("redirect_uri", CALLBACK),
            ("scope", "read:org"),
            ("state", "st&te"),
            ("login", login),
            ("orgs", orgs),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(CALLBACK), "{location}");
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    (get("code").expect("a code"), get("state"))
}

async fn exchange(github: &RunningDouble, secret: &str, code: &str) -> Value {
    client()
        .post(format!("{}login/oauth/access_token", github.url()))
        .header("accept", "application/json")
        .form(&[("client_id", "client-1"), ("client_secret", secret), ("code", code), ("redirect_uri", CALLBACK)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_a_sign_in_form_for_a_registered_app_only() {
    let github = start().await;
    let url = format!(
        "{}login/oauth/authorize?client_id=client-1&redirect_uri={CALLBACK}&scope=read:org&state=%22%3E%3Cb%3E",
        github.url()
    );
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    for field in ["name=\"login\"", "name=\"orgs\"", "name=\"client_id\"", "name=\"redirect_uri\"", "name=\"state\""] {
        assert!(html.contains(field), "{field} in {html}");
    }
    assert!(html.contains("value=\"&quot;&gt;&lt;b&gt;\""), "the state is escaped: {html}");

    let unknown = format!("{}login/oauth/authorize?client_id=nope&redirect_uri={CALLBACK}", github.url());
    assert_eq!(client().get(unknown).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let no_redirect = format!("{}login/oauth/authorize?client_id=client-1", github.url());
    assert_eq!(client().get(no_redirect).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_code_is_exchanged_once_for_a_token_that_reads_the_user_and_orgs() {
    let github = start().await;
    let (code, state) = sign_in(&github, "Octo", "acme, tools").await;
    assert_eq!(state.as_deref(), Some("st&te"), "the state comes back unchanged");

    let token = exchange(&github, "s3cret", &code).await;
    assert_eq!(token["token_type"], "bearer", "{token}");
    assert_eq!(token["scope"], "read:org");
    let access = token["access_token"].as_str().unwrap().to_owned();

    let again = exchange(&github, "s3cret", &code).await;
    assert_eq!(again["error"], "bad_verification_code", "a code is single-use: {again}");

    let user: Value = client()
        .get(format!("{}user", github.url()))
        .header("authorization", format!("Bearer {access}"))
        .header("user-agent", "test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["login"], "Octo");
    assert_eq!(user["id"], account_id("octo"));
    assert_eq!(user["type"], "User");

    let orgs: Value = client()
        .get(format!("{}user/orgs", github.url()))
        .header("authorization", format!("token {access}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logins: Vec<&str> = orgs.as_array().unwrap().iter().map(|o| o["login"].as_str().unwrap()).collect();
    assert_eq!(logins, ["acme", "tools"]);
    assert_eq!(orgs[0]["id"], account_id("acme"));
}

#[tokio::test]
async fn refuses_a_wrong_secret_a_wrong_code_and_a_changed_redirect_uri_as_github_does() {
    let github = start().await;
    let (code, _) = sign_in(&github, "octo", "").await;
    assert_eq!(exchange(&github, "wrong", &code).await["error"], "incorrect_client_credentials");
    assert_eq!(exchange(&github, "s3cret", "not-a-code").await["error"], "bad_verification_code");
    let changed: Value = client()
        .post(format!("{}login/oauth/access_token", github.url()))
        .header("accept", "application/json")
        .json(&serde_json::json!({"client_id": "client-1", "client_secret": "s3cret", "code": code,
            "redirect_uri": "http://evil.test/"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(changed["error"], "redirect_uri_mismatch");
    // The refusals did not use the code up.
    assert!(exchange(&github, "s3cret", &code).await["access_token"].is_string());
}

#[tokio::test]
async fn answers_form_encoded_without_an_accept_header() {
    let github = start().await;
    let (code, _) = sign_in(&github, "octo", "").await;
    let response = client()
        .post(format!("{}login/oauth/access_token", github.url()))
        .form(&[("client_id", "client-1"), ("client_secret", "s3cret"), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(body.starts_with("access_token=gho_") && body.contains("token_type=bearer"), "{body}");
}

#[tokio::test]
async fn an_expired_code_is_a_bad_verification_code() {
    let github = start().await;
    github.set_oauth_code_lifetime(std::time::Duration::ZERO);
    let (code, _) = sign_in(&github, "octo", "").await;
    assert_eq!(exchange(&github, "s3cret", &code).await["error"], "bad_verification_code");
}

#[tokio::test]
async fn the_user_routes_refuse_a_token_the_double_did_not_issue() {
    let github = start().await;
    for path in ["user", "user/orgs"] {
        let response = client()
            .get(format!("{}{path}", github.url()))
            .header("authorization", "Bearer gho_made_up")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], "Bad credentials");
        let anonymous = client().get(format!("{}{path}", github.url())).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn refuses_a_login_that_is_not_a_github_login() {
    let github = start().await;
    let response = client()
        .post(format!("{}login/oauth/authorize", github.url()))
        .form(&[("client_id", "client-1"), ("redirect_uri", CALLBACK), ("login", "-bad-")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.headers().get("location").is_none());
}
