//! A typed ClusterPair (`stork.libopenstorage.org/v1alpha1`), lenient about fields it does not
//! know. `spec.config` is a kubeconfig in client-go's *internal* shape: maps keyed by name.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::secret::Secret;

/// The metadata fields this project reads.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    /// Unread (as `LocationOfOrigin` and a context's `namespace` below), but typed: a wrongly
    /// typed value fails the shape check ([`ModelError::Shape`]).
    #[serde(rename = "generateName")]
    pub generate_name: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterPair {
    pub metadata: Meta,
    pub spec: ClusterPairSpec,
}

/// The fields Stork's `ClusterPairSpec` has (pkg/apis/stork/v1alpha1/clusterpair.go), by level:
/// `spec`, `spec.platformOptions`, `spec.platformOptions.rancher`. Stork's CRD has no schema, so
/// any other key is stored and silently ignored.
pub const STORK_FIELDS: [(&str, &[&str]); 3] = [
    ("spec", &["config", "options", "platformOptions"]),
    ("spec.platformOptions", &["rancher"]),
    ("spec.platformOptions.rancher", &["projectMappings"]),
];

/// `spec`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterPairSpec {
    pub config: Option<KubeConfig>,
    pub options: BTreeMap<String, Value>,
    pub platform_options: PlatformOptions,
}

/// `spec.platformOptions`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PlatformOptions {
    pub rancher: RancherOptions,
}

/// `spec.platformOptions.rancher`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RancherOptions {
    /// Source project ID → destination project ID. Values are kept as JSON so that a
    /// non-string value does not fail the whole decode (see [`ClusterPair::parse_mappings`]).
    pub project_mappings: BTreeMap<String, Value>,
}

/// client-go's internal `Config`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct KubeConfig {
    pub clusters: BTreeMap<String, Cluster>,
    pub contexts: BTreeMap<String, Context>,
    pub users: BTreeMap<String, AuthInfo>,
    pub current_context: String,
}

/// client-go's internal `Cluster`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    pub certificate_authority_data: Option<Secret>,
    pub certificate_authority: Option<String>,
    pub insecure_skip_tls_verify: bool,
    #[serde(rename = "LocationOfOrigin")]
    pub location_of_origin: Option<String>,
}

/// client-go's internal `Context`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Context {
    pub cluster: String,
    pub user: String,
    pub namespace: String,
}

/// client-go's internal `AuthInfo`: every credential is a [`Secret`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct AuthInfo {
    pub client_certificate_data: Option<Secret>,
    pub client_key_data: Option<Secret>,
    pub client_certificate: Option<String>,
    pub client_key: Option<String>,
    pub token: Option<Secret>,
    #[serde(rename = "tokenFile")]
    pub token_file: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Only whether it is present matters; its content may hold credentials in `env`.
    #[serde(deserialize_with = "presence")]
    pub exec: bool,
    #[serde(deserialize_with = "presence")]
    pub auth_provider: bool,
}

fn presence<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(!Value::deserialize(d)?.is_null())
}

/// Why a document is not a ClusterPair this project can read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not a `stork.libopenstorage.org` `ClusterPair`. (What the document says instead is not
    /// quoted: it is the input's text.)
    #[error("not a ClusterPair (expected apiVersion stork.libopenstorage.org/v1alpha1, kind ClusterPair)")]
    NotAClusterPair,
    /// A field has the wrong type. The serde message is left out on purpose: it may quote a value.
    #[error("ClusterPair does not match the expected shape (a field has the wrong type)")]
    Shape,
}

/// Whether a value is a Stork ClusterPair (any `stork.libopenstorage.org` version).
pub fn is_clusterpair(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("ClusterPair")
        && v.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("stork.libopenstorage.org/"))
}

impl ClusterPair {
    /// Reads a ClusterPair from a JSON value without ever quoting a field's value in an error.
    pub fn from_value(v: &Value) -> Result<ClusterPair, ModelError> {
        if !is_clusterpair(v) {
            return Err(ModelError::NotAClusterPair);
        }
        ClusterPair::deserialize(v).map_err(|_| ModelError::Shape)
    }

    /// The ConfigMap data key for this pair's mappings (docs/behaviour.md): `<namespace>.<name>`.
    pub fn data_key(&self) -> String {
        let ns = if self.metadata.namespace.is_empty() {
            "default"
        } else {
            &self.metadata.namespace
        };
        format!("{ns}.{}", self.metadata.name)
    }

    /// Parses `spec.platformOptions.rancher.projectMappings` (each entry checked on its own;
    /// the checks across entries are the table's). A non-string value is read as its JSON text:
    /// an object or array then fails the ID check with a message naming the entry, but a number
    /// or a boolean (`5`, `true`) is a valid DNS label and passes, though Stork's Go type (a
    /// string map) would not decode it.
    pub fn parse_mappings(&self) -> crate::mapping::Parsed {
        let mappings = &self.spec.platform_options.rancher.project_mappings;
        let values: Vec<Cow<str>> = mappings
            .values()
            .map(|v| match v {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Null => Cow::Borrowed(""),
                other => Cow::Owned(other.to_string()),
            })
            .collect();
        let pairs = mappings
            .keys()
            .zip(&values)
            .map(|(s, d)| (s.as_str(), &**d));
        crate::mapping::parse_map(pairs, &crate::mapping::Origin::ClusterPair)
    }
}
