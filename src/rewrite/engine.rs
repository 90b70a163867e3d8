//! The rewrite engine on a decoded object: a pure function of an object, a table and options,
//! returning the findings, the JSON patch and the messages. It reads only the places of
//! [`super::places`] (through [`super::walk`], as the webhook's hot path does on bytes), so its
//! cost does not depend on the rest of the object.

use json_patch::{PatchOperation, RemoveOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

use super::outcome::{Location, Outcome, Rewrite, Unmapped, UnmappedAction};
use super::walk::walk;
use crate::mapping::{LookupRef, Table};

/// What to do with a value the table does not map (docs/behaviour.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnmappedPolicy {
    /// Remove the label or annotation on migrated objects, as Stork does; keep selectors.
    #[default]
    Drop,
    /// Leave every unmapped value as it is.
    Keep,
    /// Refuse the object.
    Deny,
}

/// How to treat one object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub unmapped: UnmappedPolicy,
    /// Whether the object counts as migrated (docs/behaviour.md); `drop` removes keys only then.
    pub migrated: bool,
}

/// What happens to an unmapped value at `location` (docs/behaviour.md).
pub fn unmapped_action(location: Location, options: &Options) -> UnmappedAction {
    match options.unmapped {
        UnmappedPolicy::Deny => UnmappedAction::Denied,
        UnmappedPolicy::Drop if options.migrated && !location.is_selector() => {
            UnmappedAction::Removed
        }
        UnmappedPolicy::Drop | UnmappedPolicy::Keep => UnmappedAction::Kept,
    }
}

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
    for f in walked.settle().to_vec() {
        let pointer = PointerBuf::parse(walked.pointer(&f)).unwrap_or_default();
        match f.lookup {
            LookupRef::Keep => {}
            LookupRef::Rewrite(to) => {
                out.patch.push(PatchOperation::Replace(ReplaceOperation {
                    path: pointer.clone(),
                    value: Value::String(to.to_string()),
                }));
                out.rewrites.push(Rewrite {
                    location: f.location,
                    pointer,
                    from: f.value.into_owned(),
                    to: to.into_owned(),
                });
            }
            LookupRef::Unmapped => {
                let action = unmapped_action(f.location, options);
                if action == UnmappedAction::Removed {
                    out.patch.push(PatchOperation::Remove(RemoveOperation {
                        path: pointer.clone(),
                    }));
                }
                out.unmapped.push(Unmapped {
                    location: f.location,
                    pointer,
                    key: f.key.into_owned(),
                    value: f.value.into_owned(),
                    action,
                });
            }
        }
    }
    out
}
