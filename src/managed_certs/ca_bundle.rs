//! Keeps the caBundle of this server's own webhook configurations equal to the CA bundle in
//! force. Each configuration is read, and only the webhooks whose caBundle differs are patched,
//! with a JSON patch that first tests the webhook's name at that index (a configuration changed
//! in between fails the test and is tried again on the next pass, never patched blindly).
//!
//! RBAC: `get` and `patch` on these configurations, by name.

use base64::Engine;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use crate::kube_error::KubeError;

/// A webhook configuration this server keeps: `mutating/NAME` or `validating/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfigRef {
    pub mutating: bool,
    pub name: String,
}

impl std::str::FromStr for WebhookConfigRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, name) = s.split_once('/').unwrap_or(("", s));
        let mutating = match kind {
            "mutating" => Ok(true),
            "validating" => Ok(false),
            _ => Err("expected mutating/NAME or validating/NAME of a webhook configuration"),
        }?;
        crate::mapping::check_label(name).map_err(|_| {
            "a webhook configuration's NAME is a DNS-1123 label, e.g. rancher-remap".to_string()
        })?;
        Ok(WebhookConfigRef {
            mutating,
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for WebhookConfigRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind().to_ascii_lowercase(), self.name)
    }
}

impl WebhookConfigRef {
    fn kind(&self) -> &'static str {
        match self.mutating {
            true => "MutatingWebhookConfiguration",
            false => "ValidatingWebhookConfiguration",
        }
    }
}

/// Brings one configuration's caBundle to `bundle_pem`: whether this call patched it (it held
/// another caBundle, or none), and its resourceVersion afterwards (any change since the last
/// look, a reset and a restore by someone else included, restarts the rollover's grace). The
/// error is why it could not be (the API's own reason; it never holds the bundle, which is
/// public anyway).
pub async fn sync(
    client: &Client,
    at: &WebhookConfigRef,
    bundle_pem: &str,
) -> Result<(bool, String), String> {
    use kube::ResourceExt;
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", at.kind());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let described = |e| KubeError::from(e).to_string();
    let config = api.get(&at.name).await.map_err(described)?;
    let ops = patch_ops(&config.data, bundle_pem);
    let patched = !ops.is_empty();
    let config = if patched {
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops)).map_err(|e| e.to_string())?;
        let patch = Patch::Json::<()>(patch);
        api.patch(&at.name, &PatchParams::default(), &patch)
            .await
            .map_err(described)?
    } else {
        config
    };
    Ok((patched, config.resource_version().unwrap_or_default()))
}

/// The JSON patch operations that set every stale caBundle (none when all are current).
pub fn patch_ops(config: &Value, bundle_pem: &str) -> Vec<Value> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle_pem);
    let webhooks = config["webhooks"].as_array().map_or(&[][..], Vec::as_slice);
    let mut ops = Vec::new();
    for (i, webhook) in webhooks.iter().enumerate() {
        if webhook["clientConfig"]["caBundle"].as_str() == Some(encoded.as_str()) {
            continue;
        }
        ops.push(
            json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook["name"]}),
        );
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    ops
}
