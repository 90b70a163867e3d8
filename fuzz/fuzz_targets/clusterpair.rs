//! Any ClusterPair or mapping ConfigMap file (YAML or JSON): reading and validating never panic,
//! and no finding ever quotes a credential (docs/behaviour.md: tokens, passwords, keys).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// 2026-11-21, so certificate expiry is deterministic.
const NOW: i64 = 1_795_219_200;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = rancher_remap::manifest::parse_objects(text) else {
        return;
    };
    for obj in &objects {
        let report = rancher_remap::validate::check(obj, NOW, None);
        let said = format!("{report:?}");
        for secret in credentials(obj) {
            assert!(!said.contains(&secret), "a finding quotes a credential");
        }
    }
});

/// Credential values long enough not to occur in messages by chance.
fn credentials(obj: &Value) -> Vec<String> {
    let Some(users) = obj
        .pointer("/spec/config/users")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    users
        .values()
        .flat_map(|u| {
            ["token", "password", "client-key-data"]
                .into_iter()
                .filter_map(|k| u.get(k)?.as_str())
                .filter(|s| s.len() >= 12)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}
