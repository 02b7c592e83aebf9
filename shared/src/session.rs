//! A signed-in user's session: who they are on GitHub and which organisations they belong to, carried in the
//! cookie `openfaas_cloud_token` as an RS256 JWT. edge-auth alone holds the signing key (`jwt-private-key`); the
//! dashboard, function-logs and metrics hold only the public key (`jwt-public-key`), so none of them can mint a
//! session if it is compromised.
//!
//! The token carries no GitHub access token: a session proves identity to this platform, nothing more.

use std::fmt;

use axum::http::{header, HeaderMap};
use chrono::{DateTime, TimeZone as _, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Secret, SecretStore};

/// The cookie's name (the last OpenFaaS Cloud release's).
pub const COOKIE_NAME: &str = "openfaas_cloud_token";
/// The secret edge-auth signs sessions with.
pub const PRIVATE_KEY_SECRET: &str = "jwt-private-key";
/// The secret every other part verifies sessions with.
pub const PUBLIC_KEY_SECRET: &str = "jwt-public-key";
/// Who issues sessions; a token from another issuer is refused even when the key matches.
const ISSUER: &str = "openfaas-cloud/edge-auth";
/// The most a token may be: a larger cookie or header is refused before it is parsed.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A GitHub account: a user or an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub login: String,
    pub id: u64,
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// A random id (32 hex digits) signing out revokes ([`crate::revocation`]): the token itself stays valid until
    /// it expires, so the id is what the other parts look up.
    pub id: String,
    pub user: Account,
    /// The user's display name on GitHub, when they set one.
    pub name: Option<String>,
    /// The organisations whose functions the user may see.
    pub orgs: Vec<Account>,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl Session {
    /// A fresh random session id.
    pub fn new_id() -> String {
        use rand::RngCore as _;
        let mut bytes = [0_u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// Whether `id` has the shape [`Session::new_id`] gives (and so is safe in a store key).
    pub(crate) fn is_valid_id(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// The user's own account first, then their organisations.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        std::iter::once(&self.user).chain(self.orgs.iter())
    }

    /// Whether a function of `owner_login` (with the owner id its labels carry, when they carry one) belongs to
    /// this session. The id decides when there is one, because a login can change hands on GitHub.
    pub fn owns(&self, owner_login: &str, owner_id: Option<u64>) -> bool {
        match owner_id {
            Some(id) => self.accounts().any(|account| account.id == id),
            None => self.accounts().any(|account| account.login.eq_ignore_ascii_case(owner_login)),
        }
    }
}

/// Why a token is not a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("not signed in")]
    Missing,
    #[error("the session is not a well-formed token")]
    Malformed,
    #[error("the session's signature does not verify")]
    BadSignature,
    #[error("the session has expired")]
    Expired,
    #[error("the session was not issued by this platform")]
    WrongIssuer,
    #[error("the session has been signed out")]
    Revoked,
    #[error("whether the session was signed out cannot be checked now")]
    Unchecked,
}

/// The JWT's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    /// The session id; a token without one (issued before sign-out could revoke) is refused.
    #[serde(default)]
    sid: String,
    /// The user's login.
    sub: String,
    uid: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    orgs: Vec<Account>,
    iat: i64,
    exp: i64,
}

/// Signs sessions (edge-auth).
#[derive(Clone)]
pub struct SessionSigner {
    key: EncodingKey,
}

impl fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSigner(***)")
    }
}

impl SessionSigner {
    /// A PKCS#1 or PKCS#8 RSA private key (PEM).
    pub fn from_pem(pem: &Secret) -> Result<Self, String> {
        EncodingKey::from_rsa_pem(pem.expose().as_bytes())
            .map(|key| Self { key })
            .map_err(|e| format!("not an RSA private key in PEM: {e}"))
    }

    /// The secret `jwt-private-key`; missing or not a key fails the start, naming it.
    pub fn from_secrets(secrets: &SecretStore) -> Result<Self, ConfigError> {
        let pem = secrets.required(PRIVATE_KEY_SECRET)?;
        Self::from_pem(&pem).map_err(|reason| ConfigError::Invalid { name: PRIVATE_KEY_SECRET.into(), reason })
    }

    /// The session as a token.
    pub fn sign(&self, session: &Session) -> String {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sid: session.id.clone(),
            sub: session.user.login.clone(),
            uid: session.user.id,
            name: session.name.clone(),
            orgs: session.orgs.clone(),
            iat: session.issued.timestamp(),
            exp: session.expires.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).expect("an RSA key signs any claims")
    }
}

/// Verifies sessions (the dashboard, function-logs, metrics, and edge-auth's own `/q/`).
#[derive(Clone)]
pub struct SessionVerifier {
    key: DecodingKey,
}

impl fmt::Debug for SessionVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionVerifier")
    }
}

impl SessionVerifier {
    /// An RSA public key (PEM, SPKI or PKCS#1).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        DecodingKey::from_rsa_pem(pem.as_bytes())
            .map(|key| Self { key })
            .map_err(|e| format!("not an RSA public key in PEM: {e}"))
    }

    /// The secret `jwt-public-key`; missing or not a key fails the start, naming it.
    pub fn from_secrets(secrets: &SecretStore) -> Result<Self, ConfigError> {
        let pem = secrets.required(PUBLIC_KEY_SECRET)?;
        Self::from_pem(pem.expose()).map_err(|reason| ConfigError::Invalid { name: PUBLIC_KEY_SECRET.into(), reason })
    }

    /// The session `token` carries, if it verifies and has not expired at `now`. Only RS256 is accepted (no
    /// `none`, no HMAC keyed with the public key).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Session, SessionError> {
        if token.is_empty() {
            return Err(SessionError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SessionError::Malformed);
        }
        let mut validation = Validation::new(Algorithm::RS256);
        // Expiry is checked below against `now`, exactly (no leeway), so tests and callers control the clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                    SessionError::BadSignature
                }
                _ => SessionError::Malformed,
            }
        })?;
        let claims = data.claims;
        if claims.iss != ISSUER {
            return Err(SessionError::WrongIssuer);
        }
        if !Session::is_valid_id(&claims.sid) {
            return Err(SessionError::Malformed);
        }
        let issued = Utc.timestamp_opt(claims.iat, 0).single().ok_or(SessionError::Malformed)?;
        let expires = Utc.timestamp_opt(claims.exp, 0).single().ok_or(SessionError::Malformed)?;
        if now >= expires {
            return Err(SessionError::Expired);
        }
        Ok(Session {
            id: claims.sid,
            user: Account { login: claims.sub, id: claims.uid },
            name: claims.name,
            orgs: claims.orgs,
            issued,
            expires,
        })
    }
}

/// The token a request carries: `Authorization: Bearer <token>` (the dashboard calling function-logs and
/// metrics), else the `openfaas_cloud_token` cookie (a browser).
pub fn token_from_headers(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty());
    bearer.or_else(|| cookie(headers, COOKIE_NAME))
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// How the session cookie is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    /// `cookie_root_domain`: the cookie reaches this host and its subdomains (the dashboard's and edge-auth's),
    /// and not the users' function hosts; `None` keeps it to the host that set it.
    pub domain: Option<String>,
    /// `Secure`: set when the platform is served over HTTPS.
    pub secure: bool,
    /// How long the browser keeps it (the session's own expiry is in the token).
    pub max_age: std::time::Duration,
}

impl CookieSettings {
    fn attributes(&self) -> String {
        let mut attributes = String::from("; Path=/; HttpOnly; SameSite=Lax");
        if let Some(domain) = self.domain.as_deref().filter(|d| !d.is_empty()) {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        if self.secure {
            attributes.push_str("; Secure");
        }
        attributes
    }
}

/// The `Set-Cookie` value that stores `token`.
pub fn session_cookie(token: &str, settings: &CookieSettings) -> String {
    format!("{COOKIE_NAME}={token}; Max-Age={}{}", settings.max_age.as_secs(), settings.attributes())
}

/// The `Set-Cookie` value that removes the session (logout).
pub fn clear_session_cookie(settings: &CookieSettings) -> String {
    format!("{COOKIE_NAME}=; Max-Age=0{}", settings.attributes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_key::AppKey;
    use std::sync::OnceLock;

    fn keys() -> &'static (SessionSigner, SessionVerifier) {
        static KEYS: OnceLock<(SessionSigner, SessionVerifier)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let key = AppKey::generate();
            (
                SessionSigner::from_pem(&Secret::new(key.private_pem)).unwrap(),
                SessionVerifier::from_pem(&key.public_pem).unwrap(),
            )
        })
    }

    fn session(now: DateTime<Utc>) -> Session {
        Session {
            id: "0123456789abcdef0123456789abcdef".into(),
            user: Account { login: "alice".into(), id: 11 },
            name: Some("Alice".into()),
            orgs: vec![Account { login: "acme".into(), id: 99 }],
            issued: now,
            expires: now + chrono::Duration::hours(1),
        }
    }

    #[test]
    fn a_signed_session_verifies_until_it_expires() {
        let (signer, verifier) = keys();
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let token = signer.sign(&session(now));
        assert_eq!(verifier.verify(&token, now).unwrap(), session(now));
        assert_eq!(verifier.verify(&token, now + chrono::Duration::minutes(59)).unwrap().user.login, "alice");
        assert_eq!(verifier.verify(&token, now + chrono::Duration::hours(1)), Err(SessionError::Expired));
    }

    #[test]
    fn a_tampered_session_is_refused() {
        let (signer, verifier) = keys();
        let now = Utc::now();
        let token = signer.sign(&session(now));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Claim bob's id with alice's signature.
        let forged = serde_json::json!({"iss": ISSUER, "sub": "alice", "uid": 12, "orgs": [], "iat": now.timestamp(),
            "exp": now.timestamp() + 3600});
        parts[1] = base64_url(&serde_json::to_vec(&forged).unwrap());
        assert_eq!(verifier.verify(&parts.join("."), now), Err(SessionError::BadSignature));
        assert_eq!(verifier.verify("not-a-token", now), Err(SessionError::Malformed));
        assert_eq!(verifier.verify("", now), Err(SessionError::Missing));
    }

    #[test]
    fn a_token_without_a_session_id_cannot_be_signed_out_and_is_refused() {
        let (signer, verifier) = keys();
        let now = Utc::now();
        let claims = serde_json::json!({"iss": ISSUER, "sub": "alice", "uid": 11, "orgs": [], "iat": now.timestamp(),
            "exp": now.timestamp() + 3600});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &signer.key).unwrap();
        assert_eq!(verifier.verify(&token, now), Err(SessionError::Malformed));
        let mut odd = session(now);
        odd.id = "../../etc".into();
        assert_eq!(verifier.verify(&signer.sign(&odd), now), Err(SessionError::Malformed));
    }

    #[test]
    fn another_key_or_algorithm_is_refused() {
        let (_, verifier) = keys();
        let other = AppKey::generate();
        let now = Utc::now();
        let token = SessionSigner::from_pem(&Secret::new(other.private_pem)).unwrap().sign(&session(now));
        assert_eq!(verifier.verify(&token, now), Err(SessionError::BadSignature));
        let claims = serde_json::json!({"iss": ISSUER, "sub": "alice", "uid": 11, "iat": 0, "exp": i64::MAX / 2});
        let hs256 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"k")).unwrap();
        assert_eq!(verifier.verify(&hs256, now), Err(SessionError::BadSignature));
        let unsigned = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&serde_json::to_vec(&claims).unwrap())
        );
        assert!(verifier.verify(&unsigned, now).is_err());
    }

    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn ownership_is_decided_by_the_id_when_there_is_one() {
        let s = session(Utc::now());
        assert!(s.owns("alice", Some(11)));
        assert!(s.owns("ACME", None));
        assert!(s.owns("someone-renamed", Some(99)));
        assert!(!s.owns("alice", Some(12)), "a login that changed hands is not enough");
        assert!(!s.owns("bob", None));
    }

    #[test]
    fn the_token_comes_from_a_bearer_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(token_from_headers(&headers), None);
        headers.insert(header::COOKIE, "a=1; openfaas_cloud_token=abc.def.ghi; b=2".parse().unwrap());
        assert_eq!(token_from_headers(&headers), Some("abc.def.ghi"));
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(token_from_headers(&headers), Some("xyz"));
    }

    #[test]
    fn cookies_are_http_only_and_scoped() {
        let settings = CookieSettings {
            domain: Some("system.o6s.io".into()),
            secure: true,
            max_age: std::time::Duration::from_secs(60),
        };
        assert_eq!(
            session_cookie("t", &settings),
            "openfaas_cloud_token=t; Max-Age=60; Path=/; HttpOnly; SameSite=Lax; Domain=system.o6s.io; Secure"
        );
        let local = CookieSettings { domain: None, secure: false, max_age: std::time::Duration::ZERO };
        assert_eq!(clear_session_cookie(&local), "openfaas_cloud_token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax");
    }
}
