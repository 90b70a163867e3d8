//! What the decision writes from the findings: the JSON patch and the audit annotation (each
//! written here only; the messages are [`super::decide()`]'s), and the names of where values are.

use serde_json::Value;

use super::decide::Verdict;
use super::walk::Walked;

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

// `Location::ALL[i] as usize == i`, or the build fails.
const _: () = {
    let mut i = 0;
    while i < Location::ALL.len() {
        assert!(Location::ALL[i] as usize == i);
        i += 1;
    }
};

impl Location {
    /// All locations, for metric initialisation, in declaration order: `location as usize` is
    /// a location's index here (the server's per-location counts rely on it; checked above at
    /// compile time).
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

    /// Whether values here are selector terms, which are never removed.
    pub fn is_selector(self) -> bool {
        matches!(
            self,
            Location::PodAffinitySelector | Location::NetworkPolicySelector
        )
    }
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

/// The JSON patch: `replace` for each rewritten value, `remove` for each dropped one, in report
/// order. Written as text by hand, the one patch builder: for the bench review (10 rewrites)
/// json-patch's operations cost 10–13 µs more per answer (`cargo bench --bench answer`).
pub(super) fn patch_json(walked: &Walked<'_, '_>) -> Vec<u8> {
    let findings = walked.findings();
    let room: usize = findings
        .iter()
        .map(|f| walked.pointer(f).len() + f.value.len() + 48)
        .sum();
    let mut patch = Vec::with_capacity(2 + room);
    patch.push(b'[');
    for f in findings.iter().filter(|f| f.verdict.is_patched()) {
        if patch.len() > 1 {
            patch.push(b',');
        }
        let op: &[u8] = match f.verdict {
            Verdict::Replace => br#"{"op":"replace","path":"#,
            _ => br#"{"op":"remove","path":"#,
        };
        patch.extend_from_slice(op);
        write_str(&mut patch, walked.pointer(f));
        if f.verdict == Verdict::Replace {
            patch.extend_from_slice(br#","value":"#);
            write_str(&mut patch, f.replacement());
        }
        patch.push(b'}');
    }
    patch.push(b']');
    patch
}

/// A JSON string, escaped as serde_json escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The audit annotation: every rewrite, then every removed value.
pub(super) fn audit_text(walked: &Walked<'_, '_>) -> String {
    const MAX: usize = 2000;
    let findings = walked.findings();
    let room: usize = findings
        .iter()
        .map(|f| walked.pointer(f).len() + 2 * f.value.len() + 16)
        .sum();
    let mut text = String::with_capacity(room.min(MAX + 8));
    let removed = Verdict::Unmapped(UnmappedAction::Removed);
    let rewrites = findings.iter().filter(|f| f.verdict == Verdict::Replace);
    for f in rewrites.chain(findings.iter().filter(|f| f.verdict == removed)) {
        if !text.is_empty() {
            text.push_str("; ");
        }
        push_display_pointer(walked.pointer(f), &mut text);
        text.push(' ');
        text.push_str(&f.value);
        match f.verdict {
            Verdict::Replace => {
                text.push_str("->");
                text.push_str(f.replacement());
            }
            _ => text.push_str(" removed"),
        }
    }
    crate::text::truncate(text, MAX)
}

/// A JSON pointer as people read paths: `spec.template.metadata.labels[field.cattle.io/projectId]`,
/// `...values[1]`. Keys that hold `.` or `/` (label keys) go in brackets; schema fields never do.
/// Used by messages and the audit annotation (on the hot path, see `push_display_pointer`).
pub fn display_pointer(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    push_display_pointer(raw, &mut out);
    out
}

/// Appends [`display_pointer`] of a pointer's text to `out`, decoding escaped tokens (`~1`, `~0`)
/// as it writes them (no allocation of its own: the audit annotation is written on the hot path).
fn push_display_pointer(raw: &str, out: &mut String) {
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
