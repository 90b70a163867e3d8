//! Pairing a source cluster's projects with a destination cluster's by display name: `--map`
//! pairs first, then the same name exactly, then the same name ignoring case. A project ID is
//! unique only within its cluster; the display name is what people recognise and what a DR
//! cluster's projects are given. The default and system projects are paired like any other.

use std::collections::{BTreeMap, BTreeSet};

use super::{exactly, holding, ignoring_case, Project};

/// `--map "OLD=NEW"`: the source project named `source` pairs with the destination project
/// named `destination` (a project renamed on the way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rename {
    pub source: String,
    pub destination: String,
}

impl std::str::FromStr for Rename {
    type Err = String;

    fn from_str(s: &str) -> Result<Rename, String> {
        match s.split_once('=') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => Ok(Rename {
                source: a.trim().to_string(),
                destination: b.trim().to_string(),
            }),
            _ => Err("expected \"SOURCE NAME=DESTINATION NAME\" (display names)".to_string()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// The same display name.
    Exact,
    /// The same display name ignoring case.
    IgnoringCase,
    /// A `--map` entry.
    Map,
    /// Created on the destination for the source project (`--create-missing`).
    Created,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Exact => "exact",
            How::IgnoringCase => "ignoring case",
            How::Map => "--map",
            How::Created => "created",
        }
    }
}

impl serde::Serialize for How {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A source project and the destination project it maps to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Match {
    pub source: Project,
    pub destination: Project,
    #[serde(rename = "by")]
    pub how: How,
}

/// A name that does not say which project is meant: held by several projects on one side
/// (by several names differing only in case, when the pairing had to ignore case). Every
/// project involved, on both sides, is named.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ambiguous {
    /// The display name (lower-cased when `ignoring_case`).
    pub name: String,
    pub ignoring_case: bool,
    /// The source projects holding the name.
    pub sources: Vec<Project>,
    /// The destination projects holding it.
    pub destinations: Vec<Project>,
}

/// The pairing of every source project: matched, without a destination, or ambiguous.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pairing {
    /// In the order of the source projects' display names.
    pub matched: Vec<Match>,
    /// Source projects no destination project holds the name of.
    pub unmatched: Vec<Project>,
    pub ambiguous: Vec<Ambiguous>,
}

impl Pairing {
    /// Whether every source project has exactly one destination project.
    pub fn is_complete(&self) -> bool {
        self.unmatched.is_empty() && self.ambiguous.is_empty()
    }
}

/// A `--map` entry that names no project.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    #[error("--map {from:?}={to:?}: no source project is named {from:?}")]
    NoSource { from: String, to: String },
    #[error("--map {from:?}={to:?}: no destination project is named {to:?}")]
    NoDestination { from: String, to: String },
    #[error("--map {0:?} is given more than once")]
    Twice(String),
}

/// Pairs every source project with a destination project (see the module's doc). `--map`
/// entries that name no project are errors; everything else is in the [`Pairing`].
pub fn pair(
    sources: &[Project],
    destinations: &[Project],
    renames: &[Rename],
) -> Result<Pairing, Vec<RenameError>> {
    let mut sources = sources.to_vec();
    sources.sort_by(|a, b| (&a.display_name, &a.id).cmp(&(&b.display_name, &b.id)));
    let mut pairing = PairingSoFar::default();
    // --map first: the source projects it names are paired by it alone.
    let by_map = pairing.by_map(renames, &sources, destinations)?;
    sources.retain(|p| !by_map.contains(&p.id));
    for p in &sources {
        pairing.by_name(p, &sources, destinations);
    }
    Ok(pairing.finish())
}

/// A pairing being made: its pairs and unmatched source projects, and the ambiguous names, once
/// each ((ignoring case, name) → the projects involved on each side).
#[derive(Default)]
struct PairingSoFar {
    pairing: Pairing,
    ambiguous: BTreeMap<(bool, String), (BTreeSet<Project>, BTreeSet<Project>)>,
}

impl PairingSoFar {
    fn matched(&mut self, source: &Project, destination: &Project, how: How) {
        self.pairing.matched.push(Match {
            source: source.clone(),
            destination: destination.clone(),
            how,
        });
    }

    fn ambiguous(&mut self, ignoring_case: bool, name: &str, s: &[&Project], d: &[&Project]) {
        let key = (ignoring_case, name.to_string());
        let (ss, ds) = self.ambiguous.entry(key).or_default();
        ss.extend(s.iter().map(|p| (*p).clone()));
        ds.extend(d.iter().map(|p| (*p).clone()));
    }

    /// Pairs what `--map` names; returns the IDs of the source projects it names.
    fn by_map(
        &mut self,
        renames: &[Rename],
        sources: &[Project],
        destinations: &[Project],
    ) -> Result<BTreeSet<String>, Vec<RenameError>> {
        let mut errors = Vec::new();
        let mut by_map = BTreeSet::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for r in renames {
            if !seen.insert(&r.source) {
                errors.push(RenameError::Twice(r.source.clone()));
                continue;
            }
            let (s, s_case) = holding(&r.source, sources);
            let (d, d_case) = holding(&r.destination, destinations);
            let (from, to) = (r.source.clone(), r.destination.clone());
            match (&s[..], &d[..]) {
                ([], _) => errors.push(RenameError::NoSource { from, to }),
                (_, []) => errors.push(RenameError::NoDestination { from, to }),
                ([one], [other]) => self.matched(one, other, How::Map),
                _ if s_case || d_case => self.ambiguous(true, &r.source.to_lowercase(), &s, &d),
                _ => self.ambiguous(false, &r.source, &s, &d),
            }
            by_map.extend(s.iter().map(|p| p.id.clone()));
        }
        errors.is_empty().then_some(by_map).ok_or(errors)
    }

    /// Pairs `p`, one of `rest` (the source projects `--map` does not name), by its name.
    fn by_name(&mut self, p: &Project, rest: &[Project], destinations: &[Project]) {
        let name = p.display_name.as_str();
        let (same, exact) = (exactly(name, rest), exactly(name, destinations));
        match (&same[..], &exact[..]) {
            ([_], [d]) => return self.matched(p, d, How::Exact),
            // The name is held twice on the source side: whichever destination holds it.
            ([_, _, ..], []) => {
                let held = ignoring_case(name, destinations);
                return self.ambiguous(false, name, &same, &held);
            }
            // Held twice on either side.
            ([_, _, ..], _) | (_, [_, _, ..]) => return self.ambiguous(false, name, &same, &exact),
            _ => {}
        }
        // No destination holds the name exactly: ignoring case, names that differ only in
        // case are one name, on both sides.
        let same = ignoring_case(name, rest);
        let near = ignoring_case(name, destinations);
        match (&same[..], &near[..]) {
            (_, []) => self.pairing.unmatched.push(p.clone()),
            ([_], [d]) => self.matched(p, d, How::IgnoringCase),
            _ => self.ambiguous(true, &name.to_lowercase(), &same, &near),
        }
    }

    fn finish(self) -> Pairing {
        let mut pairing = self.pairing;
        pairing.matched.sort_by(|a, b| {
            (&a.source.display_name, &a.source.id).cmp(&(&b.source.display_name, &b.source.id))
        });
        for ((ignoring_case, name), (s, d)) in self.ambiguous {
            pairing.ambiguous.push(Ambiguous {
                name,
                ignoring_case,
                sources: s.into_iter().collect(),
                destinations: d.into_iter().collect(),
            });
        }
        pairing
    }
}
