//! The one client for garbage-collect, so git-tar (functions gone from stack.yml) and git-event (uninstalled
//! repositories) send the same signed, typed request that garbage-collect's handler reads.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;

use crate::event::{GarbageCollectRequest, GarbageCollected};
use crate::functions::GARBAGE_COLLECT;
use crate::gateway::{GatewayClient, GatewayError};

/// How long one collection may take: a list and a few deletes.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks garbage-collect, through the gateway, to remove a repository's functions.
#[derive(Debug, Clone)]
pub struct GarbageCollectClient {
    gateway: GatewayClient,
}

impl GarbageCollectClient {
    pub fn new(gateway: GatewayClient) -> Self {
        Self { gateway }
    }

    /// Calls garbage-collect synchronously; a non-2xx answer is a [`GatewayError::Status`]. Any 2xx is success, as
    /// before this client: the answer's [`GarbageCollected`] is returned when it can be read, for the log.
    pub async fn collect(&self, request: &GarbageCollectRequest) -> Result<Option<GarbageCollected>, GatewayError> {
        let body = Bytes::from(serde_json::to_vec(request).expect("garbage-collect requests serialise"));
        let response = self.gateway.invoke_ok(GARBAGE_COLLECT, body, HeaderMap::new(), COLLECT_TIMEOUT).await?;
        Ok(response.json().await.ok())
    }
}
