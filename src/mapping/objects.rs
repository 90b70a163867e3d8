//! Mappings as the mapping ConfigMap carries them (data keys of mapping text, the migration
//! users annotation): pure functions over values. ClusterPairs read their own mappings
//! (`clusterpair`); the files and objects they come in are read at the edges (`source`, `cli`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{parse_text, MappingErrors, Origin, Parsed, Table};

/// Label that marks a mapping ConfigMap (and selects it for validation).
pub const MAPPINGS_LABEL: &str = "rancher-remap.io/mappings";
/// Annotation listing the identities Stork writes migrated objects with.
pub const MIGRATION_USERS_ANNOTATION: &str = "rancher-remap.io/migration-users";
/// Default name of the mapping ConfigMap.
pub const DEFAULT_CONFIGMAP_NAME: &str = "rancher-remap-mappings";

/// A table with the migration identities that came with it (docs/behaviour.md).
#[derive(Clone, Debug, Default)]
pub struct Mappings {
    pub table: Table,
    /// User names whose requests count as migrations.
    pub migration_users: Vec<String>,
}

impl Mappings {
    /// Mappings from `--project-mappings` syntax alone (no migration users come with text).
    pub fn from_text(text: &str) -> Result<Mappings, MappingErrors> {
        Ok(Mappings {
            table: super::table_from_text(text)?,
            migration_users: Vec::new(),
        })
    }
}

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

/// The migration users a mapping ConfigMap names (its [`MIGRATION_USERS_ANNOTATION`]).
pub fn migration_users(cm: &Value) -> Vec<String> {
    cm.pointer("/metadata/annotations")
        .and_then(|a| a.get(MIGRATION_USERS_ANNOTATION))
        .and_then(Value::as_str)
        .map(parse_migration_users)
        .unwrap_or_default()
}

pub fn parse_migration_users(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads a mapping ConfigMap (its `data`, and the value of its [`MIGRATION_USERS_ANNOTATION`])
/// into a table plus its migration users; every key is merged and a conflict across keys
/// rejects the whole table.
pub fn mappings_from_configmap(
    data: &BTreeMap<String, String>,
    migration_users: Option<&str>,
) -> Result<Mappings, MappingErrors> {
    Ok(Mappings {
        table: Table::build(parse_configmap_data(data))?,
        migration_users: migration_users
            .map(parse_migration_users)
            .unwrap_or_default(),
    })
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
