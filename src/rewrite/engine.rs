//! The rewrite engine (SPEC §5–8): a pure function of an object, a table and options. It reads
//! only the fixed locations of §5, so its cost does not depend on the rest of the object.

use json_patch::{PatchOperation, RemoveOperation, ReplaceOperation};
use jsonptr::{PointerBuf, Token};
use serde_json::Value;

use super::keys::is_project_id_key;
use super::outcome::{Location, Outcome, Rewrite, Unmapped, UnmappedAction};
use crate::mapping::{Lookup, Table};

/// What to do with a value the table does not map (SPEC §6).
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

/// How to treat one object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub unmapped: UnmappedPolicy,
    /// Whether the object counts as migrated (SPEC §7); `drop` removes keys only then.
    pub migrated: bool,
}

/// Pod template metadata (SPEC §5.2).
const TEMPLATE_METADATA: [&[&str]; 4] = [
    &["spec", "template", "metadata"],
    &["template", "metadata"],
    &["spec", "jobTemplate", "metadata"],
    &["spec", "jobTemplate", "spec", "template", "metadata"],
];

/// Pod specs other than a Pod's own `spec` (SPEC §5.3).
const POD_SPECS: [&[&str]; 3] = [
    &["template", "spec"],
    &["spec", "template", "spec"],
    &["spec", "jobTemplate", "spec", "template", "spec"],
];

const AFFINITIES: [&str; 2] = ["podAffinity", "podAntiAffinity"];

/// Rewrites the project IDs of one object.
pub fn rewrite(obj: &Value, table: &Table, options: &Options) -> Outcome {
    let mut w = Walker {
        table,
        options,
        path: Vec::with_capacity(16),
        out: Outcome::default(),
    };
    if let Some(meta) = obj.get("metadata") {
        w.nested(&["metadata"], |w| {
            w.metadata(meta, Location::Label, Location::Annotation)
        });
    }
    for fields in TEMPLATE_METADATA {
        if let Some(meta) = get(obj, fields) {
            w.nested(fields, |w| {
                w.metadata(meta, Location::TemplateLabel, Location::TemplateAnnotation)
            });
        }
    }
    let kind = obj.get("kind").and_then(Value::as_str);
    if kind == Some("Pod") {
        if let Some(spec) = obj.get("spec") {
            w.nested(&["spec"], |w| w.pod_spec(spec));
        }
    }
    for fields in POD_SPECS {
        if let Some(spec) = get(obj, fields) {
            w.nested(fields, |w| w.pod_spec(spec));
        }
    }
    if kind == Some("NetworkPolicy") {
        w.network_policy(obj);
    }
    w.out
}

fn get<'v>(v: &'v Value, fields: &[&str]) -> Option<&'v Value> {
    fields.iter().try_fold(v, |v, f| v.get(f))
}

/// One step of the path to the value being looked at.
#[derive(Clone, Copy)]
enum Seg<'a> {
    /// A schema field (`spec`, `matchLabels`) or a label/annotation key.
    Field(&'a str),
    Index(usize),
}

struct Walker<'t, 'a> {
    table: &'t Table,
    options: &'t Options,
    path: Vec<Seg<'a>>,
    out: Outcome,
}

impl<'a> Walker<'_, 'a> {
    fn nested(&mut self, fields: &[&'a str], f: impl FnOnce(&mut Self)) {
        let depth = self.path.len();
        self.path.extend(fields.iter().map(|f| Seg::Field(f)));
        f(self);
        self.path.truncate(depth);
    }

    fn with(&mut self, segs: &[Seg<'a>], f: impl FnOnce(&mut Self)) {
        let depth = self.path.len();
        self.path.extend_from_slice(segs);
        f(self);
        self.path.truncate(depth);
    }

    fn metadata(&mut self, meta: &'a Value, labels: Location, annotations: Location) {
        for (field, location) in [("labels", labels), ("annotations", annotations)] {
            let Some(map) = meta.get(field).and_then(Value::as_object) else {
                continue;
            };
            for (key, value) in map.iter().filter(|(k, _)| is_project_id_key(k)) {
                if let Value::String(s) = value {
                    self.with(&[Seg::Field(field), Seg::Field(key)], |w| {
                        w.value(s, key, location)
                    });
                }
            }
        }
    }

    fn pod_spec(&mut self, spec: &'a Value) {
        let Some(affinity) = spec.get("affinity") else {
            return;
        };
        for kind in AFFINITIES {
            let Some(a) = affinity.get(kind) else {
                continue;
            };
            let required = "requiredDuringSchedulingIgnoredDuringExecution";
            for (i, term) in array(a, required) {
                if let Some(sel) = term.get("namespaceSelector") {
                    let segs = [
                        Seg::Field("affinity"),
                        Seg::Field(kind),
                        Seg::Field(required),
                        Seg::Index(i),
                        Seg::Field("namespaceSelector"),
                    ];
                    self.with(&segs, |w| w.selector(sel, Location::PodAffinitySelector));
                }
            }
            let preferred = "preferredDuringSchedulingIgnoredDuringExecution";
            for (i, weighted) in array(a, preferred) {
                if let Some(sel) = weighted
                    .get("podAffinityTerm")
                    .and_then(|t| t.get("namespaceSelector"))
                {
                    let segs = [
                        Seg::Field("affinity"),
                        Seg::Field(kind),
                        Seg::Field(preferred),
                        Seg::Index(i),
                        Seg::Field("podAffinityTerm"),
                        Seg::Field("namespaceSelector"),
                    ];
                    self.with(&segs, |w| w.selector(sel, Location::PodAffinitySelector));
                }
            }
        }
    }

    fn network_policy(&mut self, obj: &'a Value) {
        let Some(spec) = obj.get("spec") else { return };
        for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
            for (i, rule) in array(spec, direction) {
                for (j, peer) in array(rule, peers) {
                    if let Some(sel) = peer.get("namespaceSelector") {
                        let segs = [
                            Seg::Field("spec"),
                            Seg::Field(direction),
                            Seg::Index(i),
                            Seg::Field(peers),
                            Seg::Index(j),
                            Seg::Field("namespaceSelector"),
                        ];
                        self.with(&segs, |w| w.selector(sel, Location::NetworkPolicySelector));
                    }
                }
            }
        }
    }

    /// A label selector (SPEC §5.5): `matchLabels` values under project-ID keys, and every
    /// value of an `In`/`NotIn` expression on a project-ID key. Never removes a term.
    fn selector(&mut self, sel: &'a Value, location: Location) {
        if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels.iter().filter(|(k, _)| is_project_id_key(k)) {
                if let Value::String(s) = value {
                    self.with(&[Seg::Field("matchLabels"), Seg::Field(key)], |w| {
                        w.value(s, key, location)
                    });
                }
            }
        }
        for (i, expr) in array(sel, "matchExpressions") {
            let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
            let op = expr
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !is_project_id_key(key) || !matches!(op, "In" | "NotIn") {
                continue;
            }
            for (j, value) in array(expr, "values") {
                if let Value::String(s) = value {
                    let segs = [
                        Seg::Field("matchExpressions"),
                        Seg::Index(i),
                        Seg::Field("values"),
                        Seg::Index(j),
                    ];
                    self.with(&segs, |w| w.value(s, key, location));
                }
            }
        }
    }

    /// One project-ID value at the current path.
    fn value(&mut self, value: &str, key: &str, location: Location) {
        match self.table.lookup(value) {
            Lookup::Keep => {}
            Lookup::Rewrite(to) => {
                let pointer = self.pointer();
                self.out
                    .patch
                    .push(PatchOperation::Replace(ReplaceOperation {
                        path: pointer.clone(),
                        value: Value::String(to.clone()),
                    }));
                self.out.rewrites.push(Rewrite {
                    location,
                    pointer,
                    from: value.to_string(),
                    to,
                });
            }
            Lookup::Unmapped => {
                let action = match self.options.unmapped {
                    UnmappedPolicy::Deny => UnmappedAction::Denied,
                    UnmappedPolicy::Drop if self.options.migrated && !location.is_selector() => {
                        self.out.patch.push(PatchOperation::Remove(RemoveOperation {
                            path: self.pointer(),
                        }));
                        UnmappedAction::Removed
                    }
                    UnmappedPolicy::Drop | UnmappedPolicy::Keep => UnmappedAction::Kept,
                };
                self.out.unmapped.push(Unmapped {
                    location,
                    pointer: self.pointer(),
                    key: key.to_string(),
                    value: value.to_string(),
                    action,
                });
            }
        }
    }

    /// RFC 6901 pointer to the current path (`/` → `~1`, `~` → `~0` by `Token`).
    fn pointer(&self) -> PointerBuf {
        PointerBuf::from_tokens(self.path.iter().map(|s| match *s {
            Seg::Field(f) => Token::new(f),
            Seg::Index(i) => Token::from(i),
        }))
    }
}

fn array<'v>(v: &'v Value, field: &str) -> impl Iterator<Item = (usize, &'v Value)> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
}
