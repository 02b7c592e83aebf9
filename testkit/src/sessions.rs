//! Sessions as edge-auth signs them, and functions as buildshiprun labels them, for the tests of what shows a
//! function to its owner only (function-logs, metrics).

use std::sync::OnceLock;

use chrono::{Duration, Utc};
use shared::app_key::AppKey;
use shared::config::Secret;
use shared::log_store::LogStoreConfig;
use shared::openfaas::FunctionStatus;
use shared::revocation::{Revocations, SessionGate};
use shared::session::{Account, Session, SessionSigner, SessionVerifier};

/// The gateway's admin credentials.
pub const ADMIN: (&str, &str) = ("admin", "admin-password");

/// GitHub accounts: alice (a member of acme) and mallory.
pub const ALICE: (&str, u64) = ("alice", 11);
pub const ACME: (&str, u64) = ("acme", 99);
pub const MALLORY: (&str, u64) = ("mallory", 66);

fn key() -> &'static AppKey {
    static KEY: OnceLock<AppKey> = OnceLock::new();
    KEY.get_or_init(AppKey::generate)
}

pub fn signer() -> SessionSigner {
    SessionSigner::from_pem(&Secret::new(key().private_pem.clone())).unwrap()
}

pub fn verifier() -> SessionVerifier {
    SessionVerifier::from_pem(&key().public_pem).unwrap()
}

/// The folder sign-outs are recorded in, one for the whole test process (as the log store is one for the
/// platform).
fn revocation_store() -> &'static LogStoreConfig {
    static STORE: OnceLock<(tempfile::TempDir, LogStoreConfig)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let config = LogStoreConfig::folder(dir.path());
            (dir, config)
        })
        .1
}

/// What the dashboard, function-logs and metrics admit sessions with: the public key and the sign-outs, read
/// afresh on every request.
pub fn gate() -> SessionGate {
    let revocations = Revocations::open(revocation_store()).unwrap().fresh_for(std::time::Duration::ZERO);
    SessionGate::new(verifier(), std::sync::Arc::new(revocations))
}

/// Signs `token`'s session out, as edge-auth's `/logout/` does.
pub async fn sign_out(token: &str) {
    let session = verifier().verify(token, Utc::now()).unwrap();
    Revocations::open(revocation_store()).unwrap().revoke(&session).await.unwrap();
}

/// A session of `user` in `orgs`, issued now and valid for an hour.
pub fn session(user: (&str, u64), orgs: &[(&str, u64)]) -> Session {
    let account = |(login, id): (&str, u64)| Account { login: login.to_owned(), id };
    Session {
        id: Session::new_id(),
        user: account(user),
        name: None,
        orgs: orgs.iter().copied().map(account).collect(),
        issued: Utc::now(),
        expires: Utc::now() + Duration::hours(1),
    }
}

/// alice's token, as edge-auth signs it.
pub fn alice_token() -> String {
    signer().sign(&session(ALICE, &[ACME]))
}

/// A token whose session expired a minute ago.
pub fn expired_token() -> String {
    let mut expired = session(ALICE, &[ACME]);
    expired.issued = Utc::now() - Duration::hours(2);
    expired.expires = Utc::now() - Duration::minutes(1);
    signer().sign(&expired)
}

/// alice's signature over claims that say she is mallory: the header and signature of one token, the claims of
/// another.
pub fn tampered_token() -> String {
    let alice = alice_token();
    let mallory = signer().sign(&session(MALLORY, &[]));
    let alice: Vec<&str> = alice.split('.').collect();
    let mallory: Vec<&str> = mallory.split('.').collect();
    format!("{}.{}.{}", alice[0], mallory[1], alice[2])
}

/// A cloud function of `owner` (login and id labels, as buildshiprun deploys them today).
pub fn function_of(name: &str, owner: (&str, u64)) -> FunctionStatus {
    let mut function = crate::labelled_function(name, owner.0, "fns", true);
    function.labels.as_mut().unwrap().insert("com.openfaas.cloud.git-owner-id".into(), owner.1.to_string());
    function
}
