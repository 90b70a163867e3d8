//! The immutable lookup table (SPEC §3 checks across entries, §4 lookup).
//!
//! Every lookup is a handful of hash probes, whatever the table size.

use std::collections::{HashMap, HashSet};

// foldhash with a per-process random seed: several times faster than SipHash on short IDs,
// and still seeded, so crafted label values cannot aim at collisions.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

use super::error::{MappingError, MappingErrors, MappingWarning};
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
    /// The distinct entries `(src, dst)`, in input order.
    entries: Vec<(String, String)>,
    /// Whole source value → index of its entry (§4.1).
    exact: Map<String, usize>,
    /// Source project → destination project, from both forms (§4.2, §4.3).
    projects: Map<String, Claim>,
    /// Source cluster → destination cluster, from cluster-form entries (§4.2).
    clusters: Map<String, Claim>,
    /// Destination projects and clusters (§4.0).
    dst_projects: Set<String>,
    dst_clusters: Set<String>,
    warnings: Vec<MappingWarning>,
}

/// A destination, and which parsed entry first claimed it (to name it when another disagrees).
#[derive(Clone, Debug)]
struct Claim {
    dst: String,
    by: usize,
}

impl Table {
    /// Builds a table from parsed entries. Any per-entry error in `parsed`, or any conflict
    /// across entries, rejects the whole table; all errors are reported, not just the first.
    pub fn build(parsed: Parsed) -> Result<Table, MappingErrors> {
        let mut errors = parsed.errors;
        let parsed = parsed.entries;
        let n = parsed.len();
        let mut t = Table {
            entries: Vec::with_capacity(n),
            exact: Map::with_capacity_and_hasher(n, Default::default()),
            projects: Map::with_capacity_and_hasher(n, Default::default()),
            ..Table::default()
        };
        // Index into `parsed` of each distinct entry (parallel to `t.entries`).
        let mut origin: Vec<usize> = Vec::with_capacity(n);

        for (i, e) in parsed.iter().enumerate() {
            let (src, dst) = (e.src.to_string(), e.dst.to_string());
            if let Some(&k) = t.exact.get(&src) {
                if t.entries[k].1 != dst {
                    errors.push(MappingError::ConflictingDestination {
                        entry: e.at.clone(),
                        other: parsed[origin[k]].at.clone(),
                        other_dst: t.entries[k].1.clone(),
                        src,
                        dst,
                    });
                }
                // An exact duplicate is accepted; a conflicting one is reported once, above.
                continue;
            }
            if src == dst {
                warnings_push(&mut t.warnings, e);
            }
            t.exact.insert(src.clone(), t.entries.len());
            t.entries.push((src, dst));
            origin.push(i);
            if let Some(prev) = claim(&mut t.projects, &e.src.project, &e.dst.project, i) {
                errors.push(MappingError::ProjectConflict {
                    entry: e.at.clone(),
                    other: parsed[prev.by].at.clone(),
                    project: e.src.project.clone(),
                    dst: e.dst.project.clone(),
                    other_dst: prev.dst,
                });
            }
            if let (Some(sc), Some(dc)) = (&e.src.cluster, &e.dst.cluster) {
                if let Some(prev) = claim(&mut t.clusters, sc, dc, i) {
                    errors.push(MappingError::ClusterConflict {
                        entry: e.at.clone(),
                        other: parsed[prev.by].at.clone(),
                        cluster: sc.clone(),
                        dst: dc.clone(),
                        other_dst: prev.dst,
                    });
                }
            }
        }

        // A chain: a destination project that is also the source of a non-identity mapping.
        // (A whole destination that is a whole source has that project too, so this covers both.)
        for &i in &origin {
            let e = &parsed[i];
            if let Some(c) = t.projects.get(&e.dst.project) {
                if c.dst != e.dst.project {
                    errors.push(MappingError::Chain {
                        entry: e.at.clone(),
                        other: parsed[c.by].at.clone(),
                        id: e.dst.project.clone(),
                    });
                }
            }
        }

        if !errors.is_empty() {
            return Err(MappingErrors(errors));
        }
        for &i in &origin {
            let dst = &parsed[i].dst;
            if !t.dst_projects.contains(&dst.project) {
                t.dst_projects.insert(dst.project.clone());
            }
            if let Some(c) = dst
                .cluster
                .as_ref()
                .filter(|c| !t.dst_clusters.contains(*c))
            {
                t.dst_clusters.insert(c.clone());
            }
        }
        Ok(t)
    }

    /// Looks a value up per SPEC §4.
    pub fn lookup(&self, v: &str) -> Lookup {
        if self.is_destination(v) {
            return Lookup::Keep;
        }
        if let Some(&i) = self.exact.get(v) {
            return Lookup::Rewrite(self.entries[i].1.clone());
        }
        let mapped = match v.split_once(':') {
            Some((c, p)) => match (self.clusters.get(c), self.projects.get(p)) {
                (Some(c2), Some(p2)) => Some(format!("{}:{}", c2.dst, p2.dst)),
                _ => None,
            },
            None => self.projects.get(v).map(|p2| p2.dst.clone()),
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

fn warnings_push(warnings: &mut Vec<MappingWarning>, e: &Entry) {
    warnings.push(MappingWarning::Identity {
        entry: e.at.clone(),
    });
}

/// Claims `key → dst` for entry `by`; returns the earlier claim when it disagrees.
fn claim(claims: &mut Map<String, Claim>, key: &str, dst: &str, by: usize) -> Option<Claim> {
    match claims.get(key) {
        Some(prev) if prev.dst != dst => Some(prev.clone()),
        Some(_) => None,
        None => {
            claims.insert(
                key.to_string(),
                Claim {
                    dst: dst.to_string(),
                    by,
                },
            );
            None
        }
    }
}
