//! Any body POSTed to /mutate: decoding never panics, and when both decoders accept it, the
//! lean decoder (`Relevant`, what /mutate uses) gives exactly the answer the whole object gives.
//! When there is a patch, it applies to the object and a second pass over the result is a no-op
//! (docs/behaviour.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::{Relevant, UnmappedPolicy};
use rancher_remap::server::admission::{mutate, MutateSettings, Scope};
use rancher_remap::server::review::{decode, Request};
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
        unmapped: UnmappedPolicy::Drop,
        scope: Scope::All,
        ..MutateSettings::default()
    }
}

fuzz_target!(|body: &[u8]| {
    let lean = decode::<Relevant>(body).map(|r| r.map_object(Value::from));
    let whole = decode::<Value>(body);
    let (Ok(lean), Ok(whole)) = (lean, whole) else {
        return;
    };
    let a = mutate(&lean, mappings(), &settings());
    let b = mutate(&whole, mappings(), &settings());
    let (a, b) = (a.response.into_review(), b.response.into_review());
    assert_eq!(a, b, "the lean decoder answers differently");

    let Some(patch) = a["response"]["patch"].as_str() else {
        return;
    };
    let Some(mut object) = whole.object.clone() else {
        return;
    };
    let ops: Vec<u8> = base64_decode(patch);
    let ops: json_patch::Patch = serde_json::from_slice(&ops).unwrap();
    json_patch::patch(&mut object, &ops).expect("the patch applies to the object it was made for");
    let again = Request {
        object: Some(object),
        ..whole
    };
    let second = mutate(&again, mappings(), &settings()).response.into_review();
    assert!(
        second["response"].get("patch").is_none(),
        "a second pass changed the rewritten object: {second}"
    );
});

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
