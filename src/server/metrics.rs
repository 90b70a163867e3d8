//! Prometheus metrics, all prefixed `rancher_remap_`. Labels are small fixed sets: never a
//! name, a value or anything from a ClusterPair.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::outcome::RequestOutcome;
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

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// A latency histogram that takes no lock: one atomic add to a bucket and one to the sum (in
/// nanoseconds). prometheus-client's own histogram takes a write lock per observation, which
/// every request's worker would contend for.
/// Clones share the cells (a handle resolved once from the family is the registered series).
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram(Arc<Cells>);

#[derive(Debug, Default)]
struct Cells {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let c = &*self.0;
        let seconds = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(LATENCY_BUCKETS.len());
        c.buckets[i].fetch_add(1, Ordering::Relaxed);
        c.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let c = &*self.0;
        let mut buckets = [(0.0, 0u64); LATENCY_BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let upper = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::MAX);
            *slot = (upper, c.buckets[i].load(Ordering::Relaxed));
        }
        let sum = c.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        // The count from the buckets read, so that `+Inf` never falls short of it mid-update.
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One endpoint's handles, resolved once: counting a request hashes no labels and takes no lock.
pub struct EndpointMetrics {
    /// By [`RequestOutcome::index`].
    pub requests: [Counter; RequestOutcome::ALL.len()],
    pub duration: LatencyHistogram,
}

impl EndpointMetrics {
    /// The handles of one endpoint, resolved once (each outcome's series starts at zero).
    fn resolve(
        requests: &Family<RequestLabels, Counter>,
        duration: &Family<EndpointLabels, LatencyHistogram, fn() -> LatencyHistogram>,
        endpoint: &'static str,
    ) -> EndpointMetrics {
        EndpointMetrics {
            requests: RequestOutcome::ALL.map(|outcome| {
                let outcome = outcome.as_str();
                requests
                    .get_or_create(&RequestLabels { endpoint, outcome })
                    .clone()
            }),
            duration: duration.get_or_create(&EndpointLabels { endpoint }).clone(),
        }
    }

    /// Counts one request with its outcome.
    pub fn count(&self, outcome: RequestOutcome, elapsed: std::time::Duration) {
        self.requests[outcome.index()].inc();
        self.duration.observe(elapsed);
    }
}

/// Every metric the server exports.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<EndpointLabels, LatencyHistogram, fn() -> LatencyHistogram>,
    /// `/mutate` and `/validate`, resolved once.
    pub mutate: EndpointMetrics,
    pub validate: EndpointMetrics,
    /// Per location (by [`Location::index`]), resolved once.
    pub rewrites_at: [Counter; Location::ALL.len()],
    pub unmapped_at: [Counter; Location::ALL.len()],
    /// Admission log lines not written because the log writer fell behind.
    pub log_lines_dropped: Counter,
    pub rewrites: Family<LocationLabels, Counter>,
    pub unmapped: Family<LocationLabels, Counter>,
    pub table_entries: Gauge,
    pub table_reloads: Family<ResultLabels, Counter>,
    pub certificate_reloads: Family<ResultLabels, Counter>,
    /// Webhook connections held (from accept to close): how near `--max-connections` it runs.
    pub connections: Gauge,
    /// notAfter (Unix seconds) of the serving certificate in force; set on every (re)load.
    pub certificate_expiry: Gauge,
    /// `--cert-secret`: writes of the certificate Secret by result (ok, conflict, failed).
    pub certificate_secret_writes: Family<ResultLabels, Counter>,
    /// `--cert-secret`: caBundle patches by result (ok, failed).
    pub ca_bundle_patches: Family<ResultLabels, Counter>,
    /// `--cert-secret`: webhook configurations whose caBundle could not be brought up to date
    /// on the last pass (0 without `--cert-secret`).
    pub ca_bundle_stale: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("rancher_remap");
        let requests = registered(
            &mut r,
            "requests",
            "Admission requests by endpoint and outcome",
            Family::<RequestLabels, Counter>::default(),
        );
        let duration: Family<EndpointLabels, LatencyHistogram, fn() -> LatencyHistogram> =
            registered(
                &mut r,
                "request_duration_seconds",
                "Time to answer an admission request",
                Family::new_with_constructor(LatencyHistogram::default),
            );
        let per_location_family = |r: &mut Registry, name, help| {
            registered(r, name, help, Family::<LocationLabels, Counter>::default())
        };
        let rewrites =
            per_location_family(&mut r, "rewrites", "Project IDs rewritten, by location");
        let unmapped = per_location_family(
            &mut r,
            "unmapped",
            "Project IDs with no mapping, by location",
        );
        let table_reloads = by_result(
            &mut r,
            "mapping_table_reloads",
            "Mapping table loads by result (ok, rejected)",
            &["ok", "rejected", "missing"],
        );
        let certificate_reloads = by_result(
            &mut r,
            "certificate_reloads",
            "Serving certificate reloads by result (ok, rejected)",
            &["ok", "rejected"],
        );
        let certificate_secret_writes = by_result(
            &mut r,
            "certificate_secret_writes",
            "Writes of the certificate Secret (--cert-secret) by result (ok, conflict, failed)",
            &["ok", "conflict", "failed"],
        );
        let ca_bundle_patches = by_result(
            &mut r,
            "ca_bundle_patches",
            "caBundle patches of the webhook configurations (--cert-secret) by result (ok, failed)",
            &["ok", "failed"],
        );
        let ca_bundle_stale = registered(
            &mut r,
            "ca_bundle_stale",
            "Webhook configurations whose caBundle could not be brought up to date on the last pass (--cert-secret)",
            Gauge::default(),
        );
        Metrics {
            certificate_secret_writes,
            ca_bundle_patches,
            ca_bundle_stale,
            mutate: EndpointMetrics::resolve(&requests, &duration, "mutate"),
            validate: EndpointMetrics::resolve(&requests, &duration, "validate"),
            rewrites_at: per_location(&rewrites),
            unmapped_at: per_location(&unmapped),
            table_entries: registered(
                &mut r,
                "mapping_table_entries",
                "Entries in the mapping table in force",
                Gauge::default(),
            ),
            connections: registered(
                &mut r,
                "connections",
                "Webhook connections open (accepted, not yet closed; at most --max-connections)",
                Gauge::default(),
            ),
            log_lines_dropped: registered(
                &mut r,
                "log_lines_dropped",
                "Admission log lines dropped because the log writer fell behind",
                Counter::default(),
            ),
            certificate_expiry: registered(
                &mut r,
                "certificate_expiry_timestamp_seconds",
                "notAfter of the serving certificate in force, in Unix seconds",
                Gauge::default(),
            ),
            requests,
            duration,
            rewrites,
            unmapped,
            table_reloads,
            certificate_reloads,
            registry: r,
        }
    }
}

/// A family's counter for each location, resolved once (each series starts at zero).
fn per_location(family: &Family<LocationLabels, Counter>) -> [Counter; Location::ALL.len()] {
    Location::ALL.map(|l| {
        family
            .get_or_create(&LocationLabels {
                location: l.as_str(),
            })
            .clone()
    })
}

/// A counter family by result, registered, each of `results` starting at zero (so that rates
/// and alerts work from the first scrape).
fn by_result(
    r: &mut Registry,
    name: &str,
    help: &str,
    results: &[&'static str],
) -> Family<ResultLabels, Counter> {
    let family = registered(r, name, help, Family::<ResultLabels, Counter>::default());
    for &result in results {
        let _ = family.get_or_create(&ResultLabels { result });
    }
    family
}

/// Registers `metric` under `name` and returns it (the registry keeps a clone that shares
/// its cells).
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
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
    /// into force: the `LoadEvents` implementation below.)
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

/// The live table's events, counted.
impl crate::live::LoadEvents for Metrics {
    fn loaded(&self, mappings: &crate::mapping::objects::Mappings) {
        self.table_entries.set(mappings.table.len() as i64);
        self.table_loaded(true);
    }

    fn rejected(&self) {
        self.table_loaded(false);
    }

    fn missing(&self) {
        self.table_missing();
    }
}
