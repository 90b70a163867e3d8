//! The rewrite engine: where project IDs live in an object (SPEC §5), what happens to each
//! (§4, §6), and the JSON patch that says so (§8). Pure: no I/O, no clock, no globals.

mod engine;
mod keys;
mod outcome;
mod relevant;

pub use engine::{rewrite, Options, UnmappedPolicy};
pub use keys::{has_migrated_annotation, is_project_id_key, MIGRATED_ANNOTATION};
pub use outcome::{describe, object_ref, Location, Outcome, Rewrite, Unmapped, UnmappedAction};
pub use relevant::Relevant;

#[cfg(test)]
mod tests;
