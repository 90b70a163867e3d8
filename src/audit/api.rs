//! The few API calls the audit makes, through kube's dynamic `Api` (`Api<DynamicObject>` with
//! the type's `ApiResource`: kube builds the paths and query strings), their answers handed on
//! as plain JSON values: one page of a list, one object, one JSON patch. Errors are described by
//! status code, reason and a bounded message, never by a response body.
//!
//! Types whose project IDs live only in metadata ([`ResourceType::metadata_only`]) go through
//! `Api<PartialObjectMeta<DynamicObject>>`, which asks for kube-apiserver's metadata-only form
//! (`PartialObjectMetadataList`, `PartialObjectMetadata`) in every verb: no Secret data,
//! ConfigMap data or Service spec is sent, parsed or held, and each item is `{"apiVersion",
//! "kind", "metadata"}`, which the rewrite reads like any object.
//!
//! Objects pass through kube's types (`ObjectMeta` typed, the rest as JSON) before they become
//! values, so within an object `metadata`'s fields come in kube's order (annotations before
//! labels), not the API server's.

use std::fmt::Debug;

use json_patch::Patch;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PatchParams};
use kube::core::discovery::Scope;
use kube::core::{DynamicResourceScope, PartialObjectMeta};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::discovery::ResourceType;

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub continue_token: Option<String>,
}

/// kube's `Api` on `t` (in `namespace`, when `t` is namespaced; else cluster-wide). `K` is
/// `DynamicObject` for whole objects, or `PartialObjectMeta<DynamicObject>`, for which kube asks
/// for the metadata-only form in every verb (list, get and patch alike).
fn api<K>(client: &Client, t: &ResourceType, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = ApiResource, Scope = DynamicResourceScope>,
{
    let scope = if t.namespaced {
        Scope::Namespaced
    } else {
        Scope::Cluster
    };
    let api = Api::dynamic(client.clone(), &t.api_resource(), &scope);
    match namespace {
        // A no-op on a cluster-scoped type, as `kubectl -n` is.
        Some(ns) => api.constrain(ns),
        None => api,
    }
}

/// Lists one page of `t` (in `namespace`, or everywhere), starting at `continue_token`.
pub async fn list_page(
    client: &Client,
    t: &ResourceType,
    namespace: Option<&str>,
    limit: u32,
    continue_token: Option<String>,
) -> Result<Page, kube::Error> {
    let params = ListParams {
        limit: Some(limit),
        continue_token,
        ..ListParams::default()
    };
    if t.metadata_only() {
        let api: Api<PartialObjectMeta<DynamicObject>> = api(client, t, namespace);
        page(api, &params, t).await
    } else {
        let api: Api<DynamicObject> = api(client, t, namespace);
        page(api, &params, t).await
    }
}

/// One page through `api`, its items as JSON values for the engine and the report.
async fn page<K>(api: Api<K>, params: &ListParams, t: &ResourceType) -> Result<Page, kube::Error>
where
    K: Clone + DeserializeOwned + Debug + IntoValue,
{
    let list = api.list(params).await?;
    let items = list
        .items
        .into_iter()
        .map(|item| typed_value(item, t))
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        continue_token: list.metadata.continue_,
    })
}

/// Reads one object again.
pub async fn get(
    client: &Client,
    t: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, kube::Error> {
    if t.metadata_only() {
        let api: Api<PartialObjectMeta<DynamicObject>> = api(client, t, namespace);
        typed_value(api.get(name).await?, t)
    } else {
        let api: Api<DynamicObject> = api(client, t, namespace);
        typed_value(api.get(name).await?, t)
    }
}

/// Sends a JSON patch (`dryRun=All` when `dry_run`). The answer, the patched object, is read
/// and dropped; for a metadata-only type only its metadata is asked for (no Secret data comes
/// back).
pub async fn patch(
    client: &Client,
    t: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    patch: Patch,
    dry_run: bool,
) -> Result<(), kube::Error> {
    let params = PatchParams {
        dry_run,
        ..PatchParams::default()
    };
    let patch = kube::api::Patch::<()>::Json(patch);
    if t.metadata_only() {
        let api: Api<PartialObjectMeta<DynamicObject>> = api(client, t, namespace);
        api.patch(name, &params, &patch).await?;
    } else {
        let api: Api<DynamicObject> = api(client, t, namespace);
        api.patch(name, &params, &patch).await?;
    }
    Ok(())
}

/// An object as the JSON value the engine reads, with its type's kind and apiVersion.
fn typed_value<K: IntoValue>(obj: K, t: &ResourceType) -> Result<Value, kube::Error> {
    let mut value = obj.into_value().map_err(kube::Error::SerdeError)?;
    with_type(&mut value, t);
    Ok(value)
}

/// kube's object types as the JSON values the engine and the report read.
trait IntoValue {
    fn into_value(self) -> Result<Value, serde_json::Error>;
}

impl IntoValue for DynamicObject {
    /// Everything but the type and the metadata is a JSON value already: it is moved, not
    /// serialized again (a copy of each whole object).
    fn into_value(self) -> Result<Value, serde_json::Error> {
        let mut map = serde_json::Map::new();
        if let Some(types) = self.types {
            map.insert("apiVersion".into(), Value::from(types.api_version));
            map.insert("kind".into(), Value::from(types.kind));
        }
        map.insert("metadata".into(), serde_json::to_value(self.metadata)?);
        // Flattened by kube, `data` is always a map: the object's other fields.
        if let Value::Object(rest) = self.data {
            map.extend(rest);
        }
        Ok(Value::Object(map))
    }
}

impl IntoValue for PartialObjectMeta<DynamicObject> {
    fn into_value(self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

fn with_type(obj: &mut Value, t: &ResourceType) {
    // kube-apiserver leaves kind and apiVersion out of list items of built-in types (and names
    // metadata-only items PartialObjectMetadata); the engine and the report need the type's.
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    if t.metadata_only() {
        // `meta.k8s.io/v1 PartialObjectMetadata` says how it was sent, not what it is.
        map.insert("kind".into(), Value::from(t.kind.clone()));
        map.insert("apiVersion".into(), Value::from(t.api_version()));
    } else {
        map.entry("kind")
            .or_insert_with(|| Value::from(t.kind.clone()));
        map.entry("apiVersion")
            .or_insert_with(|| Value::from(t.api_version()));
    }
}

/// The API status code of an error, if the server answered.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// After a 410 for a continue token too old (etcd compacted the list's revision), the token
/// kube-apiserver offers to go on with the rest of the list (no longer one consistent snapshot).
pub fn continue_after_expiry(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s) if s.code == 410 => s
            .metadata
            .as_ref()?
            .continue_
            .clone()
            .filter(|c| !c.is_empty()),
        _ => None,
    }
}

/// Longest message quoted from the API server.
const MESSAGE_MAX: usize = 300;

/// A short description: `422 Invalid: message` for API answers (the message cut short), the
/// error's own text otherwise.
pub fn describe_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let message = crate::text::truncate(s.message.clone(), MESSAGE_MAX);
            format!("{} {}: {message}", s.code, s.reason)
        }
        // The credential plugin's or provider's own error can quote its command line, its
        // environment and its output, where kubeconfigs keep secrets: never shown.
        kube::Error::Auth(_) => "the kubeconfig's credentials could not be obtained (its exec plugin or auth provider failed; run it by hand to see why)".to_string(),
        // The whole cause, once each (kube's and hyper's messages repeat their sources'):
        // "client error (Connect): tcp connect error: Connection refused (os error 111)".
        other => {
            let mut parts: Vec<String> = vec![other.to_string()];
            let mut cause = std::error::Error::source(other);
            while let Some(c) = cause {
                let text = c.to_string();
                if !parts.iter().any(|p| p.contains(&text)) {
                    parts.push(text);
                }
                cause = c.source();
            }
            parts.join(": ")
        }
    }
}

#[cfg(test)]
mod describe_error_tests {
    /// A credential plugin's failure can carry its command line, environment and output, where
    /// kubeconfigs keep secrets: the description says what failed and quotes none of it.
    #[test]
    fn an_auth_error_quotes_nothing_of_the_plugin() {
        let e = kube::Error::Auth(kube::client::AuthError::AuthExec(
            "cmd: \"aws\" AWS_SECRET_ACCESS_KEY=\"sEcReT-marker\" out: token sEcReT-marker".into(),
        ));
        let text = super::describe_error(&e);
        assert!(!text.contains("sEcReT-marker"), "{text}");
        assert!(text.contains("credentials could not be obtained"), "{text}");
    }
}
