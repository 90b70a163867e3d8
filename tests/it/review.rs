//! The review decoders against kube-core's admission types (which define the shape): on every
//! fixture, they read the same request fields, and the webhook's `/mutate` answer — written from
//! the walk over the request bytes — is the answer kube-core's types give for the full object.

use base64::Engine;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::Value;

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::{has_migrated_annotation, Options};
use rancher_remap::rewrite::{MutateSettings, Scope};
use rancher_remap::server::mutate;
use rancher_remap::server::review::{self, ReviewError};

use crate::common::{data, repo, rewrite};

/// The review decoder with `request.object` read as a tree (as `/validate` reads it).
fn decode(body: &[u8]) -> Result<review::Request<'_, Value>, ReviewError> {
    review::decode(body, std::marker::PhantomData::<Value>)
}

/// Every review fixture: tests/data and the example the README calls with curl.
fn fixtures() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(repo("tests/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .map(|n| (n.clone(), data(&n)))
        .collect();
    let example = repo("deploy/examples/admissionreview-deployment.json");
    out.push((
        "admissionreview-deployment.json".into(),
        std::fs::read_to_string(example).unwrap(),
    ));
    assert!(out.len() >= 5, "fixtures missing");
    out
}

fn mappings() -> Mappings {
    let text = std::fs::read_to_string(repo("deploy/examples/mappings-configmap.yaml")).unwrap();
    rancher_remap::source::mappings_file::mappings_from_file_text(&text).unwrap()
}

fn kube_request(body: &str) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(body).unwrap();
    review.try_into().unwrap()
}

#[test]
fn request_fields_match_kube_core() {
    for (name, body) in fixtures() {
        let theirs = kube_request(&body);
        let table = mappings().table;
        let fast = mutate::decode(body.as_bytes(), &table).unwrap();
        assert_eq!(fast.uid, theirs.uid, "{name}");
        assert_eq!(fast.kind, theirs.kind.kind, "{name}");
        assert_eq!(fast.name, theirs.name, "{name}");
        assert_eq!(
            fast.namespace,
            theirs.namespace.clone().unwrap_or_default(),
            "{name}"
        );
        assert_eq!(
            Value::String(fast.operation.to_string()),
            serde_json::to_value(&theirs.operation).unwrap(),
            "{name}"
        );
        assert_eq!(
            Some(fast.username.to_string()),
            theirs.user_info.username,
            "{name}"
        );
        assert_eq!(fast.dry_run, theirs.dry_run, "{name}");
        assert_eq!(fast.object.is_some(), theirs.object.is_some(), "{name}");
        {
            let ours = decode(body.as_bytes()).unwrap();
            assert_eq!(ours.uid, theirs.uid, "{name}");
            assert_eq!(ours.group, theirs.kind.group, "{name}");
            assert_eq!(ours.version, theirs.kind.version, "{name}");
            assert_eq!(ours.kind, theirs.kind.kind, "{name}");
            assert_eq!(ours.name, theirs.name, "{name}");
            assert_eq!(
                ours.namespace,
                theirs.namespace.clone().unwrap_or_default(),
                "{name}"
            );
            assert_eq!(
                Value::String(ours.operation.to_string()),
                serde_json::to_value(&theirs.operation).unwrap(),
                "{name}"
            );
            assert_eq!(
                Some(ours.username.to_string()),
                theirs.user_info.username,
                "{name}"
            );
            assert_eq!(ours.dry_run, theirs.dry_run, "{name}");
            assert_eq!(ours.object.is_some(), theirs.object.is_some(), "{name}");
        }
    }
}

#[test]
fn mutate_answers_as_kube_core_types_would() {
    let mappings = mappings();
    let settings = MutateSettings {
        scope: Scope::All,
        ..MutateSettings::default()
    };
    let mut patched = 0;
    for (name, body) in fixtures() {
        let theirs = kube_request(&body);
        let ours = decode(body.as_bytes()).unwrap();
        let mut fast = mutate::decode(body.as_bytes(), &mappings.table).unwrap();
        let answer: Value =
            serde_json::from_slice(&mutate::answer(&mut fast, &mappings, &settings).body).unwrap();

        // The same engine on kube-core's full object, answered through kube-core's response type.
        let mut expected = AdmissionResponse::from(&theirs);
        let full = theirs
            .object
            .as_ref()
            .filter(|_| matches!(&*ours.operation, "CREATE" | "UPDATE"))
            .map(|o| serde_json::to_value(o).unwrap());
        if let Some(obj) = full {
            let outcome = rewrite(
                &obj,
                &mappings,
                &Options {
                    unmapped: settings.unmapped,
                    migrated: has_migrated_annotation(&obj)
                        || theirs
                            .user_info
                            .username
                            .as_ref()
                            .is_some_and(|u| mappings.migration_users.contains(u)),
                },
            );
            if !outcome.patch.is_empty() {
                patched += 1;
                expected = expected.with_patch(outcome.patch_ops()).unwrap();
            }
        }
        let expected = serde_json::to_value(expected.into_review()).unwrap();

        let (a, e) = (&answer["response"], &expected["response"]);
        assert_eq!(answer["apiVersion"], expected["apiVersion"], "{name}");
        assert_eq!(answer["kind"], expected["kind"], "{name}");
        assert_eq!(a["uid"], e["uid"], "{name}");
        assert_eq!(a["allowed"], e["allowed"], "{name}");
        assert_eq!(a["patchType"], e["patchType"], "{name}");
        // Go's []byte: we send base64 text; kube-core sends an array of numbers (both decode).
        let patch = |v: &Value| -> Option<Value> {
            let bytes: Vec<u8> = match &v["patch"] {
                Value::String(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
                Value::Array(_) => serde_json::from_value(v["patch"].clone()).unwrap(),
                _ => return None,
            };
            Some(serde_json::from_slice(&bytes).unwrap())
        };
        assert_eq!(patch(a), patch(e), "{name}");
    }
    assert!(patched >= 2, "the fixtures must exercise patches");
}
