//! Kubernetes manifests as text: YAML (multi-document) or JSON, with `kind: List` expanded.

use serde_json::Value;

/// Why a manifest could not be read. Only a position and the kind of error are reported, never
/// the text around it: manifests (ClusterPairs) hold tokens, passwords and keys.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// JSON that does not parse.
    #[error("invalid JSON at line {line}, column {column}: {kind}")]
    Json {
        line: usize,
        column: usize,
        kind: &'static str,
    },
    /// YAML that does not parse.
    #[error("invalid YAML at line {line}, column {column}: {kind}")]
    Yaml {
        line: u64,
        column: u64,
        kind: String,
    },
    /// A document that is not an object (a bare string or list).
    #[error(
        "document {0} is not a Kubernetes object (expected a mapping with apiVersion and kind)"
    )]
    NotAnObject(usize),
}

/// The text after a byte-order mark and leading whitespace, when it starts as JSON does (`{` or
/// `[`): how a manifest is told to be JSON rather than YAML.
pub fn json_text(text: &str) -> Option<&str> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    (trimmed.starts_with('{') || trimmed.starts_with('[')).then_some(trimmed)
}

/// Parses a manifest into its documents, in order. JSON is recognised by its first character;
/// everything else is read as a YAML stream. Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    if let Some(trimmed) = json_text(text) {
        // Positions count in `text`, not in the trimmed slice.
        let skipped = &text[..text.len() - trimmed.len()];
        let docs = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
        return docs
            .map(|v| v.map_err(|e| json_error(&e, skipped)))
            .collect();
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| yaml_error(&e))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// A JSON error by position and category (serde_json's message can quote a value).
fn json_error(e: &serde_json::Error, skipped: &str) -> ManifestError {
    use serde_json::error::Category;
    let lines_before = skipped.matches('\n').count();
    // Only the first line of the trimmed text starts after what was skipped.
    let on_first_line = lines_before == 0 && e.line() == 1;
    ManifestError::Json {
        line: e.line() + lines_before,
        column: e.column() + if on_first_line { skipped.len() } else { 0 },
        kind: match e.classify() {
            Category::Io => "read error",
            Category::Syntax => "syntax error",
            Category::Data => "wrong type or value",
            Category::Eof => "unexpected end of input",
        },
    }
}

/// A YAML error by position and kind. The parser's own messages are fixed phrases ("found a
/// tab", "did not find expected key") and are kept; every other message is replaced, since it
/// may quote the input, and the source snippet serde-saphyr renders is never used.
fn yaml_error(e: &serde_saphyr::Error) -> ManifestError {
    use serde_saphyr::Error as E;
    let inner = e.without_snippet();
    let kind = match inner {
        E::ExternalMessage { msg, .. }
            if crate::mapping::is_quotable(&msg.replace([',', '\''], "")) =>
        {
            msg.clone()
        }
        E::Eof { .. } => "unexpected end of input".to_string(),
        E::Unexpected { expected, .. } => format!("expected {expected}"),
        _ => "syntax error".to_string(),
    };
    let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
    ManifestError::Yaml { line, column, kind }
}

/// Parses a manifest into objects: lists (`kind: List`, or a JSON array) are expanded, and
/// anything that is not an object is an error.
pub fn parse_objects(text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in parse_documents(text)?.into_iter().enumerate() {
        expand(doc, i + 1, &mut out)?;
    }
    Ok(out)
}

fn expand(doc: Value, position: usize, out: &mut Vec<Value>) -> Result<(), ManifestError> {
    let is_list = |map: &serde_json::Map<String, Value>| {
        let kind = map.get("kind").and_then(Value::as_str);
        kind.is_some_and(|k| k.ends_with("List")) && map.get("items").is_some_and(Value::is_array)
    };
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut map) if is_list(&map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        Value::Object(_) => {
            out.push(doc);
            return Ok(());
        }
        _ => return Err(ManifestError::NotAnObject(position)),
    };
    for item in items {
        expand(item, position, out)?;
    }
    Ok(())
}

/// Renders objects as a YAML stream, one document each, in order.
pub fn to_yaml_stream(objects: &[Value]) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(o)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_stream_and_lists() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n";
        let objs = parse_objects(text).unwrap();
        let names: Vec<&str> = objs
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn json_object_and_stream() {
        let objs = parse_objects(r#"{"kind":"A","metadata":{"name":"x"}} {"kind":"B"}"#).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["kind"], "B");
    }

    #[test]
    fn scalars_are_not_objects() {
        assert!(matches!(
            parse_objects("just text"),
            Err(ManifestError::NotAnObject(1))
        ));
        assert!(parse_objects("{not json").is_err());
        assert!(parse_objects("a: [unclosed").is_err());
    }

    #[test]
    fn yaml_roundtrip_keeps_string_types() {
        let o = json!({"metadata": {"annotations": {"stork.libopenstorage.org/migrated": "true", "n": "0123", "e": "", "y": "y", "no": "no", "on": "on", "null": "null", "tilde": "~", "f": "1.5", "o": "0o17", "x": "0x1F", "multi": "a\nb\n"}}});
        let text = to_yaml_stream(std::slice::from_ref(&o)).unwrap();
        assert_eq!(parse_objects(&text).unwrap(), vec![o]);
    }
}
