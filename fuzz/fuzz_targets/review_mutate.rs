//! Any body POSTed to /mutate: decoding never panics, and when both the webhook's path (the walk
//! over the request bytes, the answer written once) and the decoded-tree path accept it, they
//! give byte for byte the same answer.
//! When there is a patch, it applies to the object and a second pass over the result is a no-op
//! (docs/behaviour.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::UnmappedPolicy;
use rancher_remap::rewrite::{MutateSettings, Scope};
use rancher_remap::server::admission::mutate;
use rancher_remap::server::mutate as webhook;
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
    let fast = webhook::decode(body, &mappings().table);
    let whole = decode::<Value>(body);
    let (Ok(mut fast), Ok(whole)) = (fast, whole) else {
        return;
    };
    let bytes = webhook::answer(&mut fast, mappings(), &settings()).body;
    let b = mutate(&whole, mappings(), &settings()).response.into_review();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        serde_json::to_string(&b).unwrap(),
        "the webhook's path answers differently"
    );
    let a: Value = serde_json::from_slice(&bytes).unwrap();

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
