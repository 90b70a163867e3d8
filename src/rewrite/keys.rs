//! Which keys hold project IDs (docs/behaviour.md) and which objects Stork migrated (docs/behaviour.md).

use serde_json::Value;

/// Annotation Stork puts on every resource it migrates.
pub const MIGRATED_ANNOTATION: &str = "stork.libopenstorage.org/migrated";

/// A project-ID key: prefix `cattle.io` or `*.cattle.io`, name `projectid` in any case
/// (`field.cattle.io/projectId` on real clusters, `projectID` in Stork's documentation).
pub fn is_project_id_key(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, name)| {
        name.eq_ignore_ascii_case("projectid")
            && (prefix == "cattle.io" || prefix.ends_with(".cattle.io"))
    })
}

/// The annotation keys a Namespace's home cluster is read from: Rancher's, and the spelling of
/// Stork's documentation. Exactly these, so that the server and the API server's matchConditions
/// (which can only name keys) agree on which Namespaces come from elsewhere.
pub const NAMESPACE_PROJECT_KEYS: [&str; 2] =
    ["field.cattle.io/projectId", "field.cattle.io/projectID"];

/// Whether the object carries `stork.libopenstorage.org/migrated: "true"`.
pub fn has_migrated_annotation(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(MIGRATED_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::real("field.cattle.io/projectId", true)]
    #[case::stork_docs("field.cattle.io/projectID", true)]
    #[case::lower("field.cattle.io/projectid", true)]
    #[case::bare_prefix("cattle.io/projectId", true)]
    #[case::other_subdomain("management.cattle.io/projectId", true)]
    #[case::no_prefix("projectId", false)]
    #[case::lookalike_prefix("fieldcattle.io/projectId", false)]
    #[case::other_domain("field.cattle.io.evil.com/projectId", false)]
    #[case::other_name("field.cattle.io/projectName", false)]
    #[case::status("cattle.io/status", false)]
    fn project_id_keys(#[case] key: &str, #[case] expected: bool) {
        assert_eq!(is_project_id_key(key), expected);
    }

    #[test]
    fn migrated_annotation_must_be_true() {
        let obj =
            |v: Value| serde_json::json!({"metadata": {"annotations": {MIGRATED_ANNOTATION: v}}});
        assert!(has_migrated_annotation(&obj("true".into())));
        assert!(!has_migrated_annotation(&obj("false".into())));
        assert!(!has_migrated_annotation(&obj(true.into())));
        assert!(!has_migrated_annotation(&serde_json::json!({})));
    }
}
