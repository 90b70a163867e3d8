//! The rewrite engine: where project IDs live in an object (`places`, read by `walk`), which
//! objects are rewritten (`scope`), what happens to each project ID (`decide`, the one
//! decision), the engine on a decoded object (`engine`), and the JSON patch and messages that
//! say so (`outcome`). Pure: no
//! I/O, no clock, no globals.

mod decide;
mod engine;
mod keys;
mod outcome;
pub(crate) mod places;
mod scope;
mod walk;

pub use decide::{unmapped_action, verdict, Options, UnmappedPolicy, Verdict};
pub use engine::{rewrite, rewrite_json};
pub use keys::{
    has_migrated_annotation, is_project_id_key, MIGRATED_ANNOTATION, NAMESPACE_PROJECT_KEYS,
};
pub use outcome::{
    describe, display_path, object_ref, push_display_pointer, unmapped_denial, unmapped_warning,
    Location, Outcome, Rewrite, Unmapped, UnmappedAction,
};
pub use scope::{
    admit, is_namespace, namespace_claim, namespace_claim_of, Mode, MutateSettings, NamespaceClaim,
    Scope, Writer,
};
pub use walk::{walk, walk_bounded, CowStr, Found, Walked};

#[cfg(test)]
mod tests;
