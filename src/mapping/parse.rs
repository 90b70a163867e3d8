//! The `--project-mappings` syntax (docs/behaviour.md): `src=dst` entries separated by commas (and, in
//! ConfigMap data or files, newlines). Parsing checks each entry on its own; the checks across
//! entries live in [`super::table`].

use std::ops::Range;

use super::error::{EntryRef, MappingError, Origin, Side};
use super::id::ProjectValue;

/// One syntactically valid entry. Compact on purpose (one allocation: the entry's text), since
/// a large table holds all of them at once while it is checked: both values are spans of
/// `at.text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry as written, for messages.
    pub at: EntryRef,
    src: Span,
    dst: Span,
}

/// Where a checked value sits in its entry's text, and where its `:` is (for `C:P`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    colon: Option<usize>,
    end: usize,
}

impl Span {
    fn of(range: &Range<usize>, value: &ProjectValue<'_>) -> Span {
        Span {
            start: range.start,
            colon: value.cluster.map(|c| range.start + c.len()),
            end: range.end,
        }
    }

    fn value<'t>(&self, text: &'t str) -> ProjectValue<'t> {
        ProjectValue {
            cluster: self.colon.map(|c| &text[self.start..c]),
            project: &text[self.colon.map_or(self.start, |c| c + 1)..self.end],
        }
    }
}

impl Entry {
    pub fn src(&self) -> ProjectValue<'_> {
        self.src.value(&self.at.text)
    }

    pub fn dst(&self) -> ProjectValue<'_> {
        self.dst.value(&self.at.text)
    }

    /// Swaps source and destination (`derive --reverse`); messages still quote the entry as
    /// it was written.
    pub fn reverse(&mut self) {
        std::mem::swap(&mut self.src, &mut self.dst);
    }
}

/// Entries and per-entry errors found in one piece of mapping text or one map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub entries: Vec<Entry>,
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
    // Sized once: growing by doubling would hold two copies of a large table for a moment.
    let most = text.bytes().filter(|&b| b == b',' || b == b'\n').count() + 1;
    let mut out = Parsed {
        entries: Vec::with_capacity(most),
        errors: Vec::new(),
    };
    let mut position = 0;
    for (line_index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = line_index + 1;
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
                Some((src, dst)) => {
                    let src = trimmed(src, 0);
                    let dst = trimmed(dst, piece.len() - dst.len());
                    let at = EntryRef::new(piece, src.clone(), origin, position, line_number);
                    push_entry(&mut out, at, src, dst)
                }
                None => out.errors.push(MappingError::MissingEquals {
                    entry: EntryRef::new(piece, 0..piece.len(), origin, position, line_number),
                    hint: colon_hint(piece),
                }),
            }
        }
    }
    out
}

/// The range of `part` without its surrounding whitespace, `part` starting at `offset`.
fn trimmed(part: &str, offset: usize) -> Range<usize> {
    let start = offset + (part.len() - part.trim_start().len());
    start..start + part.trim().len()
}

/// Parses a `projectMappings` map (source → destination), as a ClusterPair stores it.
pub fn parse_map<'a>(map: impl IntoIterator<Item = (&'a str, &'a str)>, origin: &Origin) -> Parsed {
    let mut out = Parsed::default();
    for (i, (src, dst)) in map.into_iter().enumerate() {
        let (src, dst) = (src.trim(), dst.trim());
        let text = format!("{src}={dst}");
        let (src, dst) = (0..src.len(), src.len() + 1..text.len());
        let at = EntryRef::new(text, src.clone(), origin, i + 1, 0);
        push_entry(&mut out, at, src, dst);
    }
    out
}

/// Checks one entry (`src` and `dst` are ranges of `at.text`) and keeps it or its errors.
fn push_entry(out: &mut Parsed, at: EntryRef, src: Range<usize>, dst: Range<usize>) {
    let mut side_value = |side: Side, range: &Range<usize>| -> Option<Span> {
        let value = &at.text[range.clone()];
        if value.is_empty() {
            out.errors.push(MappingError::EmptySide {
                entry: at.clone(),
                side,
            });
            return None;
        }
        match ProjectValue::parse(value) {
            Ok(v) => Some(Span::of(range, &v)),
            Err(reason) => {
                out.errors.push(MappingError::InvalidId {
                    entry: at.clone(),
                    side,
                    value: value.to_string(),
                    reason,
                });
                None
            }
        }
    };
    let src_v = side_value(Side::Source, &src);
    let dst_v = side_value(Side::Destination, &dst);
    let (Some(src), Some(dst)) = (src_v, dst_v) else {
        return;
    };
    if src.colon.is_some() != dst.colon.is_some() {
        out.errors.push(MappingError::FormMismatch { entry: at });
        return;
    }
    out.entries.push(Entry { at, src, dst });
}

/// `p-a: p-b` (a colon followed by space, as in a Stork documentation example) most likely
/// meant `p-a=p-b`.
fn colon_hint(piece: &str) -> Option<String> {
    let colon_space = |w: &[u8]| w[0] == b':' && w[1].is_ascii_whitespace();
    let i = piece.as_bytes().windows(2).position(colon_space)?;
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
            .map(|e| format!("{}={}", e.src(), e.dst()))
            .collect();
        assert_eq!(pairs, ["p-a=p-b", "c-1:p-a=c-2:p-b", "p-c=p-d"]);
        assert_eq!(&*p.entries[0].at.text, "p-a = p-b");
        assert_eq!(p.entries[0].at.src(), "p-a");
        let cluster_form = &p.entries[1];
        assert_eq!(cluster_form.src().cluster, Some("c-1"));
        assert_eq!(cluster_form.dst().project, "p-b");
        let mut reversed = cluster_form.clone();
        reversed.reverse();
        assert_eq!(reversed.src().to_string(), "c-2:p-b");
        assert_eq!(reversed.dst().to_string(), "c-1:p-a");
    }

    /// Entries refused on their own, and how.
    #[rstest::rstest]
    #[case::missing_equals("p-a=p-b,p-c", |e: &[_]| matches!(e, [MappingError::MissingEquals { entry, hint: None }] if &*entry.text == "p-c"))]
    #[case::doubled_comma("p-a=p-b,,p-c=p-d", |e: &[_]| e.len() == 1)]
    #[case::empty_source("=p-b", |e: &[_]| matches!(e, [MappingError::EmptySide { side: Side::Source, .. }]))]
    #[case::empty_destination("p-a=", |e: &[_]| matches!(e, [MappingError::EmptySide { side: Side::Destination, .. }]))]
    #[case::both_sides_empty("=", |e: &[_]| e.len() == 2)]
    #[case::invalid_source("P-A=p-b", |e: &[_]| matches!(e, [MappingError::InvalidId { side: Side::Source, value, .. }] if value == "P-A"))]
    #[case::invalid_destination("p-a=p_b", |e: &[_]| matches!(e, [MappingError::InvalidId { side: Side::Destination, .. }]))]
    #[case::two_equals("p-a=p-b=p-c", |e: &[_]| e.len() == 1)]
    #[case::form_mismatch("p-a=c-2:p-b", |e: &[_]| matches!(e, [MappingError::FormMismatch { .. }]))]
    #[case::form_mismatch_reversed("c-1:p-a=p-b", |e: &[_]| matches!(e, [MappingError::FormMismatch { .. }]))]
    // An empty mapping is an empty table, not an error.
    #[case::empty("", |e: &[_]| e.is_empty())]
    fn refused_entries(#[case] text: &str, #[case] expected: fn(&[MappingError]) -> bool) {
        let e = errors(text);
        assert!(expected(&e), "{text}: {e:?}");
    }

    #[test]
    fn missing_equals_names_the_entry_and_suggests_for_a_colon() {
        assert!(errors("p-a=p-b,p-c")[0].to_string().contains("\"p-c\""));
        let e = errors("p-a=p-b,p-c: p-d");
        assert_eq!(
            e,
            [MappingError::MissingEquals {
                entry: EntryRef::new("p-c: p-d", 0..8, &Origin::Text, 2, 1),
                hint: Some("p-c=p-d".into()),
            }]
        );
        let said = e[0].to_string();
        assert!(said.contains("did you mean \"p-c=p-d\"?"), "{said}");
        let empty = MappingError::EmptyEntry {
            position: 2,
            origin: Origin::Text,
        };
        assert_eq!(errors("p-a=p-b,"), [empty]);
    }

    #[test]
    fn entries_not_made_of_id_characters_are_never_quoted() {
        // Named by number and line.
        let said = errors("p-a=p_b")[0].to_string();
        assert!(said.contains("entry #1 (line 1)"), "{said}");
        assert!(!said.contains("p_b"), "{said}");
        let e = errors("p-a=p-b\np-c=p-d,token: s3cr3t.Value_x");
        let said = e[0].to_string();
        assert!(said.contains("entry #3 (line 2) has no '='"), "{said}");
        assert!(!said.contains("s3cr3t") && !said.contains("did you mean"));
    }

    #[test]
    fn map_entries_have_field_paths() {
        let p = parse_map([("p-a", "p-b"), ("p-x", "BAD")], &Origin::ClusterPair);
        assert_eq!(p.entries.len(), 1);
        let path = p.errors[0].field_path();
        assert_eq!(path, "spec.platformOptions.rancher.projectMappings[p-x]");
    }
}
