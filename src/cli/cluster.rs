//! kubectl's flags for the cluster a command talks to (`--kubeconfig`, `--context`), and the
//! client built from them. Errors name the kubeconfig and the API server's URL, never a
//! credential: a kubeconfig's parse error is not quoted (it may quote the file), and the URL is
//! shown without any user or password it carries.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Which cluster to talk to, as kubectl picks it.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct ClusterArgs {
    /// The kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config; in a pod, its
    /// ServiceAccount.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use. Default: the kubeconfig's current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// A client, and the API server it talks to (for messages).
#[derive(Clone)]
pub struct Connected {
    pub client: Client,
    /// The API server's URL, without credentials.
    pub server: String,
}

impl Connected {
    /// Builds the client for `config` (no request is made yet), each call given `timeout` to
    /// connect and to read when there is one: a command that must end (doctor) does not wait on
    /// an unreachable server.
    pub fn new(mut config: Config, timeout: Option<std::time::Duration>) -> Result<Connected> {
        if timeout.is_some() {
            config.connect_timeout = timeout;
            config.read_timeout = timeout;
        }
        let server = display_url(&config.cluster_url);
        // kube's own message is not kept: its proxy errors quote the proxy URL whole, password
        // included.
        let client = Client::try_from(config).map_err(|e| {
            let why = match e {
                kube::Error::ProxyProtocolDisabled { .. }
                | kube::Error::ProxyProtocolUnsupported { .. } => {
                    "the kubeconfig's proxy-url is not supported"
                }
                _ => "the kubeconfig's TLS or credential settings cannot be used",
            };
            anyhow!("building a client for the API server at {server}: {why}")
        })?;
        Ok(Connected { client, server })
    }
}

impl ClusterArgs {
    /// Builds the client, as kubectl picks the cluster (no request is made yet), each call given
    /// `timeout` when there is one (see [`Connected::new`]).
    pub async fn connect(&self, timeout: Option<std::time::Duration>) -> Result<Connected> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                // A parse error says where, not what (the file holds credentials).
                let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|_| {
                    anyhow!(
                        "kubeconfig {} is not a valid kubeconfig (YAML with clusters, contexts and users)",
                        path.display()
                    )
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|_| self.unusable(path.display().to_string()))?
            }
            (None, Some(_)) => Config::from_kubeconfig(&options)
                .await
                .map_err(|_| self.unusable("$KUBECONFIG or ~/.kube/config".into()))?,
            (None, None) => Config::infer().await.map_err(|_| {
                anyhow!("no cluster to talk to: not in a pod with a ServiceAccount, and no kubeconfig ($KUBECONFIG, ~/.kube/config or --kubeconfig) that can be used")
            })?,
        };
        Connected::new(config, timeout)
    }

    fn unusable(&self, which: String) -> anyhow::Error {
        match &self.context {
            Some(c) => anyhow!("kubeconfig {which}: context {c:?} cannot be used (missing, or its cluster or user is missing or invalid)"),
            None => anyhow!("kubeconfig {which}: its current context cannot be used (none set, or its cluster or user is missing or invalid)"),
        }
    }
}

/// `scheme://host:port/path`, leaving out any `user:password@` the URL carries.
fn display_url(uri: &hyper::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host().unwrap_or("?");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let path = uri.path().trim_end_matches('/');
    format!("{scheme}://{host}{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        let uri: hyper::Uri = "https://admin:s3cret@k8s.example.com:6443/"
            .parse()
            .unwrap();
        assert_eq!(display_url(&uri), "https://k8s.example.com:6443");
        let uri: hyper::Uri = "https://10.0.0.1/k8s/clusters/c-m-1".parse().unwrap();
        assert_eq!(display_url(&uri), "https://10.0.0.1/k8s/clusters/c-m-1");
    }
}
