//! edge-auth end to end against the GitHub double, over real HTTP: the test plays the browser (and the edge
//! router, which would reach edge-auth at `auth_url`).

use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use doubles::github_double::{account_id, AppKey, GitHubDouble, RunningDouble};
use edge_auth::config::session_keys;
use edge_auth::{return_target, Config};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{StatusCode, Url};
use shared::config::Secret;
use shared::customers::CustomersSource;
use shared::log_store::LogStoreConfig;
use shared::revocation::{Revocations, SessionGate};
use shared::server::ServerConfig;
use shared::session::{Account, SessionVerifier, COOKIE_NAME};
use testkit::ServedFunction;

const AUTH_URL: &str = "http://auth.system.localhost/";
const DASHBOARD_URL: &str = "http://system.localhost/dashboard/";
const CLIENT_SECRET: &str = "s3cret-of-the-app";

fn key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(AppKey::generate)
}

struct Platform {
    github: RunningDouble,
    edge: ServedFunction,
    verifier: SessionVerifier,
    /// The store sign-outs are recorded in (the log store's folder, as `ofc up` gives every function).
    store: tempfile::TempDir,
    _customers: Option<tempfile::NamedTempFile>,
}

/// The GitHub double with the OAuth App registered, and edge-auth in front of it; `customers`: the list's text.
async fn start(customers: Option<&str>) -> Platform {
    let double = GitHubDouble::new("1", &key().public_pem);
    double.add_oauth_app("ofc-local", CLIENT_SECRET);
    let github = double.start().await.unwrap();
    let file = customers.map(|text| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    });
    let (signer, verifier) = session_keys(&Secret::new(key().private_pem.clone())).unwrap();
    let store = tempfile::tempdir().unwrap();
    let revocations = Revocations::open(&LogStoreConfig::folder(store.path())).unwrap();
    let config = Config {
        client_id: "ofc-local".into(),
        client_secret: Secret::new(CLIENT_SECRET),
        oauth_base_url: Url::parse(&github.url()).unwrap(),
        github_api_url: Url::parse(&github.url()).unwrap(),
        auth_url: Url::parse(AUTH_URL).unwrap(),
        dashboard_url: Url::parse(DASHBOARD_URL).unwrap(),
        cookie_root_domain: Some("system.localhost".into()),
        session_lifetime: Duration::from_secs(3600),
        signer,
        sessions: SessionGate::new(verifier.clone(), std::sync::Arc::new(revocations)),
        customers: file.as_ref().map(|f| CustomersSource::File(f.path().to_owned())),
        customers_ttl: Duration::from_secs(60),
        server: ServerConfig::for_tests(1 << 20),
    };
    let edge = ServedFunction::start(edge_auth::app(config)).await;
    Platform { github, edge, verifier, store, _customers: file }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

fn location(response: &reqwest::Response) -> Url {
    Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap()
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `name=value` of the `Set-Cookie` for `name`, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// What the browser holds after `/login/`, and GitHub's redirect back after signing in as `login` with `orgs`.
struct Journey {
    state_cookie: String,
    callback: Url,
}

impl Platform {
    async fn begin(&self, r: Option<&str>, login: &str, orgs: &str) -> Journey {
        let mut url = Url::parse(&self.edge.url()).unwrap().join("login/").unwrap();
        if let Some(r) = r {
            url.query_pairs_mut().append_pair("r", r);
        }
        let to_github = browser().get(url).send().await.unwrap();
        assert_eq!(to_github.status(), StatusCode::FOUND);
        let state_cookie = cookie_pair(&set_cookie(&to_github, "ofc_oauth_state").expect("a state cookie"));
        let authorize = location(&to_github);
        let fields: Vec<(String, String)> = ["client_id", "redirect_uri", "scope", "state"]
            .iter()
            .map(|name| ((*name).to_owned(), query(&authorize, name).unwrap_or_default()))
            .chain([("login".to_owned(), login.to_owned()), ("orgs".to_owned(), orgs.to_owned())])
            .collect();
        let back = browser().post(authorize.as_str().split('?').next().unwrap()).form(&fields).send().await.unwrap();
        assert_eq!(back.status(), StatusCode::FOUND, "the double signed in");
        Journey { state_cookie, callback: location(&back) }
    }

    /// The browser following GitHub's redirect to `auth_url`, which the router sends to edge-auth.
    async fn callback(&self, callback: &Url, cookie: Option<&str>) -> reqwest::Response {
        assert!(callback.as_str().starts_with(&format!("{AUTH_URL}oauth2/authorized?")), "{callback}");
        let url = format!("{}oauth2/authorized?{}", self.edge.url(), callback.query().unwrap_or_default());
        let mut request = browser().get(url);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    async fn sign_in(&self, r: Option<&str>, login: &str, orgs: &str) -> reqwest::Response {
        let journey = self.begin(r, login, orgs).await;
        self.callback(&journey.callback, Some(&journey.state_cookie)).await
    }
}

#[tokio::test]
async fn login_sends_the_browser_to_github_with_a_state_only_it_holds() {
    let platform = start(None).await;
    let response = browser().get(format!("{}login/", platform.edge.url())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let to = location(&response);
    assert!(to.as_str().starts_with(&format!("{}login/oauth/authorize?", platform.github.url())), "{to}");
    assert_eq!(query(&to, "client_id").as_deref(), Some("ofc-local"));
    assert_eq!(query(&to, "redirect_uri").as_deref(), Some("http://auth.system.localhost/oauth2/authorized"));
    assert_eq!(query(&to, "scope").as_deref(), Some("read:org"));
    let state = query(&to, "state").unwrap();
    assert!(state.len() >= 32, "an unguessable state");
    let cookie = set_cookie(&response, "ofc_oauth_state").unwrap();
    assert!(cookie.starts_with(&format!("ofc_oauth_state={state}.")), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Max-Age=600", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let again = browser().get(format!("{}login/", platform.edge.url())).send().await.unwrap();
    assert_ne!(query(&location(&again), "state").unwrap(), state, "a new state each time");
}

#[tokio::test]
async fn signs_in_and_sets_a_session_the_public_key_verifies() {
    let platform = start(None).await;
    let wanted = "http://system.localhost/dashboard/functions/octo-hello-4";
    let response = platform.sign_in(Some(wanted), "Octo", "acme, tools").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response).as_str(), wanted, "back where the sign-in started");
    let cookie = set_cookie(&response, COOKIE_NAME).expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Domain=system.localhost", "Max-Age=3600"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "http locally");
    let cleared = set_cookie(&response, "ofc_oauth_state").expect("the state cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let token = cookie_pair(&cookie)[COOKIE_NAME.len() + 1..].to_owned();
    let session = platform.verifier.verify(&token, Utc::now()).unwrap();
    assert_eq!(session.user, Account { login: "Octo".into(), id: account_id("octo") });
    assert_eq!(
        session.orgs,
        vec![
            Account { login: "acme".into(), id: account_id("acme") },
            Account { login: "tools".into(), id: account_id("tools") }
        ]
    );
    let lifetime = session.expires - session.issued;
    assert_eq!(lifetime.num_seconds(), 3600);
    assert!(!token.contains("gho_"), "the GitHub token is not in the session");

    let q = browser().get(format!("{}q/", platform.edge.url())).header(COOKIE, cookie_pair(&cookie)).send().await;
    let q = q.unwrap();
    assert_eq!(q.status(), StatusCode::OK);
    assert_eq!(q.headers()["x-ofc-login"], "Octo");
    let bearer = browser().get(format!("{}q/", platform.edge.url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn q_answers_401_without_a_valid_session() {
    let platform = start(None).await;
    let none = browser().get(format!("{}q/", platform.edge.url())).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.headers().get("x-ofc-login").is_none());
    let forged = browser()
        .get(format!("{}q/", platform.edge.url()))
        .header(COOKIE, format!("{COOKIE_NAME}=eyJhbGciOiJub25lIn0.eyJzdWIiOiJvY3RvIn0."))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refuses_a_callback_whose_state_is_not_the_browsers() {
    let platform = start(None).await;
    let journey = platform.begin(None, "octo", "").await;
    let mut tampered = journey.callback.clone();
    let code = query(&tampered, "code").unwrap();
    tampered.query_pairs_mut().clear().append_pair("code", &code).append_pair("state", "forged-state");
    let refused = platform.callback(&tampered, Some(&journey.state_cookie)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&refused, COOKIE_NAME).is_none());
    assert!(refused.text().await.unwrap().contains("does not match"));

    let no_cookie = platform.callback(&journey.callback, None).await;
    assert_eq!(no_cookie.status(), StatusCode::BAD_REQUEST, "started in another browser");
    assert!(set_cookie(&no_cookie, COOKIE_NAME).is_none());
    let other_browser = platform.begin(None, "octo", "").await;
    let mixed = platform.callback(&journey.callback, Some(&other_browser.state_cookie)).await;
    assert_eq!(mixed.status(), StatusCode::FORBIDDEN, "another sign-in's state cookie");
    assert_eq!(platform.github.oauth_tokens_issued(), 0, "no code was exchanged");
}

#[tokio::test]
async fn refuses_a_code_github_does_not_accept() {
    let platform = start(None).await;
    let journey = platform.begin(None, "octo", "").await;
    let first = platform.callback(&journey.callback, Some(&journey.state_cookie)).await;
    assert_eq!(first.status(), StatusCode::FOUND);
    let replayed = platform.callback(&journey.callback, Some(&journey.state_cookie)).await;
    assert_eq!(replayed.status(), StatusCode::FORBIDDEN, "a code is used once");
    assert!(set_cookie(&replayed, COOKIE_NAME).is_none());
    let page = replayed.text().await.unwrap();
    assert!(page.contains("bad_verification_code"), "{page}");
    assert!(!page.contains(CLIENT_SECRET) && !page.contains(&query(&journey.callback, "code").unwrap()), "{page}");

    let mut made_up = journey.callback.clone();
    let state = query(&made_up, "state").unwrap();
    made_up.query_pairs_mut().clear().append_pair("code", "made-up").append_pair("state", &state);
    assert_eq!(platform.callback(&made_up, Some(&journey.state_cookie)).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_declined_authorization_is_refused_with_a_page() {
    let platform = start(None).await;
    let journey = platform.begin(None, "octo", "").await;
    let mut declined = journey.callback.clone();
    let state = query(&declined, "state").unwrap();
    declined.query_pairs_mut().clear().append_pair("error", "access_denied").append_pair("state", &state);
    let response = platform.callback(&declined, Some(&journey.state_cookie)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("access_denied"));
}

#[tokio::test]
async fn the_customers_list_decides_who_signs_in_and_which_organisations_are_kept() {
    let platform = start(Some("# customers\nacme\nsolo\n")).await;
    let verify = |response: &reqwest::Response| {
        let cookie = set_cookie(response, COOKIE_NAME).expect("signed in");
        let token = cookie_pair(&cookie)[COOKIE_NAME.len() + 1..].to_owned();
        platform.verifier.verify(&token, Utc::now()).unwrap()
    };

    let member = platform.sign_in(None, "octo", "acme,tools").await;
    assert_eq!(member.status(), StatusCode::FOUND, "a member of a customer organisation");
    let session = verify(&member);
    assert_eq!(session.orgs.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(), ["acme"], "tools is dropped");

    let solo = platform.sign_in(None, "Solo", "tools").await;
    assert_eq!(solo.status(), StatusCode::FOUND, "a customer themselves");
    assert!(verify(&solo).orgs.is_empty());

    let stranger = platform.sign_in(None, "mallory", "tools").await;
    assert_eq!(stranger.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&stranger, COOKIE_NAME).is_none());
    assert!(stranger.text().await.unwrap().contains("not a customer"));
}

#[tokio::test]
async fn never_sends_the_browser_off_the_platform() {
    let platform = start(None).await;
    for r in
        ["https://evil.example/", "//evil.example/", "javascript:alert(1)", "http://system.localhost.evil.example/"]
    {
        let response = platform.sign_in(Some(r), "octo", "").await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(location(&response).as_str(), DASHBOARD_URL, "{r}");
    }
    let allowed = platform.sign_in(Some("http://fns.system.localhost/x?y=1"), "octo", "").await;
    assert_eq!(location(&allowed).as_str(), "http://fns.system.localhost/x?y=1");
}

#[test]
fn a_return_target_must_be_on_the_cookie_domain_or_under_the_dashboard() {
    let dashboard = Url::parse("https://o6s.example/dashboard/").unwrap();
    let target = |r: &str| return_target(Some(r), &dashboard, Some("system.o6s.io")).to_string();
    let home = dashboard.to_string();
    assert_eq!(target("https://system.o6s.io/dashboard/fn"), "https://system.o6s.io/dashboard/fn");
    assert_eq!(target("https://auth.system.o6s.io/"), "https://auth.system.o6s.io/");
    assert_eq!(target("https://o6s.example/dashboard/fn"), "https://o6s.example/dashboard/fn");
    assert_eq!(target("https://o6s.example/other"), home, "same host, outside the dashboard");
    assert_eq!(target("http://system.o6s.io/"), home, "no downgrade to http");
    assert_eq!(target("https://evilsystem.o6s.io/"), home, "a suffix is not a subdomain");
    assert_eq!(target("https://system.o6s.io@evil.example/"), home);
    assert_eq!(target("https://user:pw@system.o6s.io/"), home, "no credentials");
    assert_eq!(target("https:\\\\evil.example\\system.o6s.io"), home);
    assert_eq!(target("/dashboard/fn"), home, "only absolute URLs");
    assert_eq!(target("data:text/html,hi"), home);
    assert_eq!(target(&format!("https://system.o6s.io/{}", "a".repeat(3000))), home, "too long for the cookie");
    assert_eq!(return_target(None, &dashboard, Some("system.o6s.io")), dashboard);
    assert_eq!(return_target(Some("https://system.o6s.io/"), &dashboard, None), dashboard, "no root domain set");
}

#[tokio::test]
async fn logout_clears_the_session_cookie() {
    let platform = start(None).await;
    let response = browser().get(format!("{}logout/", platform.edge.url())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookie(&response, COOKIE_NAME).expect("a cookie that clears the session");
    assert!(cookie.starts_with(&format!("{COOKIE_NAME}=;")), "{cookie}");
    assert!(cookie.contains("Max-Age=0") && cookie.contains("Domain=system.localhost"), "{cookie}");
    assert!(response.text().await.unwrap().contains("Signed out"));
}

#[tokio::test]
async fn signing_out_ends_the_session_everywhere_it_is_accepted() {
    let platform = start(None).await;
    let response = platform.sign_in(None, "octo", "").await;
    let cookie = set_cookie(&response, COOKIE_NAME).expect("a session cookie");
    let pair = cookie_pair(&cookie);
    let token = pair[COOKIE_NAME.len() + 1..].to_owned();
    let q = format!("{}q/", platform.edge.url());
    let asked = browser().get(&q).header(COOKIE, &pair).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);

    // Another part of the platform (the dashboard, function-logs, metrics) reads the same store.
    let dashboard = SessionGate::new(
        platform.verifier.clone(),
        std::sync::Arc::new(
            Revocations::open(&LogStoreConfig::folder(platform.store.path())).unwrap().fresh_for(Duration::ZERO),
        ),
    );
    assert!(dashboard.admit(&token, Utc::now()).await.is_ok());

    let out = browser().post(format!("{}logout/", platform.edge.url())).header(COOKIE, &pair).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    assert!(set_cookie(&out, COOKIE_NAME).unwrap().contains("Max-Age=0"));

    // The same token, copied out of the browser before the sign-out, is refused everywhere.
    let asked = browser().get(&q).header(COOKIE, &pair).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::UNAUTHORIZED);
    assert!(asked.text().await.unwrap().contains("signed out"));
    assert_eq!(dashboard.admit(&token, Utc::now()).await.unwrap_err(), shared::session::SessionError::Revoked);
    assert!(platform.verifier.verify(&token, Utc::now()).is_ok(), "the signature alone still verifies");

    // A new sign-in is a new session, unaffected.
    let again = platform.sign_in(None, "octo", "").await;
    let fresh = cookie_pair(&set_cookie(&again, COOKIE_NAME).unwrap());
    assert_ne!(fresh, pair);
    let asked = browser().get(&q).header(COOKIE, &fresh).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
}

#[tokio::test]
async fn github_unreachable_is_a_502_page_that_shows_no_secret() {
    let platform = start(None).await;
    let journey = platform.begin(None, "octo", "").await;
    let Platform { github, edge, .. } = platform;
    let address = github.url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    drop(github);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the double still answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("{}oauth2/authorized?{}", edge.url(), journey.callback.query().unwrap());
    let response = browser().get(url).header(COOKIE, &journey.state_cookie).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(set_cookie(&response, COOKIE_NAME).is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("could not be completed right now"), "{page}");
    assert!(!page.contains(&address), "no internal address on the page: {page}");
    assert!(!page.contains(CLIENT_SECRET) && !page.contains(&query(&journey.callback, "code").unwrap()), "{page}");
}
