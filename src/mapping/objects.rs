//! Mappings as Kubernetes carries them: a ClusterPair's `projectMappings`, and the mapping
//! ConfigMap that `derive` makes from ClusterPairs (SPEC §10). Pure functions over values.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{parse_map, parse_text, MappingErrors, Origin, Parsed, Table};
use crate::clusterpair::ClusterPair;

/// Label that marks a mapping ConfigMap (and selects it for validation).
pub const MAPPINGS_LABEL: &str = "rancher-remap.io/mappings";
/// Annotation listing the identities Stork writes migrated objects with.
pub const MIGRATION_USERS_ANNOTATION: &str = "rancher-remap.io/migration-users";
/// Default name of the mapping ConfigMap.
pub const DEFAULT_CONFIGMAP_NAME: &str = "rancher-remap-mappings";

/// A table with the migration identities that came with it (SPEC §7, §10).
#[derive(Clone, Debug, Default)]
pub struct Mappings {
    /// The lookup table.
    pub table: Table,
    /// User names whose requests count as migrations.
    pub migration_users: Vec<String>,
}

impl Mappings {
    /// Mappings from `--project-mappings` syntax alone (no migration users come with text).
    pub fn from_text(text: &str) -> Result<Mappings, MappingErrors> {
        Ok(Mappings {
            table: Table::build(parse_text(text, &Origin::Text))?,
            migration_users: Vec::new(),
        })
    }
}

/// Whether a value is a ConfigMap.
pub fn is_configmap(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("ConfigMap")
}

/// Whether a value is a ConfigMap carrying [`MAPPINGS_LABEL`]` = "true"`.
pub fn is_mapping_configmap(v: &Value) -> bool {
    is_configmap(v)
        && v.pointer("/metadata/labels")
            .and_then(|l| l.get(MAPPINGS_LABEL))
            .and_then(Value::as_str)
            == Some("true")
}

/// Parses every data key of a mapping ConfigMap, each with its key as origin.
pub fn parse_configmap_data(data: &BTreeMap<String, String>) -> Parsed {
    let mut parsed = Parsed::default();
    for (key, text) in data {
        parsed.extend(parse_text(text, &Origin::ConfigMapKey(key.as_str().into())));
    }
    parsed
}

/// The `data` of a ConfigMap value as strings (non-string values are skipped: the API server
/// never sends them).
pub fn configmap_data(cm: &Value) -> BTreeMap<String, String> {
    cm.get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits the migration-users annotation value.
pub fn parse_migration_users(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads a mapping ConfigMap into a table plus its migration users; every key is merged and
/// a conflict across keys rejects the whole table.
pub fn mappings_from_configmap(cm: &Value) -> Result<Mappings, MappingErrors> {
    let table = Table::build(parse_configmap_data(&configmap_data(cm)))?;
    let migration_users = cm
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIGRATION_USERS_ANNOTATION))
        .and_then(Value::as_str)
        .map(parse_migration_users)
        .unwrap_or_default();
    Ok(Mappings {
        table,
        migration_users,
    })
}

/// Parses a ClusterPair's `spec.platformOptions.rancher.projectMappings`.
pub fn parse_clusterpair(cp: &ClusterPair) -> Parsed {
    let pairs = cp.project_mappings();
    parse_map(
        pairs.iter().map(|(s, d)| (s.as_str(), d.as_str())),
        &Origin::ClusterPair,
    )
}

/// Mapping text for one ConfigMap data key: one `src=dst` entry a line.
pub fn entries_text<S: std::fmt::Display, D: std::fmt::Display>(
    entries: impl IntoIterator<Item = (S, D)>,
) -> String {
    entries
        .into_iter()
        .map(|(s, d)| format!("{s}={d}\n"))
        .collect()
}

/// Builds the mapping ConfigMap (SPEC §10).
pub fn build_configmap(
    name: &str,
    namespace: &str,
    data: &BTreeMap<String, String>,
    migration_users: &[String],
) -> Value {
    let mut cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { MAPPINGS_LABEL: "true" },
        },
        "data": data,
    });
    if !migration_users.is_empty() {
        cm["metadata"]["annotations"] =
            json!({ MIGRATION_USERS_ANNOTATION: migration_users.join(",") });
    }
    cm
}

/// Whether a mappings file is a Kubernetes manifest rather than mapping text: JSON (`{` or
/// `[` first), or YAML with a top-level `apiVersion:` or `kind:` key.
pub fn looks_like_manifest(text: &str) -> bool {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    trimmed.starts_with('{')
        || trimmed.starts_with('[')
        || text.lines().any(|l| {
            let l = l.trim_start_matches('\u{feff}');
            l.starts_with("apiVersion:") || l.starts_with("kind:") || l.starts_with("---")
        })
}

/// Why a mappings file could not be used.
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

/// Reads a `--mappings-file`: mapping ConfigMap(s), ClusterPair(s) (YAML or JSON), or plain
/// §3 text. ClusterPairs are merged as `derive` would merge them, one data key each.
pub fn mappings_from_file_text(text: &str) -> Result<Mappings, MappingsFileError> {
    // A manifest is never re-read as mapping text: a broken ClusterPair would otherwise come
    // back as "entries" holding its token and keys. Anything else is plain mapping text (which
    // may look like YAML, as `p-a: p-b` does; parse_text then explains the `=`).
    if !looks_like_manifest(text) {
        return Ok(Mappings::from_text(text)?);
    }
    let docs = crate::manifest::parse_objects(text)?;
    if docs.is_empty() {
        return Err(MappingErrors(vec![super::MappingError::NoEntries]).into());
    }
    let mut data = BTreeMap::new();
    let mut users = Vec::new();
    let mut per_doc = Parsed::default();
    for (i, doc) in docs.iter().enumerate() {
        if is_configmap(doc) {
            let cm_data = configmap_data(doc);
            if let Some(u) = doc
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(MIGRATION_USERS_ANNOTATION))
                .and_then(Value::as_str)
            {
                users.extend(parse_migration_users(u));
            }
            data.extend(cm_data);
        } else if let Ok(cp) = ClusterPair::from_value(doc) {
            let parsed = parse_clusterpair(&cp);
            if parsed.errors.is_empty() {
                let entries = parsed.entries.iter().map(|e| (e.src(), e.dst()));
                data.insert(cp.data_key(), entries_text(entries));
            }
            per_doc.extend(Parsed {
                entries: Vec::new(),
                errors: parsed.errors,
            });
        } else {
            // The kind is not quoted: it is the document's text.
            return Err(MappingsFileError::Unsupported(format!(
                "document #{} is not a ConfigMap or a ClusterPair (a mappings file holds ConfigMaps, ClusterPairs or plain src=dst text)",
                i + 1
            )));
        }
    }
    let mut parsed = parse_configmap_data(&data);
    parsed.errors.splice(0..0, per_doc.errors);
    users.sort();
    users.dedup();
    Ok(Mappings {
        table: Table::build(parsed)?,
        migration_users: users,
    })
}
