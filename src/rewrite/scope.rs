//! Which admission requests are rewritten (docs/behaviour.md, "Which requests are rewritten"):
//! the one rule, read by [`super::decide()`].
//!
//! A request is rewritten when its object counts as migrated, or always under `--scope all`.
//! An object counts as migrated when it carries Stork's migrated annotation, when its writer is
//! a migration user, or — for a Namespace — when its project-ID annotation names a *source*
//! cluster of the table: Rancher annotates every project Namespace `<cluster>:<project>` with
//! its own cluster's ID, so a Namespace claiming a source cluster's project came from there,
//! whoever writes it (Stork creates Namespaces without its annotation, with identities that are
//! hard to know in advance). A Namespace that names this cluster (`--cluster-id`) is Rancher's
//! own here and is never rewritten.

use std::collections::HashSet;

use super::decide::{RequestFacts, UnmappedPolicy};
use super::keys::NAMESPACE_PROJECT_KEYS;
use super::outcome::Location;
use super::walk::{Found, Walked};
use crate::mapping::objects::Mappings;
use crate::mapping::Table;

/// Which requests `/mutate` rewrites; also `--scope` (the variants' docs are its help).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// Objects that count as migrated: Stork's migrated annotation, a Namespace whose
    /// project-ID annotation names a source cluster of the table, or a migration user's write.
    #[default]
    Migrated,
    /// Every admitted object.
    All,
}

/// Whether `/mutate` applies what it finds (`warn` is there to roll out, audit, then enforce);
/// also `--mode` (the variants' docs are its help).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Answer with the patch.
    #[default]
    Enforce,
    /// Answer as enforce would, without the patch: a warning and the audit annotation say
    /// what would have been rewritten.
    Warn,
}

/// Settings of `/mutate` fixed at start.
#[derive(Clone, Debug, Default)]
pub struct MutateSettings {
    pub unmapped: UnmappedPolicy,
    pub scope: Scope,
    /// `--migration-user` names.
    pub migration_users: HashSet<String>,
    pub mode: Mode,
    /// This cluster's Rancher ID (`--cluster-id`), when known.
    pub cluster_id: Option<String>,
}

/// What a Namespace's project-ID annotations say about where it belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceClaim {
    /// No annotation names a cluster the rule knows (or the object is not a Namespace).
    Unknown,
    /// An annotation names a source cluster of the table: the Namespace came from there.
    Foreign,
    /// An annotation names this cluster: Rancher's own Namespace here, never rewritten.
    Own,
}

/// The claim of a Namespace, from its findings (the cluster parts of its
/// [`NAMESPACE_PROJECT_KEYS`] annotations). `Own` wins over `Foreign`: when in doubt, a
/// Namespace is left as Rancher has it.
pub fn namespace_claim(
    findings: &[Found<'_, '_>],
    table: &Table,
    this: Option<&str>,
) -> NamespaceClaim {
    let mut claim = NamespaceClaim::Unknown;
    let home = |f: &&Found<'_, '_>| {
        f.location == Location::Annotation && NAMESPACE_PROJECT_KEYS.contains(&&*f.key)
    };
    for f in findings.iter().filter(home) {
        let Some((cluster, _)) = f.value.split_once(':') else {
            continue;
        };
        if this == Some(cluster) {
            return NamespaceClaim::Own;
        }
        if table.is_source_cluster(cluster) {
            claim = NamespaceClaim::Foreign;
        }
    }
    claim
}

/// Whether a request's kind (`request.kind.group`, `.kind`) is the core Namespace, the only kind
/// a claim is read for (a custom resource named Namespace in another group is not).
pub fn is_namespace(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Namespace"
}

/// Whether to rewrite the object, and if so whether it counts as migrated (which decides
/// whether `--unmapped drop` removes keys). `None`: leave the request alone.
pub(super) fn admit(
    facts: &RequestFacts<'_>,
    walked: &Walked<'_, '_>,
    mappings: &Mappings,
    settings: &MutateSettings,
) -> Option<bool> {
    if walked.findings().is_empty() {
        // Nothing in the object holds a project ID: nothing to decide.
        return None;
    }
    let this = settings.cluster_id.as_deref();
    let claim = match facts.is_namespace {
        true => namespace_claim(walked.findings(), &mappings.table, this),
        false => NamespaceClaim::Unknown,
    };
    if claim == NamespaceClaim::Own {
        return None;
    }
    let user = facts.username;
    let migrated = facts.migrated
        || walked.migrated_annotation
        || claim == NamespaceClaim::Foreign
        || settings.migration_users.contains(user)
        || mappings.migration_users.iter().any(|u| u == user);
    (migrated || settings.scope == Scope::All).then_some(migrated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::walk;
    use serde_json::{json, Value};

    fn mappings(text: &str, users: &[&str]) -> Mappings {
        let mut m = Mappings::from_text(text).unwrap();
        m.migration_users = users.iter().map(|u| u.to_string()).collect();
        m
    }

    fn claim_of(annotations: Value, m: &Mappings, this: Option<&str>) -> NamespaceClaim {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "annotations": annotations}});
        let walked = walk(&ns, &m.table).unwrap();
        namespace_claim(walked.findings(), &m.table, this)
    }

    #[test]
    fn a_namespace_is_known_by_the_cluster_its_annotation_names() {
        use NamespaceClaim::{Foreign, Own, Unknown};
        let m = mappings("p-a=p-b,c-src:p-a=c-dst:p-b", &[]);
        let (key, key2, t) = (
            "field.cattle.io/projectId",
            "field.cattle.io/projectID",
            Some("c-dst"),
        );
        let on = |k: &str, v: &str| json!({k: v});
        // (annotations, this cluster, expected)
        let cases = [
            (on(key, "c-src:p-a"), t, Foreign),
            // Either spelling, any project of the source cluster.
            (on(key2, "c-src:p-zz"), t, Foreign),
            (on(key, "c-dst:p-b"), t, Own),
            (on(key, "c-dst:p-a"), t, Own),
            (on(key, "c-else:p-a"), t, Unknown),
            (on(key, "p-a"), t, Unknown),
            (on("other", "c-src:p-a"), t, Unknown),
            // Without a cluster ID, a source cluster's claim still counts.
            (on(key, "c-src:p-a"), None, Foreign),
            // Only the keys the API server's matchConditions can name: the two agree.
            (on("field.cattle.io/projectid", "c-src:p-a"), t, Unknown),
            (
                on("management.cattle.io/projectId", "c-src:p-a"),
                t,
                Unknown,
            ),
            // This cluster wins over a source cluster named by the other key.
            (json!({key: "c-src:p-a", key2: "c-dst:p-b"}), t, Own),
        ];
        for (annotations, this, expected) in cases {
            let got = claim_of(annotations.clone(), &m, this);
            assert_eq!(got, expected, "{annotations} {this:?}");
        }
        // An x=x entry does not make this cluster a source.
        let identity = mappings("c-dst:p-b=c-dst:p-b,c-src:p-a=c-dst:p-b", &[]);
        let own = json!({key: "c-dst:p-x"});
        assert_eq!(claim_of(own, &identity, None), NamespaceClaim::Unknown);
    }

    #[test]
    fn who_is_rewritten() {
        let m = mappings("c-src:p-a=c-dst:p-b", &["u-table"]);
        let s = MutateSettings {
            migration_users: HashSet::from(["u-flag".to_string()]),
            cluster_id: Some("c-dst".into()),
            ..MutateSettings::default()
        };
        let all = MutateSettings {
            scope: Scope::All,
            ..s.clone()
        };
        let key = "field.cattle.io/projectId";
        let (foreign, own) = (json!({key: "c-src:p-a"}), json!({key: "c-dst:p-b"}));
        let marked = json!({key: "p-x", "stork.libopenstorage.org/migrated": "true"});
        let plain = json!({key: "p-x"});
        // (writer, annotations, known migrated, settings, expected)
        let cases = [
            ("anyone", &foreign, false, &s, Some(true)),
            ("anyone", &marked, false, &s, Some(true)),
            ("u-flag", &plain, false, &s, Some(true)),
            ("u-table", &plain, false, &s, Some(true)),
            ("anyone", &plain, true, &s, Some(true)),
            ("anyone", &plain, false, &s, None),
            // This cluster's own Namespace: never, by anyone, in any scope.
            ("u-flag", &own, true, &s, None),
            ("u-flag", &own, true, &all, None),
            ("anyone", &plain, false, &all, Some(false)),
        ];
        for (username, annotations, migrated, settings, expected) in cases {
            let ns = json!({"kind": "Namespace", "metadata": {"annotations": annotations}});
            let walked = walk(&ns, &m.table).unwrap();
            let facts = RequestFacts {
                is_namespace: true,
                username,
                migrated,
                ..RequestFacts::default()
            };
            let got = admit(&facts, &walked, &m, settings);
            assert_eq!(got, expected, "{username} {annotations} {migrated}");
        }
        // Nothing holding a project ID: nothing to decide, in any scope.
        let config_map = json!({"kind": "ConfigMap"});
        let none = walk(&config_map, &m.table).unwrap();
        assert_eq!(admit(&RequestFacts::default(), &none, &m, &all), None);
    }
}
