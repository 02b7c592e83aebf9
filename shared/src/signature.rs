//! HMAC signatures: GitHub's webhook signatures, and `X-Cloud-Signature` on every call between our functions.
//!
//! Signatures are checked over the exact bytes received, before anything parses them, and compared in constant
//! time (`Mac::verify_slice`).

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::config::Secret;

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
}
