//! What one object comes to: the one decision. Which objects are rewritten is the scope rule
//! ([`super::scope::admit`]); what each project ID found comes to is its [`Verdict`], computed
//! once; the JSON patch, the warnings, the denial and the audit annotation are written from the
//! verdicts, once (the messages here, the rest in [`super::outcome`]). `/mutate` (on request
//! bytes), the `rewrite` and `audit` commands (on decoded objects) and the fuzz targets all ask
//! [`decide`].

use serde_json::Value;

use super::outcome::{
    audit_text, display_pointer, object_ref, patch_json, Location, UnmappedAction,
};
use super::scope::{admit, Mode, MutateSettings};
use super::walk::{walk, Found, Walked};
use crate::mapping::objects::Mappings;
use crate::mapping::LookupRef;

/// What to do with a value the table does not map (docs/behaviour.md); also `--unmapped` (the
/// variants' docs are its help).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UnmappedPolicy {
    /// Remove the label or annotation on migrated objects, as Stork does; keep selectors.
    #[default]
    Drop,
    /// Leave every unmapped value as it is.
    Keep,
    /// Refuse the object.
    Deny,
}

/// How to treat one object in scope.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub unmapped: UnmappedPolicy,
    /// Whether the object counts as migrated (docs/behaviour.md); `drop` removes keys only then.
    pub migrated: bool,
}

/// What one finding comes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verdict {
    /// Already right (a destination value, or one mapped onto itself), or not decided (the
    /// object is out of scope): nothing to do.
    #[default]
    Keep,
    /// Replace the value with [`Found::replacement`].
    Replace,
    /// The table does not map it: removed, kept or denied, as the policy says.
    Unmapped(UnmappedAction),
}

impl Verdict {
    fn of(f: &Found<'_, '_>, options: &Options) -> Verdict {
        match &f.lookup {
            LookupRef::Keep => Verdict::Keep,
            LookupRef::Rewrite(_) => Verdict::Replace,
            LookupRef::Unmapped => Verdict::Unmapped(match options.unmapped {
                UnmappedPolicy::Deny => UnmappedAction::Denied,
                UnmappedPolicy::Drop if options.migrated && !f.location.is_selector() => {
                    UnmappedAction::Removed
                }
                UnmappedPolicy::Drop | UnmappedPolicy::Keep => UnmappedAction::Kept,
            }),
        }
    }

    /// Whether the patch carries an operation for it.
    pub fn is_patched(self) -> bool {
        matches!(
            self,
            Verdict::Replace | Verdict::Unmapped(UnmappedAction::Removed)
        )
    }
}

/// The request facts the decision reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestFacts<'r> {
    /// `Kind namespace/name` of the object, for messages (the request's own name and namespace:
    /// on CREATE the object may not carry its namespace).
    pub kind: &'r str,
    pub namespace: &'r str,
    pub name: &'r str,
    /// The core Namespace (the only kind whose project-ID annotation the scope rule reads).
    pub is_namespace: bool,
    /// `request.userInfo.username` (empty off the webhook).
    pub username: &'r str,
    /// The caller knows the object counts as migrated, whatever it says: the `rewrite` command
    /// (every object, docs/behaviour.md), `audit` (a Namespace holding a migrated object).
    pub migrated: bool,
}

/// What the answer does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// Allowed unchanged.
    #[default]
    Allow,
    /// Allowed with the patch.
    Patch,
    /// `--mode warn`: the patch is due and not sent; a warning and the audit annotation say it.
    WouldPatch,
    /// Refused (`--unmapped deny` met a value with no mapping).
    Deny,
}

/// What one object comes to: the findings with their verdicts and everything written from them.
#[derive(Debug, Default)]
pub struct Decision<'a, 't> {
    pub action: Action,
    walked: Walked<'a, 't>,
    /// The JSON patch (RFC 6902) of the replaced and removed values, in report order; empty when
    /// nothing changes. Sent only with [`Action::Patch`].
    pub patch: Vec<u8>,
    /// One per unmapped value, and under `--mode warn` the one that says what was not applied.
    pub warnings: Vec<String>,
    /// Under `--unmapped deny`, the reason naming every refused value.
    pub denial: Option<String>,
    /// The audit annotation, when a patch is due and nothing is refused.
    pub audit: Option<String>,
}

/// Decides on one object (`walked`: what the walk found in it).
pub fn decide<'a, 't>(
    facts: &RequestFacts<'_>,
    mut walked: Walked<'a, 't>,
    mappings: &Mappings,
    settings: &MutateSettings,
) -> Decision<'a, 't> {
    let Some(migrated) = admit(facts, &walked, mappings, settings) else {
        return Decision {
            walked,
            ..Decision::default()
        };
    };
    let options = Options {
        unmapped: settings.unmapped,
        migrated,
    };
    for f in &mut walked.found {
        f.verdict = Verdict::of(f, &options);
    }
    // Only messages name the object (rare: only unmapped values have messages).
    let object = || {
        let generate_name = walked.generate_name.as_deref().unwrap_or_default();
        object_ref(facts.kind, facts.namespace, facts.name, generate_name)
    };
    let written = write(&walked, settings.mode, &object);
    Decision { walked, ..written }
}

/// The patch, messages and audit annotation of findings whose verdicts are set (the messages
/// written here only).
fn write<'a, 't>(
    walked: &Walked<'_, '_>,
    mode: Mode,
    object: &dyn Fn() -> String,
) -> Decision<'a, 't> {
    let (mut warnings, mut denials, mut patched) = (Vec::new(), Vec::new(), false);
    for f in walked.findings() {
        let Verdict::Unmapped(action) = f.verdict else {
            patched |= f.verdict.is_patched();
            continue;
        };
        let (object, value) = (object(), &f.value);
        let at = display_pointer(walked.pointer(f));
        let what = match (action, f.location.is_selector()) {
            (UnmappedAction::Removed, _) => "removed",
            (UnmappedAction::Kept, true) => "kept (a selector is never shortened)",
            (UnmappedAction::Kept, false) => "kept",
            (UnmappedAction::Denied, _) => "refused",
        };
        warnings.push(format!(
            "{object}: project ID {value:?} at {at} has no mapping; {what}"
        ));
        match action {
            UnmappedAction::Denied => denials.push(format!(
                "{object}: project ID {value:?} under key {} at {at} has no mapping to this cluster (--unmapped=deny); add it to the ClusterPair's project mappings",
                f.key
            )),
            UnmappedAction::Removed => patched = true,
            UnmappedAction::Kept => {}
        }
    }
    let patch = if patched { patch_json(walked) } else { vec![] };
    let (action, audit) = match (denials.is_empty(), patched, mode) {
        (false, _, _) => (Action::Deny, None),
        (true, false, _) => (Action::Allow, None),
        (true, true, Mode::Enforce) => (Action::Patch, Some(audit_text(walked))),
        (true, true, Mode::Warn) => {
            let audit = audit_text(walked);
            let object = object();
            let warning = "--mode warn: the patch was not applied; it would have rewritten";
            warnings.push(format!("{object}: {warning}: {audit}"));
            (Action::WouldPatch, Some(audit))
        }
    };
    Decision {
        action,
        walked: Walked::default(),
        patch,
        warnings,
        denial: (!denials.is_empty()).then(|| denials.join("; ")),
        audit,
    }
}

/// [`decide`] on a decoded object: its kind, name and namespace are its own; no user wrote it.
pub fn decide_object<'a, 't>(
    obj: &'a Value,
    is_namespace: bool,
    migrated: bool,
    mappings: &'t Mappings,
    settings: &MutateSettings,
) -> Decision<'a, 't> {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let facts = RequestFacts {
        kind: s("/kind"),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
        is_namespace,
        username: "",
        migrated,
    };
    // Walking a decoded tree cannot fail (no syntax left to get wrong).
    let walked = walk(obj, &mappings.table).unwrap_or_default();
    decide(&facts, walked, mappings, settings)
}

/// A value replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite<'d> {
    pub location: Location,
    /// The JSON pointer of the value (see [`display_pointer`] for the readable form).
    pub pointer: &'d str,
    pub from: &'d str,
    pub to: &'d str,
}

/// A value with no mapping, and what was done with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmapped<'d> {
    pub location: Location,
    pub pointer: &'d str,
    /// The label, annotation or selector key that holds the value.
    pub key: &'d str,
    pub value: &'d str,
    pub action: UnmappedAction,
}

impl Decision<'_, '_> {
    /// The values replaced, in report order.
    pub fn rewrites(&self) -> impl Iterator<Item = Rewrite<'_>> {
        let w = &self.walked;
        w.findings()
            .iter()
            .filter(|f| f.verdict == Verdict::Replace)
            .map(|f| Rewrite {
                location: f.location,
                pointer: w.pointer(f),
                from: &f.value,
                to: f.replacement(),
            })
    }

    /// The values with no mapping, in report order.
    pub fn unmapped(&self) -> impl Iterator<Item = Unmapped<'_>> {
        let w = &self.walked;
        w.findings().iter().filter_map(|f| match f.verdict {
            Verdict::Unmapped(action) => Some(Unmapped {
                location: f.location,
                pointer: w.pointer(f),
                key: &f.key,
                value: &f.value,
                action,
            }),
            _ => None,
        })
    }

    /// The patch as json-patch operations (for the commands that apply or send it).
    pub fn patch_ops(&self) -> json_patch::Patch {
        // The patch was written as JSON here: it reads back.
        serde_json::from_slice(&self.patch).unwrap_or(json_patch::Patch(Vec::new()))
    }

    /// `obj` with the patch applied.
    pub fn apply(&self, obj: &Value) -> Result<Value, json_patch::PatchError> {
        let mut out = obj.clone();
        json_patch::patch(&mut out, &self.patch_ops())?;
        Ok(out)
    }
}
