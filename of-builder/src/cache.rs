//! Builds skipped because the registry already holds their image: every image of-builder pushes is also tagged
//! with its build identity ([`BuildIdentity::tag`]) in its own repository, and the next build of the same identity
//! finds that tag and reuses the image. The registry is the cache, so it survives restarts; a registry that cannot
//! be asked only costs the build it would have saved.
//!
//! Only of-builder writes the registry, and a cache hit is trusted only when the image carries the seal of-builder
//! put on it at build time ([`SEAL_LABEL`]: an HMAC over its repository and identity with a key no tenant holds), so
//! a tag written by anyone else, or an image copied from another repository, is never deployed from the cache.

use shared::config::Secret;
use shared::registry::{ImageRef, RegistryClient};
use shared::signature::{sign_sha256, verify_signature};

use crate::identity::BuildIdentity;

/// The image label holding the seal.
pub const SEAL_LABEL: &str = "com.openfaas.cloud.build-seal";

/// The registry as a build cache, with the seal's key.
#[derive(Debug, Clone)]
pub struct BuildCache {
    pub registry: RegistryClient,
    /// The seal's key: the payload secret, which only the platform's own parts hold.
    pub key: Secret,
}

/// What a cache hit found: the digest now tagged with the build's own tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reused {
    pub digest: String,
}

impl BuildCache {
    /// The seal of an image built into `image`'s repository from `identity`.
    pub fn seal(&self, image: &str, identity: &BuildIdentity) -> String {
        let (repository, _) = shared::naming::split_image_tag(image);
        sign_sha256(self.key.expose().as_bytes(), format!("{repository}\n{}", identity.0).as_bytes())
    }

    /// The image built before from `identity` in `image`'s repository, once it is also tagged with `image`'s own
    /// tag. `None` when there is none, when its seal does not hold, or when the registry could not be used.
    pub async fn find(&self, image: &str, identity: &BuildIdentity) -> Option<Reused> {
        let image_ref = parse(image)?;
        let tag = image_ref.tag.clone()?;
        let digest = match self.registry.digest_of(&image_ref, &identity.tag()).await {
            Ok(found) => found?,
            Err(error) => {
                tracing::warn!(%image, %error, "the registry could not be asked for an earlier build; building");
                return None;
            }
        };
        let config = match self.registry.image_config(&image_ref, &digest).await {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(%image, %digest, %error, "an earlier build's config could not be read; building");
                return None;
            }
        };
        let seal = config["config"]["Labels"][SEAL_LABEL].as_str().unwrap_or_default();
        let body = format!("{}\n{}", shared::naming::split_image_tag(image).0, identity.0);
        if verify_signature(seal, body.as_bytes(), self.key.expose().as_bytes()).is_err() {
            tracing::warn!(%image, %digest, "the identity tag points to an image without this build's seal; building");
            return None;
        }
        match self.registry.tag(&image_ref, &digest, &tag).await {
            Ok(()) => Some(Reused { digest }),
            Err(error) => {
                tracing::warn!(%image, %digest, %error, "an earlier build could not be tagged for this push; building");
                None
            }
        }
    }

    /// Tags the image just built (`digest` in `image`'s repository) with its identity, so the next push of the same
    /// context reuses it. A failure is logged: only a later build is lost.
    pub async fn remember(&self, image: &str, digest: &str, identity: &BuildIdentity) {
        let Some(image_ref) = parse(image) else { return };
        if let Err(error) = self.registry.tag(&image_ref, digest, &identity.tag()).await {
            tracing::warn!(%image, %digest, %error, "the build's identity could not be tagged; its next push builds again");
        }
    }
}

fn parse(image: &str) -> Option<ImageRef> {
    ImageRef::parse(image).map_err(|error| tracing::warn!(%error, "no build is reused for this image")).ok()
}
