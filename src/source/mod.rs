//! Where the mapping table comes from: a flag (static), a file followed for changes, or the
//! mapping ConfigMap watched through the API server. Every source produces whole, checked tables
//! and hands them to the live table ([`crate::live`]), which swaps a good one in atomically and
//! keeps the last good one otherwise.

pub mod configmap;
mod file;
pub mod mappings_file;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

pub use configmap::{mappings_of, ConfigMapRef};

use crate::kube_error::KubeError;
use crate::live::LiveMappings;
use crate::mapping::objects::Mappings;
use mappings_file::{mappings_from_file_text, MappingsFileError};

/// A mapping source given on the command line.
#[derive(Clone, Debug)]
pub enum Source {
    /// `--project-mappings`: fixed for the life of the process.
    Static(String),
    /// `--mappings-file`: a mapping ConfigMap, ClusterPair(s) or plain text, followed for changes.
    File(PathBuf),
    /// `--mappings-configmap NS/NAME`: the mapping ConfigMap, watched through the API server.
    ConfigMap(ConfigMapRef),
}

impl Source {
    /// The table the source holds now, read once (`audit`, `doctor`, `export-policy`; `serve`
    /// follows it instead, with [`start`]). `client` reads a ConfigMap, which only that needs.
    pub async fn read(&self, client: Option<&kube::Client>) -> Result<Mappings, ReadError> {
        match self {
            Source::Static(text) => {
                Mappings::from_text(text).map_err(|e| ReadError::invalid("--project-mappings", e))
            }
            Source::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|why| ReadError::File {
                    path: path.clone(),
                    why,
                })?;
                mappings_from_file_text(&text).map_err(|e| ReadError::bad_file(path, e))
            }
            Source::ConfigMap(at) => {
                let client = client.ok_or(ReadError::NoClient)?;
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
                let cm = api.get(&at.name).await.map_err(|e| ReadError::Api {
                    at: at.clone(),
                    why: e.into(),
                })?;
                mappings_of(&cm).map_err(|e| ReadError::invalid(at, e))
            }
        }
    }
}

/// Why a source read once gave no table. The text says where; the cause is the `source` (as
/// `anyhow` prints a chain: `mappings file x.yaml: no mapping entries`), except for `File`,
/// whose text says its cause.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It was read, and holds no good table.
    #[error("{origin}")]
    Invalid {
        origin: String,
        #[source]
        why: MappingsFileError,
    },
    /// The mappings file could not be read (the cause said in the text: `serve` logs it).
    #[error("reading {}: {why}", .path.display())]
    File { path: PathBuf, why: std::io::Error },
    /// The ConfigMap could not be read through the API server.
    #[error("reading {at}")]
    Api {
        at: ConfigMapRef,
        #[source]
        why: KubeError,
    },
    /// A ConfigMap source was given no client (a caller's mistake, not the user's).
    #[error("--mappings-configmap needs a cluster")]
    NoClient,
}

impl ReadError {
    /// A mappings file that holds no good table (read by the caller: `rewrite` reads stdin for
    /// `-`).
    pub fn bad_file(path: &Path, why: MappingsFileError) -> Self {
        Self::invalid(format_args!("mappings file {}", path.display()), why)
    }

    fn invalid(origin: impl ToString, why: impl Into<MappingsFileError>) -> Self {
        let (origin, why) = (origin.to_string(), why.into());
        ReadError::Invalid { origin, why }
    }
}

/// Starts a source. A static table is loaded now (a bad one stops the start); a file or a
/// ConfigMap is followed in the background (until its first good table the server is not
/// ready; a later bad one keeps the last good table). `poll` is the file polling interval;
/// `client` talks to the API server a ConfigMap is watched through (the caller picks the
/// cluster, as kubectl does).
pub async fn start(
    source: Source,
    live: Arc<LiveMappings>,
    poll: Duration,
    client: Option<kube::Client>,
) -> Result<()> {
    match source {
        Source::Static(_) => {
            let m = source.read(None).await?;
            live.offer::<String>("--project-mappings", Ok(m))
                .map_err(|why| anyhow::anyhow!("--project-mappings: {why}"))?;
        }
        Source::File(path) => {
            tokio::spawn(file::follow_file(path, poll, live));
        }
        Source::ConfigMap(at) => {
            let client = client.context("--mappings-configmap needs a Kubernetes client")?;
            tokio::spawn(configmap::follow(client, at, live));
        }
    }
    Ok(())
}
