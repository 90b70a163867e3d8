//! Any body POSTed to /mutate: decoding never panics; an accepted body is UTF-8 JSON; an answer is an AdmissionReview for the
//! request's uid; when there is a patch, it applies to the object it was made for, the object
//! rewritten is what the decision over the decoded object says (the walk on bytes and the walk on
//! the tree agree), and a second pass over it is a no-op (docs/behaviour.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::{decide_object, MutateSettings, Scope, UnmappedPolicy};
use rancher_remap::server::mutate as webhook;
use serde_json::Value;
use std::sync::OnceLock;

fn mappings() -> &'static Mappings {
    static M: OnceLock<Mappings> = OnceLock::new();
    M.get_or_init(|| {
        Mappings::from_text("p-ab12c=p-xy99z,c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z,p-a=p-b")
            .unwrap()
    })
}

fn settings() -> MutateSettings {
    MutateSettings {
        // Keep: whether a key is removed then depends on no scope rule, only on the table.
        unmapped: UnmappedPolicy::Keep,
        scope: Scope::All,
        ..MutateSettings::default()
    }
}

/// The webhook's answer to `body`, parsed; `None` when the body is refused.
fn answer(body: &[u8]) -> Option<Value> {
    let mut req = webhook::decode(body, &mappings().table).ok()?;
    let bytes = webhook::answer(&mut req, mappings(), &settings()).body;
    Some(serde_json::from_slice(&bytes).expect("an answer is JSON"))
}

fuzz_target!(|body: &[u8]| {
    let Some(a) = answer(body) else {
        return;
    };
    assert!(std::str::from_utf8(body).is_ok(), "an accepted body is UTF-8");
    let Ok(review) = serde_json::from_slice::<Value>(body) else {
        // Grammatical JSON that serde's tree refuses (a lone surrogate escape in a field the
        // webhook skips, which the grammar allows): no tree to compare the answer with.
        assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok(),
            "an accepted body is JSON"
        );
        return;
    };
    assert_eq!(a["response"]["uid"], review["request"]["uid"]);
    let Some(patch) = a["response"]["patch"].as_str() else {
        return;
    };
    let mut object = review["request"]["object"].clone();
    let original = object.clone();
    let ops: Vec<u8> = base64_decode(patch);
    let ops: json_patch::Patch = serde_json::from_slice(&ops).unwrap();
    json_patch::patch(&mut object, &ops).expect("the patch applies to the object it was made for");
    // The one decision on the decoded object: the walk on bytes and the walk on the tree agree.
    let engine = decide_object(&original, false, false, mappings(), &settings());
    assert_eq!(engine.apply(&original).ok(), Some(object.clone()), "the engine rewrites the same");
    let mut again = review.clone();
    again["request"]["object"] = object;
    let second = answer(&serde_json::to_vec(&again).unwrap()).expect("the rewritten review is answered");
    assert!(
        second["response"].get("patch").is_none(),
        "a second pass changed the rewritten object: {second}"
    );
});

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
