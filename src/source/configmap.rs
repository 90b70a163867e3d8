//! `--mappings-configmap NS/NAME`: the mapping ConfigMap (docs/behaviour.md) watched through the API
//! server with kube-runtime's watcher.
//!
//! The watcher lists, then watches from the list's resourceVersion; on a dropped connection it
//! resumes the watch, on `410 Gone` it lists again, and on errors it backs off exponentially
//! (no busy loop while the API server is unreachable). Every version of the ConfigMap is parsed
//! and checked whole; a good one goes into force at once, a bad one keeps the table in force.
//!
//! A deleted (or never created) ConfigMap also keeps the table in force: removing every
//! mapping mid-migration would send objects to the wrong project or none, which is the failure
//! this webhook exists to prevent. It is logged, counted (`result="missing"`) and reported as a
//! Warning Event; a server that never had a table stays not ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::watch_object;
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};

use crate::live::LiveMappings;
use crate::mapping::objects::{mappings_from_configmap, Mappings, MIGRATION_USERS_ANNOTATION};
use crate::mapping::MappingErrors;

/// `NS/NAME` of the mapping ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for ConfigMapRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let valid = |p: &str| {
            !p.is_empty()
                && p.len() <= 253
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        match s.split_once('/') {
            Some((ns, name)) if valid(ns) && valid(name) => Ok(ConfigMapRef {
                namespace: ns.to_string(),
                name: name.to_string(),
            }),
            _ => Err(format!(
                "expected NAMESPACE/NAME of a ConfigMap (lowercase DNS names), got {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configmap {}/{}", self.namespace, self.name)
    }
}

/// Name under which Events are reported.
const CONTROLLER: &str = "rancher-remap";
/// An Event's note is at most 1 kB.
const NOTE_MAX: usize = 1000;

/// Watches the ConfigMap for ever, putting each good version in force. kube-runtime's
/// `watch_object` does the list/watch bookkeeping (a ConfigMap absent from a fresh list is
/// missing, as one deleted is); its errors back off exponentially.
pub async fn follow(client: Client, at: ConfigMapRef, live: Arc<LiveMappings>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
    let reporter = Reporter::new(client, &at);
    let mut stream = watch_object(api, &at.name).default_backoff().boxed();
    let origin = at.to_string();
    while let Some(item) = stream.next().await {
        match item {
            Ok(Some(cm)) => load(&live, &reporter, &origin, cm).await,
            Ok(None) => missing(&live, &reporter, &origin),
            Err(e) => {
                // The watcher retries with backoff; say why, without the response body.
                tracing::warn!(source = %origin, error = %e, "watching the mapping ConfigMap failed; retrying with backoff; {}", live.fallback_note());
            }
        }
    }
}

async fn load(live: &LiveMappings, reporter: &Reporter, origin: &str, cm: ConfigMap) {
    let version = cm.resource_version().unwrap_or_default();
    let origin = format!("{origin} (resourceVersion {version})");
    // Building a large table takes tens of milliseconds: off the request threads.
    let meta = cm.meta().clone();
    let result = tokio::task::spawn_blocking(move || mappings_of(&cm).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|_| Err("internal error while building the table".into()));
    // `offer` also refuses a table that does not fit this cluster: the Event follows its verdict.
    if let Err(note) = live.offer(&origin, result) {
        reporter.warn("MappingsRejected", note, Some(&meta));
    }
}

/// The table a mapping ConfigMap holds: its `data` is the map the table is built from.
pub fn mappings_of(cm: &ConfigMap) -> Result<Mappings, MappingErrors> {
    let users = cm.annotations().get(MIGRATION_USERS_ANNOTATION);
    let data = cm.data.as_ref();
    mappings_from_configmap(data.unwrap_or(&BTreeMap::new()), users.map(String::as_str))
}

fn missing(live: &LiveMappings, reporter: &Reporter, origin: &str) {
    live.missing();
    let note = format!(
        "the mapping ConfigMap is missing (not found, or deleted); {}",
        live.fallback_note()
    );
    tracing::error!(source = %origin, "{note}");
    reporter.warn("MappingsMissing", note, None);
}

/// Posts Warning Events about the ConfigMap (events.k8s.io/v1; RBAC: create only). Posting
/// happens in the background with a timeout: an API server that refuses or hangs must not
/// hold up the next table. (kube-runtime's `Recorder` would patch a repeated Event's series,
/// which needs `patch` on Events too; each Event is created under its own name instead, so the
/// Role grants `create` alone.)
struct Reporter {
    api: Api<Event>,
    at: ConfigMapRef,
    instance: String,
}

impl Reporter {
    fn new(client: Client, at: &ConfigMapRef) -> Self {
        Reporter {
            api: Api::namespaced(client, &at.namespace),
            at: at.clone(),
            // The pod name when the Deployment passes it down (POD_NAME), else the host name.
            instance: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| CONTROLLER.to_string()),
        }
    }

    fn warn(&self, reason: &str, note: String, cm: Option<&ObjectMeta>) {
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some(ConfigMap::kind(&()).into_owned()),
            namespace: Some(self.at.namespace.clone()),
            name: Some(self.at.name.clone()),
            uid: cm.and_then(|m| m.uid.clone()),
            resource_version: cm.and_then(|m| m.resource_version.clone()),
            ..ObjectReference::default()
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", self.at.name, now.as_nanosecond())),
                namespace: Some(self.at.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Warning".into()),
            reason: Some(reason.into()),
            action: Some("LoadMappings".into()),
            note: Some(crate::text::truncate(note, NOTE_MAX)),
            regarding: Some(regarding),
            reporting_controller: Some(format!("{CONTROLLER}.io/webhook")),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        let api = self.api.clone();
        tokio::spawn(async move {
            let params = PostParams::default();
            let post = api.create(&params, &event);
            match tokio::time::timeout(Duration::from_secs(10), post).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not post a Warning Event"),
                Err(_) => tracing::warn!("posting a Warning Event timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_and_name() {
        assert_eq!(
            "rancher-remap/project-mappings".parse::<ConfigMapRef>(),
            Ok(ConfigMapRef {
                namespace: "rancher-remap".into(),
                name: "project-mappings".into()
            })
        );
        for bad in ["", "name-only", "/x", "x/", "a/b/c", "NS/name", "ns/na me"] {
            assert!(bad.parse::<ConfigMapRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn configmap_with_users() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m", "annotations": {MIGRATION_USERS_ANNOTATION: " a , b,"}},
            "data": {"ns.pair": "p-a=p-b\nc-1:p-a=c-2:p-b\n"}
        }))
        .unwrap();
        let m = mappings_of(&cm).unwrap();
        assert_eq!(m.migration_users, ["a", "b"]);
        assert_eq!(m.table.len(), 2);
        let empty = mappings_of(&ConfigMap::default()).unwrap_err().to_string();
        assert!(empty.contains("no mapping entries"), "{empty}");
    }
}
