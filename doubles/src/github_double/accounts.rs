//! Which numeric id each login belongs to, in the double as on GitHub: a login names an account until the account
//! is renamed, and the login it gave up then names whoever takes it next — a different account with a new id. This
//! is what lets the local stack show that everything an owner keeps follows the account id, not the login.
//!
//! A login nobody renamed is the account [`account_id`](super::account_id) derives from it, so the local stack's
//! owners need no sign-up. A rename is recorded here (and, for the local stack, in a file of its state folder that
//! `ofc push`, `ofc secret` and `ofc logs` read too). Routes, as GitHub Enterprise Server's site-admin API has them:
//! - `GET /users/{login}`: the account, `{login, id, type}`.
//! - `PATCH /admin/users/{login}` with `{"login": NEW}`: renames the account at once (GitHub queues it: 202). The
//!   old login is then a new account's, with an id no account had; 422 when `NEW` is not a login or was taken by a
//!   rename already.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{account_id, github_error, GitHubDouble};

/// Ids given to logins taken after a rename start above every id [`account_id`] derives (at most 10⁹).
const FIRST_NEW_ID: u64 = 1_000_000_001;

/// Why a rename or the accounts file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("`{0}` is not a GitHub login")]
    NotALogin(String),
    #[error("the login `{0}` is taken")]
    Taken(String),
    #[error("the accounts file {path} could not be read or written: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("the accounts file {path} is not the double's accounts JSON: {source}")]
    Malformed { path: PathBuf, source: serde_json::Error },
}

/// The logins whose account is not the one derived from the login, and the next new id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accounts {
    /// Login (lower-case) → account id, for every login a rename moved or freed.
    assigned: BTreeMap<String, u64>,
    next_id: u64,
}

impl Default for Accounts {
    fn default() -> Self {
        Self { assigned: BTreeMap::new(), next_id: FIRST_NEW_ID }
    }
}

impl Accounts {
    /// The account id of `login` (case-insensitive).
    pub fn id_of(&self, login: &str) -> u64 {
        self.assigned.get(&login.to_ascii_lowercase()).copied().unwrap_or_else(|| account_id(login))
    }

    /// Renames the account that has `old` to `new`; `old` then belongs to a new account. Answers `(moved id, id now
    /// behind old)`.
    pub fn rename(&mut self, old: &str, new: &str) -> Result<(u64, u64), AccountError> {
        for login in [old, new] {
            if !shared::naming::is_github_login(login) {
                return Err(AccountError::NotALogin(login.to_owned()));
            }
        }
        let (old, new) = (old.to_ascii_lowercase(), new.to_ascii_lowercase());
        if old == new || self.assigned.contains_key(&new) {
            return Err(AccountError::Taken(new));
        }
        let moved = self.id_of(&old);
        let fresh = self.next_id;
        self.next_id += 1;
        self.assigned.insert(new, moved);
        self.assigned.insert(old, fresh);
        Ok((moved, fresh))
    }

    /// The accounts recorded at `path`; none recorded when the file does not exist.
    pub fn load(path: &Path) -> Result<Self, AccountError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| AccountError::Malformed { path: path.to_owned(), source }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(AccountError::File { path: path.to_owned(), source }),
        }
    }

    /// Writes them to `path` whole (a new file renamed over the old, so a reader never sees half of it).
    pub fn save(&self, path: &Path) -> Result<(), AccountError> {
        let file_error = |source| AccountError::File { path: path.to_owned(), source };
        let partial = path.with_extension("partial");
        let json = serde_json::to_vec_pretty(self).expect("accounts serialize");
        std::fs::write(&partial, json).map_err(file_error)?;
        std::fs::rename(&partial, path).map_err(file_error)
    }
}

/// `GET /users/{login}`.
pub(super) async fn user(State(double): State<GitHubDouble>, UrlPath(login): UrlPath<String>) -> Response {
    if !shared::naming::is_github_login(&login) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let id = double.account_id_of(&login);
    Json(json!({ "login": login, "id": id, "node_id": format!("U_{id}"), "type": "User", "site_admin": false }))
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct Rename {
    login: String,
}

/// `PATCH /admin/users/{login}`.
pub(super) async fn rename(
    State(double): State<GitHubDouble>,
    UrlPath(login): UrlPath<String>,
    Json(body): Json<Rename>,
) -> Response {
    match double.rename_account(&login, &body.login) {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "message": "Job queued to rename user. It may take a few minutes to complete.",
                "url": format!("https://api.github.com/user/{id}"),
            })),
        )
            .into_response(),
        Err(error @ (AccountError::NotALogin(_) | AccountError::Taken(_))) => {
            github_error(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string())
        }
        Err(error) => {
            tracing::error!(%error, "the double's accounts could not be saved");
            github_error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_moves_the_id_and_the_old_login_becomes_a_new_account() {
        let mut accounts = Accounts::default();
        let first = accounts.id_of("Acme");
        assert_eq!(first, account_id("acme"));
        let (moved, fresh) = accounts.rename("acme", "acme-old").unwrap();
        assert_eq!(moved, first);
        assert_eq!(accounts.id_of("acme-old"), first);
        assert_eq!(accounts.id_of("ACME"), fresh);
        assert!(fresh > 1_000_000_000, "no derived id can be a new one: {fresh}");
        assert!(matches!(accounts.rename("bob", "acme-old"), Err(AccountError::Taken(_))));
        assert!(matches!(accounts.rename("bob", "-x"), Err(AccountError::NotALogin(_))));
        let (_, second) = accounts.rename("acme", "acme-two").unwrap();
        assert_ne!(second, fresh);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        assert_eq!(Accounts::load(&path).unwrap(), Accounts::default());
        accounts.save(&path).unwrap();
        assert_eq!(Accounts::load(&path).unwrap(), accounts);
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(Accounts::load(&path), Err(AccountError::Malformed { .. })));
    }
}
