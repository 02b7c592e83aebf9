//! Signing out ends a session everywhere it is accepted. A session is a signed token that stays valid until it
//! expires, so edge-auth records the id of a signed-out session in the store the platform already shares (the
//! build-log folder or bucket), and every part that accepts sessions (the dashboard, function-logs, metrics and
//! edge-auth itself) looks the id up before it admits a request. An answer is kept for a few seconds, so a
//! signed-out token stops working within that time without a store read on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use crate::config::{ConfigError, SecretStore};
use crate::log_store::{open_objects, LogStoreConfig, LogStoreError};
use crate::session::{token_from_headers, Session, SessionError, SessionVerifier};

/// Where revocations are kept in the store: a prefix no log key can take (log keys start with an account id).
const PREFIX: &str = "_revoked-sessions";
/// How long an answer is trusted before the store is asked again: the most a signed-out token still works.
pub(crate) const DEFAULT_FRESH_FOR: Duration = Duration::from_secs(2);
/// Remembered answers beyond this are dropped all at once (ids are random: a flood of made-up ones must not grow
/// memory).
const MAX_REMEMBERED: usize = 10_000;

/// The sessions signed out before they expired.
pub struct Revocations {
    objects: Arc<dyn ObjectStore>,
    fresh_for: Duration,
    remembered: Mutex<HashMap<String, (bool, Instant)>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").field("fresh_for", &self.fresh_for).finish_non_exhaustive()
    }
}

impl Revocations {
    /// The revocations kept in the store `config` names.
    pub fn open(config: &LogStoreConfig) -> Result<Self, LogStoreError> {
        let (objects, _) = open_objects(config)?;
        Ok(Self { objects, fresh_for: DEFAULT_FRESH_FOR, remembered: Mutex::new(HashMap::new()) })
    }

    /// The store the environment names, as [`crate::log_store::LogStore::from_env`] opens it: one that cannot be
    /// used stops the start, naming the setting that chose it.
    pub fn from_env(secrets: &SecretStore) -> Result<Self, ConfigError> {
        let config = LogStoreConfig::from_env(secrets)?;
        Self::open(&config).map_err(|e| config.invalid(&e))
    }

    /// How long an answer is trusted (tests shorten it).
    #[must_use]
    pub fn fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = fresh_for;
        self
    }

    fn object(id: &str) -> ObjectPath {
        ObjectPath::from(format!("{PREFIX}/{id}"))
    }

    /// Records `session` as signed out; the record says when the session would have expired, so it can be swept
    /// after that.
    pub async fn revoke(&self, session: &Session) -> Result<(), LogStoreError> {
        debug_assert!(Session::is_valid_id(&session.id));
        let expires = session.expires.to_rfc3339();
        self.objects
            .put(&Self::object(&session.id), PutPayload::from(expires.into_bytes()))
            .await
            .map_err(LogStoreError::Backend)?;
        self.remember(&session.id, true);
        Ok(())
    }

    /// Whether the session `id` was signed out, from the store or an answer younger than [`Self::fresh_for`].
    pub(crate) async fn is_revoked(&self, id: &str) -> Result<bool, LogStoreError> {
        if let Some(revoked) = self.recalled(id) {
            return Ok(revoked);
        }
        let revoked = match self.objects.head(&Self::object(id)).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(LogStoreError::Backend(e)),
        };
        self.remember(id, revoked);
        Ok(revoked)
    }

    fn recalled(&self, id: &str) -> Option<bool> {
        let remembered = self.remembered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered.get(id).filter(|(_, at)| at.elapsed() < self.fresh_for).map(|(revoked, _)| *revoked)
    }

    fn remember(&self, id: &str, revoked: bool) {
        let mut remembered = self.remembered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(id.to_owned(), (revoked, Instant::now()));
    }

    /// Removes the records of sessions that have expired by `now` (their tokens are refused anyway); answers how
    /// many. edge-auth runs it after a sign-out, so the records stay as many as the sessions signed out within one
    /// session lifetime.
    pub async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<usize, LogStoreError> {
        let prefix = ObjectPath::from(PREFIX);
        let objects: Vec<_> = self.objects.list(Some(&prefix)).try_collect().await.map_err(LogStoreError::Backend)?;
        let mut removed = 0;
        for object in objects {
            let bytes = match self.objects.get(&object.location).await {
                Ok(result) => result.bytes().await.map_err(LogStoreError::Backend)?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(LogStoreError::Backend(e)),
            };
            // A record that does not parse is kept: a revocation is never dropped by mistake.
            let expired = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
                .is_some_and(|expires| expires <= now);
            if expired {
                match self.objects.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(e) => return Err(LogStoreError::Backend(e)),
                }
            }
        }
        Ok(removed)
    }
}

/// Admits a request's session: the signature and expiry ([`SessionVerifier`]), then whether it was signed out.
#[derive(Debug, Clone)]
pub struct SessionGate {
    verifier: SessionVerifier,
    revocations: Arc<Revocations>,
}

impl SessionGate {
    pub fn new(verifier: SessionVerifier, revocations: Arc<Revocations>) -> Self {
        Self { verifier, revocations }
    }

    /// `jwt-public-key` and the store the environment names: what the dashboard, function-logs and metrics
    /// admit sessions with. Either missing fails the start, naming it.
    pub fn from_secrets(secrets: &SecretStore) -> Result<Self, ConfigError> {
        Ok(Self::new(SessionVerifier::from_secrets(secrets)?, Arc::new(Revocations::from_env(secrets)?)))
    }

    /// The revocations this gate consults (edge-auth records sign-outs in them).
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The session `token` carries, if it verifies, has not expired at `now` and was not signed out. A store that
    /// cannot answer refuses the session ([`SessionError::Unchecked`]) rather than admit one that may be signed out.
    pub async fn admit(&self, token: &str, now: DateTime<Utc>) -> Result<Session, SessionError> {
        let session = self.verifier.verify(token, now)?;
        match self.revocations.is_revoked(&session.id).await {
            Ok(false) => Ok(session),
            Ok(true) => Err(SessionError::Revoked),
            Err(error) => {
                tracing::error!(%error, "the session revocations cannot be read");
                Err(SessionError::Unchecked)
            }
        }
    }

    /// The session of a request ([`token_from_headers`]), admitted as [`Self::admit`] does.
    pub async fn admit_request(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Result<Session, SessionError> {
        let token = token_from_headers(headers).ok_or(SessionError::Missing)?;
        self.admit(token, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Account;

    fn session(expires: DateTime<Utc>) -> Session {
        Session {
            id: Session::new_id(),
            user: Account { login: "alice".into(), id: 11 },
            name: None,
            orgs: Vec::new(),
            issued: Utc::now(),
            expires,
        }
    }

    #[tokio::test]
    async fn a_revocation_is_seen_by_every_reader_of_the_store_within_its_freshness() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogStoreConfig::folder(dir.path());
        let edge_auth = Revocations::open(&config).unwrap();
        let dashboard = Revocations::open(&config).unwrap().fresh_for(Duration::from_millis(50));
        let signed_out = session(Utc::now() + chrono::Duration::hours(1));
        let other = session(Utc::now() + chrono::Duration::hours(1));
        assert!(!dashboard.is_revoked(&signed_out.id).await.unwrap());
        edge_auth.revoke(&signed_out).await.unwrap();
        assert!(edge_auth.is_revoked(&signed_out.id).await.unwrap(), "the writer knows at once");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(dashboard.is_revoked(&signed_out.id).await.unwrap(), "another reader after its freshness");
        assert!(!dashboard.is_revoked(&other.id).await.unwrap());
    }

    #[tokio::test]
    async fn only_expired_revocations_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let revocations = Revocations::open(&LogStoreConfig::folder(dir.path())).unwrap().fresh_for(Duration::ZERO);
        let expired = session(Utc::now() - chrono::Duration::minutes(1));
        let live = session(Utc::now() + chrono::Duration::hours(1));
        revocations.revoke(&expired).await.unwrap();
        revocations.revoke(&live).await.unwrap();
        assert_eq!(revocations.sweep_expired(Utc::now()).await.unwrap(), 1);
        assert!(!revocations.is_revoked(&expired.id).await.unwrap());
        assert!(revocations.is_revoked(&live.id).await.unwrap());
    }

    #[tokio::test]
    async fn revocations_do_not_show_among_build_logs() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogStoreConfig::folder(dir.path());
        let revocations = Revocations::open(&config).unwrap();
        revocations.revoke(&session(Utc::now() + chrono::Duration::hours(1))).await.unwrap();
        let logs = crate::log_store::LogStore::open(&config).unwrap();
        assert_eq!(logs.latest(11, "fns").await.unwrap(), None);
    }
}
