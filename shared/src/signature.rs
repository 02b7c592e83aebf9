//! HMAC signatures: GitHub's webhook signatures, and `X-Cloud-Signature` on every call between our functions.
//!
//! Signatures are checked over the exact bytes received, before anything parses them, and compared in constant
//! time (`Mac::verify_slice`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::config::{ConfigError, Secret, SecretStore};

/// The signature on calls between our functions: `sha256=<hex>` of the body with `payload-secret`.
pub const CLOUD_SIGNATURE: &str = "X-Cloud-Signature";
/// GitHub's preferred webhook signature header.
pub(crate) const HUB_SIGNATURE_256: &str = "X-Hub-Signature-256";
/// GitHub's legacy SHA-1 webhook signature header.
pub(crate) const HUB_SIGNATURE: &str = "X-Hub-Signature";

/// Why a signature was refused. None of the variants carry the secret or the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed")]
    Missing,
    #[error("the signature header is malformed (expected `sha256=<hex>`)")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// `sha256=<hex>` of `body` keyed with `secret`: the value of `X-Cloud-Signature` or `X-Hub-Signature-256`.
pub fn sign_sha256(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Signs a body that arrives in pieces (a build tar read from disk) without holding it in memory.
pub struct StreamSigner(Hmac<Sha256>);

impl StreamSigner {
    pub fn new(secret: &[u8]) -> Self {
        Self(Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// `sha256=<hex>`, as [`sign_sha256`] gives for the same bytes.
    pub fn finish(self) -> String {
        format!("sha256={}", hex::encode(self.0.finalize().into_bytes()))
    }
}

/// `sha1=<hex>`: the legacy `X-Hub-Signature` value (used by tests and the local GitHub double).
pub fn sign_sha1(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks one header value of the form `sha256=<hex>` or `sha1=<hex>` against `body`.
pub fn verify_signature(header_value: &str, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
    let (algorithm, hex_digest) = header_value.trim().split_once('=').ok_or(SignatureError::Malformed)?;
    let digest = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let verified = match algorithm.to_ascii_lowercase().as_str() {
        "sha256" => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
            mac.update(body);
            mac.verify_slice(&digest)
        }
        "sha1" => {
            let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts keys of any length");
            mac.update(body);
            mac.verify_slice(&digest)
        }
        _ => return Err(SignatureError::Malformed),
    };
    verified.map_err(|_| SignatureError::Mismatch)
}

/// Verifies a GitHub delivery: `X-Hub-Signature-256` when present, else the legacy `X-Hub-Signature`.
/// Header names are matched case-insensitively, as real deliveries vary their case.
pub fn verify_github(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
    let value = header_str(headers, HUB_SIGNATURE_256)
        .or_else(|| header_str(headers, HUB_SIGNATURE))
        .ok_or(SignatureError::Missing)?;
    verify_signature(value, body, secret)
}

/// How a GitHub webhook's signature is checked (`validate_hmac` with `github-webhook-secret`): one setting, so a
/// check that is on always has its secret, decided once when the configuration is read.
#[derive(Debug, Clone)]
pub enum WebhookCheck {
    /// Verify every delivery with the webhook secret.
    Verify(Secret),
    /// `validate_hmac=false`: deliveries are not checked (local trials only).
    Off,
}

impl WebhookCheck {
    /// `validate_hmac` (default on) with `github-webhook-secret` (a secret file, or the `github_webhook_secret`
    /// variable): a check that is on without its secret fails the start, naming the secret.
    pub fn from_env(secrets: &SecretStore) -> Result<Self, ConfigError> {
        if crate::config::bool_or("validate_hmac", true)? {
            Ok(Self::Verify(secrets.required_or_env("github-webhook-secret", "github_webhook_secret")?))
        } else {
            Ok(Self::Off)
        }
    }

    /// Checks a delivery as configured (see [`verify_github`]).
    pub fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        match self {
            Self::Verify(secret) => verify_github(headers, body, secret.expose().as_bytes()),
            Self::Off => Ok(()),
        }
    }
}

/// Verifies `X-Cloud-Signature` on a call from another of our functions; only SHA-256 is accepted.
pub fn verify_cloud(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
    let value = header_str(headers, CLOUD_SIGNATURE).ok_or(SignatureError::Missing)?;
    if !value.trim_start().to_ascii_lowercase().starts_with("sha256=") {
        return Err(SignatureError::Malformed);
    }
    verify_signature(value, body, secret)
}

/// A JSON body of a call between functions whose `X-Cloud-Signature` was verified over the exact bytes before they
/// were parsed. The one way a receiving handler reads a signed call: refusals are the crate's own error (a 401 for
/// the signature, a 400 naming what the body should have been), through [`SignedCalls`].
#[derive(Debug, Clone)]
pub struct SignedJson<T>(pub T);

/// A body a signed call carries, and what it is called in the 400 when the body is not one.
pub trait SignedBody: serde::de::DeserializeOwned {
    /// With its article: "a push event", "an audit event".
    const WHAT: &'static str;
}

/// What a function's state gives [`SignedJson`]: the key calls are signed with, and the crate's one error type its
/// refusals become (so the answer is the crate's usual error body).
pub trait SignedCalls {
    type Error: From<SignedBodyError> + IntoResponse;

    /// `payload-secret`.
    fn payload_secret(&self) -> &Secret;
}

impl<T: SignedCalls + ?Sized> SignedCalls for std::sync::Arc<T> {
    type Error = T::Error;

    fn payload_secret(&self) -> &Secret {
        (**self).payload_secret()
    }
}

/// Why a signed call's body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedBodyError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Signed, but not the JSON the handler takes: `the body is not <what>: <why>`.
    #[error("{0}")]
    NotTheBody(String),
}

impl<T, S> FromRequest<S> for SignedJson<T>
where
    T: SignedBody,
    S: SignedCalls + Send + Sync,
{
    /// A body that cannot be read (over the size limit) keeps axum's own answer; the rest are the crate's errors.
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        let refuse = |error: SignedBodyError| S::Error::from(error).into_response();
        verify_cloud(&headers, &body, state.payload_secret().expose().as_bytes())
            .map_err(|e| refuse(SignedBodyError::Signature(e)))?;
        let value = serde_json::from_slice(&body)
            .map_err(|e| refuse(SignedBodyError::NotTheBody(format!("the body is not {}: {e}", T::WHAT))))?;
        Ok(Self(value))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_PAYLOAD: &str = "Hello, World!";
    const GITHUB_EXPECTED: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn matches_githubs_published_test_vector() {
        assert_eq!(sign_sha256(GITHUB_SECRET.as_bytes(), GITHUB_PAYLOAD.as_bytes()), GITHUB_EXPECTED);
        verify_signature(GITHUB_EXPECTED, GITHUB_PAYLOAD.as_bytes(), GITHUB_SECRET.as_bytes()).unwrap();
    }

    #[test]
    fn verifies_githubs_vector_through_headers_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert("x-hub-signature-256", HeaderValue::from_static(GITHUB_EXPECTED));
        verify_github(&headers, GITHUB_PAYLOAD.as_bytes(), GITHUB_SECRET.as_bytes()).unwrap();
    }

    #[test]
    fn accepts_the_legacy_sha1_header() {
        let sig = sign_sha1(b"key", b"body");
        let mut headers = HeaderMap::new();
        headers.insert(HUB_SIGNATURE, HeaderValue::from_str(&sig).unwrap());
        verify_github(&headers, b"body", b"key").unwrap();
        assert_eq!(verify_github(&headers, b"other", b"key"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn prefers_sha256_when_both_are_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(HUB_SIGNATURE_256, HeaderValue::from_str(&sign_sha256(b"key", b"body")).unwrap());
        headers.insert(HUB_SIGNATURE, HeaderValue::from_static("sha1=0000"));
        verify_github(&headers, b"body", b"key").unwrap();
    }

    #[test]
    fn refuses_missing_malformed_and_wrong_signatures() {
        assert_eq!(verify_github(&HeaderMap::new(), b"body", b"key"), Err(SignatureError::Missing));
        assert_eq!(verify_signature("sha256=zz", b"body", b"key"), Err(SignatureError::Malformed));
        assert_eq!(verify_signature("md5=00", b"body", b"key"), Err(SignatureError::Malformed));
        assert_eq!(verify_signature("nothing", b"body", b"key"), Err(SignatureError::Malformed));
        let wrong_key = sign_sha256(b"other", b"body");
        assert_eq!(verify_signature(&wrong_key, b"body", b"key"), Err(SignatureError::Mismatch));
        let truncated = &sign_sha256(b"key", b"body")[..21];
        assert_eq!(verify_signature(truncated, b"body", b"key"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn cloud_signatures_round_trip_and_refuse_sha1() {
        let mut headers = HeaderMap::new();
        headers.insert(CLOUD_SIGNATURE, HeaderValue::from_str(&sign_sha256(b"payload", b"{}")).unwrap());
        verify_cloud(&headers, b"{}", b"payload").unwrap();
        assert_eq!(verify_cloud(&headers, b"{ }", b"payload"), Err(SignatureError::Mismatch));
        headers.insert(CLOUD_SIGNATURE, HeaderValue::from_str(&sign_sha1(b"payload", b"{}")).unwrap());
        assert_eq!(verify_cloud(&headers, b"{}", b"payload"), Err(SignatureError::Malformed));
        assert_eq!(verify_cloud(&HeaderMap::new(), b"{}", b"payload"), Err(SignatureError::Missing));
    }

    /// A crate's error as the extractor hands refusals to it: the status and the message, as every function answers.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Refused(SignedBodyError);

    impl From<SignedBodyError> for Refused {
        fn from(error: SignedBodyError) -> Self {
            Self(error)
        }
    }

    impl IntoResponse for Refused {
        fn into_response(self) -> Response {
            let status = match self.0 {
                SignedBodyError::Signature(_) => axum::http::StatusCode::UNAUTHORIZED,
                SignedBodyError::NotTheBody(_) => axum::http::StatusCode::BAD_REQUEST,
            };
            crate::error::ErrorResponse::new(status, &self).into_response()
        }
    }

    struct Keys(Secret);

    impl SignedCalls for Keys {
        type Error = Refused;

        fn payload_secret(&self) -> &Secret {
            &self.0
        }
    }

    #[derive(serde::Deserialize)]
    struct Greeting {
        to: String,
    }

    impl SignedBody for Greeting {
        const WHAT: &'static str = "a greeting";
    }

    #[tokio::test]
    async fn signed_json_verifies_then_parses_and_hands_refusals_to_the_crate_s_error() {
        use axum::routing::post;
        use tower::ServiceExt as _;

        let app = axum::Router::new()
            .route("/", post(|SignedJson(greeting): SignedJson<Greeting>| async move { greeting.to }))
            .layer(axum::extract::DefaultBodyLimit::max(64))
            .with_state(std::sync::Arc::new(Keys(Secret::new("payload"))));
        let send = |body: &'static [u8], signature: Option<String>| {
            let app = app.clone();
            async move {
                let mut request = Request::post("/");
                if let Some(signature) = signature {
                    request = request.header(CLOUD_SIGNATURE, signature);
                }
                let response = app.oneshot(request.body(axum::body::Body::from(body)).unwrap()).await.unwrap();
                let status = response.status().as_u16();
                let bytes = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
                (status, String::from_utf8_lossy(&bytes).into_owned())
            }
        };
        let body = br#"{"to": "octo"}"#;
        assert_eq!(send(body, Some(sign_sha256(b"payload", body))).await, (200, "octo".to_owned()));
        let (status, answer) = send(body, None).await;
        assert_eq!((status, answer.as_str()), (401, r#"{"error":"the request is not signed"}"#));
        let (status, answer) = send(body, Some(sign_sha256(b"other", body))).await;
        assert_eq!((status, answer.as_str()), (401, r#"{"error":"the signature does not match the body"}"#));
        let not_json = b"{not json";
        let (status, answer) = send(not_json, Some(sign_sha256(b"payload", not_json))).await;
        assert_eq!(status, 400);
        assert!(answer.contains("the body is not a greeting: "), "{answer}");
        let large = &[b' '; 100];
        assert_eq!(send(large, Some(sign_sha256(b"payload", large))).await.0, 413, "axum's own answer");
    }
}
