//! Objects written through the apiserver as JSON, and the migrated objects of every kind the
//! webhook rewrites (SPEC §5's places), with the source cluster's project IDs.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{json, Value};

pub const PID: &str = "field.cattle.io/projectId";
pub const MIGRATED: &str = "stork.libopenstorage.org/migrated";

/// The API of `obj`'s kind, in its namespace when it has one.
pub fn api(client: &kube::Client, obj: &Value) -> Api<DynamicObject> {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "NetworkPolicy" => "networkpolicies".to_string(),
        "ClusterPair" => "clusterpairs".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    let resource = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural,
    };
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Creates `obj` (server-side dry run with `dry_run`); what the apiserver stored (or would).
pub async fn create(client: &kube::Client, obj: &Value, dry_run: bool) -> kube::Result<Value> {
    let typed: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    let params = PostParams {
        dry_run,
        ..Default::default()
    };
    let stored = api(client, obj).create(&params, &typed).await?;
    Ok(serde_json::to_value(stored).unwrap())
}

/// Replaces `obj` (which carries the resourceVersion it was read at).
pub async fn replace(client: &kube::Client, obj: &Value) -> kube::Result<Value> {
    let typed: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    let name = obj["metadata"]["name"].as_str().unwrap();
    let stored = api(client, obj)
        .replace(name, &PostParams::default(), &typed)
        .await?;
    Ok(serde_json::to_value(stored).unwrap())
}

/// Reads `obj` back.
pub async fn get(client: &kube::Client, obj: &Value) -> Value {
    let name = obj["metadata"]["name"].as_str().unwrap();
    serde_json::to_value(api(client, obj).get(name).await.unwrap()).unwrap()
}

/// Waits for the default ServiceAccount of `ns` (kube-controller-manager makes it): Pods need it.
pub async fn until_default_service_account(client: &kube::Client, ns: &str) {
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": ns}});
    crate::common::eventually(
        "the default ServiceAccount",
        std::time::Duration::from_secs(30),
        async || {
            api(client, &sa)
                .get_opt("default")
                .await
                .is_ok_and(|sa| sa.is_some())
        },
    )
    .await;
}

/// Labels and annotations in both of Rancher's forms; the migrated mark when `marked`.
fn meta(name: &str, ns: &str, marked: bool) -> Value {
    let mut annotations = json!({PID: "c-7gh2k:p-cd56e"});
    if marked {
        annotations[MIGRATED] = json!("true");
    }
    json!({"name": name, "namespace": ns, "labels": {"app": name, PID: "p-ab12c"},
           "annotations": annotations})
}

/// A pod spec whose affinity terms select Namespaces by project, in every place SPEC §5 names.
fn pod_spec(restart: &str) -> Value {
    let term = |selector: Value| {
        json!({"labelSelector": {"matchLabels": {"app": "db"}},
               "topologyKey": "kubernetes.io/hostname", "namespaceSelector": selector})
    };
    json!({
        "restartPolicy": restart,
        "containers": [{"name": "app", "image": "registry.example.com/app:1"}],
        "affinity": {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution":
                    [term(json!({"matchLabels": {PID: "p-ab12c"}}))],
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                    "podAffinityTerm": term(json!({"matchExpressions":
                        [{"key": PID, "operator": "In", "values": ["p-ab12c", "p-cd56e"]}]}))}]
            },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution":
                    [term(json!({"matchExpressions":
                        [{"key": PID, "operator": "NotIn", "values": ["p-cd56e"]}]}))],
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5,
                    "podAffinityTerm": term(json!({"matchLabels": {PID: "p-cd56e"}}))}]
            }
        }
    })
}

fn template(name: &str, restart: &str) -> Value {
    json!({"metadata": {"labels": {"app": name, PID: "p-ab12c"},
                        "annotations": {PID: "c-7gh2k:p-ab12c"}},
           "spec": pod_spec(restart)})
}

/// One object of every built-in kind the webhook rewrites, in `ns`, named by kind.
pub fn every_kind(ns: &str, marked: bool) -> Vec<Value> {
    let m = |name: &str| meta(name, ns, marked);
    let selector = |name: &str| json!({"matchLabels": {"app": name}});
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m("settings"),
               "data": {"k": "v"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": m("pod"),
               "spec": pod_spec("Always")}),
        json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": m("podtemplate"),
               "template": template("podtemplate", "Always")}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": m("rc"),
               "spec": {"selector": {"app": "rc"}, "template": template("rc", "Always")}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": m("deployment"),
               "spec": {"selector": selector("deployment"), "template": template("deployment", "Always")}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": m("statefulset"),
               "spec": {"selector": selector("statefulset"), "serviceName": "statefulset",
                        "template": template("statefulset", "Always")}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": m("daemonset"),
               "spec": {"selector": selector("daemonset"), "template": template("daemonset", "Always")}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": m("replicaset"),
               "spec": {"selector": selector("replicaset"), "template": template("replicaset", "Always")}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": m("job"),
               "spec": {"template": template("job", "Never")}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": m("cronjob"),
               "spec": {"schedule": "0 0 * * *", "jobTemplate": {
                   "metadata": {"labels": {PID: "p-cd56e"}, "annotations": {PID: "c-7gh2k:p-cd56e"}},
                   "spec": {"template": template("cronjob", "Never")}}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": m("netpol"),
               "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {PID: "p-ab12c"}}},
                                              {"podSelector": {"matchLabels": {"app": "x"}}}]}],
                        "egress": [{"to": [{"namespaceSelector": {"matchExpressions":
                            [{"key": PID, "operator": "In", "values": ["p-cd56e"]}]}}]}]}}),
    ]
}

/// Every string in `v` equal to one of `ids`, by JSON pointer.
pub fn places_of(v: &Value, ids: &[&str]) -> Vec<String> {
    fn walk(v: &Value, at: String, ids: &[&str], out: &mut Vec<String>) {
        match v {
            Value::String(s) if ids.contains(&s.as_str()) => out.push(at),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{i}"), ids, out);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let key = k.replace('~', "~0").replace('/', "~1");
                    walk(item, format!("{at}/{key}"), ids, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), ids, &mut out);
    out
}

/// The source cluster's IDs the objects above carry.
pub const SOURCE_IDS: &[&str] = &["p-ab12c", "p-cd56e", "c-7gh2k:p-ab12c", "c-7gh2k:p-cd56e"];
