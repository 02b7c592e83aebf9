//! The double's OAuth web application flow, as GitHub documents it for OAuth Apps, and the two user routes a
//! signed-in app reads:
//! - `GET /login/oauth/authorize?client_id&redirect_uri&scope&state`: GitHub's sign-in and consent, stood in for by
//!   a form where the person types the login to act as and its organisations (comma-separated). An unknown client
//!   id (404) or a missing `redirect_uri` (400) is an error page, never a redirect.
//! - `POST /login/oauth/authorize`: the form's answer, a 302 to `redirect_uri?code=…&state=…`. A code is used once
//!   and expires after ten minutes.
//! - `POST /login/oauth/access_token` (client_id, client_secret, code, redirect_uri, as a form, JSON or query): the
//!   token as JSON with `Accept: application/json`, else form-encoded. Refusals are GitHub's: status 200 with
//!   `error` (`incorrect_client_credentials`, `bad_verification_code`, `redirect_uri_mismatch`).
//! - `GET /user`, `GET /user/orgs` with `Authorization: Bearer <token>` (or `token <token>`): GitHub's shapes, ids
//!   from the double's accounts ([`Accounts`](super::Accounts)); 401 `Bad credentials` for a token the double did not issue.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use rand::distributions::{Alphanumeric, DistString};
use serde::Deserialize;
use serde_json::json;

use super::{bearer, github_error, GitHubDouble};

/// How long an authorization code can be exchanged (GitHub: ten minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// The OAuth side of the double: registered apps, codes waiting to be exchanged, and the tokens issued.
pub(super) struct OAuthState {
    /// client id → client secret.
    apps: HashMap<String, String>,
    codes: HashMap<String, IssuedCode>,
    tokens: HashMap<String, Grant>,
    code_lifetime: Duration,
}

impl Default for OAuthState {
    fn default() -> Self {
        Self { apps: HashMap::new(), codes: HashMap::new(), tokens: HashMap::new(), code_lifetime: CODE_LIFETIME }
    }
}

struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    grant: Grant,
    expires_at: Instant,
}

/// Who signed in, and what they granted.
#[derive(Clone)]
struct Grant {
    login: String,
    name: Option<String>,
    orgs: Vec<String>,
    scope: String,
}

impl GitHubDouble {
    /// Registers an OAuth App: its client id and secret.
    pub fn add_oauth_app(&self, client_id: &str, client_secret: &str) {
        self.lock().oauth.apps.insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// How long authorization codes live (GitHub: ten minutes), to test an expired one.
    pub fn set_oauth_code_lifetime(&self, lifetime: Duration) {
        self.lock().oauth.code_lifetime = lifetime;
    }

    /// How many user tokens were issued through the web flow.
    pub fn oauth_tokens_issued(&self) -> usize {
        self.lock().oauth.tokens.len()
    }
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1>\n\
         {body}\n</body></html>\n",
        title = escape(title)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, "Sign-in error", &format!("<p>{}</p>", escape(message)))
}

#[derive(Deserialize, Default)]
pub(super) struct AuthorizeQuery {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: String,
    /// GitHub's hint of the account to sign in with; pre-fills the form.
    #[serde(default)]
    login: String,
}

/// Why an authorization request gets an error page instead of a redirect: the page's status and message.
fn check_authorize_request(
    double: &GitHubDouble,
    client_id: &str,
    redirect_uri: &str,
) -> Result<(), (StatusCode, &'static str)> {
    if !double.lock().oauth.apps.contains_key(client_id) {
        return Err((StatusCode::NOT_FOUND, "No OAuth App is registered with this client id."));
    }
    let valid = reqwest::Url::parse(redirect_uri).is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
    if !valid {
        return Err((
            StatusCode::BAD_REQUEST,
            "The redirect_uri is missing or is not an http(s) URL: the double has no registered callback URL to use.",
        ));
    }
    Ok(())
}

/// `GET /login/oauth/authorize`: the sign-in form.
pub(super) async fn sign_in_page(State(double): State<GitHubDouble>, Query(query): Query<AuthorizeQuery>) -> Response {
    if let Err((status, message)) = check_authorize_request(&double, &query.client_id, &query.redirect_uri) {
        return error_page(status, message);
    }
    let hidden =
        |name: &str, value: &str| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n", escape(value));
    let form = format!(
        "<p>Sign in to authorize <strong>{client}</strong> (scope: {scope}). This is the local GitHub double: type \
         the login to act as and its organisations.</p>\n\
         <form method=\"post\" action=\"authorize\">\n{}{}{}{}\
         <label>Login <input name=\"login\" value=\"{login}\" required autofocus></label>\n\
         <label>Name <input name=\"name\"></label>\n\
         <label>Organisations (comma-separated) <input name=\"orgs\"></label>\n\
         <button type=\"submit\">Authorize</button>\n</form>",
        hidden("client_id", &query.client_id),
        hidden("redirect_uri", &query.redirect_uri),
        hidden("scope", &query.scope),
        hidden("state", &query.state),
        client = escape(&query.client_id),
        scope = escape(if query.scope.is_empty() { "(none)" } else { &query.scope }),
        login = escape(&query.login),
    );
    page(StatusCode::OK, "Sign in to GitHub (double)", &form)
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    name: String,
    /// Comma-separated organisation logins.
    #[serde(default)]
    orgs: String,
}

/// `POST /login/oauth/authorize`: the person signed in; back to the app with a code.
pub(super) async fn authorize(State(double): State<GitHubDouble>, Form(form): Form<SignIn>) -> Response {
    if let Err((status, message)) = check_authorize_request(&double, &form.client_id, &form.redirect_uri) {
        return error_page(status, message);
    }
    let login = form.login.trim();
    if !shared::naming::is_github_login(login) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, "The login is not a GitHub login.");
    }
    let mut orgs: Vec<String> = Vec::new();
    for org in form.orgs.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if !shared::naming::is_github_login(org) {
            return error_page(StatusCode::UNPROCESSABLE_ENTITY, &format!("`{org}` is not an organisation login."));
        }
        if !orgs.iter().any(|o| o.eq_ignore_ascii_case(org)) {
            orgs.push(org.to_owned());
        }
    }
    let code = Alphanumeric.sample_string(&mut rand::thread_rng(), 20);
    let name = Some(form.name.trim().to_owned()).filter(|n| !n.is_empty());
    let grant = Grant { login: login.to_owned(), name, orgs, scope: form.scope.clone() };
    {
        let mut state = double.lock();
        let expires_at = Instant::now() + state.oauth.code_lifetime;
        state.oauth.codes.retain(|_, issued| issued.expires_at > Instant::now());
        let issued = IssuedCode {
            client_id: form.client_id.clone(),
            redirect_uri: form.redirect_uri.clone(),
            grant,
            expires_at,
        };
        state.oauth.codes.insert(code.clone(), issued);
    }
    let mut target = reqwest::Url::parse(&form.redirect_uri).expect("checked above");
    target.query_pairs_mut().append_pair("code", &code);
    if !form.state.is_empty() {
        target.query_pairs_mut().append_pair("state", &form.state);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct TokenRequest {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: Option<String>,
}

/// A refusal of the token exchange: GitHub's error code and description.
struct TokenRefusal(&'static str, &'static str);

const INCORRECT_CLIENT_CREDENTIALS: TokenRefusal =
    TokenRefusal("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.");
const BAD_VERIFICATION_CODE: TokenRefusal =
    TokenRefusal("bad_verification_code", "The code passed is incorrect or expired.");
const REDIRECT_URI_MISMATCH: TokenRefusal = TokenRefusal(
    "redirect_uri_mismatch",
    "The redirect_uri MUST match the registered callback URL for this application.",
);

/// The parameters, from the body (JSON or a form) or else the query, as GitHub takes them.
fn token_request(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> TokenRequest {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let from_body = if content_type.starts_with("application/json") {
        serde_json::from_slice::<TokenRequest>(body).ok()
    } else if body.is_empty() {
        None
    } else {
        serde_urlencoded::from_bytes::<TokenRequest>(body).ok()
    };
    from_body.or_else(|| query.and_then(|q| serde_urlencoded::from_str(q).ok())).unwrap_or_default()
}

/// Checks a token request and, when it is good, uses up its code.
fn exchange(double: &GitHubDouble, request: &TokenRequest) -> Result<(String, String), TokenRefusal> {
    let mut state = double.lock();
    let oauth = &mut state.oauth;
    if oauth.apps.get(&request.client_id).is_none_or(|secret| secret != &request.client_secret) {
        return Err(INCORRECT_CLIENT_CREDENTIALS);
    }
    let issued = oauth.codes.get(&request.code).ok_or(BAD_VERIFICATION_CODE)?;
    if issued.client_id != request.client_id || issued.expires_at <= Instant::now() {
        return Err(BAD_VERIFICATION_CODE);
    }
    if request.redirect_uri.as_deref().is_some_and(|uri| uri != issued.redirect_uri) {
        return Err(REDIRECT_URI_MISMATCH);
    }
    let issued = oauth.codes.remove(&request.code).expect("present");
    let token = format!("gho_{}", Alphanumeric.sample_string(&mut rand::thread_rng(), 36));
    let scope = issued.grant.scope.clone();
    oauth.tokens.insert(token.clone(), issued.grant);
    Ok((token, scope))
}

/// `POST /login/oauth/access_token`.
pub(super) async fn access_token(
    State(double): State<GitHubDouble>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let request = token_request(&headers, uri.query(), &body);
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    let fields: Vec<(&str, String)> = match exchange(&double, &request) {
        // GitHub lists scopes comma-separated in the answer.
        Ok((token, scope)) => vec![
            ("access_token", token),
            ("token_type", "bearer".to_owned()),
            ("scope", scope.split([' ', ',']).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(",")),
        ],
        Err(TokenRefusal(error, description)) => vec![
            ("error", error.to_owned()),
            ("error_description", description.to_owned()),
            (
                "error_uri",
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
                    .to_owned(),
            ),
        ],
    };
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), serde_json::Value::String(v))).collect();
        Json(map).into_response()
    } else {
        let body = serde_urlencoded::to_string(&fields).unwrap_or_default();
        ([(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8")], body).into_response()
    }
}

/// The grant a user token stands for, or GitHub's message for its 401.
fn grant_of(double: &GitHubDouble, headers: &HeaderMap) -> Result<Grant, &'static str> {
    let token = bearer(headers).ok_or("Requires authentication")?;
    double.lock().oauth.tokens.get(token).cloned().ok_or("Bad credentials")
}

/// `GET /user`: the signed-in user, in GitHub's shape.
pub(super) async fn user(State(double): State<GitHubDouble>, headers: HeaderMap) -> Response {
    let grant = match grant_of(&double, &headers) {
        Ok(grant) => grant,
        Err(message) => return github_error(StatusCode::UNAUTHORIZED, message),
    };
    let login = &grant.login;
    let id = double.account_id_of(login);
    let mut response = Json(json!({
        "login": login,
        "id": id,
        "node_id": format!("U_{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "organizations_url": format!("https://api.github.com/users/{login}/orgs"),
        "repos_url": format!("https://api.github.com/users/{login}/repos"),
        "type": "User",
        "site_admin": false,
        "name": grant.name,
        "company": null,
        "blog": "",
        "location": null,
        "email": null,
        "bio": null,
        "public_repos": 0,
        "followers": 0,
        "following": 0,
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
    }))
    .into_response();
    if let Ok(scopes) = grant.scope.replace(' ', ",").parse() {
        response.headers_mut().insert("x-oauth-scopes", scopes);
    }
    response
}

/// `GET /user/orgs`: the organisations the user belongs to, in GitHub's `organization-simple` shape.
pub(super) async fn user_orgs(State(double): State<GitHubDouble>, headers: HeaderMap) -> Response {
    let grant = match grant_of(&double, &headers) {
        Ok(grant) => grant,
        Err(message) => return github_error(StatusCode::UNAUTHORIZED, message),
    };
    let orgs: Vec<_> = grant
        .orgs
        .iter()
        .map(|login| {
            let id = double.account_id_of(login);
            let api = format!("https://api.github.com/orgs/{login}");
            json!({
                "login": login,
                "id": id,
                "node_id": format!("O_{id}"),
                "url": api,
                "repos_url": format!("{api}/repos"),
                "events_url": format!("{api}/events"),
                "hooks_url": format!("{api}/hooks"),
                "issues_url": format!("{api}/issues"),
                "members_url": format!("{api}/members{{/member}}"),
                "public_members_url": format!("{api}/public_members{{/member}}"),
                "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
                "description": null,
            })
        })
        .collect();
    Json(orgs).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_break_out_of_an_attribute() {
        assert_eq!(escape("\"><script>'&"), "&quot;&gt;&lt;script&gt;&#39;&amp;");
    }

    #[test]
    fn reads_a_token_request_from_json_a_form_or_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let json = token_request(&headers, None, br#"{"client_id":"a","client_secret":"s","code":"c"}"#);
        assert_eq!((json.client_id.as_str(), json.code.as_str()), ("a", "c"));
        headers.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        let form = token_request(&headers, None, b"client_id=a&client_secret=s&code=c&redirect_uri=http%3A%2F%2Fx%2F");
        assert_eq!(form.redirect_uri.as_deref(), Some("http://x/"));
        let query = token_request(&HeaderMap::new(), Some("client_id=q&code=z"), b"");
        assert_eq!((query.client_id.as_str(), query.code.as_str()), ("q", "z"));
    }
}
