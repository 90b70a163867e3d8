//! The mapping table in force. Sources put tables in; the server reads them. A new table is
//! swapped in whole and atomically, so a request never waits for a reload and never sees half a
//! table; a bad one leaves the one in force. What happens is reported through [`LoadEvents`]
//! (the server's metrics implement it), so this module names neither the sources nor the server.

use std::fmt::Display;

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::mapping::objects::Mappings;

/// What a table source reports, for whoever counts it.
pub trait LoadEvents: Send + Sync {
    /// A table went into force.
    fn loaded(&self, mappings: &Mappings);
    /// A table was refused (the one in force, if any, stays).
    fn rejected(&self);
    /// The source has no table any more (the mapping ConfigMap deleted or not found).
    fn missing(&self);
}

/// The table in force (`None` until the first good one: not ready).
pub struct LiveMappings {
    current: ArcSwapOption<Mappings>,
    events: Arc<dyn LoadEvents>,
    /// Whether migration users come from elsewhere (`--migration-user`), so a table without any
    /// is not worth a warning.
    users_given: bool,
    /// This cluster's Rancher ID (`--cluster-id`): every table is checked against it.
    cluster_id: Option<String>,
}

impl LiveMappings {
    /// `users_given`: migration users are known without the table (see [`LiveMappings::put`]);
    /// `cluster_id`: the cluster every table must fit (see [`crate::mapping::Table::check_cluster`]).
    pub fn new(
        events: Arc<dyn LoadEvents>,
        users_given: bool,
        cluster_id: Option<String>,
    ) -> LiveMappings {
        LiveMappings {
            current: ArcSwapOption::empty(),
            events,
            users_given,
            cluster_id,
        }
    }

    /// The table in force, if any.
    pub fn load_full(&self) -> Option<Arc<Mappings>> {
        self.current.load_full()
    }

    /// Whether a table is in force.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Puts a good table in force, or keeps the one in force and says why not (`origin` names
    /// the source in the log). A table that does not fit this cluster is refused here, for
    /// every source alike. Returns why a table was refused (the log line's text).
    pub fn put<E: Display>(&self, origin: &str, result: Result<Mappings, E>) -> Result<(), String> {
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
                self.events.loaded(&m);
                self.current.store(Some(Arc::new(m)));
                Ok(())
            }
            Err(e) => {
                self.events.rejected();
                let why = format!("mapping table rejected; {}: {e}", self.kept());
                tracing::error!(source = %origin, error = %e, "mapping table rejected; {}", self.kept());
                Err(why)
            }
        }
    }

    /// The source lost its table; the one in force stays.
    pub fn missing(&self) {
        self.events.missing();
    }

    /// What the server does without a new table, for messages.
    pub fn kept(&self) -> &'static str {
        if self.is_loaded() {
            "keeping the last good table"
        } else {
            "not ready until a good table is loaded"
        }
    }
}
