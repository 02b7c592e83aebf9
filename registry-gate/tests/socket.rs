//! The local registry behind its gate, over real HTTP with the real `docker-registry`: reads work for anyone, a push
//! needs the builder's account, a delete the operator's, and the collector deletes a preview's manifests only.

mod common;

use common::{accounts, GateClient, BUILDER, COLLECTOR, OPERATOR};
use doubles::registry::RegistryProcess;
use reqwest::{Method, StatusCode};

/// The registry on a unix socket behind the gate served in this process, as `ofc up` runs them.
struct Gated {
    registry: RegistryProcess,
    client: GateClient,
    _dir: tempfile::TempDir,
}

impl Gated {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = RegistryProcess::start_gated(dir.path(), accounts()).await.unwrap();
        let client = GateClient::new(&registry.host_port());
        Self { registry, client, _dir: dir }
    }
}

impl std::ops::Deref for Gated {
    type Target = GateClient;
    fn deref(&self) -> &GateClient {
        &self.client
    }
}

#[tokio::test]
async fn only_the_builder_pushes_and_only_the_operator_deletes_while_anyone_reads() {
    let gated = Gated::start().await;
    assert_eq!(gated.push_image("victim/fns-api", "v1", Some(BUILDER)).await, StatusCode::CREATED);
    let manifest = gated.registry.client().manifest("victim/fns-api", "v1").await.unwrap();

    // Anyone reads: the manifest, its tags, its blobs; no account is needed for that.
    let read = gated.send(Method::GET, "victim/fns-api/manifests/v1", None, ("", vec![])).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["docker-content-digest"].to_str().unwrap(), manifest.digest);
    let tags = gated.send(Method::GET, "victim/fns-api/tags/list", None, ("", vec![])).await;
    assert_eq!(tags.status(), StatusCode::OK);

    // Nobody else writes: no account, a wrong password, the operator's account.
    for (who, account) in
        [("no account", None), ("a wrong password", Some((BUILDER.0, "guess"))), ("the operator", Some(OPERATOR))]
    {
        let status = gated.push_image("victim/fns-api", "v1", account).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{who}: {status}");
        let (status, _) = gated.push_blob("attacker/x", b"layer", account).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN, "{who}: {status}");
    }
    let challenge = gated.send(Method::POST, "victim/fns-api/blobs/uploads/", None, ("", vec![])).await;
    assert_eq!(challenge.headers()["www-authenticate"], "Basic realm=\"openfaas-cloud-registry\"");

    // Deletes: not anonymous, not the builder; the operator may.
    let target = format!("victim/fns-api/manifests/{}", manifest.digest);
    let anonymous = gated.send(Method::DELETE, &target, None, ("", vec![])).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let builder = gated.send(Method::DELETE, &target, Some(BUILDER), ("", vec![])).await;
    assert_eq!(builder.status(), StatusCode::FORBIDDEN);
    let body = builder.text().await.unwrap();
    assert!(body.contains("operator"), "{body}");
    let unchanged = gated.registry.client().manifest("victim/fns-api", "v1").await.unwrap();
    assert_eq!(unchanged.digest, manifest.digest, "the victim's tag is unchanged");

    // Listing every owner's repositories is not for anonymous readers.
    let catalog = gated.send(Method::GET, "_catalog", None, ("", vec![])).await;
    assert_eq!(catalog.status(), StatusCode::UNAUTHORIZED);

    let operator = gated.send(Method::DELETE, &target, Some(OPERATOR), ("", vec![])).await;
    assert_eq!(operator.status(), StatusCode::ACCEPTED);
    assert!(gated.registry.client().manifest("victim/fns-api", "v1").await.is_err());
}

#[tokio::test]
async fn the_collector_deletes_a_preview_s_image_and_nothing_else() {
    let gated = Gated::start().await;
    let tag = shared::naming::preview_tag("fns", &shared::naming::PreviewOf::PullRequest(7));
    let preview = format!("42/fns/hello__{tag}");
    let default = "42/fns/hello";
    assert_eq!(gated.push_image(&preview, "abc", Some(BUILDER)).await, StatusCode::CREATED);
    assert_eq!(gated.push_image(default, "abc", Some(BUILDER)).await, StatusCode::CREATED);
    let preview_digest = gated.registry.client().manifest(&preview, "abc").await.unwrap().digest;
    let default_digest = gated.registry.client().manifest(default, "abc").await.unwrap().digest;
    let head = |repository: &str, reference: &str| gated.head(format!("{repository}/manifests/{reference}"));

    // Not a default branch's image, not a push, not the catalog; an unknown account is asked to sign in.
    let denied = gated
        .send(Method::DELETE, &format!("{default}/manifests/{default_digest}"), Some(COLLECTOR), ("", vec![]))
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(head(default, "abc").await, StatusCode::OK);
    let status = gated.push_image(&preview, "pushed-by-collector", Some(COLLECTOR)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let catalog = gated.send(Method::GET, "_catalog", Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(catalog.status(), StatusCode::FORBIDDEN);
    let target = format!("{preview}/manifests/{preview_digest}");
    let unknown = gated.send(Method::DELETE, &target, Some(("someone", "else")), ("", vec![])).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let builder = gated.send(Method::DELETE, &target, Some(BUILDER), ("", vec![])).await;
    assert_eq!(builder.status(), StatusCode::FORBIDDEN);
    assert_eq!(head(&preview, "abc").await, StatusCode::OK);

    // A preview's manifest, by digest: gone, its tag with it; the default branch's stays.
    let deleted = gated.send(Method::DELETE, &target, Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    assert_eq!(head(&preview, "abc").await, StatusCode::NOT_FOUND);
    assert_eq!(head(&preview, &preview_digest).await, StatusCode::NOT_FOUND);
    assert_eq!(head(default, "abc").await, StatusCode::OK);
    let again = gated.send(Method::DELETE, &target, Some(COLLECTOR), ("", vec![])).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "deleting twice finds nothing");
}
