//! A removed preview's images: for each of its functions, the manifest its deployment ran (pinned by digest) and
//! every other tag of that preview's repository, deleted with the registry's collector account
//! (`registry-collector-auth`), which the registry lets delete a preview's manifests and nothing else. The layers
//! stay until the registry's own garbage collection (the operator's `registry garbage-collect`). A failure is
//! reported, never fatal: the functions are gone either way.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shared::config::{bool_or, ConfigError, SecretStore};
use shared::naming::{image_owner_prefix, is_preview_image_repository};
use shared::openfaas::FunctionStatus;
use shared::registry::{auths_of_docker_config, registry_host_setting, with_registry_host, ImageRef, RegistryClient};

/// The secret holding the collector's registry account (a Docker `config.json`).
pub const COLLECTOR_SECRET: &str = "registry-collector-auth";

/// How long one collection may spend on the registry: the caller waits for the answer (its own bound is a minute).
const IMAGES_WITHIN: Duration = Duration::from_secs(20);

/// The registry settings garbage-collect removes images with.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `registry-collector-auth`'s accounts per registry host; `None` when the secret is not mounted, and then no
    /// image is removed (the answer says so).
    pub auths: Option<BTreeMap<String, String>>,
    /// `registry_api_url`: where the registry's API is reached when not at the images' own host.
    pub api_host: Option<String>,
    /// `registry_insecure`: plain HTTP to every registry (loopback ones always are).
    pub insecure: bool,
}

impl RegistryConfig {
    pub fn from_env(secrets: &SecretStore) -> Result<Self, ConfigError> {
        let auths = match secrets.read(COLLECTOR_SECRET)? {
            None => None,
            Some(secret) => Some(
                auths_of_docker_config(secret.expose())
                    .map_err(|reason| ConfigError::Invalid { name: COLLECTOR_SECRET.into(), reason })?,
            ),
        };
        Ok(Self {
            auths,
            api_host: registry_host_setting("registry_api_url")?,
            insecure: bool_or("registry_insecure", false)?,
        })
    }

    /// No registry account: images are left alone.
    pub fn none() -> Self {
        Self { auths: None, api_host: None, insecure: false }
    }
}

/// What became of the removed functions' images.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImagesRemoved {
    /// `<repository>@<digest>` of every manifest deleted.
    pub deleted: Vec<String>,
    /// Each preview repository (or manifest) left in the registry, and why.
    pub kept: Vec<String>,
}

/// Removes preview images with the collector's account.
#[derive(Debug, Clone)]
pub struct PreviewImages {
    client: Option<RegistryClient>,
    api_host: Option<String>,
}

impl PreviewImages {
    pub fn new(config: &RegistryConfig) -> Self {
        let client = config.auths.clone().map(|auths| RegistryClient::new(config.insecure, auths));
        Self { client, api_host: config.api_host.clone() }
    }

    /// Deletes the images of `removed` (functions already deleted from the gateway) that are preview images of
    /// their own owner; a default branch's image, a `skip_build` image or another owner's is never touched.
    /// `live` is the gateway's list read after the removal (`None`: it could not be read): a repository a function
    /// runs from again (a pull request reopened, a push to the branch in between) is left whole.
    pub async fn remove(&self, removed: &[FunctionStatus], live: Option<&[FunctionStatus]>) -> ImagesRemoved {
        let targets: Vec<ImageRef> = removed.iter().filter_map(|f| self.target(f)).collect();
        if targets.is_empty() {
            return ImagesRemoved::default();
        }
        let Some(live) = live else {
            let kept = targets
                .iter()
                .map(|t| format!("{}: the gateway's functions could not be listed to see it is unused", t.repository))
                .collect();
            return ImagesRemoved { deleted: Vec::new(), kept };
        };
        let in_use: BTreeSet<String> =
            live.iter().filter_map(|f| ImageRef::parse(&self.registry_image(f)).ok()).map(|i| i.repository).collect();
        let (targets, redeployed): (Vec<ImageRef>, Vec<ImageRef>) =
            targets.into_iter().partition(|t| !in_use.contains(&t.repository));
        let mut done = ImagesRemoved {
            deleted: Vec::new(),
            kept: redeployed
                .iter()
                .map(|t| format!("{}: a function runs from it again, so it stays", t.repository))
                .collect(),
        };
        if targets.is_empty() {
            return done;
        }
        let Some(client) = &self.client else {
            done.kept.extend(
                targets
                    .iter()
                    .map(|t| format!("{}: garbage-collect has no registry account ({COLLECTOR_SECRET})", t.repository)),
            );
            return done;
        };
        let all = async {
            for target in &targets {
                remove_repository(client, target, &mut done).await;
            }
        };
        if tokio::time::timeout(IMAGES_WITHIN, all).await.is_err() {
            done.kept
                .push(format!("the registry did not finish within {} s; what is left stays", IMAGES_WITHIN.as_secs()));
        }
        if !done.kept.is_empty() {
            tracing::warn!(kept = ?done.kept, "preview images left in the registry");
        }
        done
    }

    /// The registry address of `function`'s image when it is a preview image under the function's own owner id.
    /// A function without the owner-id label (deployed by hand, or before owners had ids) has no owner to check
    /// against, so its image is never deleted.
    fn target(&self, function: &FunctionStatus) -> Option<ImageRef> {
        function.preview()?;
        let image = self.registry_image(function);
        let reference = ImageRef::parse(&image).ok()?;
        let owner_ok = match (function.owner_id(), image_owner_prefix(&image)) {
            (Some(id), Some(prefix)) => prefix.rsplit('/').next() == Some(id.to_string().as_str()),
            (None, _) | (_, None) => false,
        };
        (owner_ok && is_preview_image_repository(&reference.repository)).then_some(reference)
    }
}

impl PreviewImages {
    /// `function`'s image as garbage-collect reaches its registry (`registry_api_url`'s host when set).
    fn registry_image(&self, function: &FunctionStatus) -> String {
        match &self.api_host {
            Some(host) => with_registry_host(&function.image, host),
            None => function.image.clone(),
        }
    }
}

/// Deletes the pinned manifest of `image` and every tagged one of its repository; records each outcome.
async fn remove_repository(client: &RegistryClient, image: &ImageRef, done: &mut ImagesRemoved) {
    let repository = &image.repository;
    let mut digests: BTreeSet<String> = image.digest.iter().cloned().collect();
    match client.tags(image).await {
        Ok(tags) => {
            for tag in tags {
                match client.digest_of(image, &tag).await {
                    Ok(Some(digest)) => {
                        digests.insert(digest);
                    }
                    Ok(None) => {}
                    Err(error) => done.kept.push(format!("{repository}:{tag}: {error}")),
                }
            }
        }
        Err(error) => done.kept.push(format!("{repository} (its tags): {error}")),
    }
    for digest in digests {
        match client.delete_manifest(image, &digest).await {
            Ok(true) => done.deleted.push(format!("{repository}@{digest}")),
            Ok(false) => {}
            Err(error) => done.kept.push(format!("{repository}@{digest}: {error}")),
        }
    }
}
