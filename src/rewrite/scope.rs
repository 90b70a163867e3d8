//! Which admission requests are rewritten (docs/behaviour.md, "Which requests are rewritten"):
//! one pure rule, used by the webhook on request bytes and by every path over a decoded object.
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

use super::decide::UnmappedPolicy;
use super::keys::NAMESPACE_PROJECT_KEYS;
use super::outcome::Location;
use super::walk::Found;
use crate::mapping::objects::Mappings;
use crate::mapping::Table;

/// Which requests `/mutate` rewrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Objects that count as migrated (see the module documentation).
    #[default]
    Migrated,
    /// Every admitted object.
    All,
}

/// Whether `/mutate` applies what it finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Answer with the patch.
    #[default]
    Enforce,
    /// Answer as `enforce` would, without the patch: a warning and the audit annotation say
    /// what it would have rewritten (to roll out, audit, then enforce).
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

/// The claim of a decoded Namespace object (the paths over a tree: `rewrite`, `audit`).
pub fn namespace_claim_of(
    obj: &serde_json::Value,
    table: &Table,
    this: Option<&str>,
) -> NamespaceClaim {
    // Walking a decoded tree cannot fail.
    let mut walked = super::walk::walk(obj, table).unwrap_or_default();
    namespace_claim(walked.settle(), table, this)
}

/// Whether a request's kind (`request.kind.group`, `.kind`) is the core Namespace, the only kind
/// a claim is read for (a custom resource named Namespace in another group is not).
pub fn is_namespace(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Namespace"
}

/// The request facts the rule reads.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'r> {
    /// `request.userInfo.username`.
    pub username: &'r str,
    /// Whether the object carries Stork's migrated annotation.
    pub migrated_annotation: bool,
    /// For a Namespace, what its annotations claim ([`NamespaceClaim::Unknown`] otherwise).
    pub claim: NamespaceClaim,
}

/// Whether to rewrite the object, and if so whether it counts as migrated (which decides
/// whether `--unmapped drop` removes keys). `None`: leave the request alone.
pub fn admit(writer: &Writer<'_>, mappings: &Mappings, settings: &MutateSettings) -> Option<bool> {
    if writer.claim == NamespaceClaim::Own {
        return None;
    }
    let user = writer.username;
    let migrated = writer.migrated_annotation
        || writer.claim == NamespaceClaim::Foreign
        || settings.migration_users.contains(user)
        || mappings.migration_users.iter().any(|u| u == user);
    (migrated || settings.scope == Scope::All).then_some(migrated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::walk;
    use serde_json::json;

    fn mappings(text: &str, users: &[&str]) -> Mappings {
        let mut m = Mappings::from_text(text).unwrap();
        m.migration_users = users.iter().map(|u| u.to_string()).collect();
        m
    }

    fn claim_of(
        annotations: serde_json::Value,
        m: &Mappings,
        this: Option<&str>,
    ) -> NamespaceClaim {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "annotations": annotations}});
        let mut walked = walk(&ns, &m.table).unwrap();
        namespace_claim(walked.settle(), &m.table, this)
    }

    #[test]
    fn a_namespace_is_known_by_the_cluster_its_annotation_names() {
        let m = mappings("p-a=p-b,c-src:p-a=c-dst:p-b", &[]);
        let this = Some("c-dst");
        let key = "field.cattle.io/projectId";
        assert_eq!(
            claim_of(json!({key: "c-src:p-a"}), &m, this),
            NamespaceClaim::Foreign
        );
        assert_eq!(
            claim_of(json!({"field.cattle.io/projectID": "c-src:p-zz"}), &m, this),
            NamespaceClaim::Foreign,
            "either spelling, any project of the source cluster"
        );
        assert_eq!(
            claim_of(json!({key: "c-dst:p-b"}), &m, this),
            NamespaceClaim::Own
        );
        assert_eq!(
            claim_of(json!({key: "c-dst:p-a"}), &m, this),
            NamespaceClaim::Own
        );
        assert_eq!(
            claim_of(json!({key: "c-else:p-a"}), &m, this),
            NamespaceClaim::Unknown
        );
        assert_eq!(
            claim_of(json!({key: "p-a"}), &m, this),
            NamespaceClaim::Unknown
        );
        assert_eq!(
            claim_of(json!({"other": "c-src:p-a"}), &m, this),
            NamespaceClaim::Unknown
        );
        // Without a cluster ID, a source cluster's claim still counts.
        assert_eq!(
            claim_of(json!({key: "c-src:p-a"}), &m, None),
            NamespaceClaim::Foreign
        );
        // Only the keys the API server's matchConditions can name: the two agree.
        for other_spelling in [
            "field.cattle.io/projectid",
            "management.cattle.io/projectId",
        ] {
            let a = json!({other_spelling: "c-src:p-a"});
            assert_eq!(
                claim_of(a, &m, this),
                NamespaceClaim::Unknown,
                "{other_spelling}"
            );
        }
        // This cluster wins over a source cluster named by the other key.
        let both = json!({key: "c-src:p-a", "field.cattle.io/projectID": "c-dst:p-b"});
        assert_eq!(claim_of(both, &m, this), NamespaceClaim::Own);
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
        let w = |username, migrated_annotation, claim| Writer {
            username,
            migrated_annotation,
            claim,
        };
        use NamespaceClaim::*;
        assert_eq!(admit(&w("anyone", false, Foreign), &m, &s), Some(true));
        assert_eq!(admit(&w("anyone", true, Unknown), &m, &s), Some(true));
        assert_eq!(admit(&w("u-flag", false, Unknown), &m, &s), Some(true));
        assert_eq!(admit(&w("u-table", false, Unknown), &m, &s), Some(true));
        assert_eq!(admit(&w("anyone", false, Unknown), &m, &s), None);
        // This cluster's own Namespace: never, by anyone, in any scope.
        assert_eq!(admit(&w("u-flag", true, Own), &m, &s), None);
        let all = MutateSettings {
            scope: Scope::All,
            ..s.clone()
        };
        assert_eq!(admit(&w("u-flag", true, Own), &m, &all), None);
        assert_eq!(admit(&w("anyone", false, Unknown), &m, &all), Some(false));
    }
}
