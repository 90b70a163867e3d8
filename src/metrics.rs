//! Prometheus metrics: one registry, every name prefixed `rancher_remap_`, in which each
//! subsystem registers its own series (the server, the live mapping table, the serving
//! certificate, the certificate keeper), as linkerd2's policy controller hands each part a
//! sub-registry. Labels are small fixed sets: never a name, a value or anything from a
//! ClusterPair. Every series is made at start, in a fixed order ([`FixedFamily`]): a scrape lists
//! them in the same order every time, and only the series that can happen (`/validate` never
//! patches) are there.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

/// The registry every subsystem registers in.
pub fn registry() -> Registry {
    Registry::with_prefix("rancher_remap")
}

/// A label set: names and values, all fixed at start.
pub type Labels<const N: usize> = [(&'static str, &'static str); N];

/// A counter family by result.
pub type ByResult = FixedFamily<Labels<1>, Counter>;

/// A metric family whose series are all made at start, exported in the order given.
/// (prometheus-client's `Family` keeps its series in a hash map: a scrape lists them in a
/// different order in every process, and `get_or_create` makes any series asked for.)
/// Clones share the series.
#[derive(Clone, Debug)]
pub struct FixedFamily<L, M> {
    series: Arc<Vec<(L, M)>>,
}

impl<L, M> FixedFamily<L, M> {
    /// These series, exported in this order.
    pub fn new(series: impl IntoIterator<Item = (L, M)>) -> Self {
        FixedFamily {
            series: Arc::new(series.into_iter().collect()),
        }
    }
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

impl ByResult {
    /// Counts one `result`.
    ///
    /// # Panics
    /// On a result not made at start: a programming error, caught by the tests of every caller.
    pub fn count(&self, result: &'static str) {
        let labels = [("result", result)];
        let series = self.series.iter().find(|(l, _)| *l == labels);
        series.expect("a series made at start").1.inc();
    }
}

/// A counter family by result, registered, each of `results` starting at zero (so that rates
/// and alerts work from the first scrape).
pub fn by_result(
    registry: &mut Registry,
    name: &str,
    help: &str,
    results: &[&'static str],
) -> ByResult {
    let series = results
        .iter()
        .map(|&r| ([("result", r)], Counter::default()));
    let family = FixedFamily::new(series);
    registry.register(name, help, family.clone());
    family
}

/// A new metric, registered under `name` (the registry keeps a clone that shares its cells).
pub fn registered<M: Metric + Clone + Default>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}
