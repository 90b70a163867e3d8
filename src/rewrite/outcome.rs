//! What the engine found in one object, and the messages built from it.

use std::fmt;

use json_patch::PatchOperation;
use jsonptr::{Pointer, PointerBuf};
use serde_json::Value;

/// Where a project ID was found (a metric label, so the set is small and fixed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// `metadata.labels` of the object.
    Label,
    /// `metadata.annotations` of the object.
    Annotation,
    /// Labels of a pod or job template.
    TemplateLabel,
    /// Annotations of a pod or job template.
    TemplateAnnotation,
    /// A pod (anti-)affinity term's `namespaceSelector`.
    PodAffinitySelector,
    /// A NetworkPolicy peer's `namespaceSelector`.
    NetworkPolicySelector,
}

impl Location {
    /// All locations, for metric initialisation.
    pub const ALL: [Location; 6] = [
        Location::Label,
        Location::Annotation,
        Location::TemplateLabel,
        Location::TemplateAnnotation,
        Location::PodAffinitySelector,
        Location::NetworkPolicySelector,
    ];

    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Label => "label",
            Location::Annotation => "annotation",
            Location::TemplateLabel => "template_label",
            Location::TemplateAnnotation => "template_annotation",
            Location::PodAffinitySelector => "pod_affinity_selector",
            Location::NetworkPolicySelector => "network_policy_selector",
        }
    }

    /// Its position in [`Location::ALL`] (for per-location counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether values here are selector terms, which are never removed.
    pub fn is_selector(self) -> bool {
        matches!(
            self,
            Location::PodAffinitySelector | Location::NetworkPolicySelector
        )
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub location: Location,
    /// Where the value is (see [`display_path`] for the readable form).
    pub pointer: PointerBuf,
    pub from: String,
    pub to: String,
}

/// What happened to an unmapped value (docs/behaviour.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmappedAction {
    /// The label or annotation was removed (`drop` on a migrated object).
    Removed,
    /// The value was left as it is.
    Kept,
    /// The request is refused (`deny`).
    Denied,
}

/// One value with no mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmapped {
    pub location: Location,
    /// Where the value is (see [`display_path`] for the readable form).
    pub pointer: PointerBuf,
    /// The label/annotation/selector key that holds the value.
    pub key: String,
    pub value: String,
    pub action: UnmappedAction,
}

impl Rewrite {
    /// The readable path, e.g. `metadata.labels[field.cattle.io/projectId]`.
    pub fn path(&self) -> String {
        display_path(&self.pointer)
    }
}

impl Unmapped {
    /// The readable path, e.g. `spec.ingress[0].from[0].namespaceSelector.matchLabels[...]`.
    pub fn path(&self) -> String {
        display_path(&self.pointer)
    }

    /// The admission warning for this value; `object` names the object (`Kind ns/name`).
    pub fn warning(&self, object: &str) -> String {
        unmapped_warning(
            object,
            &self.value,
            self.pointer.as_str(),
            self.action,
            self.location,
        )
    }

    /// The denial message for this value under `--unmapped deny`.
    pub fn denial(&self, object: &str) -> String {
        unmapped_denial(object, &self.value, &self.key, self.pointer.as_str())
    }
}

/// The admission warning for an unmapped `value` at `pointer` (see [`Unmapped::warning`]).
pub fn unmapped_warning(
    object: &str,
    value: &str,
    pointer: &str,
    action: UnmappedAction,
    location: Location,
) -> String {
    let what = match (action, location.is_selector()) {
        (UnmappedAction::Removed, _) => "removed",
        (UnmappedAction::Kept, true) => "kept (a selector is never shortened)",
        (UnmappedAction::Kept, false) => "kept",
        (UnmappedAction::Denied, _) => "refused",
    };
    format!(
        "{object}: project ID {value:?} at {} has no mapping; {what}",
        display_pointer(pointer)
    )
}

/// The denial message for an unmapped `value` (see [`Unmapped::denial`]).
pub fn unmapped_denial(object: &str, value: &str, key: &str, pointer: &str) -> String {
    format!(
        "{object}: project ID {value:?} under key {key} at {} has no mapping to this cluster (--unmapped=deny); add it to the ClusterPair's project mappings",
        display_pointer(pointer)
    )
}

/// The result of rewriting one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// RFC 6902 operations on the input object; empty when nothing changes.
    pub patch: Vec<PatchOperation>,
    /// Values replaced.
    pub rewrites: Vec<Rewrite>,
    /// Values with no mapping, whatever was done with them.
    pub unmapped: Vec<Unmapped>,
}

impl Outcome {
    /// Whether `--unmapped deny` refuses this object.
    pub fn is_denied(&self) -> bool {
        self.unmapped
            .iter()
            .any(|u| u.action == UnmappedAction::Denied)
    }

    /// One warning per unmapped value.
    pub fn warnings(&self, object: &str) -> Vec<String> {
        self.unmapped.iter().map(|u| u.warning(object)).collect()
    }

    /// The reason for refusing the object, naming every refused value; `None` when allowed.
    pub fn denial(&self, object: &str) -> Option<String> {
        let reasons: Vec<String> = self
            .unmapped
            .iter()
            .filter(|u| u.action == UnmappedAction::Denied)
            .map(|u| u.denial(object))
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The input object with the patch applied.
    pub fn apply(&self, obj: &Value) -> Result<Value, json_patch::PatchError> {
        let mut out = obj.clone();
        json_patch::patch(&mut out, &self.patch)?;
        Ok(out)
    }
}

/// A JSON pointer as people read paths: `spec.template.metadata.labels[field.cattle.io/projectId]`,
/// `...values[1]`. Keys that hold `.` or `/` (label keys) go in brackets; schema fields never do.
/// Used by messages and the audit annotation (on the hot path, see [`push_display_pointer`]).
pub fn display_path(pointer: &Pointer) -> String {
    display_pointer(pointer.as_str())
}

/// [`display_path`] of a pointer's text.
pub fn display_pointer(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    push_display_pointer(raw, &mut out);
    out
}

/// Appends [`display_path`] of a pointer's text to `out`, decoding escaped tokens (`~1`, `~0`)
/// as it writes them (no allocation of its own: the audit annotation is written on the hot path).
pub fn push_display_pointer(raw: &str, out: &mut String) {
    let start = out.len();
    // Byte by byte: pointers are short, and the general string searchers cost more to set up
    // than the scan (this runs for every rewrite in the audit annotation).
    for token in raw.split('/').skip(1) {
        let b = token.as_bytes();
        let bracketed = b.iter().all(u8::is_ascii_digit)
            || b.iter()
                .enumerate()
                .any(|(i, &c)| c == b'.' || (c == b'~' && b.get(i + 1) == Some(&b'1')));
        if bracketed {
            out.push('[');
        } else if out.len() > start {
            out.push('.');
        }
        // RFC 6901: `~1` is `/`, `~0` is `~` (decoded left to right, so `~01` is `~1`).
        let mut from = 0;
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'~' {
                let decoded = match b.get(i + 1) {
                    Some(b'1') => Some('/'),
                    Some(b'0') => Some('~'),
                    _ => None,
                };
                if let Some(c) = decoded {
                    out.push_str(&token[from..i]);
                    out.push(c);
                    i += 2;
                    from = i;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(&token[from..]);
        if bracketed {
            out.push(']');
        }
    }
}

/// `Kind namespace/name` (or `Kind name` for cluster-scoped objects), for messages.
pub fn describe(obj: &Value) -> String {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    object_ref(
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name"),
        s("/metadata/generateName"),
    )
}

/// `Kind namespace/name` from its parts; an unnamed object shows its `generateName` prefix.
pub fn object_ref(kind: &str, namespace: &str, name: &str, generate_name: &str) -> String {
    let kind = if kind.is_empty() { "object" } else { kind };
    let name = match (name, generate_name) {
        ("", "") => "<unnamed>".to_string(),
        ("", g) => format!("{g}*"),
        (n, _) => n.to_string(),
    };
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}
