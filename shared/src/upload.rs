//! Receiving a large signed body (a build tar) into a file while its HMAC is computed, so memory stays flat and the
//! bytes are only read once they are known to come from one of our functions.

use std::path::Path;

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use crate::signature::SignatureError;

/// Why a body could not be received.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("signature refused: {0}")]
    Signature(#[from] SignatureError),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("the body could not be stored: {0}")]
    Io(#[from] std::io::Error),
}

/// Streams `body` into `path`, then checks `signature` (`sha256=<hex>`) over the bytes in constant time.
/// Returns the number of bytes received.
pub async fn receive_signed(
    body: axum::body::Body,
    path: &Path,
    secret: &[u8],
    signature: &str,
    max_bytes: u64,
) -> Result<u64, UploadError> {
    let (algorithm, hex_digest) = signature.trim().split_once('=').ok_or(SignatureError::Malformed)?;
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(SignatureError::Malformed.into());
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut file = tokio::fs::File::create(path).await?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if crate::error::error_chain(&e).contains("length limit exceeded") {
                UploadError::TooLarge(max_bytes)
            } else {
                UploadError::Body(e.to_string())
            }
        })?;
        received += chunk.len() as u64;
        if received > max_bytes {
            return Err(UploadError::TooLarge(max_bytes));
        }
        mac.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)?;
    Ok(received)
}
