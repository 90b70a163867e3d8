//! The RBAC that `--mappings-configmap` needs, read with the Kubernetes types: exactly get, list
//! and watch on the one mapping ConfigMap, and create on Events; nothing else.

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::Value;

use crate::common::repo;

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    rancher_remap::manifest::parse_documents(&text).unwrap()
}

#[test]
fn destination_rbac_is_least_privilege() {
    let docs = documents("deploy/destination/rbac.yaml");
    let role: Role = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .expect("a Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("rancher-remap"));
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 2);
    let cm = &rules[0];
    assert_eq!(cm.api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(
        cm.resources.as_deref(),
        Some(&["configmaps".to_string()][..])
    );
    assert_eq!(
        cm.resource_names.as_deref(),
        Some(&[rancher_remap::mapping::objects::DEFAULT_CONFIGMAP_NAME.to_string()][..])
    );
    assert_eq!(cm.verbs, ["get", "list", "watch"]);
    let ev = &rules[1];
    assert_eq!(
        ev.api_groups.as_deref(),
        Some(&["events.k8s.io".to_string()][..])
    );
    assert_eq!(ev.resources.as_deref(), Some(&["events".to_string()][..]));
    assert_eq!(ev.verbs, ["create"]);
    for r in &rules {
        let all = r.verbs.iter().chain(r.resources.iter().flatten());
        assert!(all.clone().all(|v| v != "*"), "no wildcards");
    }
    assert!(docs.iter().all(|d| d["kind"] != "ClusterRole"));
    let binding: RoleBinding = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding")
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .expect("a RoleBinding");
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    assert_eq!(binding.subjects.unwrap()[0].name, "rancher-remap");
}
