//! An in-process fake of the Kubernetes API server, enough for one ConfigMap's list/watch and
//! Event creation, spoken over real HTTP to the real kube client.
//!
//! It follows the protocol: lists carry `metadata.resourceVersion`; `?watch=true` streams
//! newline-delimited watch events after the requested resourceVersion; a resourceVersion older
//! than the last compaction gets an `ERROR` event with a 410 Status (the client must relist).
//! Tests can also drop every open watch connection and make the next lists fail with 500.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

#[derive(Clone, Debug)]
enum Msg {
    /// A watch event line.
    Event(Value),
    /// Tell every open watch that its resourceVersion is too old (410), then end it.
    Expire,
    /// Close every open watch connection without a word.
    Drop,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// The ConfigMap, with `metadata.resourceVersion` set.
    object: Option<Value>,
    /// The last change: (resourceVersion, event type, object).
    last: Option<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this get 410.
    compacted_below: u64,
    fail_lists: usize,
    pub lists: usize,
    pub watches: usize,
    events: Vec<Value>,
}

#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Msg>,
    pub addr: SocketAddr,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let (tx, _) = broadcast::channel(64);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeApi {
            inner: Arc::default(),
            tx,
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/configmaps", get(configmaps))
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events",
                post(events),
            )
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().unwrap();
        kube::Client::try_from(kube::Config::new(url)).unwrap()
    }

    /// Creates or replaces the ConfigMap (ADDED or MODIFIED).
    pub fn put(&self, mut cm: Value) {
        let mut g = self.inner.lock().unwrap();
        g.rv += 1;
        cm["metadata"]["resourceVersion"] = json!(g.rv.to_string());
        cm["metadata"]["uid"] = json!("6f1a2b3c-0000-4000-8000-000000000001");
        let kind = if g.object.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        g.object = Some(cm.clone());
        g.last = Some((g.rv, kind, cm.clone()));
        let _ = self
            .tx
            .send(Msg::Event(json!({"type": kind, "object": cm})));
    }

    /// Deletes the ConfigMap (DELETED).
    pub fn delete(&self) {
        let mut g = self.inner.lock().unwrap();
        let Some(mut cm) = g.object.take() else {
            return;
        };
        g.rv += 1;
        cm["metadata"]["resourceVersion"] = json!(g.rv.to_string());
        g.last = Some((g.rv, "DELETED", cm.clone()));
        let _ = self
            .tx
            .send(Msg::Event(json!({"type": "DELETED", "object": cm})));
    }

    /// Compacts history: every open watch gets a 410 `ERROR` event and ends, and any watch from
    /// an older resourceVersion is refused the same way, so the client must list again.
    pub fn expire(&self) {
        let mut g = self.inner.lock().unwrap();
        g.rv += 1;
        g.compacted_below = g.rv;
        let _ = self.tx.send(Msg::Expire);
    }

    /// Drops every open watch connection.
    pub fn drop_watches(&self) {
        let _ = self.tx.send(Msg::Drop);
    }

    /// The next `n` list requests fail with 500.
    pub fn fail_lists(&self, n: usize) {
        self.inner.lock().unwrap().fail_lists = n;
    }

    pub fn lists(&self) -> usize {
        self.inner.lock().unwrap().lists
    }

    pub fn watches(&self) -> usize {
        self.inner.lock().unwrap().watches
    }

    /// Events created so far.
    pub fn events(&self) -> Vec<Value> {
        self.inner.lock().unwrap().events.clone()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

async fn configmaps(
    State(fake): State<FakeApi>,
    Path(_ns): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    // The watcher selects the one ConfigMap by name; this fake holds only that one.
    assert!(
        q.get("fieldSelector")
            .is_some_and(|f| f.starts_with("metadata.name=")),
        "the watcher must select by name: {q:?}"
    );
    if q.get("watch").map(String::as_str) == Some("true") {
        return watch(fake, &q);
    }
    let mut g = fake.inner.lock().unwrap();
    g.lists += 1;
    if g.fail_lists > 0 {
        g.fail_lists -= 1;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(status(500, "InternalError", "etcd is having a bad day")),
        )
            .into_response();
    }
    let items: Vec<Value> = g.object.iter().cloned().collect();
    Json(json!({"kind": "ConfigMapList", "apiVersion": "v1",
                "metadata": {"resourceVersion": g.rv.to_string()}, "items": items}))
    .into_response()
}

fn watch(fake: FakeApi, q: &std::collections::HashMap<String, String>) -> Response {
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut g = fake.inner.lock().unwrap();
    g.watches += 1;
    let rx = fake.tx.subscribe();
    let mut first = Vec::new();
    let mut done = false;
    if from < g.compacted_below {
        first.push(line(
            &json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}),
        ));
        done = true;
    } else if let Some((rv, kind, obj)) = &g.last {
        // A change between the client's list and this watch: replay it.
        if *rv > from {
            first.push(line(&json!({"type": kind, "object": obj})));
        }
    }
    drop(g);
    let stream = futures::stream::unfold(
        (rx, first, done),
        |(mut rx, mut first, done)| async move {
            if !first.is_empty() {
                let b = first.remove(0);
                return Some((Ok::<_, Infallible>(b), (rx, first, done)));
            }
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(Msg::Event(v)) => return Some((Ok(line(&v)), (rx, first, false))),
                    Ok(Msg::Expire) => {
                        let b = line(
                            &json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}),
                        );
                        return Some((Ok(b), (rx, first, true)));
                    }
                    Ok(Msg::Drop) | Err(broadcast::error::RecvError::Closed) => return None,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                }
            }
        },
    );
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn events(
    State(fake): State<FakeApi>,
    Path(_ns): Path<String>,
    Json(ev): Json<Value>,
) -> Response {
    fake.inner.lock().unwrap().events.push(ev.clone());
    (StatusCode::CREATED, Json(ev)).into_response()
}
