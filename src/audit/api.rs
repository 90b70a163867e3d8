//! The few API calls the audit makes, on plain JSON values: one page of a list, one object,
//! one JSON patch. Errors are described by status code, reason and a bounded message, never by
//! a response body.
//!
//! Types whose project IDs live only in metadata ([`ResourceType::metadata_only`]) are read in
//! kube-apiserver's metadata-only form (`PartialObjectMetadataList`, `PartialObjectMetadata`):
//! no Secret data, ConfigMap data or Service spec is sent, parsed or held, and each item is
//! `{"apiVersion", "kind", "metadata"}`, which the rewrite reads like any object.

use json_patch::Patch;
use kube::api::{GetParams, ListParams, PatchParams};
use kube::core::Request;
use kube::Client;
use serde::Deserialize;
use serde_json::Value;

use super::discovery::ResourceType;

/// One page of a list.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub items: Vec<Value>,
    #[serde(default)]
    pub metadata: PageMeta,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageMeta {
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
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
    let request = Request::new(t.collection_path(namespace));
    let req = if t.metadata_only() {
        request.list_metadata(&params)
    } else {
        request.list(&params)
    }
    .map_err(kube::Error::BuildRequest)?;
    let mut page: Page = client.request(req).await?;
    // kube-apiserver leaves kind and apiVersion out of list items of built-in types (and names
    // metadata-only items PartialObjectMetadata); the engine and the report need the type's.
    for item in &mut page.items {
        with_type(item, t);
    }
    Ok(page)
}

/// Reads one object again.
pub async fn get(
    client: &Client,
    t: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, kube::Error> {
    let request = Request::new(t.collection_path(namespace));
    let req = if t.metadata_only() {
        request.get_metadata(name, &GetParams::default())
    } else {
        request.get(name, &GetParams::default())
    }
    .map_err(kube::Error::BuildRequest)?;
    let mut obj: Value = client.request(req).await?;
    with_type(&mut obj, t);
    Ok(obj)
}

/// Sends a JSON patch (`dryRun=All` when `dry_run`).
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
    let req = Request::new(t.collection_path(namespace))
        .patch(name, &params, &kube::api::Patch::<()>::Json(patch))
        .map_err(kube::Error::BuildRequest)?;
    // The answer is the patched object: read and dropped.
    let _: serde::de::IgnoredAny = client.request(req).await?;
    Ok(())
}

fn with_type(obj: &mut Value, t: &ResourceType) {
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
