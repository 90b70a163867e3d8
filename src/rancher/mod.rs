//! Rancher's own view of clusters and projects, as its management cluster (the `local` cluster
//! Rancher runs on) holds them, and the pairing of one cluster's projects with another's by
//! display name (`map-projects`). Plain data in, plain data out: reading and creating the
//! objects is `cli::map_projects`'.

mod pairing;

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

pub use pairing::{pair, Ambiguous, How, Match, Pairing, Rename, RenameError};

/// A management.cattle.io/v3 type: Rancher's management objects.
pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("management.cattle.io", "v3", kind))
}

/// A Rancher cluster (`clusters.management.cattle.io`, cluster-scoped) or project
/// (`projects.management.cattle.io`, in the namespace named after its cluster's ID): its ID (the
/// object's name, e.g. `c-m-4kq8z9rt`, `local` or `p-ab12c`) and the name people know it by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Named {
    pub id: String,
    pub display_name: String,
}

pub type Cluster = Named;
pub type Project = Named;

impl Named {
    pub fn new(id: impl Into<String>, display_name: impl Into<String>) -> Named {
        Named {
            id: id.into(),
            display_name: display_name.into(),
        }
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.id, self.display_name)
    }
}

/// The ones of `all` holding the display name `name`: exactly, else ignoring case (and whether
/// case was ignored).
fn holding<'n>(name: &str, all: &'n [Named]) -> (Vec<&'n Named>, bool) {
    match exactly(name, all) {
        exact if !exact.is_empty() => (exact, false),
        _ => (ignoring_case(name, all), true),
    }
}

fn exactly<'n>(name: &str, all: &'n [Named]) -> Vec<&'n Named> {
    all.iter().filter(|p| p.display_name == name).collect()
}

fn ignoring_case<'n>(name: &str, all: &'n [Named]) -> Vec<&'n Named> {
    let name = name.to_lowercase();
    let same = |p: &&Named| p.display_name.to_lowercase() == name;
    all.iter().filter(same).collect()
}

/// Why a cluster named on the command line is not one cluster of the management cluster.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no cluster has the ID or display name {given:?}; the clusters are: {}",
        joined(known)
    )]
    NotFound { given: String, known: Vec<String> },
    #[error("the display name {given:?} is held by several clusters ({}): name the cluster by its ID", ids.join(", "))]
    Ambiguous { given: String, ids: Vec<String> },
}

/// `items` joined with commas, or `none`.
pub fn joined(items: &[impl std::fmt::Display]) -> String {
    let all: Vec<String> = items.iter().map(ToString::to_string).collect();
    if all.is_empty() {
        return "none".to_string();
    }
    all.join(", ")
}

/// The cluster `given` names: its ID, else its display name (exactly, then ignoring case).
pub fn resolve_cluster<'c>(
    given: &str,
    clusters: &'c [Cluster],
) -> Result<&'c Cluster, ClusterError> {
    if let Some(c) = clusters.iter().find(|c| c.id == given) {
        return Ok(c);
    }
    match holding(given, clusters).0[..] {
        [one] => Ok(one),
        [] => Err(ClusterError::NotFound {
            given: given.to_string(),
            known: clusters
                .iter()
                .map(|c| format!("{} ({:?})", c.id, c.display_name))
                .collect(),
        }),
        ref several => Err(ClusterError::Ambiguous {
            given: given.to_string(),
            ids: several.iter().map(|c| c.id.clone()).collect(),
        }),
    }
}

/// The Project `--create-missing` creates on `cluster` for a source project named
/// `display_name`: Rancher picks the ID (`generateName: p-`), in the namespace named after the
/// cluster, as Rancher's own projects are.
pub fn new_project(cluster: &str, display_name: &str) -> Value {
    json!({
        "apiVersion": resource("Project").api_version,
        "kind": "Project",
        "metadata": {"generateName": "p-", "namespace": cluster},
        "spec": {"displayName": display_name, "clusterName": cluster},
    })
}

/// The mapping entries of `matched` between `source` and `destination` clusters, in both forms
/// Stork recommends, a project at a time: `p-a=p-x`, `c-1:p-a=c-2:p-x`.
pub fn entries(matched: &[Match], source: &str, destination: &str) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for m in matched {
        let (s, d) = (&m.source.id, &m.destination.id);
        entries.push((s.clone(), d.clone()));
        entries.push((format!("{source}:{s}"), format!("{destination}:{d}")));
    }
    entries
}

#[cfg(test)]
mod tests;
