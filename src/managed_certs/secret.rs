//! The certificate Secret: how [`Stored`] material is kept in it, and the two writes. Every
//! write is conditional: a create answered 409 means another replica created it first, an
//! update carries the resourceVersion it was planned on, so 409 means another replica changed
//! it first. Either way the caller reads the winner and plans again.
//!
//! RBAC: `get`, `list`, `watch`, `patch` on this Secret by name, and `create` on Secrets in the
//! namespace (Kubernetes cannot narrow `create` by name).

use std::collections::BTreeMap;
use std::mem::take;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::pki::plan::Stored;

/// The keys of the Secret, each with the part of [`Stored`] it holds. `tls.crt`/`tls.key` make
/// it a `kubernetes.io/tls` Secret that kubectl and other tools understand; `ca.key` never
/// leaves it.
fn keys(s: &mut Stored) -> [(&'static str, &mut String); 5] {
    [
        ("ca.crt", &mut s.ca.cert),
        ("ca.key", &mut s.ca.key),
        ("tls.crt", &mut s.serving.cert),
        ("tls.key", &mut s.serving.key),
        ("ca-bundle.crt", &mut s.bundle),
    ]
}

/// The material in a Secret. Missing or non-UTF-8 keys read as empty, which the plan finds
/// unusable (and replaces).
pub fn stored(secret: &Secret) -> Stored {
    let mut s = Stored::default();
    for (key, part) in keys(&mut s) {
        let bytes = secret.data.as_ref().and_then(|d| d.get(key));
        *part = bytes
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .unwrap_or_default();
    }
    s
}

fn data(mut s: Stored) -> BTreeMap<String, ByteString> {
    let entry = |(k, v): (&str, &mut String)| (k.to_string(), ByteString(take(v).into_bytes()));
    keys(&mut s).into_iter().map(entry).collect()
}

/// Creates the Secret holding `s`.
pub async fn create(api: &Api<Secret>, name: &str, s: Stored) -> Written {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "rancher-remap".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data(s)),
        ..Secret::default()
    };
    written(api.create(&PostParams::default(), &secret).await)
}

/// Replaces the material of the Secret read at `resource_version` with `s`.
pub async fn update(api: &Api<Secret>, name: &str, resource_version: &str, s: Stored) -> Written {
    // A merge patch that names the resourceVersion is refused with 409 if it changed.
    let patch = json!({
        "metadata": { "resourceVersion": resource_version },
        "data": data(s),
    });
    written(
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    )
}

/// A conditional write's result: the Secret as stored, or `None` when someone else wrote first
/// (409: read it again).
pub type Written = Result<Option<Secret>, kube::Error>;

fn written(result: Result<Secret, kube::Error>) -> Written {
    match result {
        Ok(done) => Ok(Some(done)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}
