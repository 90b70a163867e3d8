//! Prometheus metrics, all prefixed `rancher_remap_`. Labels are small fixed sets: never a
//! name, a value or anything from a ClusterPair.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::rewrite::Location;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LocationLabels {
    pub location: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Every metric the server exports.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<EndpointLabels, Histogram>,
    pub rewrites: Family<LocationLabels, Counter>,
    pub unmapped: Family<LocationLabels, Counter>,
    pub table_entries: Gauge,
    pub table_reloads: Family<ResultLabels, Counter>,
    pub certificate_reloads: Family<ResultLabels, Counter>,
    /// Webhook connections held (from accept to close): how near `--max-connections` it runs.
    pub connections: Gauge,
    /// notAfter (Unix seconds) of the serving certificate in force; set on every (re)load.
    pub certificate_expiry: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rancher_remap");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission requests by endpoint and outcome",
            requests.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
            ])
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer an admission request",
            duration.clone(),
        );
        let rewrites = Family::<LocationLabels, Counter>::default();
        registry.register(
            "rewrites",
            "Project IDs rewritten, by location",
            rewrites.clone(),
        );
        let unmapped = Family::<LocationLabels, Counter>::default();
        registry.register(
            "unmapped",
            "Project IDs with no mapping, by location",
            unmapped.clone(),
        );
        let table_entries = Gauge::default();
        registry.register(
            "mapping_table_entries",
            "Entries in the mapping table in force",
            table_entries.clone(),
        );
        let table_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "mapping_table_reloads",
            "Mapping table loads by result (ok, rejected)",
            table_reloads.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads by result (ok, rejected)",
            certificate_reloads.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Webhook connections open (accepted, not yet closed; at most --max-connections)",
            connections.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in force, in Unix seconds",
            certificate_expiry.clone(),
        );
        // Known series start at zero so that rates and alerts work from the first scrape.
        for l in Location::ALL {
            let _ = rewrites.get_or_create(&LocationLabels {
                location: l.as_str(),
            });
            let _ = unmapped.get_or_create(&LocationLabels {
                location: l.as_str(),
            });
        }
        for r in ["ok", "rejected"] {
            let _ = table_reloads.get_or_create(&ResultLabels { result: r });
            let _ = certificate_reloads.get_or_create(&ResultLabels { result: r });
        }
        let _ = table_reloads.get_or_create(&ResultLabels { result: "missing" });
        Metrics {
            registry,
            requests,
            duration,
            rewrites,
            unmapped,
            table_entries,
            table_reloads,
            certificate_reloads,
            connections,
            certificate_expiry,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a table load, good or rejected. (The entries gauge is set where a table goes
    /// into force: `AppState::set_mappings`.)
    pub fn table_loaded(&self, ok: bool) {
        self.table_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "rejected" },
            })
            .inc();
    }

    /// Counts a source that has no table any more (the mapping ConfigMap deleted or not found).
    pub fn table_missing(&self) {
        self.table_reloads
            .get_or_create(&ResultLabels { result: "missing" })
            .inc();
    }
}
