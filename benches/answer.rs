//! The `/mutate` answer's encoding (issue 22): the hand-written writer the webhook uses
//! (`server::review::Response::to_review`, one buffer, the patch's base64 written straight into
//! it) against
//! kube-core's `AdmissionResponse` built from the same patch, warnings and audit annotation and
//! serialized with serde_json in an `AdmissionReview`. The answer is decided once (the 5 KB
//! migrated Deployment review, 10 rewrites, a 1,000-entry table); only its encoding is timed.
//!
//! Run: `cargo bench --bench answer`. Figures in BENCHMARKS.md.

mod support;

use std::hint::black_box;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::{decide, Action, Decision, MutateSettings, RequestFacts};
use rancher_remap::server::mutate;
use rancher_remap::server::review::{bounded_warnings, Response};

/// The answer's response with its patch decoded, to hold the two encodings to one answer.
fn response(answer: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(answer).unwrap();
    let response = v["response"].as_object_mut().unwrap();
    // Base64 in a string (the webhook, as Go encodes `[]byte`), or kube-core's serde default for
    // a `Vec<u8>`: an array of numbers, one per byte.
    let patch: Vec<u8> = match response.remove("patch").unwrap() {
        Value::String(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
        bytes => serde_json::from_value(bytes).unwrap(),
    };
    response.insert("patch".into(), serde_json::from_slice(&patch).unwrap());
    // kube-core always writes a status, empty on an allow.
    if response.get("status") == Some(&serde_json::json!({})) {
        response.remove("status");
    }
    v
}

/// A decided answer: what both encoders write.
struct Decided<'d> {
    uid: String,
    decision: Decision<'d, 'd>,
    warnings: Vec<String>,
}

/// The webhook's answer, written by hand.
fn hand_written(d: &Decided<'_>) -> Vec<u8> {
    let decision = &d.decision;
    Response {
        uid: &d.uid,
        denial: decision.denial.as_deref(),
        patch: (decision.action == Action::Patch).then_some(&decision.patch[..]),
        warnings: &d.warnings,
        audit: decision.audit.as_deref(),
    }
    .to_review()
}

/// The same answer built as kube-core's `AdmissionResponse` from the same patch, warnings and
/// audit annotation, serialized with serde_json in an `AdmissionReview`.
fn kube_core(d: &Decided<'_>) -> Vec<u8> {
    use kube::core::admission::AdmissionResponse;
    use kube::core::Status;
    let decision = &d.decision;
    // kube-core builds a response from its own request type only; the webhook decodes its own,
    // so it starts from `invalid` and sets every field.
    let mut r = AdmissionResponse::invalid("");
    r.uid = d.uid.clone();
    r.allowed = true;
    r.result = Status::default();
    if !d.warnings.is_empty() {
        r.warnings = Some(d.warnings.clone());
    }
    if let Some(message) = &decision.denial {
        r.allowed = false;
        r.result = Status {
            code: 403,
            message: message.clone(),
            reason: "Forbidden".into(),
            ..Status::default()
        };
    } else if let Some(audit) = &decision.audit {
        r.audit_annotations
            .insert("project-ids".into(), audit.to_string());
        if decision.action == Action::Patch {
            r = match r.with_patch(decision.patch_ops()) {
                Ok(r) => r,
                Err(_) => return Vec::new(),
            };
        }
    }
    serde_json::to_vec(&r.into_review()).unwrap_or_default()
}

fn bench_answer(c: &mut Criterion) {
    let mappings = Mappings::from_text(&support::mappings(1_000)).unwrap();
    let body = support::review_body();
    let settings = MutateSettings::default();
    let mut req = mutate::decode(&body, &mappings.table).unwrap();
    let facts = RequestFacts {
        kind: &req.kind,
        namespace: &req.namespace,
        name: &req.name,
        username: &req.username,
        ..RequestFacts::default()
    };
    let walked = req.object.take().unwrap();
    let decision = decide(&facts, walked, &mappings, &settings);
    assert_eq!(decision.action, Action::Patch, "a patched answer");
    let decided = Decided {
        uid: req.uid.to_string(),
        warnings: bounded_warnings(decision.warnings.clone()),
        decision,
    };
    let (ours, theirs) = (hand_written(&decided), kube_core(&decided));
    assert_eq!(response(&ours), response(&theirs), "the same answer");
    eprintln!(
        "answer: {} bytes hand-written, {} bytes through kube-core",
        ours.len(),
        theirs.len()
    );
    let mut group = c.benchmark_group("answer");
    group.bench_function("hand_written", |b| {
        b.iter(|| hand_written(black_box(&decided)))
    });
    group.bench_function("kube_core", |b| b.iter(|| kube_core(black_box(&decided))));
    group.finish();
}

criterion_group!(benches, bench_answer);
criterion_main!(benches);
