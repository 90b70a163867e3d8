//! The rewrite engine on a decoded object: a pure function of an object, a table and options,
//! returning the findings, the JSON patch and the messages, as [`super::decide`] rules them. It reads only the places of
//! [`super::places`] (through [`super::walk`], as the webhook's hot path does on bytes), so its
//! cost does not depend on the rest of the object.

use json_patch::{PatchOperation, RemoveOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

use super::decide::{verdict, Options, Verdict};
use super::outcome::{Outcome, Rewrite, Unmapped, UnmappedAction};
use super::walk::walk;
use crate::mapping::Table;

/// Rewrites the project IDs of one object.
pub fn rewrite(obj: &Value, table: &Table, options: &Options) -> Outcome {
    // Walking a decoded tree cannot fail (no syntax left to get wrong).
    outcome(walk(obj, table).unwrap_or_default(), options)
}

/// As [`rewrite`], on the object's JSON text (the walk the webhook makes on request bytes).
pub fn rewrite_json(json: &[u8], table: &Table, options: &Options) -> serde_json::Result<Outcome> {
    let mut d = serde_json::Deserializer::from_slice(json);
    let walked = walk(&mut d, table)?;
    d.end()?;
    Ok(outcome(walked, options))
}

fn outcome(mut walked: super::walk::Walked<'_, '_>, options: &Options) -> Outcome {
    let mut out = Outcome::default();
    walked.settle();
    for f in walked.settled() {
        let pointer = PointerBuf::parse(walked.pointer(f)).unwrap_or_default();
        match verdict(f, options) {
            Verdict::Keep => {}
            Verdict::Replace(to) => {
                out.patch.push(PatchOperation::Replace(ReplaceOperation {
                    path: pointer.clone(),
                    value: Value::String(to.to_string()),
                }));
                out.rewrites.push(Rewrite {
                    location: f.location,
                    pointer,
                    from: f.value.to_string(),
                    to: to.to_string(),
                });
            }
            Verdict::Unmapped(action) => {
                if action == UnmappedAction::Removed {
                    out.patch.push(PatchOperation::Remove(RemoveOperation {
                        path: pointer.clone(),
                    }));
                }
                out.unmapped.push(Unmapped {
                    location: f.location,
                    pointer,
                    key: f.key.to_string(),
                    value: f.value.to_string(),
                    action,
                });
            }
        }
    }
    out
}
