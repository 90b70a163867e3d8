//! `/mutate` on the request bytes: the review decoded once ([`super::review::decode`]), its
//! object walked for project IDs as it is read ([`crate::rewrite::walk`]: the strings it keeps are
//! borrowed from the body; containers, `managedFields`, `last-applied-configuration` are checked
//! as JSON and skipped, never copied), the one decision made ([`decide`]) and the answer written
//! once ([`Response::to_review`]).

use serde::de::{DeserializeSeed, Deserializer};

use super::review::{bounded_warnings, Answer, Request, RequestOutcome, Response, ReviewError};
use crate::mapping::objects::Mappings;
use crate::mapping::Table;
use crate::rewrite::{
    decide, is_namespace, walk_bounded, Action, Location, MutateSettings, RequestFacts, Walked,
};

/// Most project-ID values one object may hold (in labels, annotations and selectors together);
/// a real object holds a handful. Bounds what a hostile object costs (each value is a finding,
/// and duplicate keys are checked within each map); more is refused as a bad request.
pub const MAX_PROJECT_ID_VALUES: usize = 1000;

/// Decodes a review body, borrowing from it, and walks its object with `table`.
pub fn decode<'a, 't>(
    body: &'a [u8],
    table: &'t Table,
) -> Result<Request<'a, Walked<'a, 't>>, ReviewError> {
    super::review::decode(body, WalkSeed(table))
}

/// `request.object`, walked with this table.
struct WalkSeed<'t>(&'t Table);

impl<'de, 't> DeserializeSeed<'de> for WalkSeed<'t> {
    type Value = Walked<'de, 't>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        walk_bounded(d, self.0, MAX_PROJECT_ID_VALUES)
    }
}

/// Decides and writes the answer (the object is taken out of `req`).
pub fn answer(
    req: &mut Request<'_, Walked<'_, '_>>,
    mappings: &Mappings,
    settings: &MutateSettings,
) -> Answer {
    // Only writes are rewritten: an object on another operation is not looked at.
    let is_write = matches!(&*req.operation, "CREATE" | "UPDATE");
    let walked = req.object.take().filter(|_| is_write).unwrap_or_default();
    let facts = RequestFacts {
        kind: &req.kind,
        namespace: &req.namespace,
        name: &req.name,
        is_namespace: is_namespace(&req.group, &req.kind),
        username: &req.username,
        migrated: false,
    };
    let decision = decide(&facts, walked, mappings, settings);
    let (mut rewrites, mut unmapped) = ([0; Location::ALL.len()], [0; Location::ALL.len()]);
    for r in decision.rewrites() {
        rewrites[r.location as usize] += 1;
    }
    for u in decision.unmapped() {
        unmapped[u.location as usize] += 1;
    }
    let warnings = bounded_warnings(decision.warnings);
    let verdict = match decision.action {
        Action::Allow => RequestOutcome::Allowed,
        Action::Patch => RequestOutcome::Patched,
        Action::WouldPatch => RequestOutcome::WouldPatch,
        Action::Deny => RequestOutcome::Denied,
    };
    let response = Response {
        uid: &req.uid,
        denial: decision.denial.as_deref(),
        patch: (decision.action == Action::Patch).then_some(&decision.patch[..]),
        warnings: &warnings,
        audit: decision.audit.as_deref(),
    };
    Answer {
        rewrites,
        unmapped,
        ..response.answer(verdict)
    }
}
