//! The `policy` check: export-policy's MutatingAdmissionPolicies and bindings, when the rewrite
//! runs as them (the chart's `rewrite: policy` or `both`, or applied by hand), judged from what
//! was read.

use kube::core::{DynamicObject, ResourceExt};

use super::Check;
use crate::mapping::objects::Mappings;
use crate::policy::{self, EXPORTED_BY, METADATA_POLICY, WORKLOADS_POLICY};

/// export-policy's objects found here (by their label), as the API server returned them.
#[derive(Debug, Default)]
pub struct PolicyFacts {
    pub policies: Vec<DynamicObject>,
    pub bindings: Vec<DynamicObject>,
}

fn named<'o>(objects: &'o [DynamicObject], name: &str) -> Option<&'o DynamicObject> {
    objects.iter().find(|o| o.name_any() == name)
}

/// The findings of the policy check: both policies, each bound without parameters, carrying
/// this cluster's ID and a table (the one of `mappings` when there is one to compare), exported
/// by this version.
pub fn check_policy(
    p: &PolicyFacts,
    cluster_id: Option<&str>,
    table: Option<(&Mappings, &str)>,
) -> Check {
    let (mut fails, mut warns) = (Vec::new(), Vec::new());
    let mut keys = 0;
    for name in [METADATA_POLICY, WORKLOADS_POLICY] {
        let Some(policy) = named(&p.policies, name) else {
            fails.push(format!(
                "MutatingAdmissionPolicy {name} is missing: apply export-policy's whole output"
            ));
            continue;
        };
        let spec = &policy.data["spec"];
        match named(&p.bindings, name).map(|b| &b.data["spec"]) {
            None => fails.push(format!("no MutatingAdmissionPolicyBinding {name}: the policy runs only once bound; apply export-policy's whole output")),
            // export-policy's bindings hold only policyName: no parameters, nothing narrowed.
            Some(b) if *b != serde_json::json!({"policyName": name}) => fails.push(format!("MutatingAdmissionPolicyBinding {name} does not bind policy {name} alone, everywhere it matches (policyName {}, paramRef {}, matchResources {}): apply export-policy's output", b["policyName"], b.get("paramRef").is_some(), b.get("matchResources").is_some())),
            Some(_) => {}
        }
        if spec["failurePolicy"] != "Fail" {
            fails.push(format!("MutatingAdmissionPolicy {name} does not fail closed (failurePolicy {}): a write it cannot rewrite would be stored with the source's IDs; apply export-policy's output", spec["failurePolicy"]));
        }
        let conditions = spec["matchConditions"].to_string();
        match cluster_id {
            Some(c) if !conditions.contains(&format!("'{c}'")) => fails.push(format!(
                "MutatingAdmissionPolicy {name} does not carry cluster ID {c}: export it with --cluster-id {c} and apply it"
            )),
            None => warns.push(format!("MutatingAdmissionPolicy {name}: no cluster ID known to compare")),
            _ => {}
        }
        let variables = &spec["variables"];
        let has_table = variables.as_array().is_some_and(|v| {
            v.iter()
                .any(|v| v["name"] == format!("{}0", policy::TABLE_VARIABLE))
        });
        if !has_table || spec.get("paramKind").is_some() {
            fails.push(format!("MutatingAdmissionPolicy {name} holds no table of its own (an export of an older rancher-remap, with a parameter ConfigMap?): export it again and apply it"));
        }
        keys = variables.to_string().matches("': '").count();
        if let Some((m, origin)) = table {
            if *variables != policy::table(m).variables {
                warns.push(format!("MutatingAdmissionPolicy {name} does not hold the table of {origin}: export it from that table and apply it (the webhook follows its ConfigMap live, the policies only their own copy)"));
            }
        }
        let by = policy.annotations().get(EXPORTED_BY).map(String::as_str);
        let this = env!("CARGO_PKG_VERSION");
        if by != Some(this) {
            let by = by.unwrap_or("(unknown)");
            warns.push(format!("MutatingAdmissionPolicy {name} was exported by rancher-remap {by}, this is {this}: export it again and apply it"));
        }
    }
    let ok = format!("the rewrite runs as MutatingAdmissionPolicies {METADATA_POLICY} and {WORKLOADS_POLICY} (admissionregistration.k8s.io/v1), bound, with this cluster's ID and a table of {keys} keys{}", table.map(|(_, o)| format!(" equal to {o}'s")).unwrap_or_default());
    Check::judged("policy", fails, warns, ok)
}
