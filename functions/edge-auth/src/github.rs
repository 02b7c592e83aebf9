//! GitHub's side of the sign-in: the code exchanged for a user token, then who the user is and their organisations.
//! The token is used for these two reads and dropped; it is never stored, logged or put in the session.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::Url;
use serde::Deserialize;
use shared::config::Secret;
use shared::session::Account;

use crate::error::AuthError;

/// The scope asked for: the user's organisation memberships, private ones included, and nothing else.
pub const SCOPE: &str = "read:org";
const AGENT: &str = "openfaas-cloud-edge-auth";

/// The answer of `POST login/oauth/access_token` with `Accept: application/json`: a token, or GitHub's refusal
/// (status 200 with `error`).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET user`.
#[derive(Deserialize)]
struct User {
    login: String,
    id: u64,
    #[serde(default)]
    name: Option<String>,
}

/// One entry of `GET user/orgs`.
#[derive(Deserialize)]
struct Org {
    login: String,
    id: u64,
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: Account,
    pub name: Option<String>,
    pub orgs: Vec<Account>,
}

pub struct GitHubClient {
    http: reqwest::Client,
    oauth_base_url: Url,
    api_url: Url,
    client_id: String,
    client_secret: Secret,
}

#[allow(clippy::needless_pass_by_value)] // the shape `map_err` hands over
fn unreachable(error: reqwest::Error) -> AuthError {
    // Without the URL: it is GitHub's, and the message stays short.
    AuthError::GitHub(error.without_url().to_string())
}

impl GitHubClient {
    pub fn new(oauth_base_url: Url, api_url: Url, client_id: String, client_secret: Secret) -> Self {
        let http = shared::resolver::client_builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with rustls");
        Self { http, oauth_base_url, api_url, client_id, client_secret }
    }

    /// The URL that asks GitHub to sign the person in and come back to `redirect_uri` with `state`.
    pub fn authorize_url(&self, redirect_uri: &Url, state: &str) -> Url {
        let mut url = self.oauth_base_url.join("login/oauth/authorize").expect("a base URL joins a relative path");
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("scope", SCOPE)
            .append_pair("state", state);
        url
    }

    /// Exchanges the code, then reads the user and their organisations.
    pub async fn identify(&self, code: &str, redirect_uri: &Url) -> Result<Identity, AuthError> {
        let token = self.exchange(code, redirect_uri).await?;
        let user: User = self.get("user", &token).await?;
        let orgs: Vec<Org> = self.get("user/orgs?per_page=100", &token).await?;
        Ok(Identity {
            user: Account { login: user.login, id: user.id },
            name: user.name.filter(|n| !n.trim().is_empty()),
            orgs: orgs.into_iter().map(|o| Account { login: o.login, id: o.id }).collect(),
        })
    }

    async fn exchange(&self, code: &str, redirect_uri: &Url) -> Result<Secret, AuthError> {
        let url = self.oauth_base_url.join("login/oauth/access_token").expect("a base URL joins a relative path");
        let response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, AGENT)
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose()),
                ("code", code),
                ("redirect_uri", redirect_uri.as_str()),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(AuthError::GitHub(format!("the token exchange answered {status}")));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|_| AuthError::GitHub("the token exchange answered something other than a token".into()))?;
        match (answer.access_token, answer.error) {
            (Some(token), None) if !token.is_empty() => Ok(Secret::new(token)),
            (_, Some(error)) => Err(AuthError::Rejected(printable(&error))),
            _ => Err(AuthError::GitHub("the token exchange answered neither a token nor an error".into())),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, token: &Secret) -> Result<T, AuthError> {
        let url = self.api_url.join(path).expect("a base URL joins a relative path");
        let response = self
            .http
            .get(url)
            .header(ACCEPT, "application/vnd.github+json")
            .header(USER_AGENT, AGENT)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(AuthError::GitHub(format!("GET {path} answered {status}")));
        }
        response.json().await.map_err(|_| AuthError::GitHub(format!("GET {path} answered an unexpected body")))
    }
}

/// GitHub's error code, kept to what such a code looks like (it is shown on a page).
fn printable(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect()
}
