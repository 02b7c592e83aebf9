//! `/system/functions` of the local stack's provider: the embedded gateway's (`ofc/src/gateway/`, which keeps
//! deployments on disk and starts replicas), and the same one behind the tests' gateways, so both answer list,
//! deploy, update and delete with OpenFaaS's status codes (`reference/openfaas-gateway-api.md`); what differs between
//! them comes in through [`FunctionHooks`]. Real code of the local stack, not a stand-in: a crate of its own, so
//! `ofc` does not reach into the test doubles for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use shared::error::ErrorResponse;
use shared::openfaas::{labels, DeleteFunctionRequest, FunctionDeployment, FunctionStatus};

/// The namespace OpenFaaS deploys user functions to when a deployment names none.
pub const DEFAULT_NAMESPACE: &str = "openfaas-fn";

/// Why a `/system/functions` request is refused.
#[derive(Debug, thiserror::Error)]
pub enum FunctionsError {
    #[error("the body is not a FunctionDeployment: {0}")]
    NotADeployment(String),
    #[error("the body is not {{\"functionName\": ...}}: {0}")]
    NotADeletion(String),
    #[error("service and image are required")]
    MissingField,
    #[error("no such function: {0}")]
    NotFound(String),
    /// A `POST` for a name that is deployed: as on OpenFaaS, creating never replaces (two first deployments race).
    #[error("function {0} already exists")]
    AlreadyExists(String),
    /// The gateway's own reason not to deploy it (a secret it names does not exist, as on OpenFaaS).
    #[error("{0}")]
    Refused(String),
}

impl IntoResponse for FunctionsError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyExists(_) => StatusCode::CONFLICT,
            Self::NotADeployment(_) | Self::NotADeletion(_) | Self::MissingField | Self::Refused(_) => {
                StatusCode::BAD_REQUEST
            }
        };
        ErrorResponse::new(status, self).into_response()
    }
}

/// What a gateway adds to the bookkeeping; every method has a default that does nothing.
pub trait FunctionHooks: Send + Sync + 'static {
    /// Replicas answering now; `None` keeps the recorded count.
    fn available_replicas(&self, _name: &str) -> Option<u64> {
        None
    }

    /// Why `deployment` cannot be deployed, if it cannot (checked before anything is recorded).
    fn refusal(&self, _deployment: &FunctionDeployment) -> Option<String> {
        None
    }

    /// Replicas wanted (0 once scaled to zero), when `available_replicas` counts them; `None` means one.
    fn wanted_replicas(&self, _name: &str) -> Option<u64> {
        None
    }

    /// One deployment recorded (`Some`) or removed (`None`), while the change is held (to keep it on disk in
    /// order); given alone, so keeping it costs the same with 10 deployments as with 10,000.
    fn changed(&self, _name: &str, _now: Option<&FunctionStatus>) {}

    /// A function was deployed or updated.
    fn deployed(&self, _status: &FunctionStatus) {}

    /// A function was deleted.
    fn removed(&self, _name: &str) {}
}

/// Hooks that add nothing: a double of a healthy cluster, where every deployed function has its replica.
pub struct NoHooks;

impl FunctionHooks for NoHooks {}

/// One deployment as kept: its status as JSON, without the counters that change on their own. A list is then
/// these texts one after another with the counters appended, not a clone and a serialisation of every status:
/// with 10,000 deployments that is the difference between milliseconds and seconds, and tens of MiB.
struct Record {
    /// The status's JSON with `invocationCount`, `replicas` and `availableReplicas` left out and its closing
    /// brace cut off; shared, so a list copies it outside the lock.
    head: Arc<str>,
    invocation_count: f64,
    replicas: u64,
    available_replicas: u64,
    /// A cloud function's owner login (lower case) and id, as its labels say: what `?owner=` selects by.
    owner: Option<(Box<str>, Option<u64>)>,
}

/// `GET /functions?owner=LOGIN[&ownerId=ID]`: only the cloud functions of that owner, by the ownership rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerQuery {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub owner_id: Option<u64>,
}

impl OwnerQuery {
    /// `FunctionStatus::is_cloud_function_of`'s rule: the id decides where both have one, else the login does.
    fn selects(&self, record: &Record) -> bool {
        let Some(owner) = self.owner.as_deref() else { return true };
        record.owner.as_ref().is_some_and(|(login, id)| match (id, self.owner_id.filter(|i| *i != 0)) {
            (Some(theirs), Some(ours)) => *theirs == ours,
            _ => login.eq_ignore_ascii_case(owner),
        })
    }
}

/// The counters [`Record`] keeps beside its JSON.
const COUNTERS: [&str; 3] = ["invocationCount", "replicas", "availableReplicas"];

impl Record {
    fn new(status: &FunctionStatus) -> Self {
        let mut fields = match serde_json::to_value(status) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        };
        for counter in COUNTERS {
            fields.remove(counter);
        }
        let mut head = serde_json::Value::Object(fields).to_string();
        head.pop();
        let owner = status.is_cloud_function().then(|| {
            let login = status.label(labels::OWNER).or_else(|| status.label(labels::GIT_OWNER)).unwrap_or_default();
            (login.to_ascii_lowercase().into(), status.owner_id())
        });
        Self {
            owner,
            head: head.into(),
            invocation_count: status.invocation_count,
            replicas: status.replicas,
            available_replicas: status.available_replicas,
        }
    }

    /// The whole JSON object, with `replicas` and `available` as the counts to show.
    fn write_json(head: &str, invocation_count: f64, replicas: u64, available: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(head.as_bytes());
        if !head.ends_with('{') {
            out.push(b',');
        }
        out.extend_from_slice(b"\"invocationCount\":");
        // A count that is not a finite number is written as serde writes it (null), never as invalid JSON.
        let _ = serde_json::to_writer(&mut *out, &invocation_count);
        out.extend_from_slice(format!(",\"replicas\":{replicas},\"availableReplicas\":{available}}}").as_bytes());
    }

    fn status(&self) -> FunctionStatus {
        let mut json = Vec::with_capacity(self.head.len() + 80);
        Self::write_json(&self.head, self.invocation_count, self.replicas, self.available_replicas, &mut json);
        serde_json::from_slice(&json).expect("a record holds a status's own JSON")
    }
}

/// The deployed functions, by name; cheap to clone.
#[derive(Clone)]
pub struct FunctionsApi {
    functions: Arc<Mutex<BTreeMap<String, Record>>>,
    hooks: Arc<dyn FunctionHooks>,
}

/// `name.namespace` → `name`, as either is accepted.
pub fn function_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

impl FunctionsApi {
    pub fn new(functions: BTreeMap<String, FunctionStatus>, hooks: Arc<dyn FunctionHooks>) -> Self {
        let records = functions.into_iter().map(|(name, status)| (name, Record::new(&status))).collect();
        Self { functions: Arc::new(Mutex::new(records)), hooks }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Record>> {
        self.functions.lock().expect("functions lock")
    }

    fn with_replicas(&self, mut status: FunctionStatus) -> FunctionStatus {
        if let Some(available) = self.hooks.available_replicas(&status.name) {
            status.replicas = self.hooks.wanted_replicas(&status.name).unwrap_or(1);
            status.available_replicas = available;
        }
        status
    }

    /// Every deployed function, as `GET /system/functions` lists them.
    pub fn list(&self) -> Vec<FunctionStatus> {
        let functions: Vec<FunctionStatus> = self.lock().values().map(Record::status).collect();
        functions.into_iter().map(|f| self.with_replicas(f)).collect()
    }

    /// [`FunctionsApi::list`] as its JSON answer, written from the kept texts: those `query` selects.
    pub fn list_json(&self, query: &OwnerQuery) -> Vec<u8> {
        let records: Vec<(String, Arc<str>, f64, u64, u64)> = self
            .lock()
            .iter()
            .filter(|(_, r)| query.selects(r))
            .map(|(name, r)| (name.clone(), r.head.clone(), r.invocation_count, r.replicas, r.available_replicas))
            .collect();
        let mut json = Vec::with_capacity(records.iter().map(|r| r.1.len() + 80).sum::<usize>() + 2);
        json.push(b'[');
        for (i, (name, head, invocations, mut replicas, mut available)) in records.into_iter().enumerate() {
            if let Some(now) = self.hooks.available_replicas(&name) {
                replicas = 1;
                available = now;
            }
            if i > 0 {
                json.push(b',');
            }
            Record::write_json(&head, invocations, replicas, available, &mut json);
        }
        json.push(b']');
        json
    }

    /// Every deployed function's name and available replicas, without reading the rest of their statuses.
    pub fn available(&self) -> Vec<(String, u64)> {
        let counts: Vec<(String, u64)> =
            self.lock().iter().map(|(name, r)| (name.clone(), r.available_replicas)).collect();
        counts
            .into_iter()
            .map(|(name, recorded)| {
                let available = self.hooks.available_replicas(&name).unwrap_or(recorded);
                (name, available)
            })
            .collect()
    }

    /// One function (`name` or `name.namespace`).
    pub fn get(&self, name: &str) -> Result<FunctionStatus, FunctionsError> {
        let found = self.lock().get(function_name(name)).map(Record::status);
        found.map(|f| self.with_replicas(f)).ok_or_else(|| FunctionsError::NotFound(name.to_owned()))
    }

    /// Seeds a function as if it had been deployed, with no hook called.
    pub fn insert(&self, status: FunctionStatus) {
        let record = Record::new(&status);
        self.lock().insert(status.name, record);
    }

    /// Counts one invocation of a deployed function (without reading its status); false when there is none.
    pub fn count_invocation(&self, name: &str) -> bool {
        self.lock().get_mut(name).map(|record| record.invocation_count += 1.0).is_some()
    }

    /// Runs `change` on a deployed function's record (its status is read and kept again: not for every call).
    pub fn update<R>(&self, name: &str, change: impl FnOnce(&mut FunctionStatus) -> R) -> Option<R> {
        let mut functions = self.lock();
        let record = functions.get_mut(name)?;
        let mut status = record.status();
        let answer = change(&mut status);
        *record = Record::new(&status);
        Some(answer)
    }

    /// Records a deployment (`POST`, 202) or an update of an existing one (`PUT`, 200; 404 when there is none).
    pub fn deploy(&self, deployment: &FunctionDeployment, update: bool) -> Result<StatusCode, FunctionsError> {
        if deployment.service.is_empty() || deployment.image.is_empty() {
            return Err(FunctionsError::MissingField);
        }
        if let Some(reason) = self.hooks.refusal(deployment) {
            return Err(FunctionsError::Refused(reason));
        }
        let mut functions = self.lock();
        let previous = functions.get(&deployment.service).map(Record::status);
        if update && previous.is_none() {
            return Err(FunctionsError::NotFound(deployment.service.clone()));
        }
        if !update && previous.is_some() {
            return Err(FunctionsError::AlreadyExists(deployment.service.clone()));
        }
        let created_at = previous.and_then(|d| d.created_at.clone()).unwrap_or_else(|| chrono::Utc::now().to_rfc3339());
        let mut status = FunctionStatus::from_deployment(deployment, 1);
        status.namespace = status.namespace.or_else(|| Some(DEFAULT_NAMESPACE.into()));
        status.created_at = Some(created_at);
        functions.insert(deployment.service.clone(), Record::new(&status));
        self.hooks.changed(&status.name, Some(&status));
        drop(functions);
        let action = if update { "updated" } else { "deployed" };
        tracing::info!(function = %status.name, image = %status.image, action, "deployment recorded");
        self.hooks.deployed(&status);
        Ok(if update { StatusCode::OK } else { StatusCode::ACCEPTED })
    }

    /// Deletes a function (200; 404 when there is none).
    pub fn delete(&self, name: &str) -> Result<StatusCode, FunctionsError> {
        let mut functions = self.lock();
        if functions.remove(name).is_none() {
            return Err(FunctionsError::NotFound(name.to_owned()));
        }
        self.hooks.changed(name, None);
        drop(functions);
        tracing::info!(function = %name, "deployment removed");
        self.hooks.removed(name);
        Ok(StatusCode::OK)
    }

    /// `/functions` and `/function/{name}`, to be nested under `/system` (behind [`require_basic_auth`]).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/functions", get(list).post(create).put(replace).delete(remove))
            .route("/function/{name}", get(one))
            .with_state(self.clone())
    }
}

async fn list(State(api): State<FunctionsApi>, Query(query): Query<OwnerQuery>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], api.list_json(&query)).into_response()
}

async fn one(
    State(api): State<FunctionsApi>,
    Path(name): Path<String>,
) -> Result<Json<FunctionStatus>, FunctionsError> {
    api.get(&name).map(Json)
}

fn deployment(body: &[u8]) -> Result<FunctionDeployment, FunctionsError> {
    serde_json::from_slice(body).map_err(|e| FunctionsError::NotADeployment(e.to_string()))
}

async fn create(State(api): State<FunctionsApi>, body: Bytes) -> Result<StatusCode, FunctionsError> {
    api.deploy(&deployment(&body)?, false)
}

async fn replace(State(api): State<FunctionsApi>, body: Bytes) -> Result<StatusCode, FunctionsError> {
    api.deploy(&deployment(&body)?, true)
}

async fn remove(State(api): State<FunctionsApi>, body: Bytes) -> Result<StatusCode, FunctionsError> {
    let request: DeleteFunctionRequest =
        serde_json::from_slice(&body).map_err(|e| FunctionsError::NotADeletion(e.to_string()))?;
    api.delete(&request.function_name)
}

/// The gateway's admin user and password, which `/system/*` asks for.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    /// Whether `authorization` (a header's value) carries these credentials; compared in constant time.
    pub fn accept(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|v| v.strip_prefix("Basic ")) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let expected = format!("{}:{}", self.user, self.password);
        decoded.len() == expected.len()
            && decoded.iter().zip(expected.as_bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Wraps `router` in one basic-auth check: a request without the credentials is answered 401.
pub fn require_basic_auth(router: Router, credentials: Credentials) -> Router {
    router.layer(axum::middleware::from_fn_with_state(Arc::new(credentials), check_basic_auth))
}

async fn check_basic_auth(State(credentials): State<Arc<Credentials>>, request: Request, next: Next) -> Response {
    let authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok());
    if credentials.accept(authorization) {
        return next.run(request).await;
    }
    let mut response = ErrorResponse::new(StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    response
        .headers_mut()
        .insert("www-authenticate", axum::http::HeaderValue::from_static("Basic realm=\"Restricted\""));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str) -> FunctionDeployment {
        FunctionDeployment { service: name.into(), image: "r/fn:1".into(), ..FunctionDeployment::default() }
    }

    #[test]
    fn deploy_update_and_delete_answer_as_openfaas_does() {
        let api = FunctionsApi::new(BTreeMap::new(), Arc::new(NoHooks));
        assert!(matches!(api.deploy(&deployment("a"), true), Err(FunctionsError::NotFound(_))));
        assert_eq!(api.deploy(&deployment("a"), false).unwrap(), StatusCode::ACCEPTED);
        assert_eq!(api.deploy(&deployment("a"), true).unwrap(), StatusCode::OK);
        assert!(matches!(api.deploy(&deployment("a"), false), Err(FunctionsError::AlreadyExists(_))));
        assert_eq!(api.get("a.openfaas-fn").unwrap().namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        assert_eq!(api.list().len(), 1);
        assert_eq!(api.delete("a").unwrap(), StatusCode::OK);
        assert!(matches!(api.delete("a"), Err(FunctionsError::NotFound(_))));
    }

    /// Counts one replica of every function but `cold`, as a runtime would.
    struct OneReplica;

    impl FunctionHooks for OneReplica {
        fn available_replicas(&self, name: &str) -> Option<u64> {
            Some(u64::from(name != "cold"))
        }
    }

    #[test]
    fn the_list_written_from_the_kept_texts_is_the_list_of_statuses() {
        let api = FunctionsApi::new(BTreeMap::new(), Arc::new(OneReplica));
        let mut rich = deployment("rich");
        rich.labels.insert("com.openfaas.cloud.git-owner".into(), "o\"ctø".into());
        rich.annotations.insert("a".into(), "b".into());
        rich.env_vars.insert("K".into(), "v".into());
        api.deploy(&rich, false).unwrap();
        api.deploy(&deployment("cold"), false).unwrap();
        api.update("rich", |f| f.invocation_count += 1.0);
        assert!(api.count_invocation("rich"));
        assert!(!api.count_invocation("nothing"));
        let listed: Vec<FunctionStatus> = serde_json::from_slice(&api.list_json(&OwnerQuery::default())).unwrap();
        assert_eq!(listed, api.list());
        assert_eq!(listed[1].name, "rich");
        assert!((listed[1].invocation_count - 2.0).abs() < f64::EPSILON);
        assert_eq!((listed[1].replicas, listed[1].available_replicas), (1, 1));
        assert_eq!(listed[0].available_replicas, 0);
        assert_eq!(listed[1].labels.as_ref().unwrap()["com.openfaas.cloud.git-owner"], "o\"ctø");
        assert_eq!(api.get("rich").unwrap(), listed[1]);
        assert_eq!(api.available(), [("cold".to_owned(), 0), ("rich".to_owned(), 1)]);
        let empty = FunctionsApi::new(BTreeMap::new(), Arc::new(NoHooks));
        assert_eq!(empty.list_json(&OwnerQuery::default()), b"[]");
    }

    fn owned(name: &str, login: &str, id: Option<u64>) -> FunctionDeployment {
        let mut deployment = deployment(name);
        deployment.labels.insert(labels::CLOUD.into(), "1".into());
        deployment.labels.insert(labels::OWNER.into(), login.into());
        if let Some(id) = id {
            deployment.labels.insert(labels::OWNER_ID.into(), id.to_string());
        }
        deployment
    }

    #[test]
    fn an_owner_query_lists_that_owner_s_cloud_functions_by_the_ownership_rule() {
        let api = FunctionsApi::new(BTreeMap::new(), Arc::new(NoHooks));
        api.deploy(&owned("a", "Octo", Some(7)), false).unwrap();
        api.deploy(&owned("b", "renamed", Some(7)), false).unwrap();
        api.deploy(&owned("c", "octo", None), false).unwrap();
        api.deploy(&owned("d", "other", Some(8)), false).unwrap();
        let mut by_hand = owned("e", "octo", Some(7));
        by_hand.labels.remove(labels::CLOUD);
        api.deploy(&by_hand, false).unwrap();
        let names = |owner: Option<&str>, owner_id: Option<u64>| -> Vec<String> {
            let query = OwnerQuery { owner: owner.map(str::to_owned), owner_id };
            let listed: Vec<FunctionStatus> = serde_json::from_slice(&api.list_json(&query)).unwrap();
            listed.into_iter().map(|f| f.name).collect()
        };
        assert_eq!(names(Some("OCTO"), Some(7)), ["a", "b", "c"]);
        assert_eq!(names(Some("octo"), None), ["a", "c"]);
        assert_eq!(names(Some("nobody"), Some(8)), ["d"]);
        assert_eq!(names(Some("nobody"), Some(0)), Vec::<String>::new());
        assert_eq!(names(Some("octo"), Some(9)), ["c"], "a login that changed hands: the id decides");
        assert_eq!(names(None, Some(7)).len(), 5, "no owner: every function, as OpenFaaS lists");
    }

    #[test]
    fn credentials_are_checked() {
        let credentials = Credentials { user: "admin".into(), password: "pw".into() };
        let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("admin:pw"));
        assert!(credentials.accept(Some(&good)));
        assert!(!credentials.accept(Some("Basic YWRtaW46eA==")));
        assert!(!credentials.accept(None));
    }
}
