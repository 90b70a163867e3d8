//! Where the mapping table comes from: a flag (static), a file followed for changes, or the
//! mapping ConfigMap watched through the API server. Every source produces whole, checked tables
//! and hands them to the live table ([`crate::live`]), which swaps a good one in atomically and
//! keeps the last good one otherwise.

pub mod configmap;
mod file;
pub mod mappings_file;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

pub use configmap::ConfigMapRef;
pub use file::{follow_file, load_static, LoadError};

use crate::live::LiveMappings;

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
        Source::Static(text) => {
            let m = load_static(&text).context("--project-mappings")?;
            live.offer::<LoadError>("--project-mappings", Ok(m))
                .map_err(|why| anyhow::anyhow!("--project-mappings: {why}"))?;
        }
        Source::File(path) => {
            let origin = path.display().to_string();
            tokio::spawn(follow_file(path, poll, move |result| {
                // Refusals are logged and counted by `offer`.
                let _ = live.offer(&origin, result);
            }));
        }
        Source::ConfigMap(at) => {
            let client = client.context("--mappings-configmap needs a Kubernetes client")?;
            tokio::spawn(configmap::follow(client, at, live));
        }
    }
    Ok(())
}
