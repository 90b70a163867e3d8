//! docs/behaviour.md locations on every kind, §6 policies, §8 patch shape.

use rstest::rstest;
use serde_json::{json, Value};

use super::*;
use crate::mapping::objects::Mappings;

const KEY: &str = "field.cattle.io/projectId";

fn table() -> &'static Mappings {
    static M: std::sync::OnceLock<Mappings> = std::sync::OnceLock::new();
    M.get_or_init(|| Mappings::from_text("p-src=p-dst,c-src:p-src=c-dst:p-dst").unwrap())
}

/// The decision on an object in scope, as `options` says.
fn rewrite<'a>(obj: &'a Value, options: &Options) -> Decision<'a, 'static> {
    decide_object(obj, false, options.migrated, table(), &settings(options))
}

fn settings(options: &Options) -> MutateSettings {
    MutateSettings {
        unmapped: options.unmapped,
        scope: Scope::All,
        ..MutateSettings::default()
    }
}

/// As [`rewrite`], on the object's JSON text (the walk the webhook makes on request bytes).
fn rewrite_json<'a>(json: &'a str, options: &Options) -> Decision<'a, 'static> {
    let mut d = serde_json::Deserializer::from_str(json);
    let walked = walk(&mut d, &table().table).unwrap();
    d.end().unwrap();
    let kind = walked.kind.as_deref().unwrap_or_default().to_string();
    let facts = RequestFacts {
        kind: &kind,
        migrated: options.migrated,
        ..RequestFacts::default()
    };
    decide(&facts, walked, table(), &settings(options))
}

/// Everything a decision says, to compare two.
fn said(d: &Decision<'_, '_>) -> String {
    let rewrites: Vec<Rewrite> = d.rewrites().collect();
    let unmapped: Vec<Unmapped> = d.unmapped().collect();
    let patch = String::from_utf8_lossy(&d.patch);
    let (w, den, a) = (&d.warnings, &d.denial, &d.audit);
    format!(
        "{:?} {patch} {w:?} {den:?} {a:?} {rewrites:?} {unmapped:?}",
        d.action
    )
}

fn migrated(policy: UnmappedPolicy) -> Options {
    Options {
        unmapped: policy,
        migrated: true,
    }
}

fn run(obj: &Value) -> (Decision<'_, 'static>, Value) {
    let out = rewrite(obj, &migrated(UnmappedPolicy::Drop));
    let applied = out.apply(obj).expect("patch applies");
    (out, applied)
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "shop", "labels": {KEY: "p-src", "app": "x"}, "annotations": {KEY: "c-src:p-src"}})
}

fn ns_selector(v: &str) -> Value {
    json!({"matchLabels": {KEY: v}, "matchExpressions": [{"key": KEY, "operator": "In", "values": [v, "p-dst"]}]})
}

fn pod_spec() -> Value {
    json!({
        "containers": [{"name": "c", "image": "i"}],
        "affinity": {
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "k", "namespaceSelector": ns_selector("p-src")}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"topologyKey": "k", "namespaceSelector": ns_selector("p-src")}}]}
        }
    })
}

fn template() -> Value {
    json!({"metadata": meta("t"), "spec": pod_spec()})
}

fn mk(kind: &str, api: &str, spec: Value) -> Value {
    json!({"apiVersion": api, "kind": kind, "metadata": meta("obj"), "spec": spec})
}

fn netpol(spec: Value) -> Value {
    mk("NetworkPolicy", "networking.k8s.io/v1", spec)
}

fn mk_namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta("shop")})
}

fn mk_netpol() -> Value {
    netpol(json!({
        "podSelector": {},
        "ingress": [{"from": [{"podSelector": {}}, {"namespaceSelector": ns_selector("p-src")}]}],
        "egress": [{"to": [{"namespaceSelector": ns_selector("c-src:p-src")}]}]
    }))
}

fn locations(out: &Decision<'_, '_>) -> Vec<Location> {
    let mut l: Vec<Location> = out.rewrites().map(|r| r.location).collect();
    l.dedup();
    l
}

/// Every project ID under every §5 location of every workload kind is rewritten, and the
/// rewritten object holds no source ID anywhere.
#[rstest]
#[case::deployment(mk("Deployment", "apps/v1", json!({"template": template()})))]
#[case::statefulset(mk("StatefulSet", "apps/v1", json!({"template": template()})))]
#[case::daemonset(mk("DaemonSet", "apps/v1", json!({"template": template()})))]
#[case::replicaset(mk("ReplicaSet", "apps/v1", json!({"template": template()})))]
#[case::job(mk("Job", "batch/v1", json!({"template": template()})))]
#[case::replicationcontroller(mk("ReplicationController", "v1", json!({"template": template()})))]
#[case::custom_resource(mk("Rollout", "argoproj.io/v1alpha1", json!({"template": template()})))]
#[case::cronjob(mk("CronJob", "batch/v1", json!({"jobTemplate": {"metadata": meta("jt"), "spec": {"template": template()}}})))]
#[case::podtemplate(json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta("pt"), "template": template()}))]
fn workloads(#[case] obj: Value) {
    let (out, applied) = run(&obj);
    assert_eq!(out.unmapped().count(), 0, "{}", said(&out));
    let locs = locations(&out);
    for l in [
        Location::Label,
        Location::Annotation,
        Location::TemplateLabel,
        Location::TemplateAnnotation,
        Location::PodAffinitySelector,
    ] {
        assert!(locs.contains(&l), "{l:?} missing in {locs:?}");
    }
    let text = applied.to_string();
    assert!(!text.contains("p-src") && !text.contains("c-src"), "{text}");
    // CronJob: job template metadata and the pod template inside it.
    if obj["kind"] == "CronJob" {
        let job_template = &applied["spec"]["jobTemplate"];
        assert_eq!(job_template["metadata"]["labels"][KEY], "p-dst");
        let pod_template = &job_template["spec"]["template"];
        assert_eq!(pod_template["metadata"]["labels"][KEY], "p-dst");
    }
}

#[test]
fn pod_spec_and_selectors() {
    let pod = mk("Pod", "v1", pod_spec());
    let (out, applied) = run(&pod);
    assert_eq!(
        out.rewrites().count(),
        2 + 2 * 2,
        "labels+annotations, 2 selectors × (matchLabels + 1 In value)"
    );
    let sel = &applied["spec"]["affinity"]["podAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"][0]["namespaceSelector"];
    assert_eq!(sel, &ns_selector("p-dst"));
}

#[test]
fn a_pod_spec_on_another_kind_is_not_a_pod() {
    // `spec.affinity` only counts on a Pod.
    let obj = mk("Widget", "example.com/v1", pod_spec());
    let (out, _) = run(&obj);
    assert_eq!(locations(&out), [Location::Label, Location::Annotation]);
}

#[test]
fn namespace_labels_and_annotations() {
    let ns = mk_namespace();
    let (out, applied) = run(&ns);
    assert_eq!(applied["metadata"]["labels"][KEY], "p-dst");
    assert_eq!(applied["metadata"]["annotations"][KEY], "c-dst:p-dst");
    assert_eq!(applied["metadata"]["labels"]["app"], "x");
    assert_eq!(out.patch_ops().0.len(), 2);
}

#[test]
fn network_policy_peers() {
    let netpol = mk_netpol();
    let (out, applied) = run(&netpol);
    assert!(locations(&out).contains(&Location::NetworkPolicySelector));
    let from = &applied["spec"]["ingress"][0]["from"][1]["namespaceSelector"];
    assert_eq!(from, &ns_selector("p-dst"));
    let to = &applied["spec"]["egress"][0]["to"][0]["namespaceSelector"];
    assert_eq!(to["matchLabels"][KEY], "c-dst:p-dst");
}

#[test]
fn only_in_and_notin_expressions_and_project_keys() {
    let obj = netpol(json!({"ingress": [{"from": [{"namespaceSelector": {
    "matchLabels": {"team": "p-src"},
    "matchExpressions": [
        {"key": KEY, "operator": "NotIn", "values": ["p-src"]},
        {"key": KEY, "operator": "Exists"},
        {"key": "team", "operator": "In", "values": ["p-src"]},
    ]}}]}]}));
    let (out, applied) = run(&obj);
    let sel = &applied["spec"]["ingress"][0]["from"][0]["namespaceSelector"];
    assert_eq!(sel["matchExpressions"][0]["values"][0], "p-dst");
    assert_eq!(sel["matchExpressions"][2]["values"][0], "p-src");
    assert_eq!(sel["matchLabels"]["team"], "p-src");
    let in_selectors = |r: &Rewrite| r.location == Location::NetworkPolicySelector;
    assert_eq!(out.rewrites().filter(in_selectors).count(), 1);
}

#[test]
fn patch_paths_escape_slash_and_tilde() {
    let obj =
        json!({"kind": "ConfigMap", "metadata": {"labels": {"a~b.cattle.io/projectId": "p-src"}}});
    let out = rewrite(&obj, &migrated(UnmappedPolicy::Drop));
    let patch: Value = serde_json::from_slice(&out.patch).unwrap();
    assert_eq!(
        patch,
        json!([{"op": "replace", "path": "/metadata/labels/a~0b.cattle.io~1projectId", "value": "p-dst"}])
    );
}

#[rstest]
#[case::destination_values(json!({"kind": "Namespace", "metadata": {"name": "n", "labels": {KEY: "p-dst"}, "annotations": {KEY: "c-dst:p-dst"}}}), UnmappedPolicy::Deny)]
#[case::configmap_data(json!({"kind": "ConfigMap", "metadata": {"name": "n"}, "data": {KEY: "p-src"}}), UnmappedPolicy::Drop)]
// Values that are not strings are ignored.
#[case::not_strings(json!({"kind": "Namespace", "metadata": {"labels": {KEY: 5}, "annotations": {KEY: null}}}), UnmappedPolicy::Deny)]
fn no_patch_when_nothing_changes(#[case] obj: Value, #[case] policy: UnmappedPolicy) {
    let nothing = said(&Decision::default());
    assert_eq!(said(&rewrite(&obj, &migrated(policy))), nothing, "{obj}");
}

// §6 unmapped values under each policy

fn unmapped_obj() -> Value {
    let mut obj =
        netpol(json!({"ingress": [{"from": [{"namespaceSelector": ns_selector("p-zzz")}]}]}));
    obj["metadata"] = json!({"name": "np", "namespace": "shop", "labels": {KEY: "p-zzz"}, "annotations": {KEY: "c-src:p-zzz"}});
    obj
}

#[test]
fn drop_removes_labels_but_never_shortens_selectors() {
    let obj = unmapped_obj();
    let (out, applied) = run(&obj);
    assert!(applied["metadata"]["labels"].get(KEY).is_none());
    assert!(applied["metadata"]["annotations"].get(KEY).is_none());
    let selector = &applied["spec"]["ingress"][0]["from"][0]["namespaceSelector"];
    assert_eq!(selector, &ns_selector("p-zzz"));
    // labels, annotations, matchLabels, In value: one warning each.
    assert_eq!(out.unmapped().count(), 4);
    assert_eq!(out.warnings.len(), 4);
    let named = |w: &String| w.starts_with("NetworkPolicy shop/np: ");
    assert!(out.warnings.iter().all(named), "{:?}", out.warnings);
    assert!(out.denial.is_none());
    use UnmappedAction::{Kept, Removed};
    let actions: Vec<UnmappedAction> = out.unmapped().map(|u| u.action).collect();
    assert_eq!(actions, [Removed, Removed, Kept, Kept]);
}

#[test]
fn drop_keeps_labels_on_objects_not_migrated_and_keep_leaves_everything() {
    let obj = unmapped_obj();
    // The default options: drop, on an object not migrated.
    for options in [Options::default(), migrated(UnmappedPolicy::Keep)] {
        let out = rewrite(&obj, &options);
        assert!(out.patch.is_empty());
        assert_eq!(out.unmapped().count(), 4);
        assert!(out.unmapped().all(|u| u.action == UnmappedAction::Kept));
    }
}

#[test]
fn deny_names_object_key_and_value() {
    let obj = unmapped_obj();
    let out = rewrite(&obj, &migrated(UnmappedPolicy::Deny));
    assert_eq!(out.action, Action::Deny);
    let msg = out.denial.unwrap();
    assert!(msg.contains("NetworkPolicy shop/np"), "{msg}");
    assert!(msg.contains(KEY) && msg.contains("\"p-zzz\""), "{msg}");
    assert!(
        msg.contains("spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values[0]"),
        "{msg}"
    );
}

#[test]
fn selector_only_unmapped_is_denied_too() {
    let obj = netpol(
        json!({"egress": [{"to": [{"namespaceSelector": {"matchLabels": {KEY: "p-zzz"}}}]}]}),
    );
    let out = rewrite(&obj, &migrated(UnmappedPolicy::Deny));
    assert_eq!(out.action, Action::Deny);
    assert_eq!(out.unmapped().count(), 1);
}

#[test]
fn second_pass_is_a_no_op() {
    for obj in [
        mk_namespace(),
        mk_netpol(),
        mk("Deployment", "apps/v1", json!({"template": template()})),
        unmapped_obj(),
    ] {
        let (_, once) = run(&obj);
        let again = rewrite(&once, &migrated(UnmappedPolicy::Drop));
        assert!(again.patch.is_empty(), "{}", said(&again));
    }
}

#[rstest]
#[case(mk_namespace(), "Namespace shop/shop")]
#[case(json!({"kind": "Namespace", "metadata": {"name": "a"}}), "Namespace a")]
#[case(json!({"kind": "Pod", "metadata": {"generateName": "web-", "namespace": "n"}}), "Pod n/web-*")]
fn describe_objects(#[case] obj: Value, #[case] described: &str) {
    assert_eq!(describe(&obj), described);
}

#[test]
fn every_location_has_a_place() {
    assert_eq!(super::places::locations(), Location::ALL.to_vec());
}

#[test]
fn the_walk_on_bytes_agrees_with_the_tree_on_odd_json() {
    let o = migrated(UnmappedPolicy::Drop);
    // Duplicate keys (the last value wins, at the first one's place), the kind after the
    // fields that depend on it, escapes in keys, expressions with key and operator last.
    let cases = [
        r#"{"metadata":{"labels":{"field.cattle.io/projectId":"p-src","a":"b","field.cattle.io/projectId":"p-other"}}}"#,
        r#"{"metadata":{"labels":{"field.cattle.io/projectId":1,"x":"y","field.cattle.io/projectId":"p-src"}}}"#,
        r#"{"metadata":{"labels":{"field.cattle.io/projectId":"p-src"}},"metadata":{"annotations":{"field.cattle.io/projectId":"p-src"}}}"#,
        r#"{"spec":{"ingress":[{"from":[{"namespaceSelector":{"matchExpressions":[{"values":["p-src","zz"],"operator":"In","key":"field.cattle.io/projectId"}]}}]}]},"kind":"NetworkPolicy"}"#,
        r#"{"spec":{"affinity":{"podAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"namespaceSelector":{"matchLabels":{"field.cattle.io/projectId":"p-src"}}}]}}},"kind":"Pod","kind":"Deployment"}"#,
        r#"{"met\u0061data":{"labels":{"field.cattle.io\/projectId":"p-\u0073rc"}}}"#,
        r#"{"spec":{"template":{"metadata":{"labels":{"field.cattle.io/projectId":"p-src"}}},"template":{"metadata":{}}},"metadata":{"annotations":{"stork.libopenstorage.org/migrated":"true","field.cattle.io/projectId":"c-src:p-src"}}}"#,
        r#"{"spec":{"ingress":[{"from":[{"namespaceSelector":{"matchExpressions":[{"key":"field.cattle.io/projectId","operator":"In","values":["p-src"],"values":["nope"]}]}}]}]},"kind":"NetworkPolicy"}"#,
        // A field seen again after others (found by the fuzzer): only its own earlier findings
        // are replaced, not those of the fields in between.
        r#"{"kind":"Deployment","metadata":{"labels":{"field.cattle.io/projectId":"p-src"}},"kind":{"template":{}}}"#,
        r#"{"spec":{"template":{"metadata":{"labels":{"field.cattle.io/projectId":"p-src"}}}},"metadata":{"annotations":{"field.cattle.io/projectId":"p-src"}},"spec":{}}"#,
        r#"{"spec":{"ingress":[{"from":[{"namespaceSelector":{"matchExpressions":[{"values":["p-src"],"key":"field.cattle.io/projectId","operator":"In","values":["c-src:p-src"]}]}}]}]},"kind":"NetworkPolicy"}"#,
    ];
    for case in cases {
        let tree: Value = serde_json::from_str(case).unwrap();
        let from_tree = said(&rewrite(&tree, &o));
        assert_eq!(said(&rewrite_json(case, &o)), from_tree, "{case}");
    }
}

#[rstest]
#[case(
    "/metadata/labels/field.cattle.io~1projectId",
    "metadata.labels[field.cattle.io/projectId]"
)]
#[case(
    "/metadata/labels/a~0b.cattle.io~1projectId",
    "metadata.labels[a~b.cattle.io/projectId]"
)]
#[case(
    "/spec/ingress/0/from/1/namespaceSelector",
    "spec.ingress[0].from[1].namespaceSelector"
)]
#[case("/metadata/labels/a~01", "metadata.labels.a~1")]
#[case("/metadata/labels/~~1x", "metadata.labels[~/x]")]
#[case("/x/~2", "x.~2")]
fn display_paths_decode_escaped_tokens(#[case] raw: &str, #[case] shown: &str) {
    assert_eq!(super::outcome::display_pointer(raw), shown, "{raw}");
}

#[test]
fn the_report_order_of_the_deepest_place_fits() {
    let needed = super::places::order_depth();
    assert!(needed >= 12, "the walk over the places: {needed}");
    assert!(needed <= super::walk::ORDER_DEPTH, "{needed}");
}

#[test]
fn every_place_fits_the_walks_record_of_fields_seen() {
    // The walk remembers each field's last visit in an array WIDEST long (a field seen again
    // replaces its findings); a narrower array would forget duplicates of the later fields.
    fn widths(p: &super::places::Place, out: &mut Vec<usize>) {
        use super::places::Place;
        match p {
            Place::Fields(fields) => {
                out.push(fields.len());
                fields.iter().for_each(|f| widths(&f.place, out));
            }
            Place::Each(p) => widths(p, out),
            _ => {}
        }
    }
    let mut all = Vec::new();
    widths(&super::places::OBJECT, &mut all);
    assert_eq!(all.iter().max().copied(), Some(super::places::WIDEST));
    // The object itself: a duplicate of its last field still replaces the first visit.
    let obj = r#"{"kind":"Deployment","metadata":{"labels":{"field.cattle.io/projectId":"p-src"}},"spec":{"template":{"metadata":{"labels":{"field.cattle.io/projectId":"p-src"}}}},"spec":{}}"#;
    let outcome = rewrite_json(obj, &Options::default());
    assert_eq!(outcome.rewrites().count(), 1, "{}", said(&outcome));
}

#[test]
fn a_bounded_walk_refuses_an_object_with_too_many_values() {
    let many: serde_json::Map<String, Value> = (0..50)
        .map(|i| (format!("a{i}.cattle.io/projectId"), json!("p-src")))
        .collect();
    let obj = json!({"metadata": {"labels": many}}).to_string();
    let mut d = serde_json::Deserializer::from_str(&obj);
    assert!(super::walk::walk_bounded(&mut d, &table().table, 49).is_err());
    let mut d = serde_json::Deserializer::from_str(&obj);
    let walked = super::walk::walk_bounded(&mut d, &table().table, 50).unwrap();
    assert_eq!(walked.findings().len(), 50);
}

#[test]
fn annotations_seen_again_decide_alone_whether_the_object_is_migrated() {
    let case = r#"{"metadata":{"annotations":{"stork.libopenstorage.org/migrated":"true"},"annotations":"x"}}"#;
    let tree: Value = serde_json::from_str(case).unwrap();
    let mut d = serde_json::Deserializer::from_str(case);
    let walked = super::walk::walk(&mut d, &table().table).unwrap();
    assert_eq!(walked.migrated_annotation, has_migrated_annotation(&tree));
}
