//! edge-auth's settings, read once at start (see `docs/configuration.md`).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use shared::config::{base_url, base_url_or, duration_or, env_string, required, ConfigError, Secret, SecretStore};
use shared::customers::CustomersSource;
use shared::revocation::{Revocations, SessionGate};
use shared::server::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
use shared::session::{CookieSettings, SessionSigner, SessionVerifier, PRIVATE_KEY_SECRET};

/// The secret holding the GitHub OAuth App's client secret (the last release's name).
pub const CLIENT_SECRET_SECRET: &str = "of-client-secret";

#[derive(Debug, Clone)]
pub struct Config {
    /// `client_id`: the GitHub OAuth App people sign in to.
    pub client_id: String,
    /// `of-client-secret`: proves to GitHub that the code is exchanged by the App it was issued to.
    pub client_secret: Secret,
    /// `oauth_provider_base_url` (default `https://github.com/`): where `login/oauth/…` is.
    pub oauth_base_url: Url,
    /// `github_api_url` (default `https://api.github.com/`): where `user` and `user/orgs` are read.
    pub github_api_url: Url,
    /// `auth_url`: edge-auth's own public base; GitHub sends people back to `{auth_url}oauth2/authorized`.
    pub auth_url: Url,
    /// `dashboard_url`: where a sign-in lands unless it asked for another page of the platform.
    pub dashboard_url: Url,
    /// `cookie_root_domain` (lower-case): the session reaches it and its subdomains; `None`: host-only.
    pub cookie_root_domain: Option<String>,
    /// `session_lifetime` (default 12h).
    pub session_lifetime: Duration,
    /// `jwt-private-key`: signs sessions.
    pub signer: SessionSigner,
    /// The same key's public half and the signed-out sessions (the log store's settings), for `/q/` and
    /// `/logout/`.
    pub sessions: SessionGate,
    /// `validate_customers` + `customers_url`: who may sign in; `None` lets every GitHub account in.
    pub customers: Option<CustomersSource>,
    /// `customers_cache_ttl` (default 60s): how long a fetched customers list is trusted.
    pub customers_ttl: Duration,
    pub server: ServerConfig,
}

impl shared::server::FunctionConfig for Config {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let secrets = SecretStore::from_env();
        let private_pem = secrets.required(PRIVATE_KEY_SECRET)?;
        let (signer, verifier) = session_keys(&private_pem)?;
        Ok(Self {
            client_id: required("client_id")?,
            client_secret: secrets.required(CLIENT_SECRET_SECRET)?,
            oauth_base_url: base_url_or("oauth_provider_base_url", "https://github.com/")?,
            github_api_url: base_url_or("github_api_url", "https://api.github.com/")?,
            auth_url: base_url("auth_url")?,
            dashboard_url: base_url("dashboard_url")?,
            cookie_root_domain: env_string("cookie_root_domain").map(|d| d.trim_matches('.').to_ascii_lowercase()),
            session_lifetime: duration_or("session_lifetime", Duration::from_secs(12 * 3600))?,
            signer,
            sessions: SessionGate::new(verifier, Arc::new(Revocations::from_env(&secrets)?)),
            customers: CustomersSource::from_env()?,
            customers_ttl: duration_or("customers_cache_ttl", Duration::from_secs(60))?,
            server: ServerConfig::from_env(DEFAULT_MAX_BODY_BYTES)?,
        })
    }

    /// How the session cookie is set: on `cookie_root_domain`, `Secure` when edge-auth is served over HTTPS.
    pub fn cookie_settings(&self) -> CookieSettings {
        CookieSettings {
            domain: self.cookie_root_domain.clone(),
            secure: self.auth_url.scheme() == "https",
            max_age: self.session_lifetime,
        }
    }

    /// Where GitHub sends people back to.
    pub fn redirect_uri(&self) -> Url {
        self.auth_url.join("oauth2/authorized").expect("a base URL joins a relative path")
    }
}

/// The signer of `jwt-private-key` and a verifier of the same key's public half (edge-auth holds no
/// `jwt-public-key`: the one key cannot disagree with itself).
pub fn session_keys(private_pem: &Secret) -> Result<(SessionSigner, SessionVerifier), ConfigError> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
    let invalid = |reason: String| ConfigError::Invalid { name: PRIVATE_KEY_SECRET.into(), reason };
    let signer = SessionSigner::from_pem(private_pem).map_err(invalid)?;
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(private_pem.expose())
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(private_pem.expose()))
        .map_err(|e| invalid(format!("not an RSA private key in PEM: {e}")))?;
    let public_pem =
        key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|e| invalid(format!("its public key: {e}")))?;
    let verifier = SessionVerifier::from_pem(&public_pem).map_err(invalid)?;
    Ok((signer, verifier))
}
