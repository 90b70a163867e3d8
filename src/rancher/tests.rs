//! The pairing by name, one case per rule; clusters named by ID or display name.

use rstest::rstest;

use super::*;

fn named(list: &[(&str, &str)]) -> Vec<Named> {
    list.iter()
        .map(|(id, name)| Named::new(*id, *name))
        .collect()
}

fn renames(list: &[&str]) -> Vec<Rename> {
    list.iter().map(|r| r.parse().unwrap()).collect()
}

/// `(source ID, destination ID, how)` of each match.
fn pairs(p: &Pairing) -> Vec<(&str, &str, How)> {
    p.matched
        .iter()
        .map(|m| (m.source.id.as_str(), m.destination.id.as_str(), m.how))
        .collect()
}

fn ids(list: &[Project]) -> Vec<&str> {
    list.iter().map(|p| p.id.as_str()).collect()
}

fn paired(src: &[(&str, &str)], dst: &[(&str, &str)], map: &[&str]) -> Pairing {
    pair(&named(src), &named(dst), &renames(map)).unwrap()
}

#[rstest]
#[case::the_same_names_default_and_system_projects_included(
    &[("p-s1", "Default"), ("p-s2", "System"), ("p-s3", "shop")],
    &[("p-d3", "shop"), ("p-d1", "Default"), ("p-d2", "System")], &[],
    &[("p-s1", "p-d1", How::Exact), ("p-s2", "p-d2", How::Exact), ("p-s3", "p-d3", How::Exact)])]
#[case::case_is_ignored_only_when_no_name_is_the_same(
    &[("p-s1", "Shop")], &[("p-d1", "shop")], &[], &[("p-s1", "p-d1", How::IgnoringCase)])]
#[case::an_exact_name_wins_over_one_that_differs_in_case(
    &[("p-s1", "Shop")], &[("p-d1", "shop"), ("p-d2", "Shop")], &[],
    &[("p-s1", "p-d2", How::Exact)])]
#[case::names_differing_in_case_on_both_sides_pair_exactly_each_with_its_own(
    &[("p-s1", "Shop"), ("p-s2", "shop")], &[("p-d1", "shop"), ("p-d2", "Shop")], &[],
    &[("p-s1", "p-d2", How::Exact), ("p-s2", "p-d1", How::Exact)])]
#[case::map_pairs_renamed_projects_and_wins_over_the_name(
    &[("p-s1", "Old shop"), ("p-s2", "web")],
    &[("p-d1", "New shop"), ("p-d2", "web"), ("p-d3", "web2")],
    &["Old shop=New shop", "web = web2"],
    &[("p-s1", "p-d1", How::Map), ("p-s2", "p-d3", How::Map)])]
#[case::map_finds_names_as_names_are_exactly_then_ignoring_case(
    &[("p-s1", "Old")], &[("p-d1", "New")], &["old=NEW"], &[("p-s1", "p-d1", How::Map)])]
fn every_source_project_pairs(
    #[case] src: &[(&str, &str)],
    #[case] dst: &[(&str, &str)],
    #[case] map: &[&str],
    #[case] want: &[(&str, &str, How)],
) {
    let p = paired(src, dst, map);
    assert!(p.is_complete(), "{p:?}");
    assert_eq!(pairs(&p), want);
}

#[test]
fn map_entries_that_name_no_project_are_errors() {
    let src = named(&[("p-s1", "a"), ("p-s2", "b")]);
    let dst = named(&[("p-d1", "a")]);
    let err = pair(&src, &dst, &renames(&["x=a", "b=y", "a=a", "a=a"])).unwrap_err();
    let said: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert_eq!(
        said,
        [
            "--map \"x\"=\"a\": no source project is named \"x\"",
            "--map \"b\"=\"y\": no destination project is named \"y\"",
            "--map \"a\" is given more than once",
        ]
    );
    assert!("no-equals".parse::<Rename>().is_err());
    assert!("=b".parse::<Rename>().is_err());
    assert!("a= ".parse::<Rename>().is_err());
}

#[test]
fn projects_without_a_destination_are_unmatched_by_id() {
    let p = paired(
        &[("p-s1", "shop"), ("p-s2", "gone"), ("p-s3", "Also gone")],
        &[("p-d1", "shop")],
        &[],
    );
    assert!(!p.is_complete());
    assert_eq!(ids(&p.unmatched), ["p-s3", "p-s2"]);
    assert_eq!(pairs(&p), [("p-s1", "p-d1", How::Exact)]);
    assert!(p.ambiguous.is_empty());
}

/// `(name, ignoring case, source IDs, destination IDs)` of each ambiguity.
fn ambiguities(p: &Pairing) -> Vec<(&str, bool, Vec<&str>, Vec<&str>)> {
    p.ambiguous
        .iter()
        .map(|a| {
            let (s, d) = (ids(&a.sources), ids(&a.destinations));
            (a.name.as_str(), a.ignoring_case, s, d)
        })
        .collect()
}

#[rstest]
#[case::twice_on_the_source(
    &[("p-s1", "shop"), ("p-s2", "shop")], &[("p-d1", "shop")], &[],
    ("shop", false, vec!["p-s1", "p-s2"], vec!["p-d1"]))]
#[case::twice_on_the_source_none_on_the_destination(
    &[("p-s1", "shop"), ("p-s2", "shop")], &[], &[],
    ("shop", false, vec!["p-s1", "p-s2"], vec![]))]
#[case::twice_on_the_destination(
    &[("p-s1", "shop")], &[("p-d1", "shop"), ("p-d2", "shop")], &[],
    ("shop", false, vec!["p-s1"], vec!["p-d1", "p-d2"]))]
#[case::in_case_only_on_the_destination(
    &[("p-s1", "Shop")], &[("p-d1", "SHOP"), ("p-d2", "shop")], &[],
    ("shop", true, vec!["p-s1"], vec!["p-d1", "p-d2"]))]
#[case::in_case_only_on_the_source(
    &[("p-s1", "Shop"), ("p-s2", "SHOP")], &[("p-d1", "shop")], &[],
    ("shop", true, vec!["p-s1", "p-s2"], vec!["p-d1"]))]
#[case::one_exact_one_needing_case(
    // "Shop" pairs exactly, but "SHOP" needs the case-insensitive step, where the two source
    // names are one.
    &[("p-s1", "Shop"), ("p-s2", "SHOP")], &[("p-d1", "Shop")], &[],
    ("shop", true, vec!["p-s1", "p-s2"], vec!["p-d1"]))]
#[case::through_map(
    &[("p-s1", "old")], &[("p-d1", "new"), ("p-d2", "new")], &["old=new"],
    ("old", false, vec!["p-s1"], vec!["p-d1", "p-d2"]))]
fn ambiguous_names_name_every_project_involved(
    #[case] src: &[(&str, &str)],
    #[case] dst: &[(&str, &str)],
    #[case] map: &[&str],
    #[case] want: (&str, bool, Vec<&str>, Vec<&str>),
) {
    let p = paired(src, dst, map);
    assert!(!p.is_complete());
    assert_eq!(ambiguities(&p), [want], "{p:?}");
    assert!(p.unmatched.is_empty(), "{p:?}");
}

#[test]
fn entries_come_in_both_forms_a_project_at_a_time() {
    let p = paired(
        &[("p-ab12c", "shop"), ("p-s2", "web")],
        &[("p-xy99z", "shop"), ("p-d2", "web")],
        &[],
    );
    let e = entries(&p.matched, "c-7gh2k", "c-m-4kq8z9rt");
    let e: Vec<String> = e.iter().map(|(s, d)| format!("{s}={d}")).collect();
    assert_eq!(
        e,
        [
            "p-ab12c=p-xy99z",
            "c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z",
            "p-s2=p-d2",
            "c-7gh2k:p-s2=c-m-4kq8z9rt:p-d2",
        ]
    );
    // A table the server takes.
    crate::mapping::table_from_text(&e.join(",")).unwrap();
}

fn clusters() -> Vec<Cluster> {
    named(&[
        ("local", "local"),
        ("c-7gh2k", "prod-west"),
        ("c-m-4kq8z9rt", "dr-east"),
        ("c-1", "twin"),
        ("c-2", "Twin"),
        ("c-3", "twin"),
    ])
}

#[rstest]
#[case::by_id("c-7gh2k", "c-7gh2k")]
#[case::by_display_name("dr-east", "c-m-4kq8z9rt")]
#[case::ignoring_case("DR-East", "c-m-4kq8z9rt")]
#[case::exact_name_over_case("Twin", "c-2")]
#[case::local("local", "local")]
fn a_cluster_is_named_by_id_or_display_name(#[case] given: &str, #[case] id: &str) {
    assert_eq!(resolve_cluster(given, &clusters()).unwrap().id, id);
}

#[test]
fn a_cluster_name_that_is_missing_or_shared_says_which_clusters_there_are() {
    let e = resolve_cluster("nowhere", &clusters()).unwrap_err();
    assert!(e.to_string().contains("c-7gh2k (\"prod-west\")"), "{e}");
    assert_eq!(
        resolve_cluster("twin", &clusters()).unwrap_err(),
        ClusterError::Ambiguous {
            given: "twin".into(),
            ids: vec!["c-1".into(), "c-3".into()]
        }
    );
    let none = resolve_cluster("x", &[]).unwrap_err().to_string();
    assert!(none.ends_with("the clusters are: none"), "{none}");
}

#[test]
fn a_missing_project_is_created_in_its_clusters_namespace_with_its_name() {
    assert_eq!(
        new_project("c-m-4kq8z9rt", "Shop"),
        serde_json::json!({
            "apiVersion": "management.cattle.io/v3",
            "kind": "Project",
            "metadata": {"generateName": "p-", "namespace": "c-m-4kq8z9rt"},
            "spec": {"displayName": "Shop", "clusterName": "c-m-4kq8z9rt"},
        })
    );
}
