//! Validation of ClusterPairs and mapping ConfigMaps (docs/behaviour.md): pure functions of the object
//! (and, for certificate expiry, of `now`), returning every finding with its field path.

mod kubeconfig;

use serde_json::Value;

use crate::clusterpair::{is_clusterpair, ClusterPair, STORK_FIELDS};
use crate::mapping::objects::{configmap_data, is_mapping_configmap, parse_configmap_data};
use crate::mapping::{parse_text, MappingErrors, Origin, Parsed, Table};

/// One finding, with the field path it is about. Messages never hold a credential.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Errors refuse the object; warnings are shown and allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Report {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let (path, message) = (path.into(), message.into());
        self.errors.push(Finding { path, message });
    }

    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let (path, message) = (path.into(), message.into());
        self.warnings.push(Finding { path, message });
    }

    fn mappings(&mut self, result: Result<Table, MappingErrors>) {
        match result {
            Ok(table) => {
                for w in table.warnings() {
                    self.warning(w.field_path(), w.to_string());
                }
            }
            Err(errors) => {
                for e in errors.0 {
                    self.error(e.field_path(), e.to_string());
                }
            }
        }
    }

    /// Whether the object is refused.
    pub fn is_denied(&self) -> bool {
        !self.errors.is_empty()
    }

    /// One message listing every error.
    pub fn denial(&self, object: &str) -> String {
        let list: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        format!("{object} is invalid: {}", list.join("; "))
    }
}

/// Whether the webhook validates this object: a Stork ClusterPair or a mapping ConfigMap.
pub fn is_validated(obj: &Value) -> bool {
    is_clusterpair(obj) || is_mapping_configmap(obj)
}

/// Checks a ClusterPair, or a mapping ConfigMap; other objects give an empty report.
/// `now` is seconds since the Unix epoch (for certificate expiry). `cluster_id`: the Rancher ID
/// of the cluster a mapping ConfigMap acts on, when known. ClusterPairs are not checked against
/// it: both sides of a pair are ClusterPairs (`storkctl create clusterpair` writes the reversed
/// one on the destination), and only the mapping ConfigMap is a table this cluster puts in force.
pub fn check(obj: &Value, now: i64, cluster_id: Option<&str>) -> Report {
    if is_clusterpair(obj) {
        check_clusterpair(obj, now)
    } else if is_mapping_configmap(obj) {
        // Every data key merged; conflicts across keys name both keys.
        check_parsed(parse_configmap_data(&configmap_data(obj)), cluster_id)
    } else {
        Report::default()
    }
}

/// docs/behaviour.md on `projectMappings` and §11 on `spec.config` and `spec.options`.
pub fn check_clusterpair(obj: &Value, now: i64) -> Report {
    let mut report = Report::default();
    let cp = match ClusterPair::from_value(obj) {
        Ok(cp) => cp,
        Err(e) => {
            report.error("spec", e.to_string());
            return report;
        }
    };
    unknown_fields(obj, &mut report);
    // Stork users without Rancher have no mappings: nothing to check then. (A mapping table
    // with no entries is refused where tables are made, not here.)
    let parsed = cp.parse_mappings();
    if !(parsed.entries.is_empty() && parsed.errors.is_empty()) {
        report.mappings(Table::build(parsed));
    }
    match &cp.spec.config {
        Some(config) => kubeconfig::check(config, now, &mut report),
        None => report.error(
            "spec.config",
            "missing: the ClusterPair needs the destination cluster's kubeconfig",
        ),
    }
    for key in cp.spec.options.keys() {
        if !kubeconfig::KNOWN_OPTIONS.contains(&key.as_str()) {
            report.warning(format!("spec.options[{}]", crate::text::shown_name(key)), "unknown option key (ignored by this check; Stork and the storage driver may use it)");
        }
    }
    report
}

/// A key Stork's ClusterPair does not have, in `spec`, `spec.platformOptions` or
/// `spec.platformOptions.rancher`: an error, since Stork would store it and ignore it (a
/// misspelt `projectMappings` migrates every object with its source project IDs). The nearest
/// known key is suggested when it is close. `spec.options` is free-form (checked above).
fn unknown_fields(obj: &Value, report: &mut Report) {
    for (path, known) in STORK_FIELDS {
        let Some(fields) = path
            .split('.')
            .try_fold(obj, |v, key| v.get(key))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for key in fields.keys().filter(|k| !known.contains(&k.as_str())) {
            let near = crate::text::nearest(key, known);
            // A key is the input's text: shown only when it reads as a field name.
            let shown = if near.is_some() || is_field_name(key) {
                key.as_str()
            } else {
                "(a key not shown)"
            };
            let message = match near {
                Some(k) => format!("unknown field (Stork's ClusterPair would store it and ignore it): did you mean `{k}`?"),
                None => format!("unknown field (Stork's ClusterPair would store it and ignore it): {path} has only {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
            };
            report.error(format!("{path}.{shown}"), message);
        }
    }
}

/// Letters only (a camelCase field name), or a name [`crate::text::shown_name`] shows.
fn is_field_name(key: &str) -> bool {
    (!key.is_empty() && key.len() <= 32 && key.bytes().all(|b| b.is_ascii_alphabetic()))
        || crate::text::shown_name(key) == key
}

/// Mapping text (`src=dst` entries, as `--project-mappings` and a plain mappings file hold
/// them), checked as a mapping ConfigMap is.
pub fn check_mapping_text(text: &str, cluster_id: Option<&str>) -> Report {
    check_parsed(parse_text(text, &Origin::Text), cluster_id)
}

/// A table, checked against `cluster_id` when it is known.
fn check_parsed(parsed: Parsed, cluster_id: Option<&str>) -> Report {
    let mut report = Report::default();
    let table = Table::build(parsed).and_then(|t| match cluster_id {
        Some(c) => t.check_cluster(c).map(|()| t),
        None => Ok(t),
    });
    report.mappings(table);
    report
}

#[cfg(test)]
mod tests;
