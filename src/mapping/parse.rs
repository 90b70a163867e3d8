//! The `--project-mappings` syntax (SPEC §3): `src=dst` entries separated by commas (and, in
//! ConfigMap data or files, newlines). Parsing checks each entry on its own; the checks across
//! entries live in [`super::table`].

use super::error::{EntryRef, MappingError, Origin, Side};
use super::id::ProjectValue;

/// One syntactically valid entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The source value.
    pub src: ProjectValue,
    /// The destination value.
    pub dst: ProjectValue,
    /// The entry as written, for messages.
    pub at: EntryRef,
}

/// Entries and per-entry errors found in one piece of mapping text or one map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The entries that parsed.
    pub entries: Vec<Entry>,
    /// What did not.
    pub errors: Vec<MappingError>,
}

impl Parsed {
    /// Appends another parse result (e.g. the next ConfigMap key).
    pub fn extend(&mut self, other: Parsed) {
        self.entries.extend(other.entries);
        self.errors.extend(other.errors);
    }
}

/// Parses storkctl's `--project-mappings` syntax. Blank lines are skipped (ConfigMap data
/// usually ends in a newline); an empty entry between commas is an error.
pub fn parse_text(text: &str, origin: &Origin) -> Parsed {
    let mut out = Parsed::default();
    let mut position = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        for piece in line.split(',') {
            position += 1;
            let piece = piece.trim();
            if piece.is_empty() {
                out.errors.push(MappingError::EmptyEntry {
                    position,
                    origin: origin.clone(),
                });
                continue;
            }
            match piece.split_once('=') {
                Some((src, dst)) => push_entry(&mut out, src.trim(), dst.trim(), piece, origin),
                None => out.errors.push(MappingError::MissingEquals {
                    entry: entry_ref(piece, piece, origin),
                    hint: colon_hint(piece),
                }),
            }
        }
    }
    out
}

/// Parses a `projectMappings` map (source → destination), as a ClusterPair stores it.
pub fn parse_map<'a>(map: impl IntoIterator<Item = (&'a str, &'a str)>, origin: &Origin) -> Parsed {
    let mut out = Parsed::default();
    for (src, dst) in map {
        let (src, dst) = (src.trim(), dst.trim());
        push_entry(&mut out, src, dst, &format!("{src}={dst}"), origin);
    }
    out
}

fn entry_ref(text: &str, src: &str, origin: &Origin) -> EntryRef {
    EntryRef {
        text: text.to_string(),
        src: src.to_string(),
        origin: origin.clone(),
    }
}

fn push_entry(out: &mut Parsed, src: &str, dst: &str, text: &str, origin: &Origin) {
    let at = entry_ref(text, src, origin);
    let mut side_value = |side: Side, value: &str| -> Option<ProjectValue> {
        if value.is_empty() {
            out.errors.push(MappingError::EmptySide {
                entry: at.clone(),
                side,
            });
            return None;
        }
        ProjectValue::parse(value)
            .map_err(|reason| {
                out.errors.push(MappingError::InvalidId {
                    entry: at.clone(),
                    side,
                    value: value.to_string(),
                    reason,
                })
            })
            .ok()
    };
    let src_v = side_value(Side::Source, src);
    let dst_v = side_value(Side::Destination, dst);
    let (Some(src), Some(dst)) = (src_v, dst_v) else {
        return;
    };
    if src.is_cluster_form() != dst.is_cluster_form() {
        out.errors.push(MappingError::FormMismatch { entry: at });
        return;
    }
    out.entries.push(Entry { src, dst, at });
}

/// `p-a: p-b` (a colon followed by space, as in a Stork documentation example) most likely
/// meant `p-a=p-b`.
fn colon_hint(piece: &str) -> Option<String> {
    let bytes = piece.as_bytes();
    let i = (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b':' && bytes[i + 1].is_ascii_whitespace())?;
    let (l, r) = (piece[..i].trim(), piece[i + 1..].trim());
    (!l.is_empty() && !r.is_empty()).then(|| format!("{l}={r}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<MappingError> {
        parse_text(text, &Origin::Text).errors
    }

    #[test]
    fn entries_with_whitespace_and_newlines() {
        let p = parse_text(" p-a = p-b ,c-1:p-a=c-2:p-b\n\np-c=p-d\n", &Origin::Text);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let pairs: Vec<String> = p
            .entries
            .iter()
            .map(|e| format!("{}={}", e.src, e.dst))
            .collect();
        assert_eq!(pairs, ["p-a=p-b", "c-1:p-a=c-2:p-b", "p-c=p-d"]);
        assert_eq!(p.entries[0].at.text, "p-a = p-b");
    }

    #[test]
    fn missing_equals_names_entry() {
        let e = errors("p-a=p-b,p-c");
        assert_eq!(e.len(), 1);
        assert!(
            matches!(&e[0], MappingError::MissingEquals { entry, hint: None } if entry.text == "p-c")
        );
        assert!(e[0].to_string().contains("\"p-c\""));
    }

    #[test]
    fn colon_space_suggests_equals() {
        let e = errors("p-a=p-b,p-c: p-d");
        assert_eq!(
            e,
            [MappingError::MissingEquals {
                entry: EntryRef {
                    text: "p-c: p-d".into(),
                    src: "p-c: p-d".into(),
                    origin: Origin::Text
                },
                hint: Some("p-c=p-d".into()),
            }]
        );
        assert!(
            e[0].to_string().contains("did you mean \"p-c=p-d\"?"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn empty_entries_are_errors() {
        let e = errors("p-a=p-b,");
        assert_eq!(
            e,
            [MappingError::EmptyEntry {
                position: 2,
                origin: Origin::Text
            }]
        );
        assert_eq!(errors("p-a=p-b,,p-c=p-d").len(), 1);
        assert!(
            errors("").is_empty(),
            "an empty mapping is an empty table, not an error"
        );
    }

    #[test]
    fn empty_sides() {
        assert!(matches!(
            &errors("=p-b")[..],
            [MappingError::EmptySide {
                side: Side::Source,
                ..
            }]
        ));
        assert!(matches!(
            &errors("p-a=")[..],
            [MappingError::EmptySide {
                side: Side::Destination,
                ..
            }]
        ));
        assert_eq!(errors("=").len(), 2);
    }

    #[test]
    fn invalid_ids() {
        let e = errors("P-A=p-b");
        assert!(
            matches!(&e[..], [MappingError::InvalidId { side: Side::Source, value, .. }] if value == "P-A")
        );
        let e = errors("p-a=p_b");
        assert!(matches!(
            &e[..],
            [MappingError::InvalidId {
                side: Side::Destination,
                ..
            }]
        ));
        assert!(e[0].to_string().contains("\"p-a=p_b\""));
        assert_eq!(errors("p-a=p-b=p-c").len(), 1);
    }

    #[test]
    fn form_mismatch() {
        assert!(matches!(
            &errors("p-a=c-2:p-b")[..],
            [MappingError::FormMismatch { .. }]
        ));
        assert!(matches!(
            &errors("c-1:p-a=p-b")[..],
            [MappingError::FormMismatch { .. }]
        ));
    }

    #[test]
    fn map_entries_have_field_paths() {
        let p = parse_map([("p-a", "p-b"), ("p-x", "BAD")], &Origin::ClusterPair);
        assert_eq!(p.entries.len(), 1);
        assert_eq!(
            p.errors[0].field_path(),
            "spec.platformOptions.rancher.projectMappings[p-x]"
        );
    }
}
