//! The rewrite without a webhook: `export-policy`'s objects, pure. The places of
//! [`crate::rewrite`] become the CEL of two `admissionregistration.k8s.io/v1`
//! MutatingAdmissionPolicies (Kubernetes 1.36), and a checked table becomes a map literal in
//! each policy's `variables` (docs/admission-policy.md): no parameter object, so none to lose.
//! kube-apiserver 1.36 stops following a `paramKind` for good once no binding uses it for a
//! moment (kubernetes/kubernetes#130887), which a `helm uninstall` and install made routine.
//! Measured on 1.36.2: a table of 25,000 entries is admitted this way (30,000 pass etcd's
//! request limit), and a write costs 0.8 ms more with 10 or 1,000 entries, 1.1-1.4 ms with
//! 10,000-25,000 (BENCHMARKS.md, "MutatingAdmissionPolicy table size").
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

use serde_json::{json, Value};

use crate::mapping::objects::Mappings;
use crate::rewrite::{UnmappedPolicy, MIGRATED_ANNOTATION, NAMESPACE_PROJECT_KEYS};
use cel::quote;

/// The policy over every resource's own labels and annotations.
pub const METADATA_POLICY: &str = "rancher-remap-metadata";
/// The policy over pod templates, pod specs and NetworkPolicies.
pub const WORKLOADS_POLICY: &str = "rancher-remap-workloads";
/// The annotation on every exported object: the version of rancher-remap that exported it
/// (the chart refuses objects without it; doctor compares it with its own).
pub const EXPORTED_BY: &str = "rancher-remap.io/export-policy";
/// The annotation on every exported object: the cluster ID it was exported for.
pub const CLUSTER_ID_ANNOTATION: &str = "rancher-remap.io/cluster-id";
/// The policies' variables holding the table: `table0`, `table1`, … (see [`table`]).
pub const TABLE_VARIABLE: &str = "table";

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
    /// The install's namespace, left out of the policies as the webhook's own namespace is
    /// left out of the webhook.
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
}

/// The text put before the objects: what the policies cover and what only the webhook does.
pub const HEADER: &str = "\
# rancher-remap export-policy: the rewrite of Rancher project IDs as MutatingAdmissionPolicies
# that the Kubernetes 1.36 API server runs itself (admissionregistration.k8s.io/v1), with the
# checked mapping table in each policy (its `table` variable): no parameters. Apply it whole
# (or give it to the Helm chart: --set-file policy=THIS_FILE). After a table change, export
# again and apply: the policies are updated in place.
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

/// The objects `export-policy` prints: the policies, their bindings.
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
    let parts = mappings.table.parts();
    // The source clusters a Namespace's annotation may claim (a cluster mapped onto itself is
    // this one's, never a migration's).
    let sources: Vec<&str> = parts
        .clusters
        .iter()
        .filter_map(|&(s, d)| (s != d).then_some(s))
        .collect();
    let conditions = match_conditions(&settings.cluster_id, &sources, &users);
    let table = table(mappings);
    let gen = cel::Gen {
        drop_unmapped,
        bounds: &table.bounds,
    };
    let mutations = cel::mutations(&gen);
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
    let policies = [
        (METADATA_POLICY, all, metadata),
        (WORKLOADS_POLICY, Value::Array(kinds), workloads),
    ];
    let (conditions, variables) = (&conditions, &table.variables);
    let mut out: Vec<Value> = policies
        .iter()
        .map(|(name, rules, exprs)| policy(name, rules, exprs, conditions, variables, settings))
        .collect();
    out.extend(policies.iter().map(|(name, _, _)| binding(name, settings)));
    Ok(out)
}

/// The most code points kube-apiserver 1.36 compiles in one CEL expression (cel-go's default
/// parser limit: "expression code point size exceeds limit: size: 112550, limit 100000" for a
/// table of 2,500 entries in one literal). The table is cut into literals below it.
const EXPRESSION_LIMIT: usize = 100_000;

/// The table as the policies hold it.
pub struct Table {
    /// CEL map literals of its parts (see [`cel`]), `table0`, `table1`, …, one entry a line,
    /// sorted by key (the same table gives the same text: doctor compares it), each under
    /// `EXPRESSION_LIMIT`: the policies' `variables`.
    pub variables: Value,
    /// The first key of each literal but the first ([`cel::Gen::bounds`]).
    pub bounds: Vec<String>,
}

/// The table of `mappings` as the policies hold it.
pub fn table(mappings: &Mappings) -> Table {
    let parts = mappings.table.parts();
    let mut entries: Vec<(String, &str)> = Vec::new();
    for (prefix, pairs) in [
        (cel::SOURCE_PROJECT, &parts.projects),
        (cel::SOURCE_CLUSTER, &parts.clusters),
    ] {
        entries.extend(pairs.iter().map(|&(s, d)| (format!("{prefix}{s}"), d)));
    }
    for (prefix, ids) in [
        (cel::DESTINATION_PROJECT, &parts.destination_projects),
        (cel::DESTINATION_CLUSTER, &parts.destination_clusters),
    ] {
        entries.extend(ids.iter().map(|id| (format!("{prefix}{id}"), "")));
    }
    entries.sort();
    let mut chunks: Vec<Vec<String>> = vec![Vec::new()];
    let mut bounds = Vec::new();
    let mut size = 4; // "{\n" and "\n}"
    for (key, value) in entries {
        let line = format!("{}: {}", quote(&key), quote(value));
        // Each line is ASCII (checked Rancher IDs): bytes are code points.
        if size + line.len() + 2 > EXPRESSION_LIMIT {
            chunks.push(Vec::new());
            bounds.push(key);
            size = 4;
        }
        size += line.len() + 2;
        chunks.last_mut().expect("one chunk").push(line);
    }
    let variables = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"name": format!("{TABLE_VARIABLE}{i}"),
                   "expression": format!("{{\n{}\n}}", c.join(",\n"))})
        })
        .collect();
    Table { variables, bounds }
}

/// The labels and annotations of every exported object.
fn metadata(name: &str, settings: &Settings) -> Value {
    json!({"name": name,
           "labels": {"app.kubernetes.io/name": "rancher-remap",
                      "app.kubernetes.io/component": "admission-policy"},
           "annotations": {EXPORTED_BY: env!("CARGO_PKG_VERSION"),
                           CLUSTER_ID_ANNOTATION: settings.cluster_id}})
}

/// A CEL literal of a string list (JSON's text is CEL's for strings).
fn list_literal(items: &[impl AsRef<str>]) -> String {
    Value::from(items.iter().map(AsRef::as_ref).collect::<Vec<_>>()).to_string()
}

/// The scope (`--scope migrated`) as matchConditions: CEL over the request and the object.
/// They cannot read the policy's variables (they run first): the table's source clusters and
/// migration users are literals in them.
fn match_conditions(cluster_id: &str, sources: &[&str], users: &[String]) -> Value {
    let annotation =
        |key: &str| format!("object.?metadata.?annotations[?{}].orValue('')", quote(key));
    let namespace = "request.kind.group == '' && request.kind.kind == 'Namespace'";
    let keys = NAMESPACE_PROJECT_KEYS.map(quote).join(", ");
    // The cluster parts of the Namespace's project-ID annotations (either spelling).
    let claimed = format!(
        "[{keys}].map(k, object.?metadata.?annotations[?k].orValue('')).filter(a, a.contains(':')).map(a, a.split(':', 2)[0])"
    );
    let own = format!(
        "!({namespace} && {claimed}.exists(c, c == {}))",
        quote(cluster_id)
    );
    // A migration user's write counts for Namespaces, as the shipped webhook's matchConditions
    // send it (docs/behaviour.md, "Which writes reach the webhook"): Stork marks every other object it migrates.
    let migrated = format!(
        "{mark} == 'true' || ({namespace} && ({claimed}.exists(c, c in {sources}) || request.userInfo.username in {users}))",
        mark = annotation(MIGRATED_ANNOTATION),
        sources = list_literal(sources),
        users = list_literal(users),
    );
    json!([
        {"name": "not-this-clusters-namespace", "expression": own},
        {"name": "migrated", "expression": migrated},
    ])
}

fn policy(
    name: &str,
    rules: &Value,
    mutations: &[(u32, String)],
    conditions: &Value,
    variables: &Value,
    settings: &Settings,
) -> Value {
    let excluded = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name",
        "operator": "NotIn", "values": ["kube-system", settings.namespace]}]});
    let mutations: Vec<Value> = mutations
        .iter()
        .map(|(_, expr)| json!({"patchType": "JSONPatch", "jsonPatch": {"expression": expr}}))
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": metadata(name, settings),
        "spec": {
            "matchConstraints": {
                "resourceRules": rules,
                "namespaceSelector": excluded,
                "matchPolicy": "Equivalent",
            },
            "matchConditions": conditions,
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "mutations": mutations,
            "variables": variables,
        }
    })
}

/// A policy's binding: no parameters (the table is the policy's own variable).
fn binding(policy: &str, settings: &Settings) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": metadata(policy, settings),
        "spec": {"policyName": policy},
    })
}
