//! An in-process fake of the Kubernetes API server, spoken over real HTTP to the real kube
//! client: discovery, paged lists, watches, create, JSON-patch and delete of any registered
//! resource type, core, grouped or custom.
//!
//! It follows kube-apiserver's protocol where the code under test depends on it:
//! - Discovery: `/api`, `/api/v1`, `/apis`, `/apis/GROUP/VERSION` (legacy, non-aggregated).
//! - A list or get whose `Accept` asks for `as=PartialObjectMetadataList` /
//!   `as=PartialObjectMetadata` (`g=meta.k8s.io;v=v1`) is answered in that form, as
//!   kube-apiserver does: items `{"apiVersion": "meta.k8s.io/v1", "kind":
//!   "PartialObjectMetadata", "metadata": {...}}`, nothing else of the object.
//! - Lists carry `metadata.resourceVersion`, honour `limit` and `continue` (with
//!   `remainingItemCount`; a token too old is 410 with one to go on), the namespace of the path
//!   and the whole `fieldSelector` (`metadata.name`, `metadata.namespace`; `=`, `==`, `!=`;
//!   anything else is 400), and, like the real server, leave `kind`/`apiVersion` out of the items
//!   of built-in types.
//! - `?watch=true` replays every change after the requested resourceVersion (a DELETED then an
//!   ADDED stay two events), then streams; a resourceVersion older than the last compaction gets
//!   an `ERROR` event with a 410 Status; `allowWatchBookmarks=true` gets BOOKMARK events; a watch
//!   ends at `timeoutSeconds`; a watcher that falls behind gets a 410 `ERROR` and is closed, never
//!   a silent gap.
//! - Create answers 409 AlreadyExists for a taken name; an `events.k8s.io/v1` Event is checked
//!   for the fields kube-apiserver requires (422 Invalid).
//! - PATCH applies RFC 6902 (`application/json-patch+json`) or RFC 7386 merge patches; a failed
//!   `test` operation is 422, a changed `metadata.resourceVersion` is 409, `dryRun=All` stores
//!   nothing.
//!
//! It has no authentication and no authorization: every request acts as an administrator. What
//! RBAC allows, SubjectAccessReviews and SelfSubjectReviews are the real apiserver's to judge
//! (`cluster_suite`). The fake is for what a real apiserver cannot be made to do on demand:
//! tests can drop every open watch, hold new ones, make watchers fall behind, fail the next
//! lists with 500, expire continue tokens, refuse a verb on a type with 403, make a group
//! version's discovery fail, and change an object just before it is patched (a concurrent
//! writer).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// One resource type the fake serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The plural name in URLs (`deployments`); a `/` marks a subresource (`pods/status`).
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    /// A custom resource: its list items keep `kind` and `apiVersion`.
    pub custom: bool,
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceType {
    /// A type with every verb.
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
            custom: false,
        }
    }

    /// A custom resource with every verb.
    pub fn custom(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            custom: true,
            ..Self::new(group, version, plural, kind, namespaced)
        }
    }

    /// The same type with only these verbs.
    pub fn verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| v.to_string()).collect();
        self
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, the key objects are stored under.
    fn key(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

/// The types every fake serves; tests add their own with [`FakeApi::add_type`].
fn builtin_types() -> Vec<ResourceType> {
    let t = ResourceType::new;
    vec![
        t("", "v1", "namespaces", "Namespace", false),
        t("", "v1", "configmaps", "ConfigMap", true),
        t("", "v1", "secrets", "Secret", true),
        t("", "v1", "pods", "Pod", true),
        t("", "v1", "pods/status", "Pod", true).verbs(&["get", "patch", "update"]),
        t("", "v1", "services", "Service", true),
        t("", "v1", "events", "Event", true),
        t("", "v1", "bindings", "Binding", true).verbs(&["create"]),
        t("apps", "v1", "deployments", "Deployment", true),
        t("apps", "v1", "statefulsets", "StatefulSet", true),
        t("batch", "v1", "cronjobs", "CronJob", true),
        t(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
        ),
        t("events.k8s.io", "v1", "events", "Event", true),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        t("", "v1", "serviceaccounts", "ServiceAccount", true),
        t("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        t(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
        ),
        t(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
        ),
    ]
}

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    key: String,
    kind: &'static str,
    object: Value,
}

#[derive(Clone, Debug)]
enum Msg {
    /// A change, in resourceVersion order.
    Change(Change),
    /// A BOOKMARK at this resourceVersion for watches that asked for them.
    Bookmark(u64),
    /// Tell every open watch that its resourceVersion is too old (410), then end it.
    Expire,
    /// Close every open watch connection without a word.
    Drop,
}

/// One request as it arrived: method, path, query string and `Accept` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub accept: String,
}

impl RequestRecord {
    /// Whether it asks for kube-apiserver's metadata-only form (`PartialObjectMetadataList` or
    /// `PartialObjectMetadata`).
    pub fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }
}

/// One PATCH request as it was answered.
#[derive(Clone, Debug)]
pub struct PatchRecord {
    pub name: String,
    pub status: u16,
    pub dry_run: bool,
    pub body: Value,
}

type Hook = Box<dyn FnOnce(&mut Value) + Send>;

/// How many changes a watch may replay; older ones are compacted (410 for watches from there).
const HISTORY: usize = 4096;

struct Inner {
    rv: u64,
    uids: u64,
    types: Vec<ResourceType>,
    /// (type key, namespace, name) → object with `metadata.resourceVersion` set.
    objects: BTreeMap<(String, String, String), Value>,
    history: VecDeque<Change>,
    /// Watches from a resourceVersion below this get 410.
    compacted_below: u64,
    fail_lists: usize,
    /// Continue tokens from an older epoch get 410.
    token_epoch: u64,
    expire_tokens_at: Option<usize>,
    continued_lists: usize,
    expired_tokens: usize,
    /// (verb, plural) refused with 403, as without RBAC.
    forbidden: HashSet<(String, String)>,
    /// Group versions (`group/version`) whose discovery answers 503, as an aggregated API that
    /// is down.
    unavailable: HashSet<String>,
    before_patch: HashMap<(String, String, String), Hook>,
    lists: usize,
    watches: usize,
    patches: Vec<PatchRecord>,
    /// Every request, in order of arrival.
    request_log: Vec<RequestRecord>,
}

#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Msg>,
    paused: Arc<tokio::sync::watch::Sender<bool>>,
    held: Arc<tokio::sync::watch::Sender<bool>>,
    pub addr: SocketAddr,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        Self::start_with_capacity(256).await
    }

    /// As [`start`](Self::start), with room for `capacity` changes between a watch and its
    /// reader (a watcher further behind gets 410).
    pub async fn start_with_capacity(capacity: usize) -> FakeApi {
        let (tx, _) = broadcast::channel(capacity);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeApi {
            inner: Arc::new(Mutex::new(Inner {
                rv: 1,
                uids: 0,
                types: builtin_types(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted_below: 0,
                fail_lists: 0,
                token_epoch: 0,
                expire_tokens_at: None,
                continued_lists: 0,
                expired_tokens: 0,
                forbidden: HashSet::new(),
                unavailable: HashSet::new(),
                before_patch: HashMap::new(),
                lists: 0,
                watches: 0,
                patches: Vec::new(),
                request_log: Vec::new(),
            })),
            tx,
            paused: Arc::new(tokio::sync::watch::channel(false).0),
            held: Arc::new(tokio::sync::watch::channel(false).0),
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url().parse().unwrap())).unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file for this server in `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        write_kubeconfig(dir, &self.url())
    }

    /// Serves one more type (a custom resource, say).
    pub fn add_type(&self, t: ResourceType) {
        self.inner.lock().unwrap().types.push(t);
    }

    /// Creates or replaces an object (ADDED or MODIFIED); its type comes from `apiVersion` and
    /// `kind`. Returns it as stored.
    pub fn put(&self, obj: Value) -> Value {
        let mut g = self.inner.lock().unwrap();
        let t = g
            .type_of(&obj)
            .unwrap_or_else(|| panic!("no type for {} {}", obj["apiVersion"], obj["kind"]));
        let (ns, name) = ns_name(&obj);
        let at = (t.key(), ns, name);
        g.store(&self.tx, at, obj)
    }

    /// Creates or replaces many objects.
    pub fn put_all(&self, objects: impl IntoIterator<Item = Value>) {
        for obj in objects {
            self.put(obj);
        }
    }

    /// Deletes an object (DELETED), named by an object of the same type, namespace and name.
    pub fn delete(&self, like: &Value) {
        let mut g = self.inner.lock().unwrap();
        let t = g.type_of(like).expect("a served type");
        let (ns, name) = ns_name(like);
        g.remove(&self.tx, &(t.key(), ns, name));
    }

    /// The stored object of the same type, namespace and name as `like`.
    pub fn get(&self, like: &Value) -> Option<Value> {
        let g = self.inner.lock().unwrap();
        let t = g.type_of(like)?;
        let (ns, name) = ns_name(like);
        g.objects.get(&(t.key(), ns, name)).cloned()
    }

    /// Every stored object.
    pub fn objects(&self) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .values()
            .cloned()
            .collect()
    }

    /// Compacts history: every open watch gets a 410 `ERROR` event and ends, and any watch from
    /// an older resourceVersion is refused the same way, so the client must list again.
    pub fn expire(&self) {
        let mut g = self.inner.lock().unwrap();
        g.rv += 1;
        g.compacted_below = g.rv;
        g.history.clear();
        let _ = self.tx.send(Msg::Expire);
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that asked for them.
    pub fn bookmark(&self) {
        let g = self.inner.lock().unwrap();
        let _ = self.tx.send(Msg::Bookmark(g.rv));
    }

    /// Drops every open watch connection.
    pub fn drop_watches(&self) {
        let _ = self.tx.send(Msg::Drop);
    }

    /// Open watches stop reading changes until [`resume_watches`](Self::resume_watches): a way
    /// to make a watcher fall behind.
    pub fn pause_watches(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume_watches(&self) {
        self.paused.send_replace(false);
    }

    /// New watch requests wait, unanswered, until [`release_watches`](Self::release_watches):
    /// a way to make changes happen while a client is between two watches.
    pub fn hold_watches(&self) {
        self.held.send_replace(true);
    }

    pub fn release_watches(&self) {
        self.held.send_replace(false);
    }

    /// Watch requests waiting under [`hold_watches`](Self::hold_watches).
    pub fn held_watches(&self) -> usize {
        self.held.receiver_count()
    }

    /// The next `n` list requests fail with 500.
    pub fn fail_lists(&self, n: usize) {
        self.inner.lock().unwrap().fail_lists = n;
    }

    /// The `n`th list request that carries a continue token (counting from 1), and every
    /// token issued before it, is too old: 410 Expired, as after etcd compacted the list's
    /// revision.
    pub fn expire_continue_tokens_at(&self, n: usize) {
        self.inner.lock().unwrap().expire_tokens_at = Some(n);
    }

    /// Lists answered 410 for a continue token too old.
    pub fn expired_tokens(&self) -> usize {
        self.inner.lock().unwrap().expired_tokens
    }

    /// Discovery of `group/version` answers 503, as for an aggregated API whose backend is down.
    pub fn make_unavailable(&self, group_version: &str) {
        self.inner
            .lock()
            .unwrap()
            .unavailable
            .insert(group_version.to_string());
    }

    /// Requests to `verb` (`list`, `patch`) objects of this type (plural name) get 403
    /// Forbidden, as without RBAC, until [`permit`](Self::permit).
    pub fn forbid(&self, verb: &str, plural: &str) {
        self.inner
            .lock()
            .unwrap()
            .forbidden
            .insert((verb.to_string(), plural.to_string()));
    }

    pub fn permit(&self, verb: &str, plural: &str) {
        self.inner
            .lock()
            .unwrap()
            .forbidden
            .remove(&(verb.to_string(), plural.to_string()));
    }

    /// Just before the next PATCH of the object named like `like`, another writer changes it
    /// with `change` (a new resourceVersion and a MODIFIED event), as if between a client's
    /// read and its write.
    pub fn before_patch(&self, like: &Value, change: impl FnOnce(&mut Value) + Send + 'static) {
        let mut g = self.inner.lock().unwrap();
        let t = g.type_of(like).expect("a served type");
        let (ns, name) = ns_name(like);
        g.before_patch.insert((t.key(), ns, name), Box::new(change));
    }

    pub fn lists(&self) -> usize {
        self.inner.lock().unwrap().lists
    }

    pub fn watches(&self) -> usize {
        self.inner.lock().unwrap().watches
    }

    /// Every PATCH request so far, in order.
    pub fn patches(&self) -> Vec<PatchRecord> {
        self.inner.lock().unwrap().patches.clone()
    }

    /// `events.k8s.io/v1` Events created so far.
    pub fn events(&self) -> Vec<Value> {
        let g = self.inner.lock().unwrap();
        g.objects
            .iter()
            .filter(|((key, _, _), _)| key == "events.events.k8s.io")
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl FakeApi {
    /// Every request so far (method, path, query, `Accept`), in order of arrival.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.inner.lock().unwrap().request_log.clone()
    }
}

/// Writes `dir/kubeconfig` for an API server at `url`, with no credentials (the fake asks for
/// none).
pub fn write_kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\nusers:\n- name: nobody\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn ns_name(obj: &Value) -> (String, String) {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

impl Inner {
    fn type_of(&self, obj: &Value) -> Option<ResourceType> {
        let api_version = obj["apiVersion"].as_str()?;
        let kind = obj["kind"].as_str()?;
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind && !t.plural.contains('/'))
            .cloned()
    }

    fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Stores `obj` at `at` with the next resourceVersion, records and broadcasts the change.
    fn store(
        &mut self,
        tx: &broadcast::Sender<Msg>,
        at: (String, String, String),
        mut obj: Value,
    ) -> Value {
        self.rv += 1;
        let uid = match self.objects.get(&at) {
            Some(old) => old["metadata"]["uid"].clone(),
            None => {
                self.uids += 1;
                json!(format!("6f1a2b3c-0000-4000-8000-{:012}", self.uids))
            }
        };
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        obj["metadata"]["uid"] = uid;
        let kind = if self.objects.contains_key(&at) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let key = at.0.clone();
        self.objects.insert(at, obj.clone());
        self.record(tx, key, kind, obj.clone());
        obj
    }

    fn remove(
        &mut self,
        tx: &broadcast::Sender<Msg>,
        at: &(String, String, String),
    ) -> Option<Value> {
        let mut obj = self.objects.remove(at)?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(tx, at.0.clone(), "DELETED", obj.clone());
        Some(obj)
    }

    fn record(
        &mut self,
        tx: &broadcast::Sender<Msg>,
        key: String,
        kind: &'static str,
        object: Value,
    ) {
        let change = Change {
            rv: self.rv,
            key,
            kind,
            object,
        };
        if self.history.len() == HISTORY {
            if let Some(old) = self.history.pop_front() {
                // Changes up to old.rv are gone: a watch must start at or after it.
                self.compacted_below = self.compacted_below.max(old.rv);
            }
        }
        self.history.push_back(change.clone());
        // Sent under the lock: receivers see changes in resourceVersion order.
        let _ = tx.send(Msg::Change(change));
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn fail(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        Json(status(code, reason, message)),
    )
        .into_response()
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

/// What a request's path names.
#[derive(Clone)]
struct Target {
    t: ResourceType,
    /// From the path (`/namespaces/NS/...`); empty for all namespaces or cluster-scoped types.
    namespace: String,
    name: Option<String>,
}

/// Every request: discovery, or a verb on a resource type.
async fn handle(
    State(fake): State<FakeApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let metadata_only = log_request(&fake, &method, &uri, &headers).metadata_only();
    if method == Method::GET {
        if let Some(r) = discovery(&fake, &segs) {
            return r;
        }
    }
    let Some(target) = resolve(&fake, &segs) else {
        return fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    if let Some(refused) = refused(&fake, &method, &target) {
        return refused;
    }
    match (method, &target.name) {
        (Method::GET, None) if watching => watch(&fake, &target, &q).await,
        (Method::GET, None) => list(&fake, &target, &q, metadata_only),
        (Method::GET, Some(name)) => {
            let g = fake.inner.lock().unwrap();
            match g
                .objects
                .get(&(target.t.key(), target.namespace.clone(), name.clone()))
            {
                Some(obj) if metadata_only => Json(partial(obj)).into_response(),
                Some(obj) => Json(obj.clone()).into_response(),
                None => not_found(&target.t, name),
            }
        }
        (Method::POST, None) => create(&fake, &target, &body),
        (Method::PATCH, Some(_)) => patch(&fake, &target, &headers, &q, &body),
        (Method::DELETE, Some(name)) => {
            let mut g = fake.inner.lock().unwrap();
            match g.remove(
                &fake.tx,
                &(target.t.key(), target.namespace.clone(), name.clone()),
            ) {
                Some(obj) => Json(obj).into_response(),
                None => not_found(&target.t, name),
            }
        }
        _ => fail(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

/// Counts and records a request.
fn log_request(fake: &FakeApi, method: &Method, uri: &Uri, headers: &HeaderMap) -> RequestRecord {
    let record = RequestRecord {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        accept: headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    };
    fake.inner.lock().unwrap().request_log.push(record.clone());
    record
}

/// The resource type, namespace and name a path names; `None` for a path that names none.
fn resolve(fake: &FakeApi, segs: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (*ns, *plural, None),
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name)),
        [plural] => ("", *plural, None),
        [plural, name] => ("", *plural, Some(*name)),
        _ => return None,
    };
    let t = fake.inner.lock().unwrap().find(group, version, plural)?;
    if !t.namespaced && !namespace.is_empty() {
        return None;
    }
    Some(Target {
        t,
        namespace: namespace.to_string(),
        name: name.map(str::to_string),
    })
}

/// The 403 for a verb [`FakeApi::forbid`] refuses on this type; `None` when it may go on.
fn refused(fake: &FakeApi, method: &Method, target: &Target) -> Option<Response> {
    let verb = match (method.clone(), target.name.is_some()) {
        (Method::GET, false) => "list",
        (Method::PATCH, _) => "patch",
        _ => return None,
    };
    let g = fake.inner.lock().unwrap();
    if !g
        .forbidden
        .contains(&(verb.to_string(), target.t.plural.clone()))
    {
        return None;
    }
    let name = target
        .name
        .as_deref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    let plural = &target.t.plural;
    Some(fail(
        403,
        "Forbidden",
        &format!("{plural}{name} is forbidden: cannot {verb} resource \"{plural}\""),
    ))
}

fn not_found(t: &ResourceType, name: &str) -> Response {
    fail(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", t.plural),
    )
}

fn discovery(fake: &FakeApi, segs: &[&str]) -> Option<Response> {
    let g = fake.inner.lock().unwrap();
    if let ["apis", group, version] = segs {
        if g.unavailable.contains(&format!("{group}/{version}")) {
            return Some(fail(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ));
        }
    }
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = g
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .map(|t| {
                json!({"name": t.plural, "singularName": t.kind.to_lowercase(),
                       "namespaced": t.namespaced, "kind": t.kind, "verbs": t.verbs})
            })
            .collect();
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
            .into_response()
    };
    Some(match segs {
        ["api"] => Json(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}))
        .into_response(),
        ["api", "v1"] => resources("", "v1"),
        ["apis"] => {
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for t in g.types.iter().filter(|t| !t.group.is_empty()) {
                let versions = groups.entry(&t.group).or_default();
                if !versions.contains(&t.version.as_str()) {
                    versions.push(&t.version);
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(name, versions)| {
                    let vs: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                        .collect();
                    let preferred = vs[0].clone();
                    json!({"name": name, "versions": vs, "preferredVersion": preferred})
                })
                .collect();
            Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
                .into_response()
        }
        ["apis", group, version] if g.types.iter().any(|t| t.group == *group && t.version == *version) => {
            resources(group, version)
        }
        _ => return None,
    })
}

/// A parsed `fieldSelector`: every term must hold.
struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    fn parse(s: Option<&String>) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in s.map(String::as_str).unwrap_or_default().split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: {term:?}; expected field=value"));
            };
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.to_string()));
        }
        Ok(FieldSelector(terms))
    }

    fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = obj
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or_default();
            (actual == value) == *equal
        })
    }
}

/// Whether a change or object belongs to a request for `target` with `selector`.
fn selected(target: &Target, selector: &FieldSelector, key: &str, obj: &Value) -> bool {
    key == target.t.key()
        && (target.namespace.is_empty()
            || obj.pointer("/metadata/namespace").and_then(Value::as_str)
                == Some(&target.namespace))
        && selector.matches(obj)
}

/// What a list item looks like: built-in types without `kind`/`apiVersion`, as kube-apiserver
/// sends them.
/// An object as kube-apiserver sends it metadata-only: its metadata and nothing else.
fn partial(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": obj["metadata"]})
}

fn as_item(t: &ResourceType, obj: &Value) -> Value {
    let mut obj = obj.clone();
    if !t.custom {
        if let Some(m) = obj.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
    }
    obj
}

/// A list's continue token: where it stopped, and in which epoch (see
/// [`FakeApi::expire_continue_tokens_at`]).
fn continue_token(ns: &str, name: &str, epoch: u64) -> String {
    let token = serde_json::to_vec(&(ns, name, epoch)).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

fn list(
    fake: &FakeApi,
    target: &Target,
    q: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    let selector = match FieldSelector::parse(q.get("fieldSelector")) {
        Ok(s) => s,
        Err(e) => return fail(400, "BadRequest", &e),
    };
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => usize::MAX,
        Some(Ok(0)) => usize::MAX,
        Some(Ok(n)) => n,
        Some(Err(_)) => return fail(400, "BadRequest", "limit: not a number"),
    };
    let after: Option<(String, String, u64)> = match q.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(after) => Some(after),
            None => return fail(400, "BadRequest", "continue key is not valid"),
        },
    };
    let mut g = fake.inner.lock().unwrap();
    g.lists += 1;
    if let Some(gone) = after.as_ref().and_then(|a| g.continue_expired(a)) {
        return gone;
    }
    if g.fail_lists > 0 {
        g.fail_lists -= 1;
        return fail(500, "InternalError", "etcd is having a bad day");
    }
    let key = target.t.key();
    let start = match &after {
        Some((ns, name, _)) => std::ops::Bound::Excluded((key.clone(), ns.clone(), name.clone())),
        None => std::ops::Bound::Included((key.clone(), String::new(), String::new())),
    };
    let mut items = Vec::new();
    let mut remaining = 0usize;
    let mut last = None;
    for ((k, ns, name), obj) in g.objects.range((start, std::ops::Bound::Unbounded)) {
        if *k != key {
            break;
        }
        if !selected(target, &selector, k, obj) {
            continue;
        }
        if items.len() < limit {
            items.push(match metadata_only {
                true => partial(obj),
                false => as_item(&target.t, obj),
            });
            last = Some((ns.clone(), name.clone()));
        } else {
            remaining += 1;
        }
    }
    let mut metadata = json!({"resourceVersion": g.rv.to_string()});
    if let (true, Some((ns, name))) = (remaining > 0, &last) {
        metadata["continue"] = json!(continue_token(ns, name, g.token_epoch));
        metadata["remainingItemCount"] = json!(remaining);
    }
    drop(g);
    list_answer(&target.t, metadata, items, metadata_only)
}

impl Inner {
    /// A continued list's token, counted; 410 Gone when it has expired.
    fn continue_expired(&mut self, (ns, name, epoch): &(String, String, u64)) -> Option<Response> {
        self.continued_lists += 1;
        if self.expire_tokens_at == Some(self.continued_lists) {
            self.token_epoch += 1;
        }
        if *epoch >= self.token_epoch {
            return None;
        }
        self.expired_tokens += 1;
        // As kube-apiserver after etcd compacted the list's revision: 410, with a token
        // that continues where the old one stopped (an inconsistent but complete list).
        let token = continue_token(ns, name, self.token_epoch);
        let mut s = status(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.",
        );
        s["metadata"] = json!({"continue": token});
        Some((StatusCode::GONE, Json(s)).into_response())
    }
}

/// A list of `t`, or kube-apiserver's PartialObjectMetadataList when `metadata_only`.
fn list_answer(
    t: &ResourceType,
    metadata: Value,
    items: Vec<Value>,
    metadata_only: bool,
) -> Response {
    let (kind, api_version) = match metadata_only {
        true => ("PartialObjectMetadataList".into(), "meta.k8s.io/v1".into()),
        false => (format!("{}List", t.kind), t.api_version()),
    };
    Json(json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}))
        .into_response()
}

async fn watch(fake: &FakeApi, target: &Target, q: &HashMap<String, String>) -> Response {
    let mut held = fake.held.subscribe();
    let _ = held.wait_for(|h| !*h).await;
    drop(held);
    let selector = match FieldSelector::parse(q.get("fieldSelector")) {
        Ok(s) => s,
        Err(e) => return fail(400, "BadRequest", &e),
    };
    let from: Option<u64> = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && v.as_str() != "0")
        .and_then(|v| v.parse().ok());

    let mut g = fake.inner.lock().unwrap();
    g.watches += 1;
    // Subscribed under the lock: nothing falls between the replay and the stream.
    let rx = fake.tx.subscribe();
    let (first, done) = replay(&g, target, &selector, from);
    let follow = Follow {
        bookmarks: q.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
        timeout: q
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs),
        seen: g.rv,
        key: target.t.key(),
        target: target.clone(),
        selector,
    };
    drop(g);

    let (mut out, body) =
        futures::channel::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    let paused = fake.paused.subscribe();
    tokio::spawn(async move {
        for b in first {
            if out.send(Ok(b)).await.is_err() {
                return;
            }
        }
        if !done {
            follow.changes(out, rx, paused).await;
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap()
}

fn expired() -> Bytes {
    line(&json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}))
}

/// The events a watch from `from` starts with, and whether it ends there (a compacted
/// resourceVersion: 410).
fn replay(
    g: &Inner,
    target: &Target,
    selector: &FieldSelector,
    from: Option<u64>,
) -> (Vec<Bytes>, bool) {
    let mut first = Vec::new();
    match from {
        Some(from) if from < g.compacted_below => return (vec![expired()], true),
        Some(from) => {
            for c in g.history.iter().filter(|c| c.rv > from) {
                if selected(target, selector, &c.key, &c.object) {
                    first.push(line(&json!({"type": c.kind, "object": c.object})));
                }
            }
        }
        None => {
            // No resourceVersion: the current state as ADDED events, then changes.
            for ((k, _, _), obj) in g.objects.iter() {
                if selected(target, selector, k, obj) {
                    first.push(line(&json!({"type": "ADDED", "object": obj})));
                }
            }
        }
    }
    (first, false)
}

/// A watch after its replay: what it sends, and from which resourceVersion.
struct Follow {
    bookmarks: bool,
    timeout: Option<Duration>,
    seen: u64,
    key: String,
    target: Target,
    selector: FieldSelector,
}

type WatchOut = futures::channel::mpsc::Sender<Result<Bytes, std::convert::Infallible>>;

impl Follow {
    fn bookmark(&self) -> Bytes {
        let t = &self.target.t;
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": t.kind, "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": self.seen.to_string()}}}),
        )
    }

    /// Sends the changes until the timeout, a drop or an expiry.
    async fn changes(
        mut self,
        mut out: WatchOut,
        mut rx: broadcast::Receiver<Msg>,
        mut paused: tokio::sync::watch::Receiver<bool>,
    ) {
        let deadline = self.timeout.map(|t| tokio::time::Instant::now() + t);
        let ended = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(ended);
        loop {
            let next = async {
                // A paused watch reads nothing: changes pile up in the channel.
                let _ = paused.wait_for(|p| !*p).await;
                rx.recv().await
            };
            let msg = tokio::select! {
                _ = &mut ended => {
                    if self.bookmarks {
                        let _ = out.send(Ok(self.bookmark())).await;
                    }
                    return;
                }
                msg = next => msg,
            };
            let b = match msg {
                Ok(Msg::Change(c)) => match self.event(&c) {
                    Some(b) => b,
                    None => continue,
                },
                Ok(Msg::Bookmark(rv)) if self.bookmarks => {
                    self.seen = self.seen.max(rv);
                    self.bookmark()
                }
                Ok(Msg::Bookmark(_)) => continue,
                Ok(Msg::Expire) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fallen behind or compacted: say so, never skip changes silently.
                    let _ = out.send(Ok(expired())).await;
                    return;
                }
                Ok(Msg::Drop) | Err(broadcast::error::RecvError::Closed) => return,
            };
            if out.send(Ok(b)).await.is_err() {
                return;
            }
        }
    }

    /// The event for a change this watch sees (not seen before, its kind, namespace, fields).
    fn event(&mut self, c: &Change) -> Option<Bytes> {
        if c.rv <= self.seen {
            return None;
        }
        self.seen = c.rv;
        let ns = &self.target.namespace;
        let in_ns = ns.is_empty()
            || c.object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(ns);
        if c.key != self.key || !in_ns || !self.selector.matches(&c.object) {
            return None;
        }
        Some(line(&json!({"type": c.kind, "object": c.object})))
    }
}

fn create(fake: &FakeApi, target: &Target, body: &Bytes) -> Response {
    let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
        return fail(400, "BadRequest", "the body is not a JSON object");
    };
    if !obj.is_object() {
        return fail(400, "BadRequest", "the body is not a JSON object");
    }
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !ns.is_empty() && ns != target.namespace {
        return fail(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    if target.t.namespaced {
        obj["metadata"]["namespace"] = json!(target.namespace);
    }
    obj["kind"] = json!(target.t.kind);
    obj["apiVersion"] = json!(target.t.api_version());
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push((
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    if target.t.key() == "events.events.k8s.io" {
        causes.extend(event_problems(&obj, &target.namespace));
    }
    if !causes.is_empty() {
        let message = causes
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = status(
            422,
            "Invalid",
            &format!("{} \"{name}\" is invalid: [{message}]", target.t.kind),
        );
        s["details"] = json!({"name": name, "kind": target.t.plural,
            "causes": causes.iter().map(|(f, m)| json!({"field": f, "message": m})).collect::<Vec<_>>()});
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(s)).into_response();
    }
    let at = (target.t.key(), target.namespace.clone(), name.clone());
    let mut g = fake.inner.lock().unwrap();
    if g.objects.contains_key(&at) {
        let mut s = status(
            409,
            "AlreadyExists",
            &format!(
                "{}.{} \"{name}\" already exists",
                target.t.plural, target.t.group
            ),
        );
        s["details"] = json!({"name": name, "group": target.t.group, "kind": target.t.plural});
        return (StatusCode::CONFLICT, Json(s)).into_response();
    }
    let stored = g.store(&fake.tx, at, obj);
    (StatusCode::CREATED, Json(stored)).into_response()
}

/// What kube-apiserver's validation refuses in a new `events.k8s.io/v1` Event.
fn event_problems(ev: &Value, namespace: &str) -> Vec<(&'static str, &'static str)> {
    let s = |p: &str| ev.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let mut out = Vec::new();
    if s("/eventTime").is_empty() {
        out.push(("eventTime", "Required value"));
    }
    if !matches!(s("/type"), "Normal" | "Warning") {
        out.push(("type", "Unsupported value: must be Normal or Warning"));
    }
    for (field, p) in [
        ("reportingController", "/reportingController"),
        ("reportingInstance", "/reportingInstance"),
        ("action", "/action"),
        ("reason", "/reason"),
    ] {
        let v = s(p);
        if v.is_empty() {
            out.push((field, "Required value"));
        } else if v.len() > 128 {
            out.push((field, "Too long: may not be longer than 128"));
        }
    }
    if s("/note").len() > 1024 {
        out.push(("note", "Too long: may not be longer than 1024"));
    }
    let regarding_ns = s("/regarding/namespace");
    if !regarding_ns.is_empty() && regarding_ns != namespace {
        out.push((
            "regarding.namespace",
            "Invalid value: does not match event.namespace",
        ));
    }
    out
}

/// Applies a JSON or merge patch, as the content type says; an error as (status, reason,
/// message).
fn apply_patch(
    content_type: &str,
    body: &Value,
    patched: &mut Value,
) -> Result<(), (u16, &'static str, String)> {
    match content_type.split(';').next().unwrap_or_default().trim() {
        "application/json-patch+json" => serde_json::from_value::<json_patch::Patch>(body.clone())
            .map_err(|e| (400, "BadRequest", e.to_string()))
            .and_then(|p| {
                json_patch::patch(patched, &p).map_err(|e| (422, "Invalid", e.to_string()))
            }),
        "application/merge-patch+json" => {
            json_patch::merge(patched, body);
            Ok(())
        }
        other => Err((
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {other}"),
        )),
    }
}

fn patch(
    fake: &FakeApi,
    target: &Target,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    body: &Bytes,
) -> Response {
    let name = target.name.clone().unwrap_or_default();
    let at = (target.t.key(), target.namespace.clone(), name.clone());
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None => false,
        Some("All") => true,
        Some(_) => return fail(400, "BadRequest", "dryRun: only All is supported"),
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(_) => return fail(400, "BadRequest", "the patch is not JSON"),
    };
    let mut g = fake.inner.lock().unwrap();
    let record = |g: &mut Inner, status: u16| {
        g.patches.push(PatchRecord {
            name: name.clone(),
            status,
            dry_run,
            body: body.clone(),
        })
    };
    if let Some(change) = g.before_patch.remove(&at) {
        if let Some(mut obj) = g.objects.get(&at).cloned() {
            change(&mut obj);
            g.store(&fake.tx, at.clone(), obj);
        }
    }
    let Some(current) = g.objects.get(&at).cloned() else {
        record(&mut g, 404);
        return not_found(&target.t, &name);
    };
    let mut patched = current.clone();
    let applied = apply_patch(&content_type, &body, &mut patched);
    if let Err((code, reason, message)) = applied {
        record(&mut g, code);
        return fail(code, reason, &message);
    }
    let rv = |v: &Value| v.pointer("/metadata/resourceVersion").cloned();
    if rv(&patched) != rv(&current) {
        record(&mut g, 409);
        return fail(
            409,
            "Conflict",
            &format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", target.t.plural),
        );
    }
    if ns_name(&patched) != (target.namespace.clone(), name.clone()) {
        record(&mut g, 422);
        return fail(
            422,
            "Invalid",
            "metadata.name and metadata.namespace cannot be changed",
        );
    }
    record(&mut g, 200);
    if dry_run || patched == current {
        return Json(patched).into_response();
    }
    let stored = g.store(&fake.tx, at, patched);
    Json(stored).into_response()
}
