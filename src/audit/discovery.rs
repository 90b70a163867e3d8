//! Which resource types to audit: every type the API server lists and patches, core and custom,
//! in each group's preferred version, from legacy discovery (`/api`, `/apis`, one request per
//! group version). A group version that fails to answer, or answers too late (an aggregated API
//! that is down, say), is reported and skipped; the others are still audited.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::ApiResource;
use kube::core::{GroupVersion, GroupVersionKind};
use kube::Client;

use crate::kube_error::KubeError;

/// One resource type the audit lists and may patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// The type as kube's dynamic `Api` takes it (kube builds the request paths from it); its
    /// group is `""` for the core group, its plural the name in URLs (`deployments`).
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl ResourceType {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        ResourceType {
            resource: ApiResource::from_gvk_with_plural(&gvk, plural),
            namespaced,
        }
    }

    /// `deployments.apps`, or `pods` for the core group, as kubectl names types.
    pub fn name(&self) -> String {
        let ApiResource { group, plural, .. } = &self.resource;
        if group.is_empty() {
            plural.clone()
        } else {
            format!("{plural}.{group}")
        }
    }

    /// Whether this is the core Namespace type.
    pub fn is_namespace(&self) -> bool {
        self.resource.group.is_empty() && self.resource.plural == "namespaces"
    }

    /// Whether the core Secret type, read only with `--include-secrets`.
    pub fn is_secret(&self) -> bool {
        self.resource.group.is_empty() && self.resource.plural == "secrets"
    }

    /// Whether the webhook's rewrite can find project IDs of this type only in its metadata, so
    /// that a metadata-only list (`PartialObjectMetadataList`) is enough: a built-in type
    /// without a pod template (top-level, under `spec`, or under `spec.jobTemplate`), a Pod's
    /// affinity or a NetworkPolicy's rules. Custom and aggregated groups may hold pod templates
    /// of their own and are read whole.
    pub fn metadata_only(&self) -> bool {
        let ApiResource { group, plural, .. } = &self.resource;
        match group.as_str() {
            "" => !matches!(
                plural.as_str(),
                "pods" | "podtemplates" | "replicationcontrollers"
            ),
            "apps" | "batch" => false,
            "networking.k8s.io" => plural != "networkpolicies",
            group => BUILT_IN_GROUPS.contains(&group),
        }
    }
}

/// The API groups kube-apiserver serves itself (besides the core group, `apps`, `batch` and
/// `networking.k8s.io`, which [`ResourceType::metadata_only`] names type by type). None of their
/// types holds a pod template, affinity or NetworkPolicy rule the rewrite reads.
const BUILT_IN_GROUPS: &[&str] = &[
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// How long one group version's discovery may take. The kube client retries 503 (an aggregated
/// API whose backend is down) with backoff for minutes; the audit names it and goes on instead.
const GROUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Types served twice under different groups: the same objects, audited once (under the core
/// group). `events.k8s.io/v1` Events are core v1 Events.
const DUPLICATES: &[(&str, &str)] = &[("events.k8s.io", "events")];

/// Discovers the auditable types, querying up to `concurrency` group versions at once; with
/// them, `discovery of group/version: reason` for each group version that did not answer.
pub async fn discover(
    client: &Client,
    concurrency: usize,
) -> Result<(Vec<ResourceType>, Vec<String>), KubeError> {
    let core = client.list_core_api_versions().await?;
    let groups = client.list_api_groups().await?;
    let core_v1 = core.versions.iter().filter(|v| v.as_str() == "v1");
    let mut versions: Vec<GroupVersion> = core_v1.map(|v| GroupVersion::gv("", v)).collect();
    for g in groups.groups {
        let preferred = g
            .preferred_version
            .or_else(|| g.versions.into_iter().next());
        if let Some(v) = preferred {
            versions.push(GroupVersion::gv(&g.name, &v.version));
        }
    }
    let answers: Vec<_> = futures::stream::iter(versions)
        .map(|gv| async move {
            let query = async {
                if gv.group.is_empty() {
                    client.list_core_api_resources(&gv.version).await
                } else {
                    client.list_api_group_resources(&gv.api_version()).await
                }
            };
            let result = tokio::time::timeout(GROUP_TIMEOUT, query)
                .await
                .map_err(|_| format!("no answer within {} s", GROUP_TIMEOUT.as_secs()))
                .and_then(|r| r.map_err(|e| KubeError::from(e).to_string()));
            (gv, result)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let (mut types, mut errors) = (Vec::new(), Vec::new());
    for (gv, result) in answers {
        match result {
            Ok(list) => types.extend(auditable(&gv.group, &gv.version, &list)),
            Err(why) => errors.push(format!("discovery of {}: {why}", gv.api_version())),
        }
    }
    types.sort_by(|a, b| {
        let (a, b) = (&a.resource, &b.resource);
        (&a.group, &a.plural).cmp(&(&b.group, &b.plural))
    });
    errors.sort();
    Ok((types, errors))
}

/// The types of one group version that support both `list` and `patch` (no subresources).
pub fn auditable(group: &str, version: &str, list: &APIResourceList) -> Vec<ResourceType> {
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .filter(|r| {
            ["list", "patch"]
                .iter()
                .all(|v| r.verbs.iter().any(|x| x == v))
        })
        .filter(|r| !DUPLICATES.contains(&(group, r.name.as_str())))
        .map(|r| ResourceType::new(group, version, &r.kind, &r.name, r.namespaced))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;
    use kube::Resource;

    #[test]
    fn only_listable_patchable_top_level_types() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "namespaced": true, "kind": "Pod", "singularName": "pod",
                 "verbs": ["get", "list", "patch", "watch"]},
                {"name": "pods/status", "namespaced": true, "kind": "Pod", "singularName": "",
                 "verbs": ["get", "patch"]},
                {"name": "bindings", "namespaced": true, "kind": "Binding", "singularName": "",
                 "verbs": ["create"]},
                {"name": "componentstatuses", "namespaced": false, "kind": "ComponentStatus",
                 "singularName": "", "verbs": ["get", "list"]}
            ]
        }))
        .unwrap();
        let types = auditable("", "v1", &list);
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].name(), "pods");
        let ar = &types[0].resource;
        assert_eq!(
            DynamicObject::url_path(ar, Some("team-a")),
            "/api/v1/namespaces/team-a/pods"
        );
        assert_eq!(DynamicObject::url_path(ar, None), "/api/v1/pods");
    }

    #[test]
    fn metadata_only_for_built_in_types_without_pod_templates() {
        let t = |group: &str, plural: &str| ResourceType::new(group, "v1", "", plural, true);
        // Group, plural, and whether a metadata-only list is enough.
        for (group, plural, metadata_only) in [
            ("", "configmaps", true),
            ("", "secrets", true),
            ("", "services", true),
            ("", "namespaces", true),
            ("networking.k8s.io", "ingresses", true),
            ("rbac.authorization.k8s.io", "clusterroles", true),
            ("policy", "poddisruptionbudgets", true),
            ("", "pods", false),
            ("", "podtemplates", false),
            ("", "replicationcontrollers", false),
            ("apps", "deployments", false),
            ("apps", "controllerrevisions", false),
            ("batch", "cronjobs", false),
            ("networking.k8s.io", "networkpolicies", false),
            ("example.com", "widgets", false),
            ("argoproj.io", "rollouts", false),
        ] {
            let got = t(group, plural).metadata_only();
            assert_eq!(got, metadata_only, "{group} {plural}");
        }
        assert!(t("", "secrets").is_secret() && !t("example.com", "secrets").is_secret());
    }

    #[test]
    fn duplicate_event_type_is_skipped() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "groupVersion": "events.k8s.io/v1",
            "resources": [{"name": "events", "namespaced": true, "kind": "Event",
                           "singularName": "event", "verbs": ["list", "patch"]}]
        }))
        .unwrap();
        assert!(auditable("events.k8s.io", "v1", &list).is_empty());
        let t = &auditable("example.com", "v1", &list)[0];
        assert_eq!(t.resource.api_version, "example.com/v1");
        assert_eq!(
            DynamicObject::url_path(&t.resource, None),
            "/apis/example.com/v1/events"
        );
    }
}
