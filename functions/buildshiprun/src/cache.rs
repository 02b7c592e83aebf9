//! Builds skipped because the registry already holds their image: every successful build is tagged with its
//! identity ([`BuildIdentity::tag`]) in its own repository, and the next build of the same identity finds that tag
//! and reuses the image. The registry is the cache, so it is shared by every buildshiprun replica and survives
//! restarts; a registry that cannot be asked only costs the build it would have saved, never a push.

use shared::registry::{ImageRef, RegistryClient};

use crate::identity::BuildIdentity;

/// The digest of the image built before from `identity` in `image`'s repository, once it is also tagged with
/// `image`'s own tag (the commit's tag, which the deployment and the user name). `None` when there is none, or
/// when the registry could not be used: then the image is built.
pub async fn find(registry: &RegistryClient, image: &str, identity: &BuildIdentity) -> Option<String> {
    let image_ref = parse(image)?;
    let tag = image_ref.tag.clone()?;
    let digest = match registry.digest_of(&image_ref, &identity.tag()).await {
        Ok(found) => found?,
        Err(error) => {
            tracing::warn!(%image, %error, "the registry could not be asked for an earlier build; building");
            return None;
        }
    };
    match registry.tag(&image_ref, &digest, &tag).await {
        Ok(()) => Some(digest),
        Err(error) => {
            tracing::warn!(%image, %digest, %error, "an earlier build could not be tagged for this push; building");
            None
        }
    }
}

/// Tags the image just built (`digest` in `image`'s repository) with its identity, so the next push of the same
/// context reuses it. A failure is logged: only a later build is lost.
pub async fn remember(registry: &RegistryClient, image: &str, digest: &str, identity: &BuildIdentity) {
    let Some(image_ref) = parse(image) else { return };
    if let Err(error) = registry.tag(&image_ref, digest, &identity.tag()).await {
        tracing::warn!(%image, %digest, %error, "the build's identity could not be tagged; its next push builds again");
    }
}

fn parse(image: &str) -> Option<ImageRef> {
    ImageRef::parse(image).map_err(|error| tracing::warn!(%error, "no build is reused for this image")).ok()
}
