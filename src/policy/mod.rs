//! The rewrite without a webhook: `export-policy`'s objects, pure. A checked table becomes a
//! parameter ConfigMap; the places of [`crate::rewrite`] become the CEL of two
//! `admissionregistration.k8s.io/v1` MutatingAdmissionPolicies (Kubernetes 1.36), bound to
//! those parameters (docs/admission-policy.md).
//!
//! - `rancher-remap-metadata`: every resource, the object's own labels and annotations;
//! - `rancher-remap-workloads`: the built-in kinds with pod templates, pod specs and
//!   NetworkPolicy rules ([`WORKLOADS`]), every other place of the engine.
//!
//! Both rewrite only what the webhook's scope admits (docs/behaviour.md, "Which requests are rewritten", under `--scope migrated`): an
//! object with Stork's migrated annotation, a Namespace whose project-ID annotation names a
//! source cluster of the table, a write by a migration user; never a Namespace annotated with
//! this cluster's ID. Every admitted object counts as migrated, so `drop` removes its unmapped
//! labels and annotations, as the webhook does.

pub mod cel;

use serde_json::{json, Map, Value};

use crate::mapping::objects::Mappings;
use crate::rewrite::{UnmappedPolicy, MIGRATED_ANNOTATION, NAMESPACE_PROJECT_KEYS};
use cel::{quote, CLUSTER_ID_KEY, MIGRATION_USERS_KEY};

/// The parameter ConfigMap's name.
pub const PARAMS_NAME: &str = "rancher-remap-policy-params";
/// The label that marks the parameter ConfigMap (not a mapping ConfigMap: its keys are not
/// mapping text).
pub const PARAMS_LABEL: &str = "rancher-remap.io/policy-params";
/// The policy over every resource's own labels and annotations.
pub const METADATA_POLICY: &str = "rancher-remap-metadata";
/// The policy over pod templates, pod specs and NetworkPolicies.
pub const WORKLOADS_POLICY: &str = "rancher-remap-workloads";

/// The built-in resources whose objects hold places beyond their own metadata (pod templates,
/// pod specs, NetworkPolicy rules), by API group. The engine reads these places in any object
/// (custom resources with `spec.template` too); the workloads policy only in these, whose
/// schema the API server knows.
pub const WORKLOADS: &[(&str, &[&str])] = &[
    ("", &["pods", "podtemplates", "replicationcontrollers"]),
    (
        "apps",
        &["deployments", "statefulsets", "daemonsets", "replicasets"],
    ),
    ("batch", &["jobs", "cronjobs"]),
    ("networking.k8s.io", &["networkpolicies"]),
];

/// What `export-policy` is asked for.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the parameter ConfigMap lives (excluded from the policies, as the webhook's own
    /// namespace is excluded from the webhook).
    pub namespace: String,
    /// This cluster's Rancher ID.
    pub cluster_id: String,
    /// `--migration-user` names (the table's own are added).
    pub migration_users: Vec<String>,
    pub unmapped: UnmappedPolicy,
}

/// Why no policy is made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// `--unmapped deny` refuses a write; a mutation can only change it.
    #[error(
        "--unmapped deny cannot be exported: a MutatingAdmissionPolicy changes a write, it cannot \
         refuse one (use drop or keep, or the webhook for deny)"
    )]
    Deny,
    /// A migration user name the comma-separated parameter cannot hold.
    #[error(
        "migration user {0:?} holds a comma, which the policy's parameter uses to separate names"
    )]
    UserWithComma(String),
}

/// The text put before the objects: what the policies cover and what only the webhook does.
pub const HEADER: &str = "\
# rancher-remap export-policy: the rewrite of Rancher project IDs as MutatingAdmissionPolicies
# that the Kubernetes 1.36 API server runs itself (admissionregistration.k8s.io/v1), with the
# checked mapping table as their parameter ConfigMap. Apply it whole; after a table change,
# export again and apply it (kubectl apply updates the ConfigMap in place). Never delete and
# re-create the ConfigMap or the bindings: once no binding uses ConfigMap parameters, the 1.36
# API server stops following parameter ConfigMaps until it restarts (kubernetes/kubernetes#130887),
# and bindings made afterwards find no parameters (writes pass unrewritten) or a stale table.
#
# Covered, as the webhook does it (docs/admission-policy.md): Stork's migrated objects,
# Namespaces claiming a source cluster's project, writes by migration users; every project-ID
# label and annotation key in both value forms; pod templates of Deployments, StatefulSets,
# DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs (and their jobTemplate),
# PodTemplates; pod (anti-)affinity namespace selectors of those and of Pods; NetworkPolicy
# ingress and egress namespace selectors.
#
# Not covered (run the webhook for these): pod templates and selectors in custom resources
# (the webhook reads any object's spec.template; these policies only the built-in kinds'),
# --unmapped deny, warnings, metrics, the project-ids audit annotation, --mode warn, and objects
# so large that the CEL cost limit is reached (the write is then refused: failurePolicy Fail).
# Not served before Kubernetes 1.36 (v1 is GA in 1.36; 1.32's v1alpha1 has no flatten()).
";

/// The objects `export-policy` prints: the parameter ConfigMap, the policies, their bindings.
pub fn export(mappings: &Mappings, settings: &Settings) -> Result<Vec<Value>, PolicyError> {
    let drop_unmapped = match settings.unmapped {
        UnmappedPolicy::Deny => return Err(PolicyError::Deny),
        UnmappedPolicy::Drop => true,
        UnmappedPolicy::Keep => false,
    };
    let mut users: Vec<String> = settings.migration_users.clone();
    users.extend(mappings.migration_users.iter().cloned());
    users.retain(|u| !u.trim().is_empty());
    users.sort();
    users.dedup();
    if let Some(u) = users.iter().find(|u| u.contains(',')) {
        return Err(PolicyError::UserWithComma(u.clone()));
    }
    let mutations = cel::mutations(drop_unmapped);
    let (metadata, workloads): (Vec<_>, Vec<_>) = mutations
        .into_iter()
        .partition(|(group, _)| *group == crate::rewrite::places::OBJECT_METADATA_GROUP);
    let all = json!([{
        "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"],
        "operations": ["CREATE", "UPDATE"], "scope": "*",
    }]);
    let kinds: Vec<Value> = WORKLOADS
        .iter()
        .map(|(group, resources)| {
            json!({"apiGroups": [group], "apiVersions": ["*"], "resources": resources,
                   "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"})
        })
        .collect();
    let mut out = vec![params(mappings, settings, &users)];
    let policies = [
        (METADATA_POLICY, all, metadata),
        (WORKLOADS_POLICY, Value::Array(kinds), workloads),
    ];
    for (name, rules, exprs) in &policies {
        out.push(policy(name, rules, exprs, settings));
    }
    for (name, _, _) in &policies {
        out.push(binding(name, settings));
    }
    Ok(out)
}

fn labels() -> Value {
    json!({"app.kubernetes.io/name": "rancher-remap",
           "app.kubernetes.io/component": "admission-policy"})
}

/// The parameter ConfigMap: the table's parts as keys the CEL looks up (see [`cel`]), this
/// cluster's ID and the migration users.
pub fn params(mappings: &Mappings, settings: &Settings, users: &[String]) -> Value {
    let parts = mappings.table.parts();
    let mut data = Map::new();
    for (prefix, pairs) in [
        (cel::SOURCE_PROJECT, &parts.projects),
        (cel::SOURCE_CLUSTER, &parts.clusters),
    ] {
        for (src, dst) in pairs {
            data.insert(format!("{prefix}{src}"), json!(dst));
        }
    }
    for (prefix, ids) in [
        (cel::DESTINATION_PROJECT, &parts.destination_projects),
        (cel::DESTINATION_CLUSTER, &parts.destination_clusters),
    ] {
        for id in ids {
            data.insert(format!("{prefix}{id}"), json!(""));
        }
    }
    data.insert(CLUSTER_ID_KEY.into(), json!(settings.cluster_id));
    data.insert(MIGRATION_USERS_KEY.into(), json!(users.join(",")));
    let mut labels = labels();
    labels[PARAMS_LABEL] = json!("true");
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": PARAMS_NAME, "namespace": settings.namespace, "labels": labels},
           "data": data})
}

/// The scope (`--scope migrated`) as matchConditions: CEL over the request, the
/// object and the parameters.
fn match_conditions() -> Value {
    let annotation =
        |key: &str| format!("object.?metadata.?annotations[?{}].orValue('')", quote(key));
    let namespace = "request.kind.group == '' && request.kind.kind == 'Namespace'";
    let keys = NAMESPACE_PROJECT_KEYS
        .iter()
        .map(|k| quote(k))
        .collect::<Vec<_>>()
        .join(", ");
    // The cluster parts of the Namespace's project-ID annotations (either spelling).
    let claimed = format!(
        "[{keys}].map(k, object.?metadata.?annotations[?k].orValue('')).filter(a, a.contains(':')).map(a, a.split(':', 2)[0])"
    );
    let own = format!(
        "!({namespace} && {claimed}.exists(c, c == params.data[?'{CLUSTER_ID_KEY}'].orValue('')))"
    );
    // A migration user's write counts for Namespaces, as the shipped webhook's matchConditions
    // send it (docs/behaviour.md, "Which writes reach the webhook"): Stork marks every other object it migrates.
    let migrated = format!(
        "{mark} == 'true' || ({namespace} && ({claimed}.exists(c, ('{src}' + c) in params.data && params.data['{src}' + c] != c) || params.data[?'{MIGRATION_USERS_KEY}'].orValue('').split(',').exists(u, u != '' && u == request.userInfo.username)))",
        mark = annotation(MIGRATED_ANNOTATION),
        src = cel::SOURCE_CLUSTER,
    );
    json!([
        // False skips the policy even when another condition fails: parameters without data
        // (not export-policy's) rewrite nothing rather than refuse every write.
        {"name": "parameters", "expression": "has(params.data)"},
        {"name": "not-this-clusters-namespace", "expression": own},
        {"name": "migrated", "expression": migrated},
    ])
}

fn policy(name: &str, rules: &Value, mutations: &[(u32, String)], settings: &Settings) -> Value {
    let excluded = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name",
        "operator": "NotIn", "values": ["kube-system", settings.namespace]}]});
    let mutations: Vec<Value> = mutations
        .iter()
        .map(|(_, expr)| json!({"patchType": "JSONPatch", "jsonPatch": {"expression": expr}}))
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name, "labels": labels()},
        "spec": {
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {
                "resourceRules": rules,
                "namespaceSelector": excluded,
                "matchPolicy": "Equivalent",
            },
            "matchConditions": match_conditions(),
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "mutations": mutations,
        }
    })
}

/// A policy's binding. `parameterNotFoundAction: Allow`: the API server looks the parameters up
/// before the matchConditions, so `Deny` would refuse every write the policy matches (the whole
/// cluster for the metadata policy) while the ConfigMap is missing, where the webhook's
/// `failurePolicy: Fail` refuses migrations only. Without it, writes pass unrewritten, as if no
/// policy were there (docs/admission-policy.md).
fn binding(policy: &str, settings: &Settings) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": policy, "labels": labels()},
        "spec": {
            "policyName": policy,
            "paramRef": {"name": PARAMS_NAME, "namespace": settings.namespace,
                         "parameterNotFoundAction": "Allow"},
        }
    })
}
