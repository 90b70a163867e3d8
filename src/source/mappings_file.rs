//! A mappings file (`--mappings-file`, `rewrite --mappings-file`, `audit --mappings-file`): mapping
//! ConfigMap(s), ClusterPair(s) (YAML or JSON), or plain `src=dst` text. ClusterPairs are merged
//! as `derive` would merge them, one data key each.

use std::collections::BTreeMap;

use crate::clusterpair::ClusterPair;
use crate::mapping::objects::{
    configmap_data, entries_text, is_configmap, migration_users, parse_configmap_data, Mappings,
};
use crate::mapping::{MappingError, MappingErrors, Table};

/// Top-level YAML keys that mark a document, never mapping text: a manifest's, and a
/// kubeconfig's (pasted without its `apiVersion`, it still holds credentials that must not be
/// read, and then quoted, as mapping entries).
const DOCUMENT_KEYS: [&str; 10] = [
    "apiVersion:",
    "kind:",
    "---",
    "metadata:",
    "spec:",
    "data:",
    "clusters:",
    "contexts:",
    "users:",
    "current-context:",
];

/// Whether a mappings file is a Kubernetes manifest (or another YAML document) rather than
/// mapping text: JSON (`{` or `[` first), or YAML with one of `DOCUMENT_KEYS` at the top level.
pub fn looks_like_manifest(text: &str) -> bool {
    crate::manifest::json_text(text).is_some()
        || text.lines().any(|l| {
            let l = l.trim_start_matches('\u{feff}');
            // `key:` then nothing or a space (`p-a: p-b`, the mistaken entry, names no key here;
            // `data:p-x=...` is an entry).
            DOCUMENT_KEYS.iter().any(|k| {
                l.strip_prefix(k).is_some_and(|rest| {
                    *k == "---" || rest.is_empty() || rest.starts_with([' ', '\t'])
                })
            })
        })
}

#[derive(Debug, thiserror::Error)]
pub enum MappingsFileError {
    /// The mappings themselves are broken.
    #[error(transparent)]
    Invalid(#[from] MappingErrors),
    /// A manifest that does not parse (reported by position only).
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// A document of an unexpected kind.
    #[error("{0}")]
    Unsupported(String),
}

pub fn mappings_from_file_text(text: &str) -> Result<Mappings, MappingsFileError> {
    // A manifest is never re-read as mapping text: a broken ClusterPair would otherwise come
    // back as "entries" holding its token and keys. Anything else is plain mapping text (which
    // may look like YAML, as `p-a: p-b` does; parse_text then explains the `=`).
    if !looks_like_manifest(text) {
        return Ok(Mappings::from_text(text)?);
    }
    let docs = crate::manifest::parse_objects(text)?;
    if docs.is_empty() {
        return Err(MappingErrors(vec![MappingError::NoEntries]).into());
    }
    let mut data = BTreeMap::new();
    let mut users = Vec::new();
    let mut pair_errors = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if is_configmap(doc) {
            users.extend(migration_users(doc));
            data.extend(configmap_data(doc));
        } else if let Ok(cp) = ClusterPair::from_value(doc) {
            let parsed = cp.parse_mappings();
            if parsed.errors.is_empty() {
                let entries = parsed.entries.iter().map(|e| (e.src(), e.dst()));
                data.insert(cp.data_key(), entries_text(entries));
            }
            pair_errors.extend(parsed.errors);
        } else {
            // The kind is not quoted: it is the document's text.
            return Err(MappingsFileError::Unsupported(format!(
                "document #{} is not a ConfigMap or a ClusterPair (a mappings file holds ConfigMaps, ClusterPairs or plain src=dst text)",
                i + 1
            )));
        }
    }
    let mut parsed = parse_configmap_data(&data);
    parsed.errors.splice(0..0, pair_errors);
    users.sort();
    users.dedup();
    Ok(Mappings {
        table: Table::build(parsed)?,
        migration_users: users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::LookupRef;

    #[test]
    fn a_kubeconfig_without_its_header_is_a_document_not_mapping_text() {
        let kubeconfig = "clusters:\n- name: c\n  cluster: {server: https://x}\nusers:\n- name: u\n  user: {token: SeCrEt}\n";
        assert!(looks_like_manifest(kubeconfig));
        let e = mappings_from_file_text(kubeconfig).unwrap_err().to_string();
        assert!(!e.contains("SeCrEt"), "{e}");
        // Mapping text, including the mistaken `p-a: p-b` and an entry starting `data:`.
        for text in ["p-a=p-b\n", "p-a: p-b\n", "data:p-a=data:p-b\n"] {
            assert!(!looks_like_manifest(text), "{text}");
        }
    }

    #[test]
    fn mappings_file_kinds() {
        let error = |text| mappings_from_file_text(text).unwrap_err().to_string();
        let plain = mappings_from_file_text("p-a=p-b\n").unwrap();
        assert_eq!(plain.table.len(), 1);
        let yamlish = error("p-a: p-b\n");
        assert!(yamlish.contains("did you mean \"p-a=p-b\""), "{yamlish}");
        let cp = "apiVersion: stork.libopenstorage.org/v1alpha1\nkind: ClusterPair\nmetadata: {name: remote, namespace: mig}\nspec:\n  platformOptions:\n    rancher:\n      projectMappings: {p-a: p-b}\n";
        let m = mappings_from_file_text(cp).unwrap();
        assert_eq!(m.table.lookup_ref("p-a"), LookupRef::Rewrite("p-b".into()));
        let other = error("apiVersion: v1\nkind: Secret\n");
        let kinds = "document #1 is not a ConfigMap or a ClusterPair";
        assert!(other.contains(kinds), "{other}");
        // A manifest is never re-read as mapping text, and its errors give only a position.
        let broken = "apiVersion: v1\nkind: ConfigMap\ndata:\n  k: \"p-a=p-b\n    token: s3cr3t\n";
        let e = error(broken);
        assert!(e.starts_with("invalid YAML at line"), "{e}");
        assert!(!e.contains("s3cr3t") && !e.contains("no '='"), "{e}");
        let configmap = "apiVersion: v1\nkind: ConfigMap\ndata: {}\n";
        for empty in ["", "\n\n", "  \n", configmap] {
            let e = error(empty);
            assert!(e.contains("no mapping entries"), "{empty:?}: {e}");
        }
    }
}
