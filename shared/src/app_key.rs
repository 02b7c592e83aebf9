//! The GitHub App's key pair: generated for the local stack and the tests, which play GitHub themselves.
//! Production reads the key GitHub issued (secret `private-key`); nothing here runs there.

/// An App key pair, as PEM text.
#[derive(Clone)]
pub struct AppKey {
    /// PKCS#1 `RSA PRIVATE KEY`, as GitHub hands it out.
    pub private_pem: String,
    /// SPKI `PUBLIC KEY`.
    pub public_pem: String,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(***)")
    }
}

impl AppKey {
    /// Generates a 2048-bit App key pair, as GitHub does for an App.
    pub fn generate() -> AppKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key generation");
        let private_pem = private.to_pkcs1_pem(LineEnding::LF).expect("PKCS#1 encoding").to_string();
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).expect("SPKI encoding");
        AppKey { private_pem, public_pem }
    }
}

/// The same key pair's private key as PKCS#8 (`BEGIN PRIVATE KEY`), the other format GitHub keys come in.
pub fn to_pkcs8(private_pem: &str) -> String {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(private_pem).expect("a PKCS#1 key");
    key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding").to_string()
}
