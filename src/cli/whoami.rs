//! Who a ClusterPair authenticates as, asked of the API server its kubeconfig names with its
//! own credentials: a SelfSubjectReview, as `kubectl auth whoami` does. The credential goes from
//! the ClusterPair to that one request and nowhere else: never printed, logged or kept.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};

use super::cluster::Connected;
use crate::clusterpair::KubeConfig;
use crate::kube_error::KubeError;

/// How long one API call may take: an unreachable server ends the run, it does not hang it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The user and groups the API server sees for `config`'s current context.
pub async fn ask(config: &KubeConfig) -> Result<(String, Vec<String>)> {
    let Connected { client, server } = pair_client(config).await?;
    let api: Api<SelfSubjectReview> = Api::all(client);
    let answer = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        // Not `KubeError::of_call`: this command's unreachable message names no call, and its
        // 401 speaks of the pair's credentials.
        .map_err(|e| match KubeError::from(e) {
            KubeError::Unauthorized(_) => anyhow!(
                "the API server at {server} refused the pair's credentials (401 Unauthorized)"
            ),
            e if e.answered() => {
                anyhow!("create selfsubjectreviews.authentication.k8s.io at {server}: {e}")
            }
            e => anyhow!("cannot reach the API server at {server}: {e}"),
        })?;
    let info = answer.status.and_then(|s| s.user_info).unwrap_or_default();
    match info.username.filter(|u| !u.is_empty()) {
        Some(user) => Ok((user, info.groups.unwrap_or_default())),
        None => Err(anyhow!("the SelfSubjectReview at {server} named no user")),
    }
}

/// A client for the pair's current context, built in memory: the credential goes from the
/// file to the client and nowhere else.
async fn pair_client(config: &KubeConfig) -> Result<Connected> {
    let Some(ctx) = config.contexts.get(&config.current_context) else {
        bail!("its current-context names no context");
    };
    let Some(cluster) = config.clusters.get(&ctx.cluster) else {
        bail!("its context names no cluster");
    };
    let Some(user) = config.users.get(&ctx.user) else {
        bail!("its context names no user");
    };
    if user.exec || user.auth_provider {
        return Err(anyhow!("its user authenticates with an exec or auth-provider plugin, which this tool does not run"));
    }
    let secret =
        |s: &Option<crate::clusterpair::Secret>| s.as_ref().map(|s| s.expose().to_string());
    let kubeconfig = serde_json::json!({
        "clusters": [{"name": "pair", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": secret(&cluster.certificate_authority_data),
            "insecure-skip-tls-verify": cluster.insecure_skip_tls_verify.then_some(true),
        }}],
        "users": [{"name": "pair", "user": {
            "token": secret(&user.token),
            "client-certificate-data": secret(&user.client_certificate_data),
            "client-key-data": secret(&user.client_key_data),
            "username": user.username,
            "password": secret(&user.password),
        }}],
        "contexts": [{"name": "pair", "context": {"cluster": "pair", "user": "pair"}}],
        "current-context": "pair",
    });
    // A serde error could quote the value it choked on: say only that it did not read.
    let file: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)
        .map_err(|_| anyhow!("its spec.config does not read as a kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|_| anyhow!("its spec.config does not make a client (server URL, CA or key)"))?;
    Connected::new(config, Some(CALL_TIMEOUT))
}
