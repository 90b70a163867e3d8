//! Mapping errors and warnings. Every message names the offending entry, and where it came from
//! when that is not obvious (a ConfigMap key), so an operator can find and fix it.
//!
//! Mapping text may not be mapping text at all: a ClusterPair or a kubeconfig given where a
//! mappings file was expected carries tokens and keys. So an entry is quoted only when it holds
//! nothing but the characters of IDs, `=`, `:` and spaces ([`is_quotable`]); any other entry is
//! named by its number and line.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Where an entry was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A `--project-mappings` string or a plain mappings text file.
    Text,
    /// A ClusterPair's `spec.platformOptions.rancher.projectMappings`.
    ClusterPair,
    /// One key of a mapping ConfigMap's `data` (docs/behaviour.md). Shared by every entry of the key.
    ConfigMapKey(Arc<str>),
}

/// Whether `s` may be quoted in a message: only lower-case letters, digits, `-`, `=`, `:` and
/// spaces (what mapping entries are made of). Anything else could be a credential.
pub fn is_quotable(s: &str) -> bool {
    let characters = s.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'=' | b':' | b' ')
    });
    // Rancher IDs are short (`p-ab12c`, `c-m-4kq8z9rt`); a long run of letters and digits is
    // more likely a token's random part (Rancher's are 54 characters), and a credential's key
    // name beside a value is a credential.
    let words = || s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    characters && words().all(|w| w.len() <= 32) && !words().any(|w| CREDENTIAL_KEYS.contains(&w))
}

/// Names of kubeconfig and ClusterPair fields that hold credentials.
const CREDENTIAL_KEYS: [&str; 8] = [
    "token",
    "password",
    "username",
    "client-key-data",
    "client-certificate-data",
    "certificate-authority-data",
    "secret",
    "auth-provider",
];

/// `s` in quotes when [`is_quotable`], otherwise `what` (e.g. "a value").
pub(crate) fn quoted_or(s: &str, what: &str) -> String {
    if is_quotable(s) {
        format!("{s:?}")
    } else {
        what.to_string()
    }
}

/// One entry as the user wrote it, for messages. One allocation: the source side is a range of
/// the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRef {
    /// The entry, trimmed (`src=dst`; for map sources rebuilt from key and value). Never shown
    /// unless [`is_quotable`].
    pub text: Box<str>,
    /// Where the source side (as written) is in `text`.
    src: Range<usize>,
    /// Where the entry was written.
    pub origin: Origin,
    /// Its number (1-based) in its text or map, and its line in the text (0: not from text).
    pub number: u32,
    pub line: u32,
}

impl EntryRef {
    /// The `number`-th entry (1-based) of its text or map, on `line` (0: not from text); `src`
    /// is the byte range of the source side in `text`.
    pub fn new(
        text: impl Into<Box<str>>,
        src: Range<usize>,
        origin: &Origin,
        number: usize,
        line: usize,
    ) -> EntryRef {
        let text = text.into();
        debug_assert!(text.get(src.clone()).is_some());
        EntryRef {
            text,
            src,
            origin: origin.clone(),
            number: u32::try_from(number).unwrap_or(u32::MAX),
            line: u32::try_from(line).unwrap_or(u32::MAX),
        }
    }

    /// The source side as written, used as the index in field paths.
    pub fn src(&self) -> &str {
        self.text.get(self.src.clone()).unwrap_or_default()
    }

    /// The field path of this entry, e.g. `spec.platformOptions.rancher.projectMappings[p-a]`:
    /// indexed by the source side when it can be quoted, else by `#number`.
    pub fn field_path(&self) -> String {
        let src = self.src();
        let index = match is_quotable(src) && !src.is_empty() {
            true => src.to_string(),
            false => format!("#{}", self.number),
        };
        match &self.origin {
            Origin::Text => format!("project-mappings[{index}]"),
            Origin::ClusterPair => format!("spec.platformOptions.rancher.projectMappings[{index}]"),
            Origin::ConfigMapKey(key) => format!("data[{key}]"),
        }
    }
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_quotable(&self.text) {
            write!(f, "{:?}", self.text)?;
        } else {
            write!(f, "#{}", self.number)?;
            if self.line > 0 {
                write!(f, " (line {})", self.line)?;
            }
        }
        if let Origin::ConfigMapKey(key) = &self.origin {
            write!(f, " (data key {key})")?;
        }
        Ok(())
    }
}

/// Which side of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The source (left of `=`).
    Source,
    /// The destination (right of `=`).
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// Which part of two entries' sources is the same while their destinations differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole ID: one source, two destinations.
    Whole,
    /// The project part (`p-a` and `c-1:p-a` both map project `p-a`).
    Project,
    /// The cluster part of `C:P` entries.
    Cluster,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Whole => "",
            Part::Project => "project ",
            Part::Cluster => "cluster ",
        })
    }
}

/// A broken mapping. Any one of these rejects the whole table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// An entry without `=`; `hint` holds the corrected entry for the `p-a: p-b` spelling (only
    /// when it can be quoted).
    #[error("entry {entry} has no '=': {}", match hint { Some(h) if is_quotable(h) => format!("did you mean {h:?}?"), _ => "expected src=dst".to_string() })]
    MissingEquals {
        entry: EntryRef,
        hint: Option<String>,
    },
    /// An empty entry, e.g. after a trailing comma.
    #[error("empty entry #{position}{} (a trailing or doubled comma?)", match origin { Origin::ConfigMapKey(key) => format!(" in data key {key}"), _ => String::new() })]
    EmptyEntry { position: usize, origin: Origin },
    /// One side of `=` is empty.
    #[error("entry {entry} has an empty {side}")]
    EmptySide { entry: EntryRef, side: Side },
    /// One side is not a valid project-ID value.
    #[error(
        "entry {entry}: {side} {} is not a project ID (P or C:P): {reason}",
        quoted_or(value, "value")
    )]
    InvalidId {
        entry: EntryRef,
        side: Side,
        value: String,
        reason: super::IdError,
    },
    /// Source and destination have different forms (`P` vs `C:P`).
    #[error("entry {entry}: source and destination must both be P or both be C:P")]
    FormMismatch { entry: EntryRef },
    /// One source (a whole ID, or its project or cluster part) mapped to two destinations.
    #[error("entry {entry} maps {part}{src} to {dst}, but entry {other} maps it to {other_dst}")]
    Conflict {
        part: Part,
        entry: EntryRef,
        other: EntryRef,
        src: String,
        dst: String,
        other_dst: String,
    },
    /// Nothing to map: under `--unmapped drop` an empty table would remove the project ID from
    /// every migrated object, so it is never put in force.
    #[error("no mapping entries: an empty table would remove every project ID from migrated objects; give at least one src=dst entry")]
    NoEntries,
    /// A cluster-form entry whose source and destination clusters are the same: Stork migrates
    /// between two clusters, so such a table was written by mistake.
    #[error("entry {entry} maps cluster {cluster} onto itself: a migration goes from one cluster to another; the destination side names the cluster migrated objects land on")]
    SelfMapping { entry: EntryRef, cluster: String },
    /// The table's sources name this cluster (`--cluster-id`): it maps this cluster's projects
    /// away, so it is reversed (or made for the other direction of the pair).
    #[error("the table maps cluster {this} (this cluster, --cluster-id) to cluster {to}: it is reversed; a table made from the destination side of a pair (storkctl create clusterpair writes the mapping reversed there) must be derived with `rancher-remap derive --reverse`, or derive it from the ClusterPair on the source cluster")]
    Reversed { this: String, to: String },
    /// The table's destinations name a cluster other than this one (`--cluster-id`): migrated
    /// objects would be labelled for a cluster they are not on.
    #[error("the table maps cluster {from} to cluster {to}, but this cluster is {this} (--cluster-id): the table was made for another cluster (or is reversed: `rancher-remap derive --reverse`)")]
    OtherCluster {
        from: String,
        to: String,
        this: String,
    },
    /// A destination that is also a source: a rewritten value would be rewritten again.
    #[error("entry {entry} makes a chain: its destination {id} is the source of entry {other}; map each source straight to its final destination")]
    Chain {
        entry: EntryRef,
        other: EntryRef,
        id: String,
    },
}

impl MappingError {
    /// The field path of the offending entry.
    pub fn field_path(&self) -> String {
        match self {
            MappingError::EmptyEntry { origin, position } => {
                EntryRef::new("", 0..0, origin, *position, 0).field_path()
            }
            MappingError::NoEntries
            | MappingError::Reversed { .. }
            | MappingError::OtherCluster { .. } => "data".to_string(),
            MappingError::MissingEquals { entry, .. }
            | MappingError::EmptySide { entry, .. }
            | MappingError::InvalidId { entry, .. }
            | MappingError::FormMismatch { entry }
            | MappingError::Conflict { entry, .. }
            | MappingError::SelfMapping { entry, .. }
            | MappingError::Chain { entry, .. } => entry.field_path(),
        }
    }
}

/// All the errors found in one mapping; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid project mappings: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct MappingErrors(pub Vec<MappingError>);

/// A finding that does not reject the mapping.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingWarning {
    /// An `x=x` entry: it has no effect.
    #[error("entry {entry} maps an ID to itself and has no effect")]
    Identity { entry: EntryRef },
    /// Two source projects map to one destination project: `storkctl create clusterpair`
    /// writes the reverse pair by inverting the map, which keeps only one of them, and
    /// `derive --reverse` refuses the table.
    #[error("entries {other} and {entry} both map to project {project}: the reverse pair `storkctl create clusterpair` writes keeps only one of them (failback would lose the other), and `rancher-remap derive --reverse` refuses this table")]
    ManyToOne {
        entry: EntryRef,
        other: EntryRef,
        project: String,
    },
}

impl MappingWarning {
    /// The field path of the entry concerned.
    pub fn field_path(&self) -> String {
        let (MappingWarning::Identity { entry } | MappingWarning::ManyToOne { entry, .. }) = self;
        entry.field_path()
    }
}
