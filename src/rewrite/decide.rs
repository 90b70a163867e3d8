//! What each project ID found in an object comes to: the one decision every path reads. The
//! webhook's answer (`server::mutate`: its patch, counts, messages and audit annotation), the
//! engine's outcome (the `rewrite` and `audit` commands) and the fuzz targets through both ask
//! [`verdict`]; nothing else matches on a lookup and the unmapped policy. Whether an object is
//! rewritten at all is the scope rule's ([`super::scope::admit`]): this is what happens inside.

use super::outcome::{Location, UnmappedAction};
use super::walk::Found;
use crate::mapping::LookupRef;

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

/// What one finding comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'f> {
    /// Already right (a destination value, or one mapped onto itself): nothing to do.
    Keep,
    /// Replace the value with this one.
    Replace(&'f str),
    /// The table does not map it: removed, kept or denied, as the policy says.
    Unmapped(UnmappedAction),
}

/// The verdict on `f` under `options`.
pub fn verdict<'f>(f: &'f Found<'_, '_>, options: &Options) -> Verdict<'f> {
    match &f.lookup {
        LookupRef::Keep => Verdict::Keep,
        LookupRef::Rewrite(to) => Verdict::Replace(to),
        LookupRef::Unmapped => Verdict::Unmapped(unmapped_action(f.location, options)),
    }
}
