//! The mapping table in force. Sources offer tables; the server reads them. A new table is
//! swapped in whole and atomically, so a request never waits for a reload and never sees half a
//! table; a bad one leaves the one in force. What happens is counted in the table's own
//! metrics ([`TableMetrics`]), so this module names neither the sources nor the server.

use std::fmt::Display;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::mapping::objects::Mappings;
use crate::metrics::{by_result, registered, ByResult};

/// The table's metrics (`rancher_remap_mapping_table_*`).
#[derive(Clone, Debug)]
pub struct TableMetrics {
    reloads: ByResult,
    entries: Gauge,
}

impl TableMetrics {
    pub fn register(registry: &mut Registry) -> TableMetrics {
        let r = registry.sub_registry_with_prefix("mapping_table");
        TableMetrics {
            reloads: by_result(
                r,
                "reloads",
                "Mapping table loads by result (ok, rejected)",
                &["ok", "rejected", "missing"],
            ),
            entries: registered(r, "entries", "Entries in the mapping table in force"),
        }
    }
}

/// The table in force (`None` until the first good one: not ready).
pub struct LiveMappings {
    current: ArcSwapOption<Mappings>,
    metrics: TableMetrics,
    /// Whether migration users come from elsewhere (`--migration-user`), so a table without any
    /// is not worth a warning.
    users_given: bool,
    /// This cluster's Rancher ID (`--cluster-id`): every table is checked against it.
    cluster_id: Option<String>,
}

impl LiveMappings {
    pub fn new(metrics: TableMetrics, users_given: bool, cluster_id: Option<String>) -> Self {
        LiveMappings {
            current: ArcSwapOption::empty(),
            metrics,
            users_given,
            cluster_id,
        }
    }

    pub fn load_full(&self) -> Option<Arc<Mappings>> {
        self.current.load_full()
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Puts a good table in force, or keeps the one in force and says why not (`origin` names
    /// the source in the log). A table that does not fit this cluster is refused here, for
    /// every source alike. Returns why a table was refused (the log line's text).
    pub fn offer<E: Display>(
        &self,
        origin: &str,
        result: Result<Mappings, E>,
    ) -> Result<(), String> {
        let result = result.map_err(|e| e.to_string()).and_then(|m| {
            match self.cluster_id.as_deref().map(|c| m.table.check_cluster(c)) {
                Some(Err(e)) => Err(e.to_string()),
                _ => Ok(m),
            }
        });
        match result {
            Ok(m) => {
                for w in m.table.warnings() {
                    tracing::warn!(source = %origin, "{w}");
                }
                tracing::info!(source = %origin, entries = m.table.len(), migration_users = m.migration_users.len(), "mapping table loaded");
                if self.cluster_id.is_none() && !self.users_given && m.migration_users.is_empty() {
                    // Stork does not mark the Namespaces it creates: without this cluster's ID (the
                    // API server's filter), only the writer's name tells.
                    tracing::warn!(source = %origin, "neither --cluster-id nor a migration user is known: the Namespaces Stork creates keep their source project IDs");
                }
                self.metrics.entries.set(m.table.len() as i64);
                self.metrics.reloads.count("ok");
                self.current.store(Some(Arc::new(m)));
                Ok(())
            }
            Err(e) => {
                self.metrics.reloads.count("rejected");
                let why = format!("mapping table rejected; {}: {e}", self.fallback_note());
                tracing::error!(source = %origin, error = %e, "mapping table rejected; {}", self.fallback_note());
                Err(why)
            }
        }
    }

    /// The source lost its table; the one in force stays.
    pub fn missing(&self) {
        self.metrics.reloads.count("missing");
    }

    /// What the server does without a new table, as a phrase for messages.
    pub fn fallback_note(&self) -> &'static str {
        if self.is_loaded() {
            "keeping the last good table"
        } else {
            "not ready until a good table is loaded"
        }
    }
}
