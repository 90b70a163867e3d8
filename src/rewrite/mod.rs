//! The rewrite: where project IDs live in an object (`places`, read by `walk`), which objects
//! are rewritten (`scope`), what each project ID found comes to (`decide`, the one decision),
//! and the JSON patch and messages that say so (`outcome`). Pure: no I/O, no clock, no globals.

mod decide;
mod keys;
mod outcome;
pub(crate) mod places;
mod scope;
mod walk;

pub use decide::{
    decide, decide_object, Action, Decision, Options, RequestFacts, Rewrite, Unmapped,
    UnmappedPolicy, Verdict,
};
pub use keys::{
    has_migrated_annotation, is_project_id_key, MIGRATED_ANNOTATION, NAMESPACE_PROJECT_KEYS,
};
pub use outcome::{describe, display_pointer, object_ref, write_str, Location, UnmappedAction};
pub use scope::{is_namespace, namespace_claim, Mode, MutateSettings, NamespaceClaim, Scope};
pub use walk::{walk, walk_bounded, CowStr, Found, Walked};

#[cfg(test)]
mod tests;
