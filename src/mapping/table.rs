//! The immutable lookup table (docs/behaviour.md checks across entries, §4 lookup).
//!
//! Every lookup is a handful of hash probes, whatever the table size.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

// foldhash with a per-process random seed: several times faster than SipHash on short IDs,
// and still seeded, so crafted label values cannot aim at collisions.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;
type OrderedMap<K, V> = indexmap::IndexMap<K, V, foldhash::fast::RandomState>;

use super::error::{MappingError, MappingErrors, MappingWarning, Part};
use super::parse::{Entry, Parsed};

/// What the table says about one value (docs/behaviour.md), borrowing from the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupRef<'t> {
    /// Already a destination value (§4.0): leave it.
    Keep,
    /// Rewrite to this value.
    Rewrite(Cow<'t, str>),
    /// No rule applies (§4.4).
    Unmapped,
}

/// A validated mapping, immutable once built. Strings are boxed (no spare capacity) and each
/// entry is held once: a 100,000-entry table is about 20 MB.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// The distinct entries, whole source value → whole destination, in input order (§4.1).
    exact: OrderedMap<Box<str>, Box<str>>,
    /// Source project → destination project, from both forms (§4.2, §4.3).
    projects: Map<Box<str>, Claim>,
    /// Source cluster → destination cluster, from cluster-form entries (§4.2).
    clusters: Map<Box<str>, Claim>,
    /// Destination projects and clusters (§4.0).
    dst_projects: Set<Box<str>>,
    dst_clusters: Set<Box<str>>,
    warnings: Vec<MappingWarning>,
}

/// The parts of a [`Table`] every lookup reads (see [`Table::parts`]), each sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableParts<'t> {
    /// Source project → destination project, from both forms of entry.
    pub projects: Vec<(&'t str, &'t str)>,
    /// Source cluster → destination cluster, from cluster-form entries.
    pub clusters: Vec<(&'t str, &'t str)>,
    /// Values already mapped: a destination project, or `C':P'` of these and the next.
    pub destination_projects: Vec<&'t str>,
    pub destination_clusters: Vec<&'t str>,
}

/// A destination, and which parsed entry first claimed it (to name it when another disagrees).
#[derive(Clone, Debug)]
struct Claim {
    dst: Box<str>,
    by: usize,
}

impl Table {
    /// Builds a table from parsed entries. Any per-entry error in `parsed`, any conflict across
    /// entries, or no entries at all rejects the whole table; all errors are reported, not
    /// just the first.
    pub fn build(parsed: Parsed) -> Result<Table, MappingErrors> {
        let mut errors = parsed.errors;
        if parsed.entries.is_empty() && errors.is_empty() {
            return Err(MappingErrors(vec![MappingError::NoEntries]));
        }
        let parsed = parsed.entries;
        let n = parsed.len();
        let mut t = Table {
            exact: OrderedMap::with_capacity_and_hasher(n, Default::default()),
            projects: Map::with_capacity_and_hasher(n, Default::default()),
            ..Table::default()
        };
        // Index into `parsed` of each distinct entry, in the order of `t.exact`.
        let mut origin: Vec<usize> = Vec::with_capacity(n);
        // Destination project → the first source project mapped to it, and its entry; the
        // (destination, source) pairs past the first apart, as many-to-one is rare (a Vec per
        // destination cost a 100,000-entry table about 5 MiB of peak memory, BENCHMARKS.md).
        let mut mapped_to: Map<&str, (&str, usize)> = Map::default();
        let mut more_sources: Set<(&str, &str)> = Set::default();

        for (i, e) in parsed.iter().enumerate() {
            let (src_v, dst_v) = (e.src(), e.dst());
            let (src, dst) = (src_v.to_string(), dst_v.to_string());
            if let Some((k, _, other_dst)) = t.exact.get_full(src.as_str()) {
                if **other_dst != *dst {
                    errors.push(MappingError::Conflict {
                        part: Part::Whole,
                        entry: e.at.clone(),
                        other: parsed[origin[k]].at.clone(),
                        other_dst: other_dst.to_string(),
                        src,
                        dst,
                    });
                }
                // An exact duplicate is accepted; a conflicting one is reported once, above.
                continue;
            }
            if src == dst {
                t.warnings.push(MappingWarning::Identity {
                    entry: e.at.clone(),
                });
            }
            t.exact.insert(src.into(), dst.into());
            origin.push(i);
            let (first_src, first) = *mapped_to.entry(dst_v.project).or_insert((src_v.project, i));
            if first_src != src_v.project && more_sources.insert((dst_v.project, src_v.project)) {
                t.warnings.push(MappingWarning::ManyToOne {
                    entry: e.at.clone(),
                    other: parsed[first].at.clone(),
                    project: dst_v.project.to_string(),
                });
            }
            t.claim_parts(&parsed, i, &mut errors);
        }

        t.chains(&parsed, &origin, &mut errors);
        if !errors.is_empty() {
            return Err(MappingErrors(errors));
        }
        // The destination projects and clusters (§4.0): the destinations already claimed.
        t.dst_projects = mapped_to.into_keys().map(Box::from).collect();
        t.dst_clusters = t.clusters.values().map(|c| c.dst.clone()).collect();
        Ok(t)
    }

    /// The checks across entries of one distinct entry's parts: its project, and its cluster,
    /// map to one destination each, and a cluster never onto itself.
    fn claim_parts(&mut self, parsed: &[Entry], i: usize, errors: &mut Vec<MappingError>) {
        let e = &parsed[i];
        let (src, dst) = (e.src(), e.dst());
        let conflict = |part, prev: Claim, from: &str, to: &str| MappingError::Conflict {
            part,
            entry: e.at.clone(),
            other: parsed[prev.by].at.clone(),
            src: from.to_string(),
            dst: to.to_string(),
            other_dst: prev.dst.into(),
        };
        if let Some(prev) = claim(&mut self.projects, src.project, dst.project, i) {
            errors.push(conflict(Part::Project, prev, src.project, dst.project));
        }
        if let (Some(sc), Some(dc)) = (src.cluster, dst.cluster) {
            if sc == dc && src != dst {
                errors.push(MappingError::SelfMapping {
                    entry: e.at.clone(),
                    cluster: sc.to_string(),
                });
            }
            if let Some(prev) = claim(&mut self.clusters, sc, dc, i) {
                errors.push(conflict(Part::Cluster, prev, sc, dc));
            }
        }
    }

    /// A chain: a destination project that is also the source of a non-identity mapping. (A
    /// whole destination that is a whole source has that project too, so this covers both.)
    fn chains(&self, parsed: &[Entry], origin: &[usize], errors: &mut Vec<MappingError>) {
        for &i in origin {
            let e = &parsed[i];
            let dst = e.dst().project;
            if let Some(c) = self.projects.get(dst) {
                if *c.dst != *dst {
                    errors.push(MappingError::Chain {
                        entry: e.at.clone(),
                        other: parsed[c.by].at.clone(),
                        id: dst.to_string(),
                    });
                }
            }
        }
    }

    /// Looks a value up: a destination value stays; an exact entry wins; `C:P` maps through its
    /// cluster and project; `P` through a cluster-form entry's project; else unmapped. The
    /// answer borrows from the table unless it had to be put together (`C':P'`).
    pub fn lookup_ref(&self, v: &str) -> LookupRef<'_> {
        if self.is_destination(v) {
            return LookupRef::Keep;
        }
        if let Some(dst) = self.exact.get(v) {
            return LookupRef::Rewrite(Cow::Borrowed(dst));
        }
        let mapped = match v.split_once(':') {
            Some((c, p)) => match (self.clusters.get(c), self.projects.get(p)) {
                (Some(c2), Some(p2)) => Some(Cow::Owned(format!("{}:{}", c2.dst, p2.dst))),
                _ => None,
            },
            None => self.projects.get(v).map(|p2| Cow::Borrowed(&*p2.dst)),
        };
        mapped.map_or(LookupRef::Unmapped, LookupRef::Rewrite)
    }

    /// §4.0: a destination value, a destination project, or `C':P'` of destination parts.
    fn is_destination(&self, v: &str) -> bool {
        match v.split_once(':') {
            Some((c, p)) => self.dst_clusters.contains(c) && self.dst_projects.contains(p),
            None => self.dst_projects.contains(v),
        }
    }

    /// Whether `cluster` is the source cluster of a cluster-form entry: a value naming it came
    /// from the other side of a migration.
    pub fn is_source_cluster(&self, cluster: &str) -> bool {
        // An `x=x` entry maps a cluster onto itself and says nothing about where values come
        // from (other self-mappings are refused).
        self.clusters
            .get(cluster)
            .is_some_and(|to| *to.dst != *cluster)
    }

    /// Checks the table against the cluster it acts on (`this`, its Rancher ID): its sources
    /// must not name this cluster (a reversed table) and its cluster-form destinations must
    /// (not another cluster's table). Every offending cluster pair is reported.
    pub fn check_cluster(&self, this: &str) -> Result<(), MappingErrors> {
        let mut errors = Vec::new();
        // Sorted: the map's order is random; messages are not.
        for (from, to) in sorted_pairs(&self.clusters) {
            // Only an `x=x` entry maps a cluster onto itself (other self-mappings are refused):
            // no effect.
            if from == to {
                continue;
            }
            let (from, to, this) = (from.to_string(), to.to_string(), this.to_string());
            if from == this {
                errors.push(MappingError::Reversed { this, to });
            } else if to != this {
                errors.push(MappingError::OtherCluster { from, to, this });
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(MappingErrors(errors)),
        }
    }

    /// The clusters cluster-form entries map to, sorted.
    pub fn destination_clusters(&self) -> Vec<&str> {
        let mut clusters: Vec<&str> = self.dst_clusters.iter().map(|c| &**c).collect();
        clusters.sort_unstable();
        clusters
    }

    /// What every lookup reads, sorted (for a lookup made elsewhere from the same parts, as the
    /// exported admission policy's CEL does): an exact entry is always the composition of its
    /// project's and its cluster's mapping (a disagreement between them is refused), so these
    /// four say all that [`Table::lookup_ref`] says.
    pub fn parts(&self) -> TableParts<'_> {
        let mut dst_projects: Vec<&str> = self.dst_projects.iter().map(|p| &**p).collect();
        dst_projects.sort_unstable();
        TableParts {
            projects: sorted_pairs(&self.projects),
            clusters: sorted_pairs(&self.clusters),
            destination_projects: dst_projects,
            destination_clusters: self.destination_clusters(),
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// The distinct entries as `(src, dst)`, in input order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.exact.iter().map(|(s, d)| (&**s, &**d))
    }

    /// The destination projects two or more source projects map to (each named in a
    /// [`MappingWarning::ManyToOne`]): a table that cannot be reversed.
    pub fn many_to_one(&self) -> impl Iterator<Item = &MappingWarning> {
        self.warnings
            .iter()
            .filter(|w| matches!(w, MappingWarning::ManyToOne { .. }))
    }

    /// Findings that did not reject the table (`x=x` entries, many-to-one).
    pub fn warnings(&self) -> &[MappingWarning] {
        &self.warnings
    }
}

/// The claims as `(key, dst)`, sorted.
fn sorted_pairs(claims: &Map<Box<str>, Claim>) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = claims.iter().map(|(k, c)| (&**k, &*c.dst)).collect();
    pairs.sort_unstable();
    pairs
}

/// Claims `key → dst` for entry `by`; returns the earlier claim when it disagrees.
fn claim(claims: &mut Map<Box<str>, Claim>, key: &str, dst: &str, by: usize) -> Option<Claim> {
    match claims.get(key) {
        Some(prev) if *prev.dst != *dst => Some(prev.clone()),
        Some(_) => None,
        None => {
            claims.insert(
                key.into(),
                Claim {
                    dst: dst.into(),
                    by,
                },
            );
            None
        }
    }
}
