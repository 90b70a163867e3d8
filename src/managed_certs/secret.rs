//! The certificate Secret: how [`Stored`] material is kept in it, and the two writes. Every
//! write is conditional: a create answered 409 means another replica created it first, an
//! update carries the resourceVersion it was planned on, so 409 means another replica changed
//! it first. Either way the caller reads the winner and plans again.
//!
//! RBAC: `get`, `list`, `watch`, `patch` on this Secret by name, and `create` on Secrets in the
//! namespace (Kubernetes cannot narrow `create` by name).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::pki::plan::Stored;
use crate::pki::PemPair;

/// The keys of the Secret. `tls.crt`/`tls.key` make it a `kubernetes.io/tls` Secret that
/// kubectl and other tools understand; `ca.key` never leaves it.
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
const BUNDLE: &str = "ca-bundle.crt";

/// The material in a Secret. Missing or non-UTF-8 keys read as empty, which the plan finds
/// unusable (and replaces).
pub fn stored(secret: &Secret) -> Stored {
    let text = |key: &str| -> String {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .unwrap_or_default()
    };
    Stored {
        ca: PemPair {
            cert: text(CA_CERT),
            key: text(CA_KEY),
        },
        serving: PemPair {
            cert: text(TLS_CERT),
            key: text(TLS_KEY),
        },
        bundle: text(BUNDLE),
    }
}

fn data(s: &Stored) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT, &s.ca.cert),
        (CA_KEY, &s.ca.key),
        (TLS_CERT, &s.serving.cert),
        (TLS_KEY, &s.serving.key),
        (BUNDLE, &s.bundle),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

/// Creates the Secret holding `s`.
pub async fn create(api: &Api<Secret>, name: &str, s: &Stored) -> Written {
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
pub async fn update(api: &Api<Secret>, name: &str, resource_version: &str, s: &Stored) -> Written {
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
