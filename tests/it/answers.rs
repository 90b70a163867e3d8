//! `/mutate` answers from the request bytes (`server::mutate` over `rewrite::decide`, the one decision):
//! - applied, they are the reference rewrite of properties.rs, which shares no code with the
//!   walk, the places, the table or the scope rule;
//! - a review in odd but valid JSON (escapes in keys and values, duplicate keys where the last
//!   wins, numbers in unusual forms, unicode, fields in any order) is answered byte for byte as
//!   the same review written plainly by serde.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::{Mode, MutateSettings, Scope};
use rancher_remap::server::{mutate, review};

use crate::properties::{object, policy, reference_counting, TABLE};

/// How a review is written out.
#[derive(Clone, Debug)]
struct Style {
    /// Write every `o` inside strings as `\u006f` (keys included).
    escape_o: bool,
    /// Before each object key, sometimes a duplicate of it with a decoy value (the real one,
    /// written last, wins).
    decoys: Vec<u8>,
    /// Fields of each object in reverse order.
    reversed: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(escape_o, decoys, reversed)| Style {
            escape_o,
            decoys,
            reversed,
        })
}

/// Writes `v` as JSON in `style`; `n` counts keys (to pick decoys); `depth` is how deep `v` is
/// (decoys only inside the object: the review's own fields are refused when repeated, by both
/// paths, as serde's derived structs refuse them).
fn write(v: &Value, style: &Style, n: &mut usize, depth: usize, out: &mut String) {
    match v {
        Value::Object(map) => {
            out.push('{');
            let mut entries: Vec<_> = map.iter().collect();
            if style.reversed {
                entries.reverse();
            }
            let mut first = true;
            // Duplicates written after every other key: they are the last, so they win.
            let mut late = Vec::new();
            for (k, v) in entries {
                *n += 1;
                let late_decoy = style
                    .decoys
                    .get((*n * 7) % 64.max(style.decoys.len().max(1)))
                    .copied()
                    .filter(|d| d % 8 == 1 && depth >= 2);
                if let Some(d) = late_decoy {
                    let decoy_value = match d % 3 {
                        0 => json!({}),
                        1 => json!("p-src1"),
                        _ => json!({"field.cattle.io/projectId": "p-src2"}),
                    };
                    late.push((k.clone(), decoy_value));
                }
                let decoy = style
                    .decoys
                    .get(*n % 64.max(style.decoys.len().max(1)))
                    .copied();
                if let Some(d) = decoy.filter(|d| d % 4 == 0 && depth >= 2 && k != "kind") {
                    write_key(k, style, &mut first, out);
                    let decoy_value = match d % 16 {
                        0 => json!("p-src1"),
                        4 => {
                            json!({"field.cattle.io/projectId": "p-src2", "labels": {"field.cattle.io/projectId": "p-src1"}})
                        }
                        8 => json!([1, "p-src1", null]),
                        _ => json!(-0.0),
                    };
                    write(&decoy_value, style, n, depth + 1, out);
                }
                write_key(k, style, &mut first, out);
                let deeper = if depth == 1 && k != "object" {
                    1
                } else {
                    depth + 1
                };
                write(v, style, n, deeper, out);
            }
            for (k, v) in &late {
                write_key(k, style, &mut first, out);
                write(v, style, n, depth + 1, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, style, n, depth + 1, out);
            }
            out.push(']');
        }
        Value::String(s) => write_str(s, style, out),
        // Numbers in an unusual but valid form.
        Value::Number(x) if x.as_i64() == Some(1) => out.push_str("1.0e0"),
        other => out.push_str(&other.to_string()),
    }
}

/// `"key":`, after a comma unless it is the object's `first` key.
fn write_key(k: &str, style: &Style, first: &mut bool, out: &mut String) {
    if !std::mem::replace(first, false) {
        out.push(',');
    }
    write_str(k, style, out);
    out.push(':');
}

fn write_str(s: &str, style: &Style, out: &mut String) {
    let quoted = serde_json::to_string(s).unwrap();
    if style.escape_o {
        out.push_str(&quoted.replace('o', "\\u006f"));
    } else {
        out.push_str(&quoted);
    }
}

fn review(object: Value, operation: &str, user: &str, uid: &str) -> Value {
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": object["kind"].clone()},
        "resource": {"group": "", "version": "v1", "resource": "things"},
        "name": "o", "namespace": "ns", "operation": operation,
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": object, "oldObject": null, "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}})
}

/// The answer of the webhook's path.
fn bytes_answer(body: &[u8], mappings: &Mappings, settings: &MutateSettings) -> Vec<u8> {
    let mut req = mutate::decode(body, &mappings.table).unwrap();
    mutate::answer(&mut req, mappings, settings).body
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn odd_json_is_answered_byte_for_byte_as_the_same_review_written_plainly(
        obj in object(true),
        unmapped in policy(),
        all in any::<bool>(),
        operation in prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        by_migration_user in any::<bool>(),
        warn in any::<bool>(),
        uid in prop::sample::select(vec!["7f4b9a1c-0f0e-4a55", "ü\"\\\u{1}/é", "🙂-uid"]),
        style in style(),
        cluster_id in prop::sample::select(vec![None, Some("c-d"), Some("c-s")]),
    ) {
        let mappings = Mappings::from_text(TABLE).unwrap();
        let settings = MutateSettings {
            unmapped,
            scope: if all { Scope::All } else { Scope::Migrated },
            migration_users: HashSet::from(["stork".to_string()]),
            mode: if warn { Mode::Warn } else { Mode::Enforce },
            cluster_id: cluster_id.map(str::to_string),
        };
        let user = if by_migration_user { "stork" } else { "someone" };
        let mut text = String::new();
        write(&review(obj, operation, user, uid), &style, &mut 0, 0, &mut text);
        // serde reads the odd text as kube-apiserver's decoder would (duplicates: the last).
        let plain = serde_json::to_vec(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
        let odd = bytes_answer(text.as_bytes(), &mappings, &settings);
        let plainly = bytes_answer(&plain, &mappings, &settings);
        prop_assert_eq!(
            String::from_utf8(odd).unwrap(),
            String::from_utf8(plainly).unwrap(),
            "review: {}", text
        );
    }
}

/// `obj` with the answer's patch (if any) applied.
fn applied(obj: &Value, answer: &Value) -> Value {
    use base64::Engine;
    let mut patched = obj.clone();
    if let Some(patch) = answer["response"]["patch"].as_str() {
        let ops = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let ops: json_patch::Patch = serde_json::from_slice(&ops).unwrap();
        json_patch::patch(&mut patched, &ops).unwrap();
    }
    patched
}

/// Whether an object counts as migrated (docs/behaviour.md), written here from the rule and not
/// taken from the crate: Stork's annotation, a migration user, or a Namespace whose Rancher
/// annotation names the table's source cluster (`c-s`).
fn reference_migrated(obj: &Value, by_migration_user: bool) -> bool {
    let annotations = &obj["metadata"]["annotations"];
    let foreign = obj["kind"] == "Namespace"
        && ["field.cattle.io/projectId", "field.cattle.io/projectID"]
            .iter()
            .filter_map(|k| annotations[*k].as_str())
            .any(|v| v.split_once(':').is_some_and(|(c, _)| c == "c-s"));
    by_migration_user || annotations["stork.libopenstorage.org/migrated"] == "true" || foreign
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// The webhook's answer, applied, is the reference rewrite of properties.rs (which shares no
    /// code with the walk, the places, the table or the scope rule), and it refuses exactly when
    /// `--unmapped deny` meets a value with no mapping.
    #[test]
    fn the_webhooks_answer_applied_is_the_reference_rewrite(
        obj in object(true),
        unmapped in policy(),
        by_migration_user in any::<bool>(),
        all in any::<bool>(),
        as_namespace in any::<bool>(),
        claim in prop::option::of((
            prop::sample::select(vec!["field.cattle.io/projectId", "field.cattle.io/projectID", "cattle.io/projectid"]),
            prop::sample::select(vec!["c-s:p-src1", "c-s:p-unknown", "c-d:p-dst1", "c-x:p-src1", "p-src1"]),
        )),
    ) {
        // Often a Namespace carrying Rancher's annotation, which the scope rule reads.
        let mut obj = obj;
        if as_namespace {
            obj["kind"] = json!("Namespace");
            obj["apiVersion"] = json!("v1");
        }
        if let Some((key, value)) = claim {
            obj["metadata"]["annotations"][key] = json!(value);
        }
        let mappings = Mappings::from_text(TABLE).unwrap();
        let settings = MutateSettings {
            unmapped,
            scope: if all { Scope::All } else { Scope::Migrated },
            migration_users: HashSet::from(["stork".to_string()]),
            ..MutateSettings::default()
        };
        let user = if by_migration_user { "stork" } else { "someone" };
        let body = serde_json::to_vec(&review(obj.clone(), "CREATE", user, "u")).unwrap();
        let answer: Value = serde_json::from_slice(&bytes_answer(&body, &mappings, &settings)).unwrap();
        let options = rancher_remap::rewrite::Options {
            unmapped,
            migrated: reference_migrated(&obj, by_migration_user),
        };
        let (expected, unmapped_values) = match (all, options.migrated) {
            // Out of scope: left as it is.
            (false, false) => (obj.clone(), 0),
            _ => reference_counting(&obj, &options),
        };
        let response = &answer["response"];
        if unmapped == rancher_remap::rewrite::UnmappedPolicy::Deny && unmapped_values > 0 {
            prop_assert_eq!(&response["allowed"], &json!(false), "{}", answer);
        } else {
            prop_assert_eq!(&response["allowed"], &json!(true), "{}", answer);
            prop_assert_eq!(applied(&obj, &answer), expected);
        }
    }
}

#[test]
fn fixtures_are_answered_as_the_reference_says_and_bad_bodies_are_refused_alike() {
    let mappings = Mappings::from_text(TABLE).unwrap();
    let settings = MutateSettings::default();
    for name in [
        "create-deployment-migrated.json",
        "create-namespace-by-stork.json",
        "delete-namespace.json",
        "update-networkpolicy-dryrun.json",
    ] {
        let body = crate::common::data(name);
        let review: Value = serde_json::from_str(&body).unwrap();
        let req = &review["request"];
        let answer: Value =
            serde_json::from_slice(&bytes_answer(body.as_bytes(), &mappings, &settings)).unwrap();
        assert_eq!(answer["response"]["uid"], req["uid"], "{name}");
        assert_eq!(answer["response"]["allowed"], true, "{name}");
        let Some(obj) = req["object"].as_object().map(|o| Value::Object(o.clone())) else {
            assert!(answer["response"].get("patch").is_none(), "{name}");
            continue;
        };
        let options = rancher_remap::rewrite::Options {
            unmapped: Default::default(),
            migrated: true,
        };
        let expected = match reference_migrated(&obj, false) {
            true => reference_counting(&obj, &options).0,
            false => obj.clone(),
        };
        assert_eq!(applied(&obj, &answer), expected, "{name}");
    }
    for bad in [
        &b"not json"[..],
        br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":"s3cr3t","operation":"CREATE"}}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","object":{"metadata":{"labels":{"a":"b"}}}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7,"operation":"CREATE"}}"#,
        br#"{"kind":"AdmissionReview"}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","kind":"AdmissionReview","request":null}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","uid":"v","operation":"CREATE"}}"#,
    ] {
        let fast = mutate::decode(bad, &mappings.table).map(|_| ()).unwrap_err();
        let tree = review::decode(bad, std::marker::PhantomData::<Value>)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            std::mem::discriminant(&fast),
            std::mem::discriminant(&tree),
            "{}: {fast} / {tree}",
            String::from_utf8_lossy(bad)
        );
        assert!(!fast.to_string().contains("s3cr3t"));
    }
}

#[test]
fn an_object_with_too_many_project_ids_is_refused_cheaply() {
    let mappings = Mappings::from_text(TABLE).unwrap();
    let labels = |n: usize| -> serde_json::Map<String, Value> {
        (0..n)
            .map(|i| (format!("x{i}.cattle.io/projectId"), json!("p-src1")))
            .collect()
    };
    let body = |n: usize| {
        serde_json::to_vec(&review(
            json!({"kind": "ConfigMap", "metadata": {"labels": labels(n)}}),
            "CREATE",
            "stork",
            "u",
        ))
        .unwrap()
    };
    let at_limit = body(mutate::MAX_PROJECT_ID_VALUES);
    assert!(mutate::decode(&at_limit, &mappings.table).is_ok());
    let over = body(mutate::MAX_PROJECT_ID_VALUES + 1);
    let err = mutate::decode(&over, &mappings.table).unwrap_err();
    assert!(
        err.to_string().contains("not a valid AdmissionReview"),
        "{err}"
    );
}
