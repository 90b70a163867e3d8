//! Objects and tables shared by the benchmarks: a realistic migrated Deployment and Namespace,
//! and mapping tables of any size that map the project IDs they carry.
#![allow(dead_code)]

use serde_json::{json, Value};

const KEY: &str = "field.cattle.io/projectId";

/// `n` entries in both forms; the objects below use entry 0 and 1.
pub fn mappings(n: usize) -> String {
    (0..n / 2)
        .map(|i| format!("p-s{i}=p-d{i},c-src:p-s{i}=c-dst:p-d{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn selector() -> Value {
    json!({"matchLabels": {KEY: "p-s0"}, "matchExpressions": [{"key": KEY, "operator": "In", "values": ["p-s0", "p-s1"]}]})
}

fn container(name: &str) -> Value {
    json!({
        "name": name, "image": format!("registry.example.com/shop/{name}:1.27.3"),
        "imagePullPolicy": "IfNotPresent",
        "args": ["--port=8080", "--log-level=info", "--metrics"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "LOG_FORMAT", "value": "json"}, {"name": "DB_HOST", "value": "db.shop.svc.cluster.local"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "data", "mountPath": "/var/lib/app"}],
        "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
    })
}

/// A Deployment as Stork writes it on the destination.
pub fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop",
            "labels": {"app": "web", "app.kubernetes.io/part-of": "shop", KEY: "p-s0"},
            "annotations": {KEY: "c-src:p-s0", "stork.libopenstorage.org/migrated": "true", "stork.libopenstorage.org/migrationName": "shop-migration", "stork.libopenstorage.org/migrationNamespace": "migrationnamespace", "deployment.kubernetes.io/revision": "4"}
        },
        "spec": {
            "replicas": 3, "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web", KEY: "p-s0"}, "annotations": {"prometheus.io/scrape": "true", KEY: "c-src:p-s0"}},
                "spec": {
                    "serviceAccountName": "web",
                    "containers": [container("web"), container("sidecar"), container("exporter")],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config"}}, {"name": "data", "emptyDir": {}}],
                    "affinity": {
                        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone", "namespaceSelector": selector()}}]},
                        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname", "namespaceSelector": selector()}]}
                    }
                }
            }
        }
    })
}

pub fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {KEY: "p-s0", "kubernetes.io/metadata.name": "shop"}, "annotations": {KEY: "c-src:p-s0", "cattle.io/status": "{}"}}})
}

/// A migrated Deployment in a review shaped as kube-apiserver sends it (the fixture's envelope).
pub fn review_body() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/create-deployment-migrated.json");
    let mut review: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    review["request"]["object"] = deployment();
    review["request"]["name"] = "web".into();
    review["request"]["namespace"] = "shop".into();
    serde_json::to_vec(&review).unwrap()
}

/// A review whose body is at least `bytes` long: the migrated Namespace (about 1 KB), or the
/// migrated Deployment with as many more containers as it takes. The project IDs (and so the
/// rewrites) stay the same; only the bulk the decoder must read past grows.
pub fn review_of_size(bytes: usize) -> Vec<u8> {
    let envelope = |object: Value| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/create-deployment-migrated.json");
        let mut review: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        review["request"]["object"] = object;
        serde_json::to_vec(&review).unwrap()
    };
    let mut ns = namespace();
    ns["metadata"]["annotations"]["stork.libopenstorage.org/migrated"] = "true".into();
    let small = envelope(ns);
    if small.len() >= bytes * 9 / 10 {
        return small;
    }
    let mut d = deployment();
    let mut i = 0;
    loop {
        let body = envelope(d.clone());
        if body.len() >= bytes {
            return body;
        }
        let containers = d["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap();
        containers.push(container(&format!("worker-{i}")));
        i += 1;
    }
}

/// The floor: the least any correct webhook does with a review. It checks all of the body as
/// JSON (serde_json, skipping every value, building nothing) and echoes `request.uid`.
pub fn floor_answer(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }
    #[derive(Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        uid: std::borrow::Cow<'a, str>,
    }
    let review: Review = serde_json::from_slice(body)?;
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
    );
    serde_json::to_writer(&mut out, &review.request.uid)?;
    out.extend_from_slice(br#","allowed":true}}"#);
    Ok(out)
}
