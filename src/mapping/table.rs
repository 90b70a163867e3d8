//! The immutable lookup table (SPEC §3 checks across entries, §4 lookup).
//!
//! Every lookup is a handful of hash probes, whatever the table size.

use std::collections::{HashMap, HashSet};

use super::error::{EntryRef, MappingError, MappingErrors, MappingWarning};
use super::parse::{Entry, Parsed};

/// What the table says about one value (SPEC §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Already a destination value (§4.0): leave it.
    Keep,
    /// Rewrite to this value.
    Rewrite(String),
    /// No rule applies (§4.4).
    Unmapped,
}

/// A validated mapping, immutable once built.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Whole source value → whole destination value (§4.1).
    exact: HashMap<Box<str>, Box<str>>,
    /// Source project → destination project, from both forms (§4.2, §4.3).
    projects: HashMap<Box<str>, Box<str>>,
    /// Source cluster → destination cluster, from cluster-form entries (§4.2).
    clusters: HashMap<Box<str>, Box<str>>,
    /// Destination projects and clusters (§4.0).
    dst_projects: HashSet<Box<str>>,
    dst_clusters: HashSet<Box<str>>,
    /// The distinct entries, in input order (for `derive` and `--reverse`).
    entries: Vec<(String, String)>,
    warnings: Vec<MappingWarning>,
}

/// Remembers which entry first claimed a key, to name it when another entry disagrees.
struct Claim<'a> {
    dst: &'a str,
    by: &'a EntryRef,
}

impl Table {
    /// Builds a table from parsed entries. Any per-entry error in `parsed`, or any conflict
    /// across entries, rejects the whole table; all errors are reported, not just the first.
    pub fn build(parsed: Parsed) -> Result<Table, MappingErrors> {
        let mut errors = parsed.errors;
        let entries = parsed.entries;

        let mut exact: HashMap<String, (String, &EntryRef)> = HashMap::with_capacity(entries.len());
        let mut projects: HashMap<&str, Claim> = HashMap::with_capacity(entries.len());
        let mut clusters: HashMap<&str, Claim> = HashMap::new();
        let mut distinct: Vec<&Entry> = Vec::with_capacity(entries.len());
        let mut warnings = Vec::new();

        for e in &entries {
            let (src, dst) = (e.src.to_string(), e.dst.to_string());
            if let Some((prev_dst, prev_by)) = exact.get(&src) {
                if *prev_dst != dst {
                    errors.push(MappingError::ConflictingDestination {
                        entry: e.at.clone(),
                        other: (*prev_by).clone(),
                        src,
                        dst,
                        other_dst: prev_dst.clone(),
                    });
                }
                // An exact duplicate is accepted; a conflicting one is reported once, above.
                continue;
            }
            if src == dst {
                warnings.push(MappingWarning::Identity { entry: e.at.clone() });
            }
            exact.insert(src, (dst, &e.at));
            distinct.push(e);
            check_claim(&mut projects, &e.src.project, &e.dst.project, &e.at, &mut errors, |entry, other, dst, other_dst| {
                MappingError::ProjectConflict { entry, other, project: e.src.project.clone(), dst, other_dst }
            });
            if let (Some(sc), Some(dc)) = (&e.src.cluster, &e.dst.cluster) {
                check_claim(&mut clusters, sc, dc, &e.at, &mut errors, |entry, other, dst, other_dst| {
                    MappingError::ClusterConflict { entry, other, cluster: sc.clone(), dst, other_dst }
                });
            }
        }

        // A chain: a destination project that is also the source of a non-identity mapping.
        // (A whole destination that is a whole source has that project too, so this covers both.)
        for e in &distinct {
            if let Some(claim) = projects.get(e.dst.project.as_str()) {
                if claim.dst != e.dst.project {
                    errors.push(MappingError::Chain {
                        entry: e.at.clone(),
                        other: claim.by.clone(),
                        id: e.dst.project.clone(),
                    });
                }
            }
        }

        if !errors.is_empty() {
            return Err(MappingErrors(errors));
        }

        let boxed = |m: HashMap<&str, Claim>| -> HashMap<Box<str>, Box<str>> {
            m.into_iter().map(|(k, c)| (k.into(), c.dst.into())).collect()
        };
        Ok(Table {
            dst_projects: distinct.iter().map(|e| e.dst.project.as_str().into()).collect(),
            dst_clusters: distinct
                .iter()
                .filter_map(|e| e.dst.cluster.as_deref().map(Into::into))
                .collect(),
            entries: distinct.iter().map(|e| (e.src.to_string(), e.dst.to_string())).collect(),
            exact: exact.into_iter().map(|(k, (d, _))| (k.into(), d.into())).collect(),
            projects: boxed(projects),
            clusters: boxed(clusters),
            warnings,
        })
    }

    /// Looks a value up per SPEC §4.
    pub fn lookup(&self, v: &str) -> Lookup {
        if self.is_destination(v) {
            return Lookup::Keep;
        }
        if let Some(dst) = self.exact.get(v) {
            return Lookup::Rewrite(dst.to_string());
        }
        let mapped = match v.split_once(':') {
            Some((c, p)) => match (self.clusters.get(c), self.projects.get(p)) {
                (Some(c2), Some(p2)) => Some(format!("{c2}:{p2}")),
                _ => None,
            },
            None => self.projects.get(v).map(|p2| p2.to_string()),
        };
        mapped.map_or(Lookup::Unmapped, Lookup::Rewrite)
    }

    /// §4.0: a destination value, a destination project, or `C':P'` of destination parts.
    fn is_destination(&self, v: &str) -> bool {
        match v.split_once(':') {
            Some((c, p)) => self.dst_clusters.contains(c) && self.dst_projects.contains(p),
            None => self.dst_projects.contains(v),
        }
    }

    /// Number of distinct entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The distinct entries as `(src, dst)`, in input order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Findings that did not reject the table (`x=x` entries).
    pub fn warnings(&self) -> &[MappingWarning] {
        &self.warnings
    }
}

fn check_claim<'a>(
    claims: &mut HashMap<&'a str, Claim<'a>>,
    key: &'a str,
    dst: &'a str,
    at: &'a EntryRef,
    errors: &mut Vec<MappingError>,
    conflict: impl FnOnce(EntryRef, EntryRef, String, String) -> MappingError,
) {
    match claims.get(key) {
        Some(prev) if prev.dst != dst => errors.push(conflict(
            at.clone(),
            prev.by.clone(),
            dst.to_string(),
            prev.dst.to_string(),
        )),
        Some(_) => {}
        None => {
            claims.insert(key, Claim { dst, by: at });
        }
    }
}
