//! The few API calls the audit makes, through kube's dynamic `Api` (`Api<DynamicObject>` with
//! the type's `ApiResource`: kube builds the paths and query strings): one page of a list and
//! one object, each object handed on as a plain JSON value with its resourceVersion ([`Read`]),
//! and one JSON patch, whose answer is dropped. Errors are [`KubeError`]s. Each is one of the
//! audit's `concurrency` requests in flight.
//!
//! Types whose project IDs live only in metadata ([`ResourceType::metadata_only`]) go through
//! kube's `list_metadata`, `get_metadata` and `patch_metadata`, which ask for kube-apiserver's
//! metadata-only form (`PartialObjectMetadataList`, `PartialObjectMetadata`): no Secret data,
//! ConfigMap data or Service spec is sent, parsed or held, and each item is `{"apiVersion",
//! "kind", "metadata"}`, which the rewrite reads like any object.
//!
//! Objects pass through kube's types (`ObjectMeta` typed, the rest as JSON) before they become
//! values, so within an object `metadata`'s fields come in kube's order (annotations before
//! labels), not the API server's.

use json_patch::{Patch, PatchOperation, TestOperation};
use jsonptr::PointerBuf;
use kube::api::{Api, DynamicObject, ListParams, ObjectList, PatchParams};
use kube::Resource;
use serde::Serialize;
use serde_json::Value;

use super::{ResourceType, Scan};
use crate::kube_error::KubeError;

/// One object read: the JSON value the engine walks, and its resourceVersion from kube's typed
/// metadata (all that `--fix` keeps of the object once it is judged).
pub(super) struct Read {
    pub object: Value,
    pub resource_version: Option<String>,
}

impl Scan<'_> {
    /// kube's `Api` on `t` (in `namespace`, when `t` is namespaced; else cluster-wide).
    fn api(&self, t: &ResourceType, namespace: Option<&str>) -> Api<DynamicObject> {
        let client = self.client.clone();
        match namespace {
            // Left out for a cluster-scoped type, as `kubectl -n` leaves it.
            Some(ns) if t.namespaced => Api::namespaced_with(client, ns, &t.resource),
            _ => Api::all_with(client, &t.resource),
        }
    }

    /// Lists one page of `t` (in `namespace`, or everywhere), starting at `continue_token`: its
    /// items, and the token of the next page.
    pub(super) async fn list_page(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        continue_token: Option<String>,
    ) -> Result<(Vec<Read>, Option<String>), KubeError> {
        let params = ListParams {
            limit: Some(self.settings.page_size.max(1)),
            continue_token,
            ..ListParams::default()
        };
        let api = self.api(t, namespace);
        let _permit = self.permits.acquire().await;
        if t.metadata_only() {
            page(api.list_metadata(&params).await?, t)
        } else {
            page(api.list(&params).await?, t)
        }
    }

    /// Reads one object again.
    pub(super) async fn get(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Read, KubeError> {
        let api = self.api(t, namespace);
        let _permit = self.permits.acquire().await;
        if t.metadata_only() {
            typed_value(api.get_metadata(name).await?, t)
        } else {
            typed_value(api.get(name).await?, t)
        }
    }

    /// Sends the webhook's patch behind a `test` of the resourceVersion read, so that a change
    /// made in between is refused (409/422) instead of overwritten (`dryRun=All` when
    /// `dry_run`). The answer, the patched object, is read and dropped; for a metadata-only type
    /// only its metadata is asked for (no Secret data comes back).
    pub(super) async fn patch(
        &self,
        t: &ResourceType,
        (namespace, name): (Option<&str>, &str),
        (resource_version, patch): (&str, &[PatchOperation]),
        dry_run: bool,
    ) -> Result<(), KubeError> {
        let mut ops = Vec::with_capacity(patch.len() + 1);
        ops.push(PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
            value: resource_version.into(),
        }));
        // The engine saw only metadata of such a type, so it cannot propose more; kept to
        // /metadata all the same, so a patch never writes what the audit never read.
        let metadata_only = t.metadata_only();
        ops.extend(
            patch
                .iter()
                .filter(|op| !metadata_only || op.path().as_str().starts_with("/metadata/"))
                .cloned(),
        );
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let patch = kube::api::Patch::<()>::Json(Patch(ops));
        let api = self.api(t, namespace);
        let _permit = self.permits.acquire().await;
        if metadata_only {
            api.patch_metadata(name, &params, &patch).await?;
        } else {
            api.patch(name, &params, &patch).await?;
        }
        Ok(())
    }
}

/// One page, its items as JSON values for the engine and the report.
fn page<K: Clone + Serialize + Resource>(
    list: ObjectList<K>,
    t: &ResourceType,
) -> Result<(Vec<Read>, Option<String>), KubeError> {
    let items = list.items.into_iter().map(|item| typed_value(item, t));
    Ok((items.collect::<Result<_, _>>()?, list.metadata.continue_))
}

/// An object as the JSON value the engine reads, with its type's kind and apiVersion. (kube's
/// object serialized once more: the audit waits on the API server, not on this copy.)
fn typed_value<K: Serialize + Resource>(obj: K, t: &ResourceType) -> Result<Read, KubeError> {
    let resource_version = obj.meta().resource_version.clone();
    let mut value = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
    // kube-apiserver leaves kind and apiVersion out of list items of built-in types (and names
    // metadata-only items PartialObjectMetadata); the engine and the report need the type's.
    let Some(map) = value.as_object_mut() else {
        return Ok(Read {
            object: value,
            resource_version,
        });
    };
    for (key, v) in [
        ("kind", &t.resource.kind),
        ("apiVersion", &t.resource.api_version),
    ] {
        // `meta.k8s.io/v1 PartialObjectMetadata` says how it was sent, not what it is.
        if t.metadata_only() || !map.contains_key(key) {
            map.insert(key.into(), Value::from(v.as_str()));
        }
    }
    Ok(Read {
        object: value,
        resource_version,
    })
}
