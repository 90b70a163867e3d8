//! Any `--project-mappings` text: parsing and checking never panic, and a table that is accepted
//! obeys docs/behaviour.md for its own entries: each source maps to its destination (an `x=x` entry keeps
//! its value) and every destination stays as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rancher_remap::mapping::{table_from_text, LookupRef};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = table_from_text(text) else {
        return;
    };
    for (src, dst) in table.entries() {
        let expected = if src == dst {
            LookupRef::Keep
        } else {
            LookupRef::Rewrite(dst.into())
        };
        assert_eq!(table.lookup_ref(src), expected, "{src}={dst}");
        assert_eq!(table.lookup_ref(dst), LookupRef::Keep, "destination {dst}");
    }
});
