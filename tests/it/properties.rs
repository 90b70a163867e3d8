//! Laws of the engine over generated objects (docs/behaviour.md):
//! - the patch applied with json-patch equals an independent, direct rewrite of the object;
//! - a second pass gives no operations;
//! - nothing outside the §5 locations changes;
//! - an object with no project-ID key gives no operations;
//! - the parts of an object the webhook decodes rewrite exactly as the whole object.

use proptest::prelude::*;
use serde_json::{json, Value};

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::mapping::LookupRef;
use rancher_remap::rewrite::{
    decide, is_project_id_key, walk, Decision, MutateSettings, Options, RequestFacts, Scope,
    UnmappedPolicy,
};

use crate::common::rewrite;

pub(crate) const TABLE: &str = "p-src1=p-dst1,p-src2=p-dst2,c-s:p-src1=c-d:p-dst1,p-same=p-same";

fn table() -> &'static Mappings {
    static M: std::sync::OnceLock<Mappings> = std::sync::OnceLock::new();
    M.get_or_init(|| Mappings::from_text(TABLE).unwrap())
}

/// As [`rewrite`], on the object's JSON text (the walk the webhook makes on request bytes).
fn rewrite_json<'a>(json: &'a str, m: &'static Mappings, o: &Options) -> Decision<'a, 'static> {
    let mut d = serde_json::Deserializer::from_str(json);
    let walked = walk(&mut d, &m.table).unwrap();
    d.end().unwrap();
    let tree: Value = serde_json::from_str(json).unwrap();
    let s = |p: &str| {
        tree.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (kind, namespace, name) = (s("/kind"), s("/metadata/namespace"), s("/metadata/name"));
    let facts = RequestFacts {
        kind: &kind,
        namespace: &namespace,
        name: &name,
        migrated: o.migrated,
        ..RequestFacts::default()
    };
    let settings = MutateSettings {
        unmapped: o.unmapped,
        scope: Scope::All,
        ..MutateSettings::default()
    };
    decide(&facts, walked, m, &settings)
}

/// Everything a decision says, to compare two.
fn said(d: &Decision<'_, '_>) -> String {
    let rewrites: Vec<_> = d.rewrites().collect();
    let unmapped: Vec<_> = d.unmapped().collect();
    let patch = String::from_utf8_lossy(&d.patch);
    let (w, den, a) = (&d.warnings, &d.denial, &d.audit);
    format!(
        "{:?} {patch} {w:?} {den:?} {a:?} {rewrites:?} {unmapped:?}",
        d.action
    )
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "p-src1",
        "p-src2",
        "c-s:p-src1",
        "c-s:p-src2",
        "p-dst1",
        "c-d:p-dst2",
        "p-same",
        "p-unknown",
        "c-x:p-src1",
        "",
        "Not Valid",
    ])
    .prop_map(str::to_string)
}

fn key(project_keys: bool) -> BoxedStrategy<String> {
    let mut keys = vec![
        "app",
        "team",
        "cattle.io/status",
        "field.cattle.io/projectName",
    ];
    if project_keys {
        keys.extend([
            "field.cattle.io/projectId",
            "field.cattle.io/projectID",
            "cattle.io/projectid",
            "a~b.cattle.io/projectId",
        ]);
    }
    prop::sample::select(keys).prop_map(str::to_string).boxed()
}

fn string_map(pk: bool) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(pk), value(), 0..4).prop_map(|m| json!(m))
}

fn selector(pk: bool) -> impl Strategy<Value = Value> {
    let expr = (
        key(pk),
        prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
        prop::collection::vec(value(), 0..3),
    )
        .prop_map(|(k, op, vals)| json!({"key": k, "operator": op, "values": vals}));
    (string_map(pk), prop::collection::vec(expr, 0..3))
        .prop_map(|(ml, me)| json!({"matchLabels": ml, "matchExpressions": me}))
}

fn metadata(pk: bool) -> impl Strategy<Value = Value> {
    (string_map(pk), string_map(pk), prop::bool::ANY).prop_map(|(l, a, migrated)| {
        let mut a = a;
        if migrated {
            a["stork.libopenstorage.org/migrated"] = json!("true");
        }
        json!({"name": "o", "namespace": "ns", "labels": l, "annotations": a})
    })
}

fn pod_spec(pk: bool) -> impl Strategy<Value = Value> {
    (selector(pk), selector(pk)).prop_map(|(a, b)| {
        json!({"containers": [{"name": "c", "image": "i", "env": [{"name": "field.cattle.io/projectId", "value": "p-src1"}]}],
               "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "t", "namespaceSelector": a, "labelSelector": {"matchLabels": {"field.cattle.io/projectId": "p-src1"}}}]},
                            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"topologyKey": "t", "namespaceSelector": b}}]}}})
    })
}

pub(crate) fn object(pk: bool) -> impl Strategy<Value = Value> {
    // `other.labels` and ConfigMap data hold project-ID keys outside §5: they must never change.
    prop_oneof![
        (metadata(pk), string_map(true)).prop_map(|(m, o)| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m, "spec": {"finalizers": ["kubernetes"]}, "other": {"labels": o}})),
        (metadata(pk), metadata(pk), pod_spec(pk)).prop_map(|(m, tm, ps)| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": m, "spec": {"selector": {"matchLabels": {"field.cattle.io/projectId": "p-src1"}}, "template": {"metadata": tm, "spec": ps}}})),
        (metadata(pk), metadata(pk), metadata(pk), pod_spec(pk)).prop_map(|(m, jm, tm, ps)| json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": m, "spec": {"jobTemplate": {"metadata": jm, "spec": {"template": {"metadata": tm, "spec": ps}}}}})),
        (metadata(pk), pod_spec(pk)).prop_map(|(m, ps)| json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": ps})),
        (metadata(pk), selector(pk), selector(pk)).prop_map(|(m, a, b)| json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": m, "spec": {"podSelector": {"matchLabels": {"field.cattle.io/projectId": "p-src1"}}, "ingress": [{"from": [{"namespaceSelector": a}]}], "egress": [{"to": [{"podSelector": {}}, {"namespaceSelector": b}]}]}})),
        (metadata(pk), string_map(true)).prop_map(|(m, d)| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m, "data": d})),
    ]
}

pub(crate) fn policy() -> impl Strategy<Value = UnmappedPolicy> {
    prop::sample::select(vec![
        UnmappedPolicy::Drop,
        UnmappedPolicy::Keep,
        UnmappedPolicy::Deny,
    ])
}

/// The §5 locations, as paths of object fields (arrays marked with "*").
fn metadata_paths(kind: &str) -> Vec<Vec<&'static str>> {
    let _ = kind;
    vec![
        vec!["metadata"],
        vec!["spec", "template", "metadata"],
        vec!["template", "metadata"],
        vec!["spec", "jobTemplate", "metadata"],
        vec!["spec", "jobTemplate", "spec", "template", "metadata"],
    ]
}

fn selector_paths(kind: &str) -> Vec<Vec<&'static str>> {
    let mut specs: Vec<Vec<&str>> = vec![
        vec!["template", "spec"],
        vec!["spec", "template", "spec"],
        vec!["spec", "jobTemplate", "spec", "template", "spec"],
    ];
    if kind == "Pod" {
        specs.push(vec!["spec"]);
    }
    let mut out = Vec::new();
    for s in specs {
        for a in ["podAffinity", "podAntiAffinity"] {
            let mut p = s.clone();
            p.extend([
                "affinity",
                a,
                "requiredDuringSchedulingIgnoredDuringExecution",
                "*",
                "namespaceSelector",
            ]);
            out.push(p);
            let mut p = s.clone();
            p.extend([
                "affinity",
                a,
                "preferredDuringSchedulingIgnoredDuringExecution",
                "*",
                "podAffinityTerm",
                "namespaceSelector",
            ]);
            out.push(p);
        }
    }
    if kind == "NetworkPolicy" {
        out.push(vec![
            "spec",
            "ingress",
            "*",
            "from",
            "*",
            "namespaceSelector",
        ]);
        out.push(vec!["spec", "egress", "*", "to", "*", "namespaceSelector"]);
    }
    out
}

/// Visits every value at `path` mutably.
fn each_mut(v: &mut Value, path: &[&str], f: &mut dyn FnMut(&mut Value)) {
    match path.split_first() {
        None => f(v),
        Some((&"*", rest)) => {
            if let Some(a) = v.as_array_mut() {
                for item in a {
                    each_mut(item, rest, f);
                }
            }
        }
        Some((field, rest)) => {
            if let Some(next) = v.get_mut(*field) {
                each_mut(next, rest, f);
            }
        }
    }
}

/// A project-ID key, written here from docs/behaviour.md and not taken from the crate: a
/// prefix `cattle.io` or `*.cattle.io`, a name `projectid` in any case.
fn reference_key(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, name)| {
        name.eq_ignore_ascii_case("projectid")
            && (prefix == "cattle.io" || prefix.ends_with(".cattle.io"))
    })
}

/// The lookup of docs/behaviour.md over [`TABLE`], written here and not taken from the crate:
/// destination values stay; an exact entry wins; `C:P` through its cluster's and its project's
/// mappings; `P` through a cluster-form entry's project.
pub(crate) fn reference_lookup(v: &str) -> LookupRef<'static> {
    let entries: Vec<(&str, &str)> = TABLE
        .split(',')
        .map(|e| e.split_once('=').unwrap())
        .collect();
    let part = |s: &'static str, i: usize| -> Option<&'static str> {
        s.split_once(':').map(|(c, p)| if i == 0 { c } else { p })
    };
    let project_of = |s: &'static str| part(s, 1).unwrap_or(s);
    let is_dst = |x: &str| {
        entries.iter().any(|(_, d)| *d == x || project_of(d) == x)
            || x.split_once(':').is_some_and(|(c, p)| {
                entries.iter().any(|(_, d)| part(d, 0) == Some(c))
                    && entries.iter().any(|(_, d)| project_of(d) == p)
            })
    };
    if is_dst(v) {
        return LookupRef::Keep;
    }
    if let Some((_, d)) = entries.iter().find(|(s, _)| *s == v) {
        return LookupRef::Rewrite(d.to_string().into());
    }
    let project = |p: &str| {
        entries
            .iter()
            .find(|(s, _)| project_of(s) == p)
            .map(|(_, d)| project_of(d))
    };
    match v.split_once(':') {
        Some((c, p)) => {
            let cluster = entries
                .iter()
                .find(|(s, _)| part(s, 0) == Some(c))
                .and_then(|(_, d)| part(d, 0));
            match (cluster, project(p)) {
                (Some(c2), Some(p2)) => LookupRef::Rewrite(format!("{c2}:{p2}").into()),
                _ => LookupRef::Unmapped,
            }
        }
        None => entries
            .iter()
            .find(|(s, _)| part(s, 1) == Some(v))
            .map_or(LookupRef::Unmapped, |(_, d)| {
                LookupRef::Rewrite(project_of(d).to_string().into())
            }),
    }
}

/// An independent rewrite: mutates the object in place, location by location, with its own
/// key rule and lookup (it shares no code with the walk, the places or the table).
pub(crate) fn reference(obj: &Value, o: &Options) -> Value {
    reference_counting(obj, o).0
}

/// [`reference`], and how many values at the locations have no mapping.
pub(crate) fn reference_counting(obj: &Value, o: &Options) -> (Value, usize) {
    let mut out = obj.clone();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let unmapped = std::cell::Cell::new(0);
    let map_value = |s: &mut Value| {
        if let Some(text) = s.as_str() {
            match reference_lookup(text) {
                LookupRef::Rewrite(to) => *s = json!(to),
                LookupRef::Unmapped => unmapped.set(unmapped.get() + 1),
                LookupRef::Keep => {}
            }
        }
    };
    for path in metadata_paths(&kind) {
        each_mut(&mut out, &path, &mut |meta| {
            for field in ["labels", "annotations"] {
                if let Some(m) = meta.get_mut(field).and_then(Value::as_object_mut) {
                    let keys: Vec<String> =
                        m.keys().filter(|k| reference_key(k)).cloned().collect();
                    for k in keys {
                        let Some(text) = m[&k].as_str().map(str::to_string) else {
                            continue;
                        };
                        match reference_lookup(&text) {
                            LookupRef::Rewrite(to) => m[&k] = json!(to),
                            LookupRef::Unmapped => {
                                unmapped.set(unmapped.get() + 1);
                                if o.migrated && o.unmapped == UnmappedPolicy::Drop {
                                    m.remove(&k);
                                }
                            }
                            LookupRef::Keep => {}
                        }
                    }
                }
            }
        });
    }
    for path in selector_paths(&kind) {
        each_mut(&mut out, &path, &mut |sel| {
            if let Some(m) = sel.get_mut("matchLabels").and_then(Value::as_object_mut) {
                for (_, v) in m.iter_mut().filter(|(k, _)| reference_key(k)) {
                    map_value(v);
                }
            }
            if let Some(exprs) = sel
                .get_mut("matchExpressions")
                .and_then(Value::as_array_mut)
            {
                for e in exprs {
                    let applies = e["key"].as_str().is_some_and(reference_key)
                        && matches!(e["operator"].as_str(), Some("In" | "NotIn"));
                    if let (true, Some(vals)) =
                        (applies, e.get_mut("values").and_then(Value::as_array_mut))
                    {
                        vals.iter_mut().for_each(map_value);
                    }
                }
            }
        });
    }
    (out, unmapped.get())
}

/// Blanks every §5 location, leaving what must never change.
fn outside_locations(obj: &Value) -> Value {
    let mut out = obj.clone();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    for path in metadata_paths(&kind) {
        each_mut(&mut out, &path, &mut |meta| {
            for field in ["labels", "annotations"] {
                if let Some(m) = meta.get_mut(field).and_then(Value::as_object_mut) {
                    m.retain(|k, _| !is_project_id_key(k));
                }
            }
        });
    }
    for path in selector_paths(&kind) {
        each_mut(&mut out, &path, &mut |sel| {
            if let Some(m) = sel.get_mut("matchLabels").and_then(Value::as_object_mut) {
                m.retain(|k, _| !is_project_id_key(k));
            }
            if let Some(exprs) = sel
                .get_mut("matchExpressions")
                .and_then(Value::as_array_mut)
            {
                for e in exprs
                    .iter_mut()
                    .filter(|e| e["key"].as_str().is_some_and(is_project_id_key))
                {
                    if let Some(vals) = e.get_mut("values").and_then(Value::as_array_mut) {
                        vals.iter_mut().for_each(|v| *v = Value::Null);
                    }
                }
            }
        });
    }
    out
}

fn options(obj: &Value, unmapped: UnmappedPolicy) -> Options {
    Options {
        unmapped,
        migrated: rancher_remap::rewrite::has_migrated_annotation(obj),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The webhook walks the request bytes; the CLI walks a decoded tree. Same findings, same
    /// patch, same messages.
    #[test]
    fn the_walk_on_bytes_rewrites_like_the_walk_on_the_tree(obj in object(true), unmapped in policy()) {
        let t = table();
        let o = options(&obj, unmapped);
        let text = obj.to_string();
        prop_assert_eq!(said(&rewrite_json(&text, t, &o)), said(&rewrite(&obj, t, &o)));
    }

    #[test]
    fn patch_equals_direct_rewrite(obj in object(true), unmapped in policy()) {
        let t = table();
        let o = options(&obj, unmapped);
        let out = rewrite(&obj, t, &o);
        let patched = out.apply(&obj).expect("patch applies");
        prop_assert_eq!(&patched, &reference(&obj, &o));
        // Every operation is a replace or a remove (§8), and removes only under drop on migrated objects.
        for op in serde_json::to_value(out.patch_ops()).unwrap().as_array().unwrap() {
            let kind = op["op"].as_str().unwrap();
            prop_assert!(kind == "replace" || (kind == "remove" && o.migrated && unmapped == UnmappedPolicy::Drop));
        }
    }

    #[test]
    fn the_table_looks_up_as_the_reference_does(v in value(), cluster in prop::sample::select(vec!["c-s", "c-d", "c-x", ""])) {
        // Values of every form, and cluster-form ones made from the generated projects.
        let t = table();
        let composed = format!("{cluster}:{v}");
        for v in [v.as_str(), composed.as_str()] {
            prop_assert_eq!(t.table.lookup_ref(v), reference_lookup(v), "{}", v);
        }
    }

    #[test]
    fn second_pass_is_a_no_op(obj in object(true), unmapped in policy()) {
        let t = table();
        let o = options(&obj, unmapped);
        let once = rewrite(&obj, t, &o).apply(&obj).unwrap();
        let again = rewrite(&once, t, &o);
        prop_assert!(again.patch.is_empty(), "{}", said(&again));
    }

    #[test]
    fn nothing_outside_the_locations_changes(obj in object(true), unmapped in policy()) {
        let t = table();
        let out = rewrite(&obj, t, &options(&obj, unmapped)).apply(&obj).unwrap();
        prop_assert_eq!(outside_locations(&out), outside_locations(&obj));
    }

    #[test]
    fn no_project_key_no_operations(obj in object(false), unmapped in policy()) {
        // Project-ID keys outside §5 are present (and ignored); inside §5 there are none.
        let out = rewrite(&obj, table(), &options(&obj, unmapped));
        prop_assert!(out.patch.is_empty() && out.unmapped().count() == 0 && out.rewrites().count() == 0);
    }
}

/// A selector's `values` holding non-strings before the project ID: only the string counts, and
/// its pointer keeps its own index (4), on request bytes as on a decoded tree.
#[test]
fn selector_values_count_only_strings_and_keep_their_index() {
    let obj = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": "team"},
        "spec": {"ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{
            "key": "field.cattle.io/projectId", "operator": "In",
            "values": [5, null, ["p-src1"], {"x": "p-src1"}, "p-src1"]}]}}]}]}});
    let o = Options {
        unmapped: UnmappedPolicy::Keep,
        migrated: true,
    };
    let text = obj.to_string();
    let d = rewrite_json(&text, table(), &o);
    let patch: Value = serde_json::from_slice(&d.patch).unwrap();
    let path = "/spec/ingress/0/from/0/namespaceSelector/matchExpressions/0/values/4";
    assert_eq!(
        patch,
        json!([{"op": "replace", "path": path, "value": "p-dst1"}])
    );
    assert_eq!(said(&d), said(&rewrite(&obj, table(), &o)));
}
