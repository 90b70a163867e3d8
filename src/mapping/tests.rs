//! docs/behaviour.md (checks across entries) and §4 (lookup), one case per rule.

use super::*;
use LookupRef::{Keep, Unmapped};

fn table(text: &str) -> Table {
    table_from_text(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A ConfigMap's data.
fn data(keys: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    keys.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(text: &str) -> Vec<MappingError> {
    table_from_text(text)
        .expect_err("mapping should be refused")
        .0
}

/// Tables refused for one error across entries, and what it says.
#[rstest::rstest]
#[case::one_source_two_destinations("p-a=p-b,p-a=p-c", |e: &[_]| matches!(e, [MappingError::Conflict { part: Part::Whole, entry, other, .. }] if &*entry.text == "p-a=p-c" && &*other.text == "p-a=p-b"))]
#[case::project_parts_across_forms("p-a=p-b,c-1:p-a=c-2:p-c", |e: &[_]| matches!(e, [MappingError::Conflict { part: Part::Project, src, .. }] if src == "p-a"))]
#[case::source_cluster_to_two_clusters("c-1:p-a=c-2:p-b,c-1:p-c=c-3:p-d", |e: &[_]| matches!(e, [MappingError::Conflict { part: Part::Cluster, src, .. }] if src == "c-1"))]
#[case::chain("p-a=p-b,p-b=p-c", |e: &[_]| matches!(e, [MappingError::Chain { id, .. }] if id == "p-b"))]
// Whole cluster-form values, and a cluster-form destination project used as a project source.
#[case::chain_cluster_form("c-1:p-a=c-2:p-b,c-2:p-b=c-3:p-c", |e: &[_]| matches!(e, [MappingError::Chain { .. }]))]
#[case::chain_across_forms("c-1:p-a=c-2:p-b,p-b=p-c", |e: &[_]| matches!(e, [MappingError::Chain { .. }]))]
#[case::cluster_onto_itself("c-1:p-a=c-1:p-b", |e: &[_]| matches!(e, [MappingError::SelfMapping { cluster, .. }] if cluster == "c-1"))]
fn refused_across_entries(#[case] text: &str, #[case] expected: fn(&[MappingError]) -> bool) {
    let e = errors(text);
    assert!(expected(&e), "{text}: {e:?}");
}

#[test]
fn conflicts_name_both_entries_and_every_part() {
    let msg = errors("p-a=p-b,p-a=p-c")[0].to_string();
    let both = msg.contains("\"p-a=p-c\"") && msg.contains("\"p-a=p-b\"");
    assert!(both, "{msg}");
    let e = errors("c-1:p-a=c-2:p-b,c-3:p-a=c-4:p-c");
    let parts: Vec<Part> = e
        .iter()
        .filter_map(|e| match e {
            MappingError::Conflict { part, .. } => Some(*part),
            _ => None,
        })
        .collect();
    assert!(parts.contains(&Part::Project), "{e:?}");
}

#[test]
fn exact_duplicates_are_accepted() {
    assert_eq!(table("p-a=p-b,p-a=p-b").len(), 1);
}

#[test]
fn identity_is_a_warning_not_a_chain() {
    let t = table("p-a=p-a,p-b=p-a");
    assert!(
        matches!(&t.warnings()[0], MappingWarning::Identity { entry } if &*entry.text == "p-a=p-a")
    );
    // p-b and p-a both land on p-a: the reverse pair could not hold both.
    assert_eq!(t.many_to_one().count(), 1);
    assert_eq!(t.warnings().len(), 2);
}

#[test]
fn many_to_one_is_allowed_with_a_warning_naming_both_entries() {
    let t = table("p-a=p-z,p-b=p-z");
    assert_eq!(t.lookup_ref("p-a"), to("p-z"));
    assert_eq!(t.lookup_ref("p-b"), to("p-z"));
    let w: Vec<String> = t.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("entries \"p-a=p-z\" and \"p-b=p-z\" both map to project p-z"),
        "{w:?}"
    );
    assert_eq!(t.warnings()[0].field_path(), "project-mappings[p-b]");
}

#[test]
fn many_to_one_is_counted_by_project_once_whatever_the_forms() {
    // Both forms for each project: one warning, for the second source project.
    let t = table("p-a=p-z,c-1:p-a=c-2:p-z,p-b=p-z,c-1:p-b=c-2:p-z");
    assert_eq!(t.many_to_one().count(), 1, "{:?}", t.warnings());
    // A project-form and a cluster-form entry landing on one project, from two projects.
    assert_eq!(table("p-a=p-z,c-1:p-b=c-2:p-z").many_to_one().count(), 1);
    // Three sources onto one: two warnings, each naming the first.
    let t = table("p-a=p-z,p-b=p-z,p-c=p-z");
    let w: Vec<String> = t.many_to_one().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2);
    let name_the_first = |w: &String| w.starts_with("entries \"p-a=p-z\"");
    assert!(w.iter().all(name_the_first), "{w:?}");
    // One-to-one tables, in both forms, and exact duplicates: none.
    // Two source clusters onto one, distinct projects (two pairs' tables merged on one
    // destination): each pair's reverse holds its own.
    for text in [
        "p-a=p-y,c-1:p-a=c-2:p-y,p-b=p-z,p-a=p-y",
        "c-1:p-a=c-3:p-x,c-2:p-b=c-3:p-y",
    ] {
        assert!(table(text).warnings().is_empty(), "{text}");
    }
}

#[test]
fn all_errors_are_reported() {
    let e = errors("p-a=p-b,bad,p-c=,p-a=p-x");
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn conflict_across_configmap_keys_names_both_keys() {
    let data = data(&[("ns.a", "p-a=p-b\n"), ("ns.b", "p-a=p-c\n")]);
    let e = Table::build(objects::parse_configmap_data(&data)).unwrap_err();
    let msg = e.0[0].to_string();
    let both = msg.contains("data key ns.a") && msg.contains("data key ns.b");
    assert!(both, "{msg}");
}

// §4 lookup

#[rstest::rstest]
// Destination values stay.
#[case::destination("p-a=p-b,c-1:p-a=c-2:p-b", "p-b", Keep)]
#[case::destination_cluster_form("p-a=p-b,c-1:p-a=c-2:p-b", "c-2:p-b", Keep)]
// An exact entry wins.
#[case::exact("p-a=p-b,c-1:p-a=c-2:p-b,c-9:p-q=c-8:p-r", "p-a", to("p-b"))]
#[case::exact_cluster_form("p-a=p-b,c-1:p-a=c-2:p-b,c-9:p-q=c-8:p-r", "c-1:p-a", to("c-2:p-b"))]
// p-a → p-b by a project-form entry; c-1 → c-2 learned from another cluster-form entry.
#[case::composed("p-a=p-b,c-1:p-x=c-2:p-y", "c-1:p-a", to("c-2:p-b"))]
// Project known only as the project part of a cluster-form entry.
#[case::composed_from_cluster_entries("c-1:p-a=c-2:p-b,c-1:p-x=c-2:p-y", "c-1:p-x", to("c-2:p-y"))]
#[case::cluster_unknown("p-a=p-b", "c-1:p-a", Unmapped)]
#[case::project_form_from_cluster_entry("c-1:p-a=c-2:p-b", "p-a", to("p-b"))]
#[case::unmapped("p-a=p-b,c-1:p-a=c-2:p-b", "p-zz", Unmapped)]
#[case::unmapped_cluster_form("p-a=p-b,c-1:p-a=c-2:p-b", "c-1:p-zz", Unmapped)]
#[case::empty("p-a=p-b,c-1:p-a=c-2:p-b", "", Unmapped)]
#[case::not_an_id("p-a=p-b,c-1:p-a=c-2:p-b", "a:b:c", Unmapped)]
fn lookup(#[case] entries: &str, #[case] value: &str, #[case] expected: LookupRef) {
    assert_eq!(table(entries).lookup_ref(value), expected);
}

fn to(value: &str) -> LookupRef<'_> {
    LookupRef::Rewrite(value.into())
}

#[test]
fn second_lookup_is_a_no_op() {
    let t = table("p-a=p-b,c-1:p-a=c-2:p-b,p-c=p-d,c-1:p-x=c-2:p-y");
    for v in ["p-a", "c-1:p-a", "p-c", "c-1:p-c", "p-x", "c-1:p-x"] {
        if let LookupRef::Rewrite(once) = t.lookup_ref(v) {
            assert_eq!(t.lookup_ref(&once), LookupRef::Keep, "{v} → {once}");
        } else {
            panic!("{v} should map");
        }
    }
}

#[test]
fn configmap_with_users() {
    let data = data(&[("ns.pair", "p-a=p-b\nc-1:p-a=c-2:p-b\n")]);
    let m = objects::mappings_from_configmap(&data, Some(" a , b,")).unwrap();
    assert_eq!(m.migration_users, ["a", "b"]);
    assert_eq!(m.table.len(), 2);
}

#[test]
fn a_cluster_mapped_onto_itself_is_named_and_x_equals_x_is_a_warning() {
    let e = errors("c-1:p-a=c-1:p-b");
    assert!(e[0].to_string().contains("\"c-1:p-a=c-1:p-b\""), "{}", e[0]);
    // x=x in cluster form stays a warning (it has no effect).
    assert_eq!(table("c-1:p-a=c-1:p-a").warnings().len(), 1);
}

#[test]
fn a_table_is_checked_against_the_cluster_it_acts_on() {
    let t = table("p-a=p-b,c-src:p-a=c-dst:p-b");
    assert!(t.check_cluster("c-dst").is_ok());
    assert!(t.is_source_cluster("c-src") && !t.is_source_cluster("c-dst"));

    // Reversed: derived from the destination-side pair of `storkctl create clusterpair`.
    let reversed = table("p-b=p-a,c-dst:p-b=c-src:p-a");
    let e = reversed.check_cluster("c-dst").unwrap_err().0;
    assert!(
        matches!(&e[..], [MappingError::Reversed { this, to }] if this == "c-dst" && to == "c-src"),
        "{e:?}"
    );
    let msg = e[0].to_string();
    assert!(msg.contains("c-dst") && msg.contains("c-src"), "{msg}");
    assert!(msg.contains("derive --reverse"), "{msg}");

    // Another cluster's table.
    let e = t.check_cluster("c-other").unwrap_err().0;
    assert!(
        matches!(&e[..], [MappingError::OtherCluster { from, to, this }] if from == "c-src" && to == "c-dst" && this == "c-other"),
        "{e:?}"
    );
    // Project-form tables name no cluster: nothing to check.
    assert!(table("p-a=p-b").check_cluster("c-dst").is_ok());
}

#[test]
fn entries_that_look_like_credentials_are_never_quoted() {
    for quoted in ["p-a=p-b", "c-m-4kq8z9rt:p-xy99z=local:p-a", "p-a: p-b"] {
        assert!(is_quotable(quoted), "{quoted}");
    }
    for hidden in [
        // A Rancher token's random part, a credential key beside its value.
        "kubeconfig-u-abc12:qx7k2mz9w4v8t6r1p3n5l7j9h2f4d6b8a0c1e3g5i7k9m2o4q6s8u",
        "password: hunter2",
        "token: abc",
        "client-key-data: x",
    ] {
        assert!(!is_quotable(hidden), "{hidden}");
        let e = table_from_text(hidden).unwrap_err().to_string();
        let quoted = e.contains("hunter2") || e.contains("qx7k2mz9") || e.contains("abc\"");
        assert!(!quoted, "{e}");
    }
}
