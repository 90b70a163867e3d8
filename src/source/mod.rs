//! Where the mapping table comes from: a flag (static), a file followed for changes, or the
//! mapping ConfigMap watched through the API server. Every source produces whole, checked
//! tables; [`put_in_force`] swaps a good one in atomically and keeps the last good one otherwise.

pub mod configmap;
mod file;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

pub use configmap::ConfigMapRef;
pub use file::{follow_file, load_file, load_static, LoadError};

use crate::mapping::objects::Mappings;
use crate::server::routes::AppState;

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
/// ready; a later bad one keeps the last good table). `poll` is the file polling interval.
pub async fn start(source: Source, state: Arc<AppState>, poll: Duration) -> Result<()> {
    match source {
        Source::Static(text) => {
            let m = load_static(&text).context("--project-mappings")?;
            put_in_force(&state, "--project-mappings", Ok(m));
        }
        Source::File(path) => {
            let origin = path.display().to_string();
            tokio::spawn(follow_file(path, poll, move |result| {
                put_in_force(&state, &origin, result.map_err(|e| e.to_string()));
            }));
        }
        Source::ConfigMap(at) => {
            // In-cluster configuration, or KUBECONFIG / ~/.kube/config outside a cluster.
            let client = kube::Client::try_default()
                .await
                .context("building a Kubernetes client for --mappings-configmap")?;
            tokio::spawn(configmap::follow(client, at, state));
        }
    }
    Ok(())
}

/// Puts a good table in force, or keeps the one in force and says why not. Returns whether the
/// new table went in.
pub fn put_in_force(state: &AppState, origin: &str, result: Result<Mappings, String>) -> bool {
    match result {
        Ok(m) => {
            for w in m.table.warnings() {
                tracing::warn!(source = %origin, "{w}");
            }
            tracing::info!(source = %origin, entries = m.table.len(), migration_users = m.migration_users.len(), "mapping table loaded");
            if state.settings.scope == crate::server::admission::Scope::Migrated
                && state.settings.migration_users.is_empty()
                && m.migration_users.is_empty()
            {
                // Stork does not mark the Namespaces it creates: only the writer's name tells.
                tracing::warn!(source = %origin, "no migration user is known (--migration-user, or the mapping ConfigMap's rancher-remap.io/migration-users annotation): the Namespaces Stork creates keep their source project IDs");
            }
            state.metrics.table_loaded(true);
            state.set_mappings(m);
            true
        }
        Err(e) => {
            state.metrics.table_loaded(false);
            tracing::error!(source = %origin, error = %e, "mapping table rejected; {}", kept(state));
            false
        }
    }
}

/// What the server does without a new table, for messages.
pub fn kept(state: &AppState) -> &'static str {
    if state.mappings.load().is_some() {
        "keeping the last good table"
    } else {
        "not ready until a good table is loaded"
    }
}
