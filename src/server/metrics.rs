//! Prometheus metrics, all prefixed `rancher_remap_`. Labels are small fixed sets: never a
//! name, a value or anything from a ClusterPair. Every series is made at start, in a fixed
//! order ([`FixedFamily`]): a scrape lists them in the same order every time, and only the
//! series that can happen (`/validate` never patches) are there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
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

/// A metric family whose series are all made at start, exported in the order given.
/// (prometheus-client's `Family` keeps its series in a hash map: a scrape lists them in a
/// different order in every process, and `get_or_create` makes any series asked for.)
/// Clones share the series.
#[derive(Debug)]
pub struct FixedFamily<L, M> {
    series: Arc<Vec<(L, M)>>,
}

impl<L, M> Clone for FixedFamily<L, M> {
    fn clone(&self) -> Self {
        FixedFamily {
            series: self.series.clone(),
        }
    }
}

impl<L: PartialEq, M: Default> FixedFamily<L, M> {
    /// One series (starting at zero) per label set, in this order.
    pub fn new(labels: impl IntoIterator<Item = L>) -> Self {
        FixedFamily {
            series: Arc::new(labels.into_iter().map(|l| (l, M::default())).collect()),
        }
    }

    /// The series of `labels`, one of those made at start.
    ///
    /// # Panics
    /// On labels not made at start: a programming error, caught by the tests of every caller.
    pub fn get(&self, labels: &L) -> &M {
        self.series
            .iter()
            .find_map(|(l, m)| (l == labels).then_some(m))
            .expect("a series made at start")
    }
}

impl<L, M: TypedMetric> TypedMetric for FixedFamily<L, M> {
    const TYPE: MetricType = M::TYPE;
}

impl<
        L: EncodeLabelSet + std::fmt::Debug + Send + Sync,
        M: EncodeMetric + TypedMetric + std::fmt::Debug,
    > EncodeMetric for FixedFamily<L, M>
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, metric) in self.series.iter() {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
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
    /// The handles of one endpoint, resolved once. Outcomes not in `possible` get a counter
    /// that is not exported (`/validate` never patches, waits for a table or is not served).
    fn resolve(
        requests: &mut Vec<(RequestLabels, Counter)>,
        duration: &mut Vec<(EndpointLabels, LatencyHistogram)>,
        endpoint: &'static str,
        possible: &[RequestOutcome],
    ) -> EndpointMetrics {
        let metrics = EndpointMetrics {
            requests: Default::default(),
            duration: LatencyHistogram::default(),
        };
        for &outcome in possible {
            let labels = RequestLabels {
                endpoint,
                outcome: outcome.as_str(),
            };
            requests.push((labels, metrics.requests[outcome.index()].clone()));
        }
        duration.push((EndpointLabels { endpoint }, metrics.duration.clone()));
        metrics
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
    pub requests: FixedFamily<RequestLabels, Counter>,
    pub duration: FixedFamily<EndpointLabels, LatencyHistogram>,
    /// `/mutate` and `/validate`, resolved once.
    pub mutate: EndpointMetrics,
    pub validate: EndpointMetrics,
    /// Per location (by [`Location::index`]), resolved once.
    pub rewrites_at: [Counter; Location::ALL.len()],
    pub unmapped_at: [Counter; Location::ALL.len()],
    /// Admission log lines not written because the log writer fell behind.
    pub log_lines_dropped: Counter,
    pub rewrites: FixedFamily<LocationLabels, Counter>,
    pub unmapped: FixedFamily<LocationLabels, Counter>,
    pub table_entries: Gauge,
    pub table_reloads: FixedFamily<ResultLabels, Counter>,
    pub certificate_reloads: FixedFamily<ResultLabels, Counter>,
    /// Webhook connections held (from accept to close): how near `--max-connections` it runs.
    pub connections: Gauge,
    /// notAfter (Unix seconds) of the serving certificate in force; set on every (re)load.
    pub certificate_expiry: Gauge,
    /// `--cert-secret`: writes of the certificate Secret by result (ok, conflict, failed).
    pub certificate_secret_writes: FixedFamily<ResultLabels, Counter>,
    /// `--cert-secret`: caBundle patches by result (ok, failed).
    pub ca_bundle_patches: FixedFamily<ResultLabels, Counter>,
    /// `--cert-secret`: webhook configurations whose caBundle could not be brought up to date
    /// on the last pass (0 without `--cert-secret`).
    pub ca_bundle_stale: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("rancher_remap");
        let (mut requests, mut duration) = (Vec::new(), Vec::new());
        use RequestOutcome as O;
        let mutate = EndpointMetrics::resolve(&mut requests, &mut duration, "mutate", &O::ALL);
        let validate = EndpointMetrics::resolve(
            &mut requests,
            &mut duration,
            "validate",
            &[O::Allowed, O::Denied, O::BadRequest],
        );
        let requests = registered(
            &mut r,
            "requests",
            "Admission requests by endpoint and outcome",
            FixedFamily {
                series: Arc::new(requests),
            },
        );
        let duration = registered(
            &mut r,
            "request_duration_seconds",
            "Time to answer an admission request",
            FixedFamily {
                series: Arc::new(duration),
            },
        );
        let per_location_family = |r: &mut Registry, name, help| {
            let family = FixedFamily::new(Location::ALL.map(|l| LocationLabels {
                location: l.as_str(),
            }));
            registered(r, name, help, family)
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
            mutate,
            validate,
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

/// A family's counter for each location, resolved once.
fn per_location(family: &FixedFamily<LocationLabels, Counter>) -> [Counter; Location::ALL.len()] {
    Location::ALL.map(|l| {
        family
            .get(&LocationLabels {
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
) -> FixedFamily<ResultLabels, Counter> {
    let family = FixedFamily::new(results.iter().map(|&result| ResultLabels { result }));
    registered(r, name, help, family)
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
            .get(&ResultLabels {
                result: if ok { "ok" } else { "rejected" },
            })
            .inc();
    }

    /// Counts a source that has no table any more (the mapping ConfigMap deleted or not found).
    pub fn table_missing(&self) {
        self.table_reloads
            .get(&ResultLabels { result: "missing" })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of a scrape (no comments), in order.
    fn samples(m: &Metrics) -> Vec<String> {
        m.encode()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_scrape_lists_the_same_series_in_the_same_order() {
        // Each hash map has its own random seed: several instances would disagree.
        let first = samples(&Metrics::default());
        for _ in 0..8 {
            assert_eq!(samples(&Metrics::default()), first);
        }
        let requests: Vec<_> = first
            .iter()
            .filter(|l| l.starts_with("rancher_remap_requests_total{endpoint=\"mutate\""))
            .cloned()
            .collect();
        let outcomes: Vec<_> = RequestOutcome::ALL
            .iter()
            .map(|o| {
                format!(
                    "rancher_remap_requests_total{{endpoint=\"mutate\",outcome=\"{}\"}} 0",
                    o.as_str()
                )
            })
            .collect();
        assert_eq!(requests, outcomes);
    }

    #[test]
    fn only_series_that_can_happen_are_exported() {
        let m = Metrics::default();
        let text = m.encode();
        for impossible in ["patched", "would_patch", "unavailable", "not_served"] {
            let series = format!("endpoint=\"validate\",outcome=\"{impossible}\"");
            assert!(!text.contains(&series), "{series}\n{text}");
        }
        for possible in ["allowed", "denied", "bad_request"] {
            let series = format!("endpoint=\"validate\",outcome=\"{possible}\"");
            assert!(text.contains(&series), "{series}");
        }
        // The handles count into the exported series.
        m.validate
            .count(RequestOutcome::Denied, std::time::Duration::ZERO);
        m.table_missing();
        let text = m.encode();
        assert!(text
            .contains("rancher_remap_requests_total{endpoint=\"validate\",outcome=\"denied\"} 1"));
        assert!(text.contains("rancher_remap_mapping_table_reloads_total{result=\"missing\"} 1"));
    }
}
