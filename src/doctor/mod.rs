//! `doctor`'s judgement: plain functions from what was read off the destination cluster
//! ([`Facts`]) to named checks, each with what to do. The reading is `cli::doctor`'s.

mod policy;
mod webhook;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::mapping::objects::Mappings;
use crate::mapping::ProjectValue;

pub use policy::{check_policy, PolicyFacts};
pub use webhook::{check_webhook, ServingCert, WebhookFacts, SHIPPED_TIMEOUT_SECONDS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One named check and what it found (and, when not ok, what to do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub message: String,
}

impl Check {
    pub fn new(name: &'static str, status: Status, message: impl Into<String>) -> Check {
        Check {
            name,
            status,
            message: message.into(),
        }
    }

    /// A check of several findings: failing when any of `fails` is found, else warning when
    /// any of `warns` is, else ok saying `ok`; the findings said worst first.
    fn judged(name: &'static str, mut fails: Vec<String>, warns: Vec<String>, ok: String) -> Check {
        let status = match (fails.is_empty(), warns.is_empty()) {
            (false, _) => Status::Fail,
            (true, false) => Status::Warn,
            (true, true) => return Check::new(name, Status::Ok, ok),
        };
        fails.extend(warns);
        Check::new(name, status, fails.join("; "))
    }
}

/// Every check, in a stable order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// 1 when a check fails, else 0.
    pub fn exit_status(&self) -> u8 {
        u8::from(self.checks.iter().any(|c| c.status == Status::Fail))
    }
}

/// The projects the table's entries map to (`destinations`) or from, sorted; `x=x` entries
/// name neither.
pub fn projects(mappings: &Mappings, destinations: bool) -> BTreeSet<String> {
    mappings
        .table
        .entries()
        .filter(|(s, d)| s != d)
        .filter_map(|(s, d)| ProjectValue::parse(if destinations { d } else { s }).ok())
        .map(|v| v.project.to_string())
        .collect()
}

/// A migration identity and the permissions it was refused here.
#[derive(Clone, Debug, Default)]
pub struct IdentityAccess {
    pub user: String,
    /// Where it was named (`--migration-user`, the ConfigMap, a ClusterPair file).
    pub from: String,
    /// Each refusal as `(verb, what)`, e.g. `("manage-namespaces", "project p-b")`.
    pub denied: Vec<(String, String)>,
}

/// What doctor read off the destination cluster.
#[derive(Debug)]
pub struct Facts {
    /// The table, or why there is none.
    pub mappings: Result<Mappings, String>,
    /// Where the table came from, for messages.
    pub mappings_origin: String,
    /// The cluster ID configured (flag, else the install), with where it came from.
    pub cluster_id: Option<(String, String)>,
    /// Cluster part of each Rancher-annotated Namespace here → how many.
    pub namespace_clusters: BTreeMap<String, usize>,
    /// The cluster part of `kube-system`'s annotation: Rancher's System project, which no
    /// migration brings, so it names this cluster even when migrated Namespaces outnumber
    /// this cluster's own.
    pub system_cluster: Option<String>,
    /// Projects whose `-namespaces-edit` ClusterRole exists here.
    pub projects_here: BTreeSet<String>,
    /// Each migration identity named, with what it was refused; empty when none was named.
    pub identities: Vec<IdentityAccess>,
    /// What could not be learned about an identity (a ClusterPair's), as warnings.
    pub identity_notes: Vec<String>,
    /// `None` before install: no Deployment and the table from a file or flag.
    pub webhook: Option<WebhookFacts>,
    /// export-policy's policies, when any is here; `None` when none is (or the API server does
    /// not serve them: before Kubernetes 1.36). An error says why they could not be listed
    /// (RBAC): they are not checked, the rest is.
    pub policy: Result<Option<PolicyFacts>, String>,
    /// Whether the table was given (a file or flag) rather than read from the install.
    pub table_given: bool,
}

/// A check of the table: how it came out, and what it found.
type TableCheck = fn(&Facts, &Mappings) -> (Status, String);

/// The checks of the table, by name: each a warning when there is no table.
const TABLE_CHECKS: [(&str, TableCheck); 4] = [
    ("cluster-id", check_cluster_id),
    ("destination-projects", check_destination_projects),
    ("direction", check_direction),
    ("migration-identity", check_identities),
];

/// Every check on `facts`, in order.
pub fn run(facts: &Facts) -> Report {
    let mut checks = vec![check_mappings(facts)];
    for (name, check) in TABLE_CHECKS {
        let (status, message) = match &facts.mappings {
            Ok(m) => check(facts, m),
            Err(_) => (Status::Warn, "not checked: no table (see mappings)".into()),
        };
        checks.push(Check::new(name, status, message));
    }
    // The webhook is checked unless the rewrite runs as the policies alone: then a missing
    // webhook is how it was installed, not a fault.
    let webhook_here = facts
        .webhook
        .as_ref()
        .is_some_and(|w| w.configuration.is_some() || w.ready_replicas.is_some());
    let cluster_id = effective_cluster_id(facts);
    if !matches!(facts.policy, Ok(Some(_))) || webhook_here {
        checks.push(match &facts.webhook {
            Some(w) => check_webhook(w, cluster_id),
            None => Check::new(
                "webhook",
                Status::Warn,
                "not installed here yet: install the chart, then run `rancher-remap doctor` again",
            ),
        });
    }
    if let Err(why) = &facts.policy {
        checks.push(Check::new("policy", Status::Warn, why.clone()));
    }
    if let Ok(Some(p)) = &facts.policy {
        let table = facts.mappings.as_ref().ok();
        let table = table.map(|m| (m, facts.mappings_origin.as_str()));
        checks.push(check_policy(p, cluster_id, table));
        // The policies hold their own table: without the install's mapping ConfigMap there is
        // nothing else to check, which is not a fault.
        if let (false, false, Err(e)) = (webhook_here, facts.table_given, &facts.mappings) {
            checks[0] = Check::new(
                "mappings",
                Status::Warn,
                format!("{}: {e}; the rewrite runs as the policies, which hold the table export-policy checked: give --mappings-file (the table you exported) to check it against this cluster", facts.mappings_origin),
            );
        }
    }
    Report { checks }
}

fn check_mappings(facts: &Facts) -> Check {
    let origin = &facts.mappings_origin;
    let (status, message) = match &facts.mappings {
        Err(e) => (
            Status::Fail,
            format!("{origin}: {e}. Make it with `rancher-remap derive` (or give --mappings-file)"),
        ),
        Ok(m) => {
            let warnings = m.table.warnings();
            let mut message = format!("{origin}: {} entries", m.table.len());
            for w in warnings {
                message.push_str(&format!("; {}: {w}", w.field_path()));
            }
            let warn = !warnings.is_empty();
            (if warn { Status::Warn } else { Status::Ok }, message)
        }
    };
    Check::new("mappings", status, message)
}

/// This cluster's ID as Rancher wrote it: the cluster part of `kube-system`'s annotation, else
/// the one most Rancher-annotated Namespaces here carry.
fn observed_cluster_id(facts: &Facts) -> Option<&str> {
    let most = facts.namespace_clusters.iter().max_by_key(|(_, n)| **n);
    let most = most.map(|(c, _)| c.as_str());
    facts.system_cluster.as_deref().or(most)
}

/// The configured cluster ID, else the one the Namespaces show.
fn effective_cluster_id(facts: &Facts) -> Option<&str> {
    let configured = facts.cluster_id.as_ref().map(|(c, _)| c.as_str());
    configured.or_else(|| observed_cluster_id(facts))
}

fn check_cluster_id(facts: &Facts, m: &Mappings) -> (Status, String) {
    let observed = observed_cluster_id(facts);
    let Some((this, from)) = &facts.cluster_id else {
        let hint = observed
            .map(|o| format!(" (this cluster's Namespaces say {o})"))
            .unwrap_or_default();
        return (Status::Warn, format!("no cluster ID configured{hint}: set the chart value clusterId, or give --cluster-id"));
    };
    match (observed, m.table.check_cluster(this)) {
        (Some(o), _) if o != this => (Status::Fail, format!("{from} says {this}, but this cluster's Rancher-annotated Namespaces say {o}: set clusterId to {o}")),
        (_, Err(e)) => (Status::Fail, format!("{from} says {this}; the table does not fit it: {e}")),
        (None, Ok(())) => (Status::Warn, format!("{this} ({from}) fits the table, but no Namespace here carries Rancher's project annotation to hold it against: check it in Rancher")),
        (Some(_), Ok(())) => (Status::Ok, format!("{this} ({from}) agrees with this cluster's Namespaces and the table")),
    }
}

fn check_destination_projects(facts: &Facts, m: &Mappings) -> (Status, String) {
    let wanted = projects(m, true);
    let missing: Vec<String> = wanted
        .difference(&facts.projects_here)
        .map(|p| format!("{p} (no ClusterRole {p}-namespaces-edit)"))
        .collect();
    match missing.is_empty() {
        true => (Status::Ok, format!("all {} destination project(s) exist here", wanted.len())),
        false => (Status::Fail, format!("destination project(s) missing on this cluster: {}. Create each in Rancher on this cluster, or fix the table", missing.join(", "))),
    }
}

fn check_direction(facts: &Facts, m: &Mappings) -> (Status, String) {
    let here = |ps: &BTreeSet<String>| ps.iter().any(|p| facts.projects_here.contains(p));
    let (sources, destinations) = (projects(m, false), projects(m, true));
    let by_projects = here(&sources) && !here(&destinations);
    let by_cluster = effective_cluster_id(facts).is_some_and(|c| m.table.is_source_cluster(c));
    if !by_cluster && !by_projects {
        let onto = "the table maps from another cluster onto this one";
        return (Status::Ok, onto.into());
    }
    let why = match by_cluster {
        true => "its source cluster is this one",
        false => "its source projects exist here and its destination projects do not",
    };
    (Status::Fail, format!("the table is reversed: {why}. Derive it the right way round: `rancher-remap derive --reverse` on the destination-side ClusterPair (storkctl create clusterpair writes it reversed)"))
}

fn check_identities(facts: &Facts, m: &Mappings) -> (Status, String) {
    let mut notes = facts.identity_notes.clone();
    if facts.identities.is_empty() {
        notes.push(
            "no migration identity named: give --migration-user NAME or --clusterpair FILE".into(),
        );
        return (Status::Warn, notes.join("; "));
    }
    let mut denials = Vec::new();
    for IdentityAccess { user, from, denied } in &facts.identities {
        for (verb, what) in denied {
            denials.push(format!("user {user} ({from}) may not {verb} {what}"));
        }
    }
    if !denials.is_empty() {
        return (Status::Fail, format!("{}. Rancher's webhook refuses its Namespaces: make the user a member of each destination project (binds ClusterRole <project>-namespaces-edit), and let it create Namespaces", denials.join("; ")));
    }
    let users: Vec<&str> = facts.identities.iter().map(|i| i.user.as_str()).collect();
    let (users, n) = (users.join(", "), projects(m, true).len());
    let status = if notes.is_empty() {
        Status::Ok
    } else {
        Status::Warn
    };
    let all = format!(
        "{users} may create Namespaces and manage-namespaces in all {n} destination project(s)"
    );
    notes.insert(0, all);
    (status, notes.join("; "))
}

#[cfg(test)]
mod tests;
